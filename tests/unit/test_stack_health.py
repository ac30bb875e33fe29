"""scripts/stack_health.py (scripts/stack.sh `wait`): a stack is healthy only when each service runs
exactly its desired tasks, of its current spec, healthy, and no update is under way."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stack_health.py"
_spec = importlib.util.spec_from_file_location("stack_health", SCRIPT)
assert _spec and _spec.loader
stack_health = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stack_health)

OLD = {"ContainerSpec": {"Image": "director/orchestrator:old"}, "ForceUpdate": 0}
NEW = {"ContainerSpec": {"Image": "director/orchestrator:new"}, "ForceUpdate": 0}


def service(template: dict[str, Any], desired: int = 2, update: str | None = None) -> dict[str, Any]:
    return {
        "ID": "svc1",
        # The API says the service's runtime; a task's copy of the template does not.
        "Spec": {"Name": "prod_orchestrator", "TaskTemplate": {**template, "Runtime": "container"}},
        "ServiceStatus": {"DesiredTasks": desired},
        **({"UpdateStatus": {"State": update}} if update else {}),
    }


def task(container: str, template: dict[str, Any], state: str = "running") -> dict[str, Any]:
    return {
        "ServiceID": "svc1",
        "Spec": template,
        "Status": {"State": state, "ContainerStatus": {"ContainerID": container}},
    }


def container(container_id: str) -> dict[str, Any]:
    return {"Id": container_id, "Labels": {"com.docker.swarm.service.id": "svc1"}}


def verdict(svc: dict[str, Any], tasks: list[dict[str, Any]], running: list[str], healthy: set[str]) -> list[str]:
    return stack_health.not_healthy(  # type: ignore[no-any-return]
        "prod", ["orchestrator"], [svc], tasks, [container(c) for c in running], healthy
    )


def test_desired_tasks_of_the_current_spec_all_healthy_is_healthy() -> None:
    assert verdict(service(NEW), [task("a", NEW), task("b", NEW)], ["a", "b"], {"a", "b"}) == []


def test_old_healthy_containers_right_after_a_deploy_changed_the_spec_are_not() -> None:
    # `docker stack deploy` returned; the update has not begun, the old tasks still serve.
    assert verdict(service(NEW), [task("a", OLD), task("b", OLD)], ["a", "b"], {"a", "b"}) == [
        "orchestrator:0/2 (+2 old)"
    ]


def test_a_container_still_starting_an_update_under_way_or_a_missing_service_is_not() -> None:
    assert verdict(service(NEW), [task("a", NEW), task("b", NEW)], ["a", "b"], {"a"}) == ["orchestrator:1/2"]
    assert verdict(service(NEW, update="updating"), [task("a", NEW)], ["a"], {"a"}) == ["orchestrator:updating"]
    assert stack_health.not_healthy("prod", ["traefik"], [service(NEW)], [], [], set()) == ["traefik:missing"]


def test_an_old_container_still_stopping_beside_the_new_ones_is_not() -> None:
    tasks = [task("a", NEW), task("b", NEW), task("c", OLD, state="shutdown")]
    assert verdict(service(NEW), tasks, ["a", "b", "c"], {"a", "b", "c"}) == ["orchestrator:2/2 (+1 old)"]
