"""HTTPS as a site's visitor meets it, and the local ACME server (scripts/stack-up.sh section 10):
requests to Traefik's HTTPS entrypoint with the name as SNI, verified against a CA's root; the
certificate presented for a name; a pebble of a test's own (short lifetimes); a second Traefik.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import requests

from harness import scope

ACME_ROOT = Path(os.environ.get("TEST_ACME_ROOT", "/var/lib/director-acme"))
ROOT_PEM = ACME_ROOT / "root.pem"  # the local CA's issuing root
API_CA = ACME_ROOT / "api" / "ca.pem"  # what the ACME API's own certificate chains to
DIRECTORY = "https://127.0.0.1:14000/dir"
DNS = "127.0.0.1:8053"
HTTPS = ("127.0.0.1", int(os.environ.get("TEST_TRAEFIK_HTTPS_PORT", "8443")))
TLS_DIR = Path("/var/lib/director-tls")
TRAEFIK_CONTAINER = "director-traefik"


def acme_settings(directory: str = DIRECTORY, **more: str) -> dict[str, str]:
    """Orchestrator settings (as `stack_running` keywords) that issue from the local ACME server."""
    return {
        "acme_directory_url": directory,
        "acme_ca_file": str(API_CA),
        "acme_dns_server": DNS,
        "acme_edge_addresses": "127.0.0.1",
        "tls_https_port": str(HTTPS[1]),
        "tls_probe_address": f"{HTTPS[0]}:{HTTPS[1]}",
        "tls_retry_base_seconds": "5",
        **more,
    }


def verifying(cafile: Path = ROOT_PEM) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


async def https_get(
    name: str, path: str = "/", *, cafile: Path = ROOT_PEM, address: tuple[str, int] = HTTPS, timeout: float = 5
) -> httpx.Response:
    """GET https://NAME:PORT/PATH, connecting to `address` (curl's --resolve): the certificate
    must be valid for NAME and chain to `cafile`, or this raises."""
    host, port = address
    async with httpx.AsyncClient(verify=verifying(cafile), timeout=timeout) as client:
        return await client.get(
            f"https://{host}:{port}{path}",
            headers={"Host": name},
            extensions={"sni_hostname": name},
        )


def presented(name: str, address: tuple[str, int] = HTTPS) -> tuple[str, str]:
    """SHA-256 of the leaf certificate presented for SNI `name`, and the certificate (PEM)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(address, timeout=5) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    pem = ssl.DER_cert_to_PEM_cert(der)
    return hashlib.sha256(der).hexdigest(), pem


def traefik_file(deployment: str, name: str) -> Path:
    return TLS_DIR / "traefik" / f"{deployment}@{name}.yml"


def pebble_log_mentions(name: str, since: int, log: Path = Path("/var/log/director-pebble.log")) -> bool:
    """Whether the CA was asked to validate `name` (its log from byte `since` on)."""
    with log.open("rb") as file:
        file.seek(since)
        return f'Value:"{name}"'.encode() in file.read()


def log_size(log: Path = Path("/var/log/director-pebble.log")) -> int:
    return log.stat().st_size


@contextlib.contextmanager
def own_pebble(validity_seconds: int, log_dir: Path) -> Iterator[tuple[str, Path]]:
    """A pebble of this test process's own (its ports from the slot and worker), with short-lived
    certificates, validating through the local stack like the stack's pebble; yields its
    directory URL and the file holding its issuing root."""
    port = 14100 + 20 * scope.SLOT + 2 * scope.WORKER
    config = log_dir / "pebble.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{port}",
                    "managementListenAddress": f"127.0.0.1:{port + 1}",
                    "certificate": str(ACME_ROOT / "api" / "cert.pem"),
                    "privateKey": str(ACME_ROOT / "api" / "key.pem"),
                    "httpPort": 8000,
                    "tlsPort": HTTPS[1],
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                    "certificateValidityPeriod": validity_seconds,
                }
            }
        )
    )
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    with (log_dir / "pebble.log").open("ab") as log:
        process = subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", DNS], env=env, stdout=log, stderr=log
        )
    try:
        root = log_dir / "pebble-root.pem"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.get(f"https://127.0.0.1:{port + 1}/roots/0", verify=str(API_CA), timeout=2)
                if answer.ok:
                    root.write_text(answer.text)
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the test's pebble did not start"
            time.sleep(0.2)
        yield f"https://127.0.0.1:{port}/dir", root
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def second_traefik(api: docker.APIClient) -> Iterator[tuple[tuple[str, int], Callable[[], str]]]:
    """Another Traefik like the local stack's (its image, configuration, network and the same
    certificate directory), publishing HTTPS on a loopback port of this process's own; yields
    its address and a way to read its log."""
    inspect = api.inspect_container(TRAEFIK_CONTAINER)
    port = 18443 + 10 * scope.SLOT + scope.WORKER
    name = f"director-traefik-2-{scope.NAME}"
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(name, force=True)
    network = next(iter(inspect["NetworkSettings"]["Networks"]))
    binds = [f"{m['Source']}:{m['Destination']}:ro" for m in inspect["Mounts"]]
    container = api.create_container(
        inspect["Config"]["Image"],
        name=name,
        command=inspect["Config"]["Cmd"],
        labels={"director.edge": "true"},
        host_config=api.create_host_config(binds=binds, port_bindings={443: ("127.0.0.1", port)}, network_mode=network),
        ports=[443],
    )
    try:
        api.start(container)
        yield ("127.0.0.1", port), lambda: api.logs(container, tail=30).decode(errors="replace")
    finally:
        api.remove_container(container, force=True)
