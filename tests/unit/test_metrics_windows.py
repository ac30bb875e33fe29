"""A node's windows: counters carried from pass to pass, never counted twice; OOM kills and
restarts from Docker's events where a cgroup took its counts with it."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.metrics.cgroups import Limits, Usage
from orchestrator.metrics.windows import MAX_MARKED, Events, Ledger, Reading, SiteWindow
from orchestrator.swarm.containers import Task

LIMITS = Limits(cpus=0.5, memory_bytes=256 * 2**20)


def task(name: str = "site_0042.1.a", service: str = "site_0042", created: float = 0.0) -> Task:
    return Task(container_id=f"id-{name}", name=name, service=service, created=created)


def usage(cpu: int = 0, oom: int = 0, rx: int = 0, memory: int = 1000, pids: int = 3) -> Usage:
    return Usage(cpu, cpu // 10, memory, oom, pids, cpu * 2, cpu * 3, rx, rx // 2)


def read(t: Task, u: Usage | None) -> Reading:
    return Reading(t, u, LIMITS)


def only(windows: list[SiteWindow] | None) -> SiteWindow:
    assert windows is not None and len(windows) == 1
    return windows[0]


def test_the_first_pass_is_a_baseline_and_later_ones_count_the_difference() -> None:
    ledger, events, t = Ledger(), Events(), task()
    assert ledger.close(60, [read(t, usage(cpu=5_000_000, rx=100))], events) is None
    w = only(ledger.close(120, [read(t, usage(cpu=6_500_000, rx=400))], events))
    assert (w.cpu_usec, w.throttled_usec, w.net_rx_bytes, w.net_tx_bytes) == (1_500_000, 150_000, 300, 150)
    assert (w.io_read_bytes, w.io_write_bytes) == (3_000_000, 4_500_000)
    assert (w.tasks, w.memory_bytes, w.pids, w.cpu_limit, w.memory_limit_bytes) == (1, 1000, 3, 0.5, 256 * 2**20)
    w = only(ledger.close(180, [read(t, usage(cpu=6_500_000, rx=400))], events))
    assert (w.cpu_usec, w.net_rx_bytes) == (0, 0)  # an idle window is zeros, not the total again


def test_a_container_started_within_the_window_counts_from_zero() -> None:
    ledger, events = Ledger(), Events()
    old, new = task("site_0042.1.a", created=10), task("site_0042.1.b", created=70)
    ledger.close(60, [read(old, usage(cpu=100))], events)
    # The old one ended (its last counters are lost with it), the new one started at 70.
    w = only(ledger.close(120, [read(new, usage(cpu=2_000))], events))
    assert w.cpu_usec == 2_000 and w.tasks == 1


def test_a_container_running_before_the_collector_looked_gives_a_baseline() -> None:
    ledger, events = Ledger(), Events()
    ledger.close(60, [], events)
    # Listed late (a missed start event): created before the last pass, not among the started.
    w = only(ledger.close(120, [read(task(created=30), usage(cpu=9_000))], events))
    assert w.cpu_usec == 0 and w.tasks == 1
    events.on("start", "site_0042.1.b", "site_0042")
    w2 = only(ledger.close(180, [read(task("site_0042.1.b", created=30), usage(cpu=500))], events))
    assert w2.cpu_usec == 500  # its start event says it began within the window


def test_a_counter_that_went_down_started_again() -> None:
    ledger, events, t = Ledger(), Events(), task()
    ledger.close(60, [read(t, usage(cpu=10_000))], events)
    assert only(ledger.close(120, [read(t, usage(cpu=300))], events)).cpu_usec == 300


def test_tasks_of_one_site_on_the_node_add_up() -> None:
    ledger, events = Ledger(), Events()
    a, b = task("site_0042.1.a"), task("site_0042.1.b")
    ledger.close(60, [read(a, usage(cpu=0)), read(b, usage(cpu=0))], events)
    w = only(ledger.close(120, [read(a, usage(cpu=10, memory=5)), read(b, usage(cpu=20, memory=7))], events))
    assert (w.cpu_usec, w.memory_bytes, w.tasks, w.pids) == (30, 12, 2, 6)


def test_oom_kills_counted_once_from_cgroup_and_events() -> None:
    ledger, events, t = Ledger(), Events(), task()
    ledger.close(60, [read(t, usage(oom=0))], events)
    # A child process killed: the cgroup counts it and Docker says `oom`: one kill.
    events.on("oom", t.name, t.service)
    assert only(ledger.close(120, [read(t, usage(oom=1))], events)).oom_kills == 1
    assert only(ledger.close(180, [read(t, usage(oom=1))], events)).oom_kills == 0
    # The main process killed: the container ends, its cgroup with it; only the event tells.
    events.on("oom", t.name, t.service)
    events.on("die", t.name, t.service)
    w = only(ledger.close(240, [], events))
    assert (w.oom_kills, w.restarts, w.tasks) == (1, 1, 0)
    assert events.ooms == {}


def test_a_container_that_lived_and_died_between_two_passes() -> None:
    """A site OOM-killed in a loop faster than the period: never read, still counted."""
    ledger, events = Ledger(), Events()
    ledger.close(60, [], events)
    for n in range(3):
        name = f"site_0042.1.{n}"
        events.on("start", name, "site_0042")
        events.on("oom", name, "site_0042")
        events.on("die", name, "site_0042")
    w = only(ledger.close(120, [], events))
    assert (w.service, w.oom_kills, w.restarts, w.tasks) == ("site_0042", 3, 3, 0)


def test_restarts_are_exits_nobody_asked_for() -> None:
    events = Events()
    events.on("die", "site_0001.1.a", "site_0001")  # crashed: counts
    events.on("kill", "site_0002.1.a", "site_0002")  # a deploy's or Director's restart: does not
    events.on("die", "site_0002.1.a", "site_0002")
    events.on("health_status: unhealthy", "site_0003.1.a", "site_0003")  # the swarm kills it: counts
    events.on("kill", "site_0003.1.a", "site_0003")
    events.on("die", "site_0003.1.a", "site_0003")
    events.on("health_status: unhealthy", "site_0004.1.a", "site_0004")  # failed, then recovered
    events.on("health_status: healthy", "site_0004.1.a", "site_0004")
    events.on("kill", "site_0004.1.a", "site_0004")
    events.on("die", "site_0004.1.a", "site_0004")
    assert dict(events.restarts) == {"site_0001": 1, "site_0003": 1}
    assert not events.asked and not events.failing


def test_restarts_of_a_site_with_no_task_left_on_the_node() -> None:
    ledger, events, t = Ledger(), Events(), task()
    ledger.close(60, [read(t, usage())], events)
    events.on("die", t.name, t.service)
    w = only(ledger.close(120, [], events))
    assert (w.restarts, w.tasks) == (1, 0)


def test_what_is_remembered_per_container_name_is_bounded() -> None:
    events = Events()
    for n in range(MAX_MARKED + 500):
        events.on("kill", f"site_0001.1.{n}", "site_0001")
        events.on("oom", f"site_0001.1.{n}", "site_0001")
    assert len(events.asked) == MAX_MARKED and len(events.ooms) == MAX_MARKED


def test_a_gone_container_is_forgotten() -> None:
    ledger, events, t = Ledger(), Events(), task()
    ledger.close(60, [read(t, usage(cpu=10))], events)
    ledger.close(120, [], events)
    # Seen again later (say, listed by mistake): a new baseline, not a window from the old counters.
    again = replace(t, created=0)
    assert only(ledger.close(180, [read(again, usage(cpu=50))], events)).cpu_usec == 0
