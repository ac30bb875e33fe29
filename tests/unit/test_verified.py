"""A verification is reused only for the same tasks, while nothing happened to them."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from orchestrator.contract.sites import Probe
from orchestrator.sites.protocols import Deployed
from orchestrator.sites.verified import Verified
from orchestrator.swarm.changes import DockerEvent

SERVICE = Deployed("svc1", "site_0001", 7, {}, 1, running=1)
PROBE = Probe(url="http://traefik", host="a.example.com", status=200, duration_ms=1.5)


@pytest.fixture
def stream() -> threading.Event:
    up = threading.Event()
    up.set()
    return up


def test_a_verified_site_is_remembered_for_the_same_service_version(stream: threading.Event) -> None:
    verified = Verified(30, stream)
    verified.put(SERVICE, PROBE)
    assert verified.get(SERVICE) == PROBE
    assert verified.get(replace(SERVICE, index=8)) is None  # the service changed since


def test_any_event_about_the_service_forgets_it(stream: threading.Event) -> None:
    verified = Verified(30, stream)
    verified.put(SERVICE, PROBE)
    verified.on_event(DockerEvent("container", "die", "other", 1))
    assert verified.get(SERVICE) == PROBE
    verified.on_event(DockerEvent("container", "die", "svc1", 2))
    assert verified.get(SERVICE) is None


def test_a_lost_stream_forgets_everything_and_remembers_nothing(stream: threading.Event) -> None:
    verified = Verified(30, stream)
    verified.put(SERVICE, PROBE)
    verified.on_event(None)
    assert verified.get(SERVICE) is None
    stream.clear()
    verified.put(SERVICE, PROBE)
    stream.set()
    assert verified.get(SERVICE) is None


def test_nothing_is_older_than_the_ttl(stream: threading.Event) -> None:
    verified = Verified(0, stream)
    verified.put(SERVICE, PROBE)
    assert verified.get(SERVICE) is None
