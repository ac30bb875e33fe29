"""The production stack file is valid for a real swarm."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from support import ROOT

# What an operator must choose (scripts/stack.sh documents them); the file has no default.
PINNED = "registry.school.example:5000/director/{}:latest@sha256:" + "0" * 64
REQUIRED = {
    "SITES_DOMAIN_SUFFIXES": "sites.school.example",
    "RESERVED_DOMAINS": "panel.school.example",
    # What scripts/stack.sh reads from DEFAULT_IMAGES_FILE (`scripts/stack.sh pin-images`).
    "ORCHESTRATOR_DEFAULT_IMAGE": PINNED.format("base"),
    "ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES": PINNED.format("base"),
    "ORCHESTRATOR_STATIC_IMAGE": PINNED.format("nginx"),
}


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


def test_the_database_servers_file_adds_them_and_hands_them_to_the_orchestrator() -> None:
    """deploy/databases/compose.yaml on top: both servers on the databases node, their ports on
    that node alone, the orchestrator and the guard told of them, the admin passwords as secrets."""
    files = ["-c", str(ROOT / "compose.yaml"), "-c", str(ROOT / "deploy/databases/compose.yaml")]
    env = {**os.environ, **REQUIRED, "DATABASES_NODE_ADDRESS": "10.0.0.5"}
    done = subprocess.run(["docker", "stack", "config", *files], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for expected in (
        "  postgres:\n",
        "  mariadb:\n",
        "node.labels.director.databases == true",
        "hba_file=/etc/director/pg_hba.conf",
        "target: /docker-entrypoint-initdb.d/10-director.sh",
        '"host": "postgres", "port": 5432',
        '"host": "mariadb", "port": 3306',
        "source: postgres_admin_password",
        "source: mysql_admin_password",
        "POSTGRES_PASSWORD_FILE: /run/secrets/postgres_superuser_password",
    ):
        assert expected in text, f"{expected!r} missing from the rendered stack"
    # The database ports are published on their node alone, beside the stack's own.
    assert sorted(re.findall(r"published: \"?(\d+)", text)) == ["3306", "443", "5432", "5671", "80"]
    assert text.count("mode: host") == 5
    # The orchestrator and the guard both know the servers, sites reach them at the node's address.
    assert text.count("ORCHESTRATOR_DATABASE_SERVERS:") == 2 and text.count('"site_host": "10.0.0.5"') == 4
    # Without the node's address the file is refused, not deployed with sites that reach nothing.
    del env["DATABASES_NODE_ADDRESS"]
    refused = subprocess.run(["docker", "stack", "config", *files], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0 and "DATABASES_NODE_ADDRESS" in refused.stderr
