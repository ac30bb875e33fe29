"""The orchestrator's side: samples, Traefik's counters and the swarm's sites into one event per
site and node per period; what it keeps for requests; the same events in every replica."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.metrics.reporter import MetricsReporter, Site
from orchestrator.metrics.samples import NodeSample, NodeWindow, TaskWindow
from orchestrator.metrics.served import Served
from orchestrator_contract.metrics import NodeMetrics, SiteMetrics

RECORDED = (Path(__file__).parent / "data" / "traefik-metrics.prom").read_text()
NODE = NodeWindow(cpus=2, cpu_seconds=30.0, memory_total_bytes=8 << 30, memory_available_bytes=4 << 30, sites_running=1)


def entry(service: str = "site_0001", tasks: int = 1, cpu: float = 15.0, **more: object) -> TaskWindow:
    values: dict[str, object] = dict(
        service=service, tasks=tasks, cpu_seconds=cpu, cpu_throttled_seconds=0.0, cpu_limit=0.5,
        memory_bytes=1000, memory_limit_bytes=4096, oom_kills=0, restarts=0, pids=3,
        net_rx_bytes=10, net_tx_bytes=20, io_read_bytes=0, io_write_bytes=0,
    )  # fmt: skip
    values.update(more)
    return TaskWindow.model_validate(values)


def sample(
    end: float, *sites: TaskWindow, node_id: str = "n1", part: int = 0, start: float | None = None
) -> NodeSample:
    return NodeSample(
        node_id=node_id,
        hostname=f"host-{node_id}",
        start=datetime.fromtimestamp(end - 60 if start is None else start, UTC),
        end=datetime.fromtimestamp(end, UTC),
        part=part,
        parts=1,
        node=NODE if part == 0 else None,
        sites=list(sites),
    )


def reporter(**kwargs: object) -> tuple[MetricsReporter, list[SiteMetrics | NodeMetrics]]:
    published: list[SiteMetrics | NodeMetrics] = []

    async def publish(event: SiteMetrics | NodeMetrics) -> bool:
        published.append(event)
        return True

    async def sites() -> list[Site]:
        return [Site(1, "site_0001", running=1), Site(2, "site_0002", running=0), Site(3, "site_0003", running=1)]

    async def scrape() -> dict[str, str]:
        return {"traefik": RECORDED}

    options: dict[str, object] = {"deployment": "d", "period": 60.0, "active": None, "settle_seconds": 0.0}
    options.update(kwargs)
    return MetricsReporter(sites, scrape, publish, **options), published  # type: ignore[arg-type]


def test_every_site_gets_its_state() -> None:
    board, _ = reporter()
    assert board.on_sample(sample(120, entry("site_0001"), entry("site_0009")))
    served = {"site_0001": Served({"200": 99, "502": 1}, {0.005: 90, 0.025: 100, float("inf"): 100})}
    sites = [Site(1, "site_0001", 1), Site(2, "site_0002", 0), Site(3, "site_0003", 1)]
    events = board.merge(120, sites, served)
    by_site = {e.site_id: e for e in events if isinstance(e, SiteMetrics)}
    assert set(by_site) == {1, 2, 3}  # site_0009 is another deployment's: the swarm says whose is whose
    running = by_site[1]
    assert (running.state, running.tasks, running.nodes) == ("running", 1, ["host-n1"])
    assert running.usage is not None and running.usage.cpu_share == 0.5  # 15 s of 60 s at 0.5 cores
    assert running.requests == {"2xx": 99, "5xx": 1}
    assert running.latency_ms is not None and running.latency_ms.p50 == pytest.approx(2.8, abs=0.1)
    assert (by_site[2].state, by_site[2].usage, by_site[2].requests) == ("no_task", None, {})
    assert by_site[3].state == "unmeasured"  # the swarm runs a task nobody reported
    [node] = [e for e in events if isinstance(e, NodeMetrics)]
    assert (node.hostname, node.cpu_share, node.sites_running) == ("host-n1", 0.25, 1)
    assert board.site(1) == running and board.site(9) is None


def test_one_site_on_two_nodes_adds_up() -> None:
    board, _ = reporter()
    board.on_sample(sample(120, entry(cpu=10, restarts=1, tasks=0), node_id="a"))
    board.on_sample(sample(120, entry(cpu=20, oom_kills=2), node_id="b"))
    [event] = [e for e in board.merge(120, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert (event.tasks, event.oom_kills, event.restarts, event.nodes) == (1, 2, 1, ["host-b"])
    assert event.usage is not None and event.usage.cpu_seconds == 20  # the task that ended took its counters


def test_a_second_sample_counts_once_and_a_late_one_in_the_next_window() -> None:
    board, _ = reporter()
    assert board.on_sample(sample(120, entry(cpu=10)))
    assert not board.on_sample(sample(120, entry(cpu=10)))  # two collectors on one node: once
    board.merge(120, [Site(1, "site_0001", 1)], {})
    assert not board.on_sample(sample(120, entry(cpu=10, oom_kills=5)))  # merged already: not again
    # Another node's sample came after its window's merge: its kills and restarts count next time.
    assert not board.on_sample(sample(120, entry(oom_kills=1, restarts=1), node_id="slow"))
    assert board.on_sample(sample(180, entry(cpu=30)))
    [event] = [e for e in board.merge(180, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert (event.oom_kills, event.restarts, event.tasks, event.nodes) == (1, 1, 1, ["host-n1"])
    assert event.usage is not None and event.usage.cpu_seconds == 30  # a past instant's usage is not added
    assert event.window.seconds == 120  # it covers the late window too
    [later] = [e for e in board.merge(240, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert later.oom_kills == 0


def test_a_window_whose_merge_never_came_counts_its_kills_in_the_next() -> None:
    """A period that ran past the next grid point (a busy event loop, a slow Docker or Traefik)
    skips that point's merge: its samples' counts go into the next window, not away."""
    board, _ = reporter()
    board.merge(120, [Site(1, "site_0001", 1)], {})
    assert board.on_sample(sample(180, entry(cpu=10, oom_kills=1, restarts=1)))
    assert board.on_sample(sample(240, entry(cpu=30)))
    [event] = [e for e in board.merge(240, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert (event.oom_kills, event.restarts, event.tasks) == (1, 1, 1)
    assert event.usage is not None and event.usage.cpu_seconds == 30
    assert not board.on_sample(sample(180, entry(oom_kills=1)))  # that node's part counted already
    [later] = [e for e in board.merge(300, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert later.oom_kills == 0


def test_a_window_pushed_out_by_later_ones_counts_its_kills_in_the_next_merge() -> None:
    """Merges that stall for several periods (a slow Docker listing) while the samples keep
    coming: the oldest windows make room, and their kills and restarts are not lost."""
    board, _ = reporter()
    board.merge(120, [Site(1, "site_0001", 1)], {})
    assert board.on_sample(sample(180, entry(oom_kills=1, restarts=1)))
    for end in (240, 300, 360):
        assert board.on_sample(sample(end, entry()))
    assert not board.on_sample(sample(180, entry(oom_kills=1), node_id="slow"))  # pushed out already
    [event] = [e for e in board.merge(360, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert (event.oom_kills, event.restarts, event.tasks) == (2, 1, 1)
    assert not board.on_sample(sample(180, entry(oom_kills=1)))  # that node's part counted already
    [later] = [e for e in board.merge(420, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert later.oom_kills == 0


def test_a_stalled_merge_that_comes_after_all_merges_its_pushed_out_window_as_its_own() -> None:
    board, _ = reporter()
    board.merge(120, [Site(1, "site_0001", 1)], {})
    assert board.on_sample(sample(180, entry(cpu=30, oom_kills=1)))
    for end in (240, 300, 360):
        assert board.on_sample(sample(end, entry()))
    [event] = [e for e in board.merge(180, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert (event.state, event.tasks, event.oom_kills, event.nodes) == ("running", 1, 1, ["host-n1"])
    assert event.usage is not None and event.usage.cpu_seconds == 30
    [later] = [e for e in board.merge(240, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert (later.oom_kills, later.tasks) == (0, 1)


def test_a_copy_later_than_three_periods_still_counts_once() -> None:
    """Samples wait in the broker up to their lifetime (a minute at least): two collectors on a
    node, one of them held up, send the same window's kill twice."""
    board, _ = reporter(period=2.0, sample_lifetime=60.0)
    assert board.on_sample(sample(120, entry(oom_kills=1), start=118))
    board.merge(120, [Site(1, "site_0001", 1)], {})
    for end in range(122, 142, 2):
        board.merge(end, [Site(1, "site_0001", 1)], {})
    assert not board.on_sample(sample(120, entry(oom_kills=1), start=118))
    [event] = [e for e in board.merge(142, [Site(1, "site_0001", 1)], {}) if isinstance(e, SiteMetrics)]
    assert event.oom_kills == 0
    assert not board.on_sample(sample(60, entry(oom_kills=1), start=58))  # older than any kept: dropped
    assert len(board._merged) <= 32


