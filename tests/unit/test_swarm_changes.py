"""The survey of task counts that stands in for the container events a manager never sees from
other nodes: one change per service whose counts moved, none for what has events of its own."""

from __future__ import annotations

from collections import Counter
from typing import Any

from orchestrator.labels import SWARM_SERVICE_NAME
from orchestrator.swarm.changes import moved, task_counts
from orchestrator.swarm.mapping import lost_running, service_of

NAMES = {"a": "site_0001", "b": "site_0002"}


def tasks(service: str, running: int, starting: int = 0, node: str = "n1") -> list[dict[str, Any]]:
    """A service's tasks meant to run (what `desired-state=running` lists)."""
    states = ["running"] * running + ["starting"] * starting
    return [{"ServiceID": service, "NodeID": node, "Status": {"State": state}} for state in states]


def test_counts_come_from_the_tasks_meant_to_run() -> None:
    assert task_counts(tasks("a", 1) + tasks("b", 0, 1), NAMES) == {
        "a": ("site_0001", 1, 1),
        "b": ("site_0002", 0, 1),
    }
    assert task_counts([], NAMES) == {}  # a site that does not serve has no task to count


def test_a_service_whose_counts_moved_is_a_change_of_that_service() -> None:
    before = task_counts(tasks("a", 1) + tasks("b", 1), NAMES)
    now = task_counts(tasks("a", 0, 1) + tasks("b", 1), NAMES)
    (change,) = moved(before, now, 42)
    assert (change.type, change.service_id, change.service_name, change.time_ns) == ("task", "a", "site_0001", 42)
    assert change.attributes == {SWARM_SERVICE_NAME: "site_0001"}
    assert moved(now, now, 44) == []


def test_a_service_whose_tasks_meant_to_run_went_or_came_back_is_a_change() -> None:
    """A lost node's task is restarted after the restart delay: until then its service has no task
    meant to run, and then one running again: the same counts on either side of the gap."""
    before = task_counts(tasks("a", 1) + tasks("b", 1), NAMES)
    gap = task_counts(tasks("b", 1), NAMES)
    assert [(c.service_id, c.service_name) for c in moved(before, gap, 1)] == [("a", "site_0001")]
    assert [(c.service_id, c.service_name) for c in moved(gap, before, 2)] == [("a", "site_0001")]
    assert moved(before, before, 3) == []
    assert moved(None, before, 1) == []  # the first survey only learns


def test_a_task_a_lost_node_last_reported_running_does_not_count() -> None:
    """Docker counts it (its state is what the node last said): a site on a dead node would look
    healthy, and its loss would move no count."""
    on_the_lost_node = [
        {"ServiceID": "a", "Status": {"State": "running"}, "DesiredState": "shutdown"},
        {"ServiceID": "b", "Status": {"State": "shutdown"}, "DesiredState": "shutdown"},
    ]
    lost = lost_running(on_the_lost_node)
    assert lost == Counter({"a": 1})
    listing = tasks("a", 1, node="gone") + tasks("b", 1)
    before = task_counts(listing, NAMES)
    now = task_counts(listing, NAMES, frozenset({"gone"}))
    assert now["a"] == ("site_0001", 0, 1)
    assert [c.service_id for c in moved(before, now, 1)] == ["a"]
    raw = {"ID": "a", "Spec": {"Name": "site_0001"}, "ServiceStatus": {"RunningTasks": 1}, "Version": {"Index": 3}}
    assert service_of(raw, lost=lost["a"]).running == 0
    assert service_of(raw).running == 1
