"""The registry's credential is read where `docker login` writes it (orchestrator.swarm.registry):
by the registry's host, whether named as a host, an image repository or the API's URL; none for
another registry; and a rotated one at the next call."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from orchestrator.swarm.registry import basic_auth, credential


def login(config: Path, registry: str, user: str, password: str) -> None:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": encoded}}}))


def test_the_credential_is_found_by_the_registrys_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    login(tmp_path, "198.18.213.1:5000", "orchestrator", "s3cret")
    expected = {"username": "orchestrator", "password": "s3cret"}
    for named in ("198.18.213.1:5000", "198.18.213.1:5000/sites/site_0042", "http://198.18.213.1:5000"):
        assert credential(named) == expected, named
    assert basic_auth("http://198.18.213.1:5000/") == ("orchestrator", "s3cret")
    assert credential("registry.example:5000/sites") is None  # another registry gets nothing
    login(tmp_path, "198.18.213.1:5000", "orchestrator", "rotated")
    assert basic_auth("http://198.18.213.1:5000") == ("orchestrator", "rotated")  # read at each call


def test_no_configuration_no_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))  # nor docker's fallback, ~/.docker/config.json
    assert credential("198.18.213.1:5000") is None and basic_auth("http://198.18.213.1:5000") is None