def test_late_samples_past_their_bound_leave_no_memory_behind() -> None:
    """Merges that never come (Docker away): windows pushed out go late until the late list is
    full, and nothing else grows."""
    board, _ = reporter(max_nodes=2)
    for end in range(120, 120 + 60 * 500, 60):
        board.on_sample(sample(end, entry()))
    assert len(board._late) == 8 and len(board._merged) == 8 and len(board._samples) == 3


def test_samples_waiting_for_their_merge_are_bounded() -> None:
    board, _ = reporter()
    for end in range(120, 1200, 60):
        board.on_sample(sample(end, entry()))
    assert len(board._samples) == 3
    for n in range(5000):
        board.on_sample(sample(1260, entry(), node_id=f"n{n}"))
    assert len(board._samples[1260]) == 4000


def test_the_same_window_has_the_same_ids_in_every_replica() -> None:
    one, _ = reporter(deployment="prod")
    two, _ = reporter(deployment="prod")
    for board in (one, two):
        board.on_sample(sample(120, entry()))
    ids = [[e.event_id for e in b.merge(120, [Site(1, "site_0001", 1)], {})] for b in (one, two)]
    assert ids[0] == ids[1]
    three, _ = reporter(deployment="prod")
    assert [e.event_id for e in three.merge(180, [Site(1, "site_0001", 1)], {})] != ids[0]


