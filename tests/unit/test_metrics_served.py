"""Requests per site from Traefik's Prometheus metrics (a recorded answer of Traefik 3.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.metrics.served import Scrapes, Served, parse

RECORDED = (Path(__file__).parent / "data" / "traefik-metrics.prom").read_text()


def test_a_recorded_scrape() -> None:
    services = parse(RECORDED)
    assert set(services) == {"site_0001", "site_0002"}  # api@internal and the rest left out
    one = services["site_0001"]
    assert one.codes == {"200": 5, "404": 1, "501": 1, "503": 1}
    assert one.by_class() == {"2xx": 5, "4xx": 1, "5xx": 2}
    assert one.buckets[float("inf")] == 8
    assert services["site_0002"].by_class() == {"5xx": 1}


def test_percentiles_within_the_buckets() -> None:
    served = Served(codes={"200": 100}, buckets={0.005: 50, 0.025: 90, 0.1: 99, 0.5: 100, float("inf"): 100})
    assert served.percentiles_ms() == {"p50": 5.0, "p95": 66.7, "p99": 100.0}
    slow = Served(codes={"200": 10}, buckets={0.5: 0, 2.5: 0, float("inf"): 10})
    assert slow.percentiles_ms() == {"p50": 2500.0, "p95": 2500.0, "p99": 2500.0}  # "more than the largest"
    assert Served().percentiles_ms() is None


def test_windows_between_scrapes_per_instance() -> None:
    scrapes = Scrapes()
    first = {"site_0001": Served({"200": 10}, {0.1: 10, float("inf"): 10})}
    assert scrapes.window({"10.0.0.1": first, "10.0.0.2": first}) == {}  # baselines only
    later = {"site_0001": Served({"200": 15, "500": 2}, {0.1: 16, float("inf"): 17})}
    restarted = {"site_0001": Served({"200": 3}, {0.1: 3, float("inf"): 3})}  # counters began again
    window = scrapes.window({"10.0.0.1": later, "10.0.0.2": restarted})
    assert window["site_0001"].by_class() == {"2xx": 5 + 3, "5xx": 2}
    assert window["site_0001"].buckets[float("inf")] == 7 + 3
    # An instance that did not answer keeps its last scrape: its requests show up next time.
    assert scrapes.window({"10.0.0.1": later}) == {"site_0001": Served({"200": 0, "500": 0}, {0.1: 0, float("inf"): 0})}


def test_a_new_site_counts_from_zero() -> None:
    scrapes = Scrapes()
    scrapes.window({"t": {}})
    window = scrapes.window({"t": parse(RECORDED)})
    assert window["site_0001"].by_class() == {"2xx": 5, "4xx": 1, "5xx": 2}


@pytest.mark.parametrize(
    "line",
    [
        'traefik_service_requests_total{code="200",service="site_0001@swarm"} not-a-number',
        'traefik_service_request_duration_seconds_bucket{le="x",service="site_0001@swarm"} 1',
        'traefik_service_requests_total{code="200",service="evil@swarm"} 5',
        "traefik_service_requests_total 5",
    ],
)
def test_odd_lines_are_skipped(line: str) -> None:
    assert sum(s.codes.get("200", 0) for s in parse(line).values()) == 0


def test_the_number_of_services_is_bounded() -> None:
    text = "\n".join(f'traefik_service_requests_total{{code="200",service="site_{n:04d}@swarm"}} 1' for n in range(50))
    assert len(parse(text, max_services=10)) == 10
