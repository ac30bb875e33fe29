"""site.health: once per change, from events, on the fake swarm."""

from __future__ import annotations

import asyncio

from fakes import FakeSwarm

from orchestrator.labels import DEPLOYMENT, SITE_ID
from orchestrator.monitor.health import HEALTHY, UNHEALTHY, HealthMonitor, classify
from orchestrator.sites.service import Service
from orchestrator.swarm.changes import DockerChange
from orchestrator_contract.results import SiteHealth

NAME = "site_0007"


def deployed(replicas: int = 1, running: int | None = 1, deployment: str = "ours") -> Service:
    return Service("id7", NAME, 1, {SITE_ID: "7", DEPLOYMENT: deployment}, replicas, running=running)


def test_classify() -> None:
    assert classify(1, 1, 0).status == "healthy"
    assert classify(0, 1, 0).status == "down"
    assert classify(1, 2, 0).status == "unhealthy"
    assert classify(1, 1, 1).status == "unhealthy"
    assert "0 of 1 tasks answering" in classify(0, 1, 0).detail


def task(action: str, container: str = "site_0007.1.abc") -> DockerChange:
    attributes = {"com.docker.swarm.service.name": NAME, "name": container}
    return DockerChange("container", action, "id7", 0, attributes)


class Monitor:
    def __init__(self, *, active: bool = True, publishing: bool = True, deployment: str | None = None) -> None:
        self.swarm = FakeSwarm()
        self.swarm.services[NAME] = deployed()
        self.swarm.answering.add(NAME)
        self.published: list[SiteHealth] = []
        self.publishing = publishing
        self.active = asyncio.Event()
        if active:
            self.active.set()
        self.monitor = HealthMonitor(
            self.swarm, self.publish, active=self.active, deployment=deployment, settle_seconds=0.01, retry_seconds=0.02
        )

    async def publish(self, event: SiteHealth) -> bool:
        if self.publishing:
            self.published.append(event)
        return self.publishing

    async def event(self, action: str, container: str = "site_0007.1.abc") -> None:
        self.monitor.on_change(task(action, container))
        await asyncio.sleep(0.05)

    @property
    def statuses(self) -> list[str]:
        return [e.status for e in self.published]


async def test_a_crash_loop_is_one_down_then_one_healthy() -> None:
    m = Monitor()
    await m.monitor.start([deployed()])
    await asyncio.sleep(0.05)
    assert m.statuses == []  # healthy at start: nothing to say

    m.swarm.answering.discard(NAME)
    for i in range(5):  # the loop: tasks die, start, die again
        await m.event("die", f"site_0007.1.{i}")
        await m.event("start", f"site_0007.1.{i + 1}")
    m.swarm.answering.add(NAME)
    await m.event(HEALTHY, "site_0007.1.9")

    assert m.statuses == ["down", "healthy"]
    assert m.published[0].site_id == 7 and "0 of 1" in m.published[0].detail


async def test_a_replacement_that_dies_while_its_predecessor_drains_is_down() -> None:
    """Docker's running count includes the replaced task still serving its drain; Traefik has
    dropped it, so only the tasks meant to run count."""
    m = Monitor()
    await m.monitor.start([deployed()])
    m.swarm.draining.add(NAME)  # a restart: the old task drains, the new one answers...
    m.swarm.answering.discard(NAME)
    await m.event("die", "site_0007.1.new")  # ...then exits
    assert m.statuses == ["down"]
    assert "0 of 1" in m.published[0].detail


async def test_a_failing_health_check_is_unhealthy_until_it_passes() -> None:
    m = Monitor()
    await m.monitor.start([deployed()])
    await m.event(UNHEALTHY)
    await m.event(UNHEALTHY)
    await m.event(HEALTHY)
    assert m.statuses == ["unhealthy", "healthy"]


async def test_a_new_site_is_watched_only_once_it_was_healthy() -> None:
    m = Monitor()
    await m.monitor.start([])
    m.swarm.answering.discard(NAME)
    await m.event("start")  # on its way up: its deploy result speaks for it
    m.swarm.answering.add(NAME)
    await m.event(HEALTHY)
    assert m.statuses == []
    m.swarm.answering.discard(NAME)
    await m.event("die")
    assert m.statuses == ["down"]


async def test_a_deployed_site_is_watched_though_no_look_saw_it_healthy() -> None:
    """Swarm calls a task running a moment after its container turned healthy, with no event of
    its own: the one look after the events saw nothing running. The deploy saw it answer; an exit
    after `site.deployed` is `down`."""
    m = Monitor()
    await m.monitor.start([])
    m.swarm.answering.discard(NAME)
    await m.event("start")
    await m.event(HEALTHY)  # looked at while the swarm still counts no task running
    m.swarm.answering.add(NAME)  # ...which it does a moment later, silently
    m.monitor.watch(NAME)  # the deploy saw it answer: site.deployed
    await asyncio.sleep(0.05)
    assert m.statuses == []
    m.swarm.answering.discard(NAME)
    await m.event("die")
    assert m.statuses == ["down"]