def test_pages_of_sites() -> None:
    board, _ = reporter()
    board.merge(120, [Site(n, f"site_{n:04d}", 0) for n in (5, 1, 3, 9, 7)], {})
    first, after = board.page(None, 2)
    assert [s.site_id for s in first] == [1, 3] and after == 3
    second, after = board.page(after, 2)
    assert [s.site_id for s in second] == [5, 7] and after == 7
    last, after = board.page(after, 2)
    assert [s.site_id for s in last] == [9] and after is None


def test_nodes_that_stopped_reporting_are_dropped() -> None:
    board, _ = reporter()
    board.on_sample(sample(120, node_id="gone"))
    board.merge(120, [], {})
    assert [n.node_id for n in board.nodes()] == ["gone"]
    for end in (180, 240, 300, 360):
        board.merge(end, [], {})
    assert board.nodes() == []


async def test_a_period_scrapes_merges_and_publishes_spread_out() -> None:
    board, published = reporter(spread_fraction=0.001)  # 60 ms
    await board.period(60)  # Traefik's baseline
    assert board._publishing is not None
    await board._publishing
    published.clear()
    board.on_sample(sample(120, entry()))
    events = await board.period(120)
    await board._publishing
    assert published == events and len(events) == 4
    first = next(e for e in events if isinstance(e, SiteMetrics) and e.site_id == 1)
    assert first.requests == {}  # the same counters as the baseline: nothing served in between


async def test_a_standby_merges_but_does_not_publish() -> None:
    active = asyncio.Event()
    board, published = reporter(active=active)
    await board.period(60)
    assert board._publishing is None and published == [] and board.site(1) is not None


async def test_a_period_late_publishes_the_rest_of_the_last_at_once_and_drops_none() -> None:
    """The last period's events still going out when the next are ready (a slow broker, a busy
    loop): each carries its window's counts, so the rest goes now, unspread, before the next."""
    board, published = reporter(spread_fraction=0.5)  # 30 s: far past this test
    board.on_sample(sample(120, entry(oom_kills=1)))
    first = await board.period(120)
    await asyncio.sleep(0.01)
    assert len(published) == 1 < len(first)  # spread: one now, the next in 7.5 s
    board.on_sample(sample(180, entry()))
    async with asyncio.timeout(2):
        second = await board.period(180)
    assert published[: len(first)] == first
    board._hurry.set()
    assert board._publishing is not None
    await board._publishing
    assert published == first + second
