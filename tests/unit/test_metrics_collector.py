"""The node collector over a cgroup tree on disk and a fake engine: the grid, the samples it sends,
the listing redone only after Docker's events, and a standby that reads but does not send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import docker
import pytest
from test_metrics_cgroups import proc_with, v2_tree

from orchestrator.errors import DockerUnavailable
from orchestrator.labels import SWARM_SERVICE_NAME
from orchestrator.metrics import collector as collector_module
from orchestrator.metrics.cgroups import Hierarchy
from orchestrator.metrics.collector import Collector, next_pass
from orchestrator.metrics.samples import NodeSample
from orchestrator.swarm.containers import NodeContainers, Task

T = TypeVar("T")

ID = "a" * 64


class Engine:
    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks
        self.listings = 0
        self.down = False

    async def identity(self) -> tuple[str, str]:
        return "node-1", "worker-1"

    async def site_tasks(self) -> list[Task]:
        if self.down:
            raise DockerUnavailable("docker is unreachable")
        self.listings += 1
        return list(self.tasks)


def set_cpu(cgroup: Path, usec: int) -> None:
    (cgroup / "cpu.stat").write_text(f"usage_usec {usec}\nthrottled_usec 0\n")


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, Hierarchy]:
    root = tmp_path / "cgroup"
    cgroup = v2_tree(root, f"system.slice/docker-{ID}.scope")
    return cgroup, Hierarchy(root, proc_with(tmp_path, 4242))


def test_the_grid() -> None:
    assert next_pass(119.9, 60) == 120
    assert next_pass(120.0, 60) == 180
    assert next_pass(7.3, 2) == 8


async def test_samples_of_a_window(node: tuple[Path, Hierarchy], tmp_path: Path) -> None:
    cgroup, hierarchy = node
    engine = Engine([Task(ID, "site_0042.1.x", "site_0042", created=0)])
    sent: list[NodeSample] = []

    async def send(sample: NodeSample) -> bool:
        sent.append(sample)
        return True

    collector = Collector(engine, hierarchy, send, period=60, sites_root=tmp_path)
    set_cpu(cgroup, 1_000_000)
    assert await collector.collect(60) == []  # the baseline
    set_cpu(cgroup, 31_000_000)
    samples = await collector.collect(120)
    assert samples == sent and len(sent) == 1
    sample = sent[0]
    assert (sample.node_id, sample.hostname, sample.part, sample.parts) == ("node-1", "worker-1", 0, 1)
    assert (sample.start.timestamp(), sample.end.timestamp()) == (60, 120)
    [site] = sample.sites
    assert (site.service, site.tasks, site.cpu_seconds, site.cpu_limit) == ("site_0042", 1, 30.0, 0.5)
    assert sample.node is not None and sample.node.sites_running == 1 and sample.node.cpus == 2
    assert engine.listings == 1  # no event since: the same listing serves every pass


async def test_events_make_it_list_again_and_count(node: tuple[Path, Hierarchy], tmp_path: Path) -> None:
    _, hierarchy = node
    engine = Engine([Task(ID, "site_0042.1.x", "site_0042", created=0)])

    async def send(sample: NodeSample) -> bool:
        return True

    collector = Collector(engine, hierarchy, send, period=60, sites_root=tmp_path)
    await collector.collect(60)
    collector.on_event("oom", "site_0007.1.y", "site_0007")
    collector.on_event("die", "site_0007.1.y", "site_0007")
    collector.on_event("die", "web.1.z", "web")  # not a site: ignored
    [sample] = await collector.collect(120)
    assert engine.listings == 2
    counted = {s.service: (s.oom_kills, s.restarts) for s in sample.sites}
    assert counted == {"site_0042": (0, 0), "site_0007": (1, 1)}
    collector.on_event("lost", "", "")  # the stream was lost: anything may have happened
    await collector.collect(180)
    assert engine.listings == 3


async def test_a_failed_listing_is_tried_again(node: tuple[Path, Hierarchy], tmp_path: Path) -> None:
    _, hierarchy = node
    engine = Engine([])
    engine.down = True

    async def send(sample: NodeSample) -> bool:
        return True

    collector = Collector(engine, hierarchy, send, period=60, sites_root=tmp_path)
    with pytest.raises(DockerUnavailable):
        await collector.collect(60)
    engine.down = False
    await collector.collect(120)
    assert engine.listings == 1


async def test_a_cgroup_that_is_there_but_cannot_be_read_is_said(
    node: tuple[Path, Hierarchy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not taken for a container that ended (its cgroup would be gone): the task goes unmeasured,
    and the log says why, once a pass."""
    cgroup, hierarchy = node
    engine = Engine([Task(ID, "site_0042.1.x", "site_0042", created=0)])

    async def send(sample: NodeSample) -> bool:
        return True

    collector = Collector(engine, hierarchy, send, period=60, sites_root=tmp_path)
    await collector.collect(60)
    (cgroup / "io.stat").unlink()
    samples = await collector.collect(120)
    assert samples[0].sites == [] and samples[0].node is not None and samples[0].node.sites_running == 0
    [said] = [r for r in caplog.records if "could not be read" in r.getMessage()]
    assert said.__dict__["fields"]["tasks"] == 1 and "io.stat" in said.__dict__["fields"]["first"]


