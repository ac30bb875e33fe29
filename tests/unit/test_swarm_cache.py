"""What is remembered about the swarm between Docker's change events, and the one rule that forgets
it: a change to a service drops what is known of it; a lost stream drops everything."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from orchestrator.sites.service import Service
from orchestrator.swarm.cache import SwarmCache, VerifiedRoutes
from orchestrator.swarm.changes import DockerChange
from orchestrator_contract.results import Probe

SERVICE = Service("svc1", "site_0001", 7, {}, 1, running=1, update_state="completed")
PROBE = Probe(url="http://traefik", host="a.example.com", status=200, duration_ms=1.5)


def change(service_name: str, type_: str = "container", action: str = "die") -> DockerChange:
    attribute = "name" if type_ == "service" else "com.docker.swarm.service.name"
    return DockerChange(type_, action, "id-" + service_name, 1, {attribute: service_name})


@pytest.fixture
def stream() -> threading.Event:
    up = threading.Event()
    up.set()
    return up


@pytest.fixture
def cache(stream: threading.Event) -> SwarmCache:
    return SwarmCache(stream)


def test_a_verified_site_is_remembered_for_the_same_service_version(cache: SwarmCache) -> None:
    verified = VerifiedRoutes(cache, 30)
    verified.put(SERVICE, PROBE)
    assert verified.get(SERVICE) == PROBE
    assert verified.get(replace(SERVICE, index=8)) is None  # the service changed since


def test_any_change_of_the_service_forgets_what_is_known_of_it(cache: SwarmCache) -> None:
    verified = VerifiedRoutes(cache, 30)
    verified.put(SERVICE, PROBE)
    cache.remember_service(SERVICE, cache.seen(SERVICE.name))
    cache.on_change(change("site_0002"))
    assert verified.get(SERVICE) == PROBE and cache.service(SERVICE.name) == SERVICE
    cache.on_change(change("site_0001"))
    assert verified.get(SERVICE) is None and cache.service(SERVICE.name) is None


def test_a_read_overtaken_by_a_change_is_not_remembered(cache: SwarmCache) -> None:
    since = cache.seen(SERVICE.name)
    cache.on_change(change("site_0001", "service", "update"))  # arrives while the read is in flight
    cache.remember_service(SERVICE, since)
    assert cache.service(SERVICE.name) is None
    cache.remember_service(SERVICE, cache.seen(SERVICE.name))
    assert cache.service(SERVICE.name) == SERVICE


def test_only_a_settled_service_is_remembered(cache: SwarmCache) -> None:
    rolling = replace(SERVICE, update_state="updating")
    cache.remember_service(rolling, cache.seen(SERVICE.name))
    assert cache.service(SERVICE.name) is None


def test_a_lost_stream_forgets_everything_and_remembers_nothing(cache: SwarmCache, stream: threading.Event) -> None:
    verified = VerifiedRoutes(cache, 30)
    verified.put(SERVICE, PROBE)
    cache.claims_current = True
    since = cache.seen(SERVICE.name)
    cache.on_change(None)
    assert verified.get(SERVICE) is None and not cache.claims_current
    cache.remember_service(SERVICE, since)  # a read begun before the loss
    assert cache.service(SERVICE.name) is None
    stream.clear()
    verified.put(SERVICE, PROBE)
    stream.set()
    assert verified.get(SERVICE) is None


def test_nothing_is_remembered_without_an_event_stream() -> None:
    cache = SwarmCache(None)
    cache.remember_service(SERVICE, cache.seen(SERVICE.name))
    VerifiedRoutes(cache, 30).put(SERVICE, PROBE)
    assert cache.service(SERVICE.name) is None and VerifiedRoutes(cache, 30).get(SERVICE) is None


def test_nothing_is_older_than_the_ttl(cache: SwarmCache) -> None:
    verified = VerifiedRoutes(cache, 0)
    verified.put(SERVICE, PROBE)
    assert verified.get(SERVICE) is None


def test_change_counters_are_dropped_with_their_service(cache: SwarmCache) -> None:
    for i in range(100):
        cache.on_change(change(f"site_{i:04d}", "service", "update"))
        cache.on_change(change(f"site_{i:04d}", "service", "remove"))
    assert not cache._changes  # bounded by the services that exist
