"""The fixtures every real-stack suite reads from its `stack` (see `support.running`): integration
tests share one per process, fault tests get one per module. Unit tests define their own."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from aio_pika.abc import AbstractRobustConnection
from support import DeadLetters, Director, OrchestratorProcess, Results, Running


@pytest.fixture
def vhost(stack: Running) -> str:
    return stack.vhost


@pytest.fixture
def api(stack: Running) -> docker.APIClient:
    return stack.api


@pytest.fixture
def sites_root(stack: Running) -> Path:
    return stack.sites_root


@pytest.fixture
def orchestrator(stack: Running) -> OrchestratorProcess:
    return stack.orchestrator


@pytest.fixture
def admin(stack: Running) -> AbstractRobustConnection:
    return stack.admin


@pytest.fixture
def results(stack: Running) -> Results:
    return stack.results


@pytest.fixture
def director(stack: Running) -> Director:
    return stack.director


@pytest.fixture
def dead_letters(stack: Running) -> DeadLetters:
    return stack.dead_letters