async def test_a_site_that_exited_before_its_deploy_was_said_is_down_at_once() -> None:
    m = Monitor()
    await m.monitor.start([])
    m.swarm.answering.discard(NAME)
    await m.event("die")  # after the deploy saw it answer, before it said so: nobody watched yet
    m.monitor.watch(NAME)
    await asyncio.sleep(0.05)
    assert m.statuses == ["down"]


async def test_watching_a_watched_site_changes_nothing() -> None:
    m = Monitor()
    await m.monitor.start([deployed()])
    m.swarm.answering.discard(NAME)
    await m.event("die")
    m.monitor.watch(NAME)  # a redeploy's result while it is down: its own events tell
    await asyncio.sleep(0.05)
    assert m.statuses == ["down"]


async def test_a_site_down_at_start_is_reported() -> None:
    m = Monitor()
    m.swarm.answering.discard(NAME)
    await m.monitor.start([deployed(running=0)])
    await asyncio.sleep(0.05)
    assert m.statuses == ["down"]


async def test_a_removed_or_idle_site_is_not_watched() -> None:
    m = Monitor()
    await m.monitor.start([deployed()])
    del m.swarm.services[NAME]
    await m.event("die")
    m.swarm.services[NAME] = deployed()
    m.swarm.answering.discard(NAME)
    await m.event("start")
    assert m.statuses == []


async def test_a_standby_keeps_track_without_speaking() -> None:
    m = Monitor(active=False)
    await m.monitor.start([deployed()])
    m.swarm.answering.discard(NAME)
    await m.event("die")
    assert m.statuses == []
    m.active.set()  # it took over
    m.swarm.answering.add(NAME)
    await m.event(HEALTHY)
    assert m.statuses == ["healthy"]


async def test_a_change_the_broker_did_not_take_is_said_again_later() -> None:
    m = Monitor(publishing=False)
    await m.monitor.start([deployed()])
    m.swarm.answering.discard(NAME)
    await m.event("die")
    assert m.statuses == []
    m.publishing = True
    await asyncio.sleep(0.1)  # a look again shortly after says it
    assert m.statuses == ["down"]


async def test_a_lost_event_stream_means_a_fresh_look() -> None:
    m = Monitor()
    await m.monitor.start([deployed()])
    m.swarm.answering.discard(NAME)
    m.monitor.on_change(None)
    await asyncio.sleep(0.05)
    assert m.statuses == ["down"]


async def test_a_recovery_without_an_event_of_its_own_is_still_noticed() -> None:
    """A task turns running once its container is healthy, with no event for that step."""
    m = Monitor()
    await m.monitor.start([deployed()])
    m.swarm.answering.discard(NAME)
    await m.event("die")
    await m.event(HEALTHY, "site_0007.1.new")  # looked at before the task counts as running
    m.swarm.answering.add(NAME)  # ...which it does a moment later, silently
    await asyncio.sleep(0.1)
    assert m.statuses == ["down", "healthy"]


async def test_a_docker_restart_forgets_failing_checks() -> None:
    m = Monitor()
    await m.monitor.start([deployed()])
    await m.event(UNHEALTHY, "site_0007.1.old")
    m.monitor.on_change(None)  # Docker restarted: the old container's `die` never comes
    await asyncio.sleep(0.05)
    await m.event(HEALTHY, "site_0007.1.new")
    assert m.statuses == ["unhealthy", "healthy"]


async def test_a_start_over_healthy_sites_asks_docker_nothing_more() -> None:
    m = Monitor()
    await m.monitor.start([deployed() for _ in range(3)])
    await asyncio.sleep(0.05)
    assert m.swarm.calls == [] and m.statuses == []  # the listing's own counts said healthy


async def test_another_deployments_site_is_looked_at_once_and_never_reported() -> None:
    """Docker's events are the whole swarm's: a site of another deployment on it (another test
    worker, a staging stack) is another Director's to hear about, and not worth a look per event."""
    m = Monitor(deployment="ours")
    m.swarm.services[NAME] = deployed(deployment="theirs")
    await m.monitor.start([deployed(deployment="theirs")])
    m.swarm.answering.add(NAME)
    await m.event(HEALTHY)
    m.swarm.answering.discard(NAME)
    for action in ("die", "start", UNHEALTHY, "die"):
        await m.event(action)
    assert m.statuses == []
    assert m.swarm.calls.count(f"get {NAME}") == 1


async def test_a_name_another_deployment_gave_up_is_watched_for_ours() -> None:
    m = Monitor(deployment="ours")
    m.swarm.services[NAME] = deployed(deployment="theirs")
    await m.monitor.start([])
    await m.event("start")
    m.monitor.on_change(DockerChange("service", "remove", "id7", 0, {"name": NAME}))
    m.swarm.services[NAME] = deployed()
    await m.event(HEALTHY)  # first seen healthy: watched from now on
    m.swarm.answering.discard(NAME)
    await m.event("die")
    assert m.statuses == ["down"]
