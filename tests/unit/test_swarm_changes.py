"""The survey of task counts that stands in for the container events a manager never sees from
other nodes: one change per service whose counts moved, none for what has events of its own."""

from __future__ import annotations

from collections import Counter
from typing import Any

from orchestrator.labels import SWARM_SERVICE_NAME
from orchestrator.swarm.changes import moved, task_counts
from orchestrator.swarm.mapping import lost_running, service_of


def listed(ident: str, name: str, running: int, desired: int = 1) -> dict[str, Any]:
    return {"ID": ident, "Spec": {"Name": name}, "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired}}


def test_counts_come_from_the_listing_status() -> None:
    assert task_counts([listed("a", "site_0001", 1), {"ID": "b", "Spec": {"Name": "site_0002"}}]) == {
        "a": ("site_0001", 1, 1),
        "b": ("site_0002", 0, 0),
    }


def test_a_service_whose_counts_moved_is_a_change_of_that_service() -> None:
    before = task_counts([listed("a", "site_0001", 1), listed("b", "site_0002", 1)])
    now = task_counts([listed("a", "site_0001", 0), listed("b", "site_0002", 1)])
    (change,) = moved(before, now, 42)
    assert (change.type, change.service_id, change.service_name, change.time_ns) == ("task", "a", "site_0001", 42)
    assert change.attributes == {SWARM_SERVICE_NAME: "site_0001"}
    # Scaled to zero is a move too; the same counts are none.
    assert [c.service_id for c in moved(now, task_counts([listed("a", "site_0001", 0, 0)]), 43)] == ["a"]
    assert moved(now, now, 44) == []


def test_services_created_or_removed_since_have_events_of_their_own() -> None:
    before = task_counts([listed("a", "site_0001", 1)])
    assert moved(before, task_counts([listed("b", "site_0002", 0)]), 1) == []
    assert moved({}, before, 1) == []  # the first survey only learns


def test_a_task_a_lost_node_last_reported_running_does_not_count() -> None:
    """Docker counts it (its state is what the node last said): a site on a dead node would look
    healthy, and its loss would move no count."""
    on_the_lost_node = [
        {"ServiceID": "a", "Status": {"State": "running"}, "DesiredState": "shutdown"},
        {"ServiceID": "b", "Status": {"State": "shutdown"}, "DesiredState": "shutdown"},
    ]
    lost = lost_running(on_the_lost_node)
    assert lost == Counter({"a": 1})
    before = task_counts([listed("a", "site_0001", 1), listed("b", "site_0002", 1)])
    now = task_counts([listed("a", "site_0001", 1), listed("b", "site_0002", 1)], lost)
    assert now["a"] == ("site_0001", 0, 1)
    assert [c.service_id for c in moved(before, now, 1)] == ["a"]
    raw = {**listed("a", "site_0001", 1), "Version": {"Index": 3}}
    assert service_of(raw, lost=lost["a"]).running == 0
    assert service_of(raw).running == 1
