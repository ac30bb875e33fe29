"""The production stack file is valid for a real swarm."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from support import ROOT

# What an operator must choose (scripts/stack.sh documents them); the file has no default.
REQUIRED = {"SITES_DOMAIN_SUFFIXES": "sites.school.example", "RESERVED_DOMAINS": "panel.school.example"}


def stack_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "stack", "config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_compose_file_passes_docker_stack_config() -> None:
    rendered = stack_config(ROOT / "compose.yaml", REQUIRED)

    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    for expected in (
        "orchestrator:",
        "traefik:",
        "rabbitmq:",
        "/var/run/docker.sock",
        "source: /srv/director/sites\n        target: /srv/director/sites",
        "ORCHESTRATOR_AMQP_PASSWORD_FILE: /run/secrets/orchestrator_amqp_password",
        "ORCHESTRATOR_TRAEFIK_API_URL: http://traefik-control:8080",
        "subnet: 10.254.0.0/24",
        "--configFile=/etc/traefik/traefik.yml",
        "target: /etc/rabbitmq/definitions.json",
        "attachable: true",
        "order: start-first",
        "endpoint_mode: dnsrr",
        "ORCHESTRATOR_ALLOWED_DOMAIN_SUFFIXES: sites.school.example",
        "ORCHESTRATOR_RESERVED_DOMAINS: panel.school.example",
        # HTTPS: Let's Encrypt's staging directory first; Traefik reads the issuer's files.
        "ORCHESTRATOR_ACME_DIRECTORY_URL: https://acme-staging-v02.api.letsencrypt.org/directory",
        "source: /srv/director/tls/traefik\n        target: /etc/traefik/dynamic",
        "source: /srv/director/tls/http01\n        target: /usr/share/nginx/html/.well-known/acme-challenge",
    ):
        assert expected in text, f"{expected!r} missing from the rendered stack"
    # Published: Traefik's web and websecure entrypoints and the broker's TLS listener for
    # Director, in host mode (no ingress mesh); Traefik's API is reached over the overlay network.
    assert sorted(re.findall(r"published: \"?(\d+)", text)) == ["443", "5671", "80"]
    assert text.count("mode: host") == 3
    assert "ORCHESTRATOR_AMQP_URL: amqps://" in text  # the broker speaks TLS only


def test_compose_file_with_an_error_is_refused(tmp_path: Path) -> None:
    """The check above can fail: a broken file is refused by the same command."""
    path = tmp_path / "compose.yaml"
    path.write_text((ROOT / "compose.yaml").read_text().replace("services:", "servicez:", 1))
    rendered = stack_config(path, REQUIRED)
    assert rendered.returncode != 0


def test_compose_file_refuses_a_deploy_that_has_not_chosen_its_domains() -> None:
    for missing in REQUIRED:
        rendered = stack_config(ROOT / "compose.yaml", {k: v for k, v in REQUIRED.items() if k != missing})
        assert rendered.returncode != 0 and missing in rendered.stderr, rendered.stderr