async def test_a_standby_reads_but_does_not_send(node: tuple[Path, Hierarchy], tmp_path: Path) -> None:
    _, hierarchy = node
    active = asyncio.Event()
    sent: list[NodeSample] = []

    async def send(sample: NodeSample) -> bool:
        sent.append(sample)
        return True

    collector = Collector(Engine([]), hierarchy, send, period=60, sites_root=tmp_path, active=active)
    await collector.collect(60)
    assert len(await collector.collect(120)) == 1 and sent == []
    active.set()
    await collector.collect(180)
    assert [s.end.timestamp() for s in sent] == [180]


async def test_many_sites_go_in_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "SITES_PER_PART", 4)
    root = tmp_path / "cgroup"
    tasks = []
    for n in range(4 + 2):
        container = f"{n:064d}"
        v2_tree(root, f"docker/{container}")
        tasks.append(Task(container, f"site_{n + 1:04d}.1.x", f"site_{n + 1:04d}", created=0))
    collector = Collector(
        Engine(tasks), Hierarchy(root, proc_with(tmp_path, 4242)), _ok, period=60, sites_root=tmp_path
    )
    await collector.collect(60)
    samples = await collector.collect(120)
    assert [(s.part, s.parts, len(s.sites)) for s in samples] == [(0, 2, 4), (1, 2, 2)]
    assert samples[0].node is not None and samples[1].node is None


async def _ok(sample: NodeSample) -> bool:
    return True


class Api:
    """docker.APIClient's two calls NodeContainers makes."""

    def __init__(self) -> None:
        self.running = {"c1": 101, "c2": 102}
        self.inspected: list[str] = []

    def containers(self, filters: dict[str, str]) -> list[dict[str, object]]:
        sites = [
            {"Id": c, "Names": [f"/site_0042.1.{c}"], "Labels": {SWARM_SERVICE_NAME: "site_0042"}}
            for c in ("c1", "c2", "c3")
        ]
        return [*sites, {"Id": "x", "Names": ["/traefik"], "Labels": {SWARM_SERVICE_NAME: "traefik"}}]

    def inspect_container(self, container_id: str) -> dict[str, object]:
        self.inspected.append(container_id)
        if container_id not in self.running:
            raise docker.errors.NotFound("no such container")
        return {"State": {"Pid": self.running[container_id]}}


class Client:
    def __init__(self, api: Api) -> None:
        self.api = api

    async def run(self, call: Callable[[Api], T]) -> T:
        return call(self.api)


async def test_a_nodes_site_tasks_come_with_their_main_process_inspected_once() -> None:
    """The pid a collector in a pid namespace of its own reads the network through: one
    inspection per new container, none for one seen before; one that ended meanwhile is left out."""
    api = Api()
    containers = NodeContainers(Client(api))  # type: ignore[arg-type]
    assert [(t.container_id, t.pid) for t in await containers.site_tasks()] == [("c1", 101), ("c2", 102)]
    assert [(t.container_id, t.pid) for t in await containers.site_tasks()] == [("c1", 101), ("c2", 102)]
    assert api.inspected == ["c1", "c2", "c3", "c3"]
