"""What a service's tasks say about a rollout: only tasks of the spec in force count, and a
failure says why with a code the site's owner can act on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.sites.rollout import (
    WATCH_MARGIN_SECONDS,
    Broken,
    Ready,
    Waiting,
    assess_rollout,
    holding_containers,
)
from orchestrator.sites.scripts import UNSTABLE_EXIT
from orchestrator_contract.codes import ErrorCode

SINCE = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TEMPLATE = {"ContainerSpec": {"Image": "director/base:latest"}, "ForceUpdate": 0}
OLD = {"ContainerSpec": {"Image": "director/base:old"}, "ForceUpdate": 0}


def at(seconds: float) -> str:
    """Docker's timestamp `seconds` after SINCE (negative: before it), with nanoseconds."""
    moment = datetime.fromtimestamp(SINCE + seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}123Z"


def task(
    state: str,
    *,
    spec: dict[str, Any] = TEMPLATE,
    created: float = 5,
    desired: str = "running",
    err: str = "",
    exit_code: int | None = None,
    ip: str = "10.0.1.5",
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Err": err, "ContainerStatus": {"ContainerID": f"c-{state}-{created}"}}
    if exit_code is not None:
        status["ContainerStatus"]["ExitCode"] = exit_code
    return {
        "ID": f"t-{state}-{created}",
        "Spec": {**spec, "ContainerSpec": dict(spec["ContainerSpec"])},
        "DesiredState": desired,
        "CreatedAt": at(created),
        "Status": status,
        "NetworksAttachments": [{"Network": {"Spec": {"Name": "director-sites"}}, "Addresses": [f"{ip}/24"]}],
    }


def service(update: dict[str, Any] | None = None, template: dict[str, Any] = TEMPLATE) -> dict[str, Any]:
    raw: dict[str, Any] = {"Spec": {"TaskTemplate": {**template, "Runtime": "container"}}}
    if update is not None:
        raw["UpdateStatus"] = update
    return raw


def run(svc: dict[str, Any], tasks: list[dict[str, Any]], replicas: int = 1, script: bool = True) -> Any:
    return assess_rollout(
        svc, tasks, since=SINCE, replicas=replicas, network="director-sites", port=80, runs_site_script=script
    )


def test_a_running_task_of_the_current_spec_is_ready_with_its_address() -> None:
    assert run(service(), [task("running")]) == Ready(("http://10.0.1.5:80",))


def test_a_task_still_starting_its_health_checks_is_waited_for() -> None:
    assert isinstance(run(service(), [task("starting")]), Waiting)


def test_the_old_task_of_a_start_first_update_is_not_the_new_spec_succeeding() -> None:
    updating = service({"State": "updating", "StartedAt": at(1)})
    assert isinstance(run(updating, [task("running", spec=OLD, created=0), task("starting")]), Waiting)


def test_an_update_in_progress_is_not_ready_even_with_a_running_task() -> None:
    assert isinstance(run(service({"State": "updating", "StartedAt": at(1)}), [task("running")]), Waiting)


def test_zero_replicas_with_nothing_running_is_ready() -> None:
    assert run(service(), [], replicas=0) == Ready(())


@pytest.mark.parametrize("err", ["No such image: registry.x/sites/nope:1", "pull access denied for nope"])
def test_a_missing_image_is_broken_at_the_first_rejection(err: str) -> None:
    outcome = run(service(), [task("rejected", err=err)])
    assert isinstance(outcome, Broken) and outcome.code is ErrorCode.IMAGE_NOT_FOUND
    assert "director/base:latest" in outcome.message


def test_one_failed_start_may_be_bad_luck_two_are_a_broken_run_script() -> None:
    first = task("failed", err="task: non-zero exit (1)", exit_code=1, created=5)
    assert isinstance(run(service(), [first, task("starting", created=8)]), Waiting)
    second = task("failed", err="task: non-zero exit (1)", exit_code=1, created=9)
    outcome = run(service(), [first, second])
    assert outcome == Broken(ErrorCode.RUN_SCRIPT_FAILED, "run.sh exited with status 1", task_id="t-failed-9")


def test_a_server_that_exits_cleanly_has_failed_too() -> None:
    tasks = [task("complete", exit_code=0, created=5), task("complete", exit_code=0, created=7)]
    outcome = run(service(), tasks)
    assert isinstance(outcome, Broken) and outcome.code is ErrorCode.RUN_SCRIPT_FAILED


def test_an_unhealthy_container_is_not_listening() -> None:
    err = "task: non-zero exit (137): dockerexec: unhealthy container"
    outcome = run(service(), [task("failed", err=err, created=5), task("failed", err=err, created=20)])
    assert isinstance(outcome, Broken) and outcome.code is ErrorCode.NOT_LISTENING


def test_a_server_that_missed_an_answer_in_its_watched_window_is_not_listening() -> None:
    err = f"task: non-zero exit ({UNSTABLE_EXIT})"
    tasks = [task("failed", err=err, exit_code=UNSTABLE_EXIT, created=n) for n in (5, 9)]
    outcome = run(service(), tasks)
    assert isinstance(outcome, Broken) and outcome.code is ErrorCode.NOT_LISTENING
    assert "stability window" in outcome.message


def test_a_task_healthy_at_its_first_answer_is_ready_only_past_the_window() -> None:
    def watched(seconds: float) -> Any:
        running = task("running")
        return assess_rollout(
            service(), [running], since=SINCE, replicas=1, network="director-sites", port=80,
            runs_site_script=True, watch_seconds=5, answering_for={running["ID"]: seconds},
        )  # fmt: skip

    waiting = watched(2.0)
    assert isinstance(waiting, Waiting) and waiting.recheck_in == pytest.approx(5 + WATCH_MARGIN_SECONDS - 2)
    assert watched(5 + WATCH_MARGIN_SECONDS) == Ready(("http://10.0.1.5:80",))
    assert isinstance(watched(0.0), Waiting)  # seen running only now


def test_a_static_site_failing_is_a_service_failure_not_a_run_script() -> None:
    tasks = [task("failed", err="task: non-zero exit (1)", created=5), task("failed", err="x", created=7)]
    outcome = run(service(), tasks, script=False)
    assert isinstance(outcome, Broken) and outcome.code is ErrorCode.SERVICE_FAILED


def test_failures_before_the_apply_are_not_ours() -> None:
    old = task("failed", err="task: non-zero exit (1)", created=-30)
    older = task("failed", err="task: non-zero exit (1)", created=-40)
    assert run(service(), [older, old, task("running")]) == Ready(("http://10.0.1.5:80",))


def test_a_completed_rollback_of_our_update_is_broken_and_says_the_old_version_serves() -> None:
    rolled = service({"State": "rollback_completed", "StartedAt": at(2)}, template=OLD)
    failed_new = task("failed", err="task: non-zero exit (1)", exit_code=1, created=3)
    outcome = run(rolled, [task("running", spec=OLD, created=-60), failed_new])
    assert isinstance(outcome, Broken) and outcome.rolled_back
    assert outcome.code is ErrorCode.RUN_SCRIPT_FAILED and "previous version keeps serving" in outcome.message


def test_a_rollback_under_way_is_waited_for() -> None:
    rolling = service({"State": "rollback_started", "StartedAt": at(2)}, template=OLD)
    assert isinstance(run(rolling, [task("running", spec=OLD, created=-60)]), Waiting)


def test_a_rollback_of_an_earlier_apply_is_not_this_one() -> None:
    earlier = service({"State": "rollback_completed", "StartedAt": at(-100)})
    assert run(earlier, [task("running")]) == Ready(("http://10.0.1.5:80",))


def test_a_restart_counts_only_tasks_of_the_bumped_force_update() -> None:
    bumped = {**TEMPLATE, "ForceUpdate": 1}
    updating = service({"State": "updating", "StartedAt": at(1)}, template=bumped)
    assert isinstance(run(updating, [task("running", spec=TEMPLATE, created=-60)]), Waiting)
    done = service({"State": "completed", "StartedAt": at(1)}, template=bumped)
    assert run(done, [task("running", spec=bumped, created=3, ip="10.0.1.9")]) == Ready(("http://10.0.1.9:80",))


def test_a_removed_service_is_gone_once_no_task_may_hold_a_container_on_a_live_node() -> None:
    def placed(ident: str, state: str, node: str, service_id: str = "svc") -> dict[str, Any]:
        return {"ID": ident, "ServiceID": service_id, "NodeID": node, "Status": {"State": state}}

    tasks = [
        placed("stopping", "running", "worker-1"),  # its container still runs: waited for
        placed("starting", "starting", "manager"),
        placed("done", "shutdown", "worker-2"),
        placed("never-started", "pending", "manager"),  # no container yet, and never one now
        placed("lost", "running", "dead-node"),  # a node that is down answers for nothing
        placed("other", "running", "manager", service_id="a re-created site's service"),
    ]
    assert holding_containers(tasks, "svc", {"dead-node"}) == ["stopping", "starting"]
    assert holding_containers(tasks[2:4], "svc", set()) == []
