"""Shared fixtures for the unit tests: no broker, no Docker, no environment leaking in."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.config import Settings

SITE: dict[str, Any] = {
    "id": 1,
    "name": "hello",
    "kind": "dynamic",
    "domains": ["a.example.com", "b.example.com"],
    "image": {"name": "director/base:latest", "custom": False},
    "resources": {"cpus": 0.5, "memory": "256Mi"},
    "serving": True,
    "env": {"GREETING": "hello"},
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read ORCHESTRATOR_* variables: the unit tests see the documented defaults only."""
    for key in list(os.environ):
        if key.upper().startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def site_data() -> Callable[..., dict[str, Any]]:
    """A valid site payload (a fresh deep copy), with top-level fields overridden by keyword."""

    def make(**overrides: Any) -> dict[str, Any]:
        data = copy.deepcopy(SITE)
        data.update(overrides)
        return data

    return make
