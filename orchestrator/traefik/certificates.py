"""Pure: the file-provider configuration that serves one certificate, and sends its names' plain
HTTP to HTTPS.

Each certificate is one file in the directory Traefik's file provider watches: the certificate
and its key inline, and a router on the web entrypoint that redirects its names to HTTPS. The
redirect comes and goes with the certificate in one reload, so a name is never sent to HTTPS
before Traefik holds a certificate for it. The router outranks the site's own plain router and
yields to the ACME challenge responder's (which must stay reachable over plain HTTP).

JSON is YAML: the file is written with json.dumps, and named `.yml` for the provider.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from orchestrator.traefik.labels import router_rule
from orchestrator_contract.hostnames import Hostname


def certificate_config(
    *,
    deployment: str,
    hosts: Sequence[Hostname],
    cert_pem: str,
    key_pem: str,
    https_port: int,
    priority: int,
) -> str:
    """The file's content. `priority`: of the redirect router (above the sites' own routers)."""
    ident = hashlib.sha256(",".join(hosts).encode()).hexdigest()[:16]
    router, middleware = f"{deployment}-https-{ident}", f"{deployment}-to-https-{ident}"
    redirect: dict[str, object] = {"scheme": "https", "permanent": True}
    if https_port != 443:
        redirect["port"] = str(https_port)
    config = {
        "tls": {"certificates": [{"certFile": cert_pem, "keyFile": key_pem}]},
        "http": {
            "routers": {
                router: {
                    "entryPoints": ["web"],
                    "rule": router_rule(hosts),
                    "priority": priority,
                    "middlewares": [middleware],
                    "service": "noop@internal",
                }
            },
            "middlewares": {middleware: {"redirectScheme": redirect}},
        },
    }
    return json.dumps(config, indent=1) + "\n"
