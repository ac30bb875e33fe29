"""A manager and two workers (scripts/cluster.sh): real engines, real VXLAN between their network
namespaces. Twelve sites deployed as Director deploys them, then, in this order: placement on every
node and serving through Traefik; each worker's metrics collector reporting its sites; the network
guard on every node against sites on different nodes; a terminal and a file read of a
worker-placed site; Swarm's own drain and `orchestrator drain` under a request loop; a worker's
engine killed outright."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from figures import MEASURED
from support import (
    ROOT,
    SITE_UID_BASE,
    Director,
    Results,
    Running,
    TerminalBus,
    connected,
    deploy,
    eventually,
    fetch,
    fresh_site_id,
    fresh_vhost,
    orchestrator_env,
    orchestrator_running,
    publishing_as_director,
    scope,
    site_event,
    terminal_bus,
    write_jq_site,
    write_site,
)
from support.metrics import MetricsWatch, collecting
from support.network import (
    answers,
    filter_restored,
    guarding,
    node_chain_removed,
    opens,
    send_as_site,
    udp_received,
    vxlan_datagram,
)

from orchestrator.config import Settings
from orchestrator_client import Client
from orchestrator_contract.metrics import SiteMetrics

SITES = 12
STATE = "/run/director-cluster"  # scripts/cluster.sh: the workers' sockets


@dataclass
class Site:
    id: int
    host: str
    page: str
    version: int = 1

    @property
    def name(self) -> str:
        return f"site_{self.id:04d}"


def ready_nodes(api: docker.APIClient) -> dict[str, str]:
    """Node id -> host name of the nodes that are up."""
    return {n["ID"]: n["Description"]["Hostname"] for n in api.nodes() if n["Status"]["State"] == "ready"}


def node_of(api: docker.APIClient, site: Site) -> str | None:
    """The node whose task of the site runs now (None: none runs)."""
    tasks = api.tasks(filters={"service": site.name, "desired-state": "running"})
    running = [t["NodeID"] for t in tasks if t["Status"]["State"] == "running"]
    return running[0] if running else None


def placement(api: docker.APIClient, sites: list[Site]) -> dict[int, str | None]:
    return {s.id: node_of(api, s) for s in sites}


def node_id(api: docker.APIClient, hostname: str) -> str:
    return next(n for n, h in ready_nodes(api).items() if h == hostname)


def set_availability(api: docker.APIClient, node: str, availability: str) -> None:
    raw = api.inspect_node(node)
    api.update_node(raw["ID"], raw["Version"]["Index"], {**raw["Spec"], "Availability": availability})


@dataclass
class Load:
    """Visitors of every site, in a loop, counting what failed (anything but the site's page)."""

    sites: list[Site]
    ok: int = 0
    failed: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event, visitors: int = 6) -> None:
        async def visitor(first: int) -> None:
            turn = first
            async with httpx.AsyncClient(timeout=5) as client:
                while not stop.is_set():
                    site = self.sites[turn % len(self.sites)]
                    turn += 1
                    try:
                        response = await client.get("http://127.0.0.1:8000/", headers={"Host": site.host})
                        good = response.status_code == 200 and site.page in response.text
                        outcome = f"{response.status_code}"
                    except httpx.HTTPError as exc:
                        good, outcome = False, type(exc).__name__
                    if good:
                        self.ok += 1
                    else:
                        self.failed.append(f"{site.name}: {outcome}")
                    await asyncio.sleep(0.02)

        await asyncio.gather(*(visitor(i) for i in range(visitors)))


@pytest.fixture(scope="module")
async def fleet(stack: Running) -> AsyncIterator[list[Site]]:
    """Twelve dynamic sites, deployed at once as Director would, each `site.deployed`."""
    sites = []
    for _ in range(SITES):
        site_id = fresh_site_id()
        page = f"cluster page {site_id} {uuid.uuid4().hex[:6]}"
        write_site(stack.sites_root, site_id, page=page)
        sites.append(Site(site_id, f"site{site_id}.cluster.example.com", page))
    results = await asyncio.gather(
        *(
            deploy(stack.director, stack.results, site_event("site.created", s.id, 1, domains=[s.host]), timeout=150)
            for s in sites
        )
    )
    assert [r.type for r in results] == ["site.deployed"] * SITES, [r.error for r in results]
    yield sites


@pytest.fixture(scope="module")
async def bus(stack: Running) -> AsyncIterator[TerminalBus]:
    async with terminal_bus(stack.vhost) as opened:
        yield opened


async def test_sites_are_placed_on_every_node_and_served_through_traefik(stack: Running, fleet: list[Site]) -> None:
    nodes = ready_nodes(stack.api)
    assert len(nodes) == 3, f"want a manager and two workers: {nodes}"
    placed = placement(stack.api, fleet)
    per_node = Counter(nodes[n] for n in placed.values() if n)
    MEASURED.append(f"placement of {SITES} sites: {dict(sorted(per_node.items()))}")
    # Swarm ranks nodes by tasks of the service, then by tasks in all: one-replica sites spread
    # over the nodes by their load. Every node must hold some (the manager too, unless it was busy
    # with other services' tasks before: then the workers take them all, which is right).
    manager = next(n for n in api_nodes(stack.api) if n["Spec"]["Role"] == "manager")
    busy = len(stack.api.tasks(filters={"node": manager["ID"], "desired-state": "running"})) - per_node.get(
        manager["Description"]["Hostname"], 0
    )
    expected = set(nodes.values()) if busy < SITES // 3 else {h for h in nodes.values() if h.startswith("director-w")}
    assert expected <= set(per_node), f"{per_node} (the manager ran {busy} other tasks)"
    for site in fleet:
        response = await fetch(site.host)
        assert response.status_code == 200 and site.page in response.text, (site.name, response.status_code)


def api_nodes(api: docker.APIClient) -> list[dict[str, Any]]:
    return api.nodes()  # type: ignore[no-any-return]


def on_a_worker(api: docker.APIClient, fleet: list[Site]) -> list[Site]:
    nodes = ready_nodes(api)
    return [s for s in fleet if (n := node_of(api, s)) and nodes.get(n, "").startswith("director-w")]


async def echo_latency(bus: TerminalBus, site: Site, rounds: int = 20) -> float:
    """Median ms from a keystroke's publish to its echo (the TTY's) arriving back on the bus."""
    session = await bus.session()
    await session.send("open", site_id=site.id, cols=80, rows=24)
    await session.wait_type("opened")
    await session.type("cat /site/public/index.html; echo end-$((6*7))\n")
    await session.wait_output(f"{site.page}".encode())
    await session.wait_output(b"end-42")
    times = []
    for i in range(rounds):
        marker = f"k{i}x".encode()
        started = time.perf_counter()
        await session.type(marker.decode())
        await session.wait_output(marker)
        times.append((time.perf_counter() - started) * 1000)
    await session.send("close")
    await session.wait_type("closed")
    return statistics.median(times)


@dataclass
class Node:
    """One engine of the cluster as the network guard on it sees it: its socket, its exec-root and
    its own network namespace (None: this machine's)."""

    host: str
    docker_url: str
    netns_dir: Path
    netns: Path | None = None

    @classmethod
    def named(cls, host: str) -> Node:
        if host.startswith("director-w"):  # scripts/cluster.sh: its socket, exec-root and namespace
            worker = host.removeprefix("director-")
            return cls(
                host, f"unix://{STATE}/{worker}.sock", Path(f"/run/dc-{worker}/netns"), Path(f"/run/netns/{host}")
            )
        return cls(host, Settings().docker_url, Settings().netns_dir)


async def test_a_workers_collector_reports_that_nodes_sites(stack: Running, fleet: list[Site], tmp_path: Path) -> None:
    """As compose's global `collector` runs on every site node: `orchestrator collect` on each
    worker's engine, as the `collector` broker user, in a pid namespace of its own. The
    orchestrator on the manager reports every worker-placed site, visited meanwhile, with that
    worker's host name and what its task used there, read from each cgroup controller (here a
    worker's containers sit at another path in the memory controller than in the others: its engine
    runs in a memory cgroup of its own) and from its network namespace (through its main process:
    the collector sees none of the node's processes in a cgroup), and each worker's node.metrics."""
    remote = on_a_worker(stack.api, fleet)
    assert remote, "no site runs on a worker"
    nodes = ready_nodes(stack.api)
    hosts = {s.id: nodes[node_of(stack.api, s) or ""] for s in remote}
    workers = sorted(set(hosts.values()))
    watch = MetricsWatch()
    stop = asyncio.Event()
    visiting = asyncio.create_task(_visit(remote, stop))
    try:
        async with connected("observer", stack.vhost) as observer:
            await watch.start(observer)
            started = time.monotonic()
            await _collect_on(workers, stack, tmp_path, watch, remote, hosts)
            took = time.monotonic() - started
    finally:
        stop.set()
        await visiting
    example = next(m for m in watch.of(remote[0].id) if _measured_on(m, hosts[remote[0].id]))
    MEASURED.append(
        f"collectors on {', '.join(workers)}: all {len(remote)} sites there reported from their node "
        f"{took:.1f} s after the collectors started (period 2 s), e.g. site {remote[0].id}: {example.usage}; "
        f"{_sent_from(watch.of(remote[0].id), hosts[remote[0].id])} bytes sent over its windows while visited"
    )
    for node in (n for n in watch.nodes if n.hostname in workers):
        assert node.cpus >= 1 and node.memory_total_bytes > 0 and node.sites_root is not None


async def _visit(sites: list[Site], stop: asyncio.Event) -> None:
    """Each site asked for its page through Traefik, round after round (what it answers is
    another test's business)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            for site in sites:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get("http://127.0.0.1:8000/", headers={"Host": site.host})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stop.wait()


def _sent_from(windows: list[SiteMetrics], host: str) -> int:
    """Bytes the site's task on `host` sent, over these windows."""
    return sum(m.usage.network_tx_bytes for m in windows if m.usage and m.nodes == [host])


def _measured_on(m: SiteMetrics, host: str) -> bool:
    """A window of the site's task on `host`, with what every controller gave (cpu: its limit,
    memory: its working set and limit, pids)."""
    u = m.usage
    return (
        m.nodes == [host]
        and u is not None
        and u.cpu_limit is not None
        and u.memory_bytes > 0
        and u.memory_limit_bytes is not None
        and u.pids >= 1
    )


async def _collect_on(
    workers: list[str], stack: Running, tmp_path: Path, watch: MetricsWatch, remote: list[Site], hosts: dict[int, str]
) -> None:
    """`orchestrator collect` on each worker until every worker's sites were measured there.
    Beside the worker's engine rather than in its network namespace: this machine's broker listens
    on loopback only (production's collectors reach it over the stack's `broker` network); what a
    collector reads, its engine and the node's cgroups and processes, is the same from here."""
    with contextlib.ExitStack() as running:
        for host in workers:
            env = {
                **stack.orchestrator.env,
                "ORCHESTRATOR_DOCKER_URL": Node.named(host).docker_url,
                "ORCHESTRATOR_AMQP_URL": stack.broker.url("collector", stack.vhost),
                "ORCHESTRATOR_HEARTBEAT_FILE": str(tmp_path / f"collector-{host}.heartbeat"),
            }
            running.enter_context(collecting(env, tmp_path / f"collector-{host}.log"))

        def seen() -> dict[int, list[tuple[str, str, list[str], Any]]]:
            """The last windows of each, should it time out."""
            return {
                s.id: [(m.window.end.isoformat(), m.state, m.nodes, m.usage) for m in watch.of(s.id)][-2:]
                for s in remote
            }

        await watch.until(
            lambda: (
                all(any(_measured_on(m, hosts[s.id]) for m in watch.of(s.id)) for s in remote)
                and all(_sent_from(watch.of(s.id), hosts[s.id]) > 0 for s in remote)
                and {n.hostname for n in watch.nodes} >= set(workers)
            ),
            timeout=60,
            why=lambda: (
                f"sites {seen()}, nodes {sorted({n.hostname for n in watch.nodes})}, hosts {hosts}, collectors: "
                + " | ".join((tmp_path / f"collector-{h}.log").read_text()[-800:] for h in workers)
            ),
        )


@dataclass
class Task:
    """A site's task container as seen on its node."""

    node: str
    engine: docker.APIClient
    container: dict[str, Any]
    ip: str
    mac: str
    pid: int


async def test_sites_on_different_nodes_open_no_connection_to_each_other_nor_to_the_nodes(
    stack: Running, fleet: list[Site], tmp_path: Path
) -> None:
    """The network guard on every node, each in its node's own namespace (as compose's global
    `netguard` on the host network), the workers masquerading their sites' way out as production
    nodes do. A site's connection to a site on another node is dropped where it is sent from,
    both ways; a site on a worker, as its own user, sends an ordinary UDP datagram to another
    node's VXLAN port holding the sites network's VNI and a frame for a site there (which, let
    through, comes out on that node's sites network as the overlay's own), and opens TCP to the
    nodes' Swarm ports and the registry: none of it arrives. Traefik on the manager still serves
    every site over the overlay."""
    api = stack.api
    nodes = ready_nodes(api)
    addresses = {n["Description"]["Hostname"]: n["Status"]["Addr"] for n in api_nodes(api)}
    network = stack.orchestrator.env.get("ORCHESTRATOR_NETWORK", Settings().network)
    found = api.inspect_network(network)
    vni = int(found["Options"]["com.docker.network.driver.overlay.vxlanid_list"].split(",")[0])
    one_per_node: dict[str, Site] = {}
    for site in fleet:
        one_per_node.setdefault(nodes[node_of(api, site) or ""], site)
    workers = sorted(h for h in one_per_node if h.startswith("director-w"))
    assert len(workers) >= 2, one_per_node
    manager = api.info()["Name"]
    guarded = [Node.named(host) for host in sorted({manager, *one_per_node})]
    engines = {node.host: docker.APIClient(base_url=node.docker_url, version="auto") for node in guarded}
    try:
        tasks = {}
        for host, site in one_per_node.items():
            (container,) = engines[host].containers(filters={"label": f"com.docker.swarm.service.name={site.name}"})
            inspected = engines[host].inspect_container(container["Id"])
            attached = inspected["NetworkSettings"]["Networks"][network]
            tasks[host] = Task(host, engines[host], container, attached["IPAddress"], attached["MacAddress"],
                               inspected["State"]["Pid"])  # fmt: skip
        pairs = [(x, y) for x in tasks for y in tasks if x != y]
        attacker = tasks[workers[0]]
        uid = SITE_UID_BASE + one_per_node[workers[0]].id
        victims = [tasks[workers[1]], *([tasks[manager]] if manager in tasks else [])]

        def probe(pair: tuple[str, str]) -> bool:
            source, target = tasks[pair[0]], tasks[pair[1]]
            return answers(source.engine, source.container, target.ip, Settings().site_port)

        def forged(victim: Task) -> str:
            """What the victim's site receives of a datagram the attacker sends its node's VXLAN port."""
            port = 47000 + len(victim.node)
            inner = {"src_mac": attacker.mac, "dst_mac": victim.mac, "src_ip": attacker.ip, "dst_ip": victim.ip,
                     "dst_port": str(port)}  # fmt: skip
            with udp_received(victim.pid, port, 3) as received:
                datagram = vxlan_datagram(vni, inner, f"forged for {victim.node}".encode())
                send_as_site(attacker.pid, uid, datagram, addresses[victim.node], 4789)
                return received()

        node_ports = [(manager, 2377), (manager, 7946), (manager, 5000), (workers[1], 7946)]

        def reach_nodes() -> dict[str, bool]:
            return {f"{host}:{port}": opens(attacker.engine, attacker.container, addresses[host], port)
                    for host, port in node_ports}  # fmt: skip

        # Without the guards a site does reach one on another node, and the forged datagram
        # arrives: what follows is the guards' doing.
        assert await asyncio.to_thread(probe, pairs[0])
        before = await asyncio.to_thread(forged, victims[0])
        assert before == f"forged for {victims[0].node}", before
        network_id = found["Id"]
        with contextlib.ExitStack() as guards:
            for node in guarded:
                guards.enter_context(node_chain_removed(node.netns))
                guards.enter_context(filter_restored(node.netns_dir / f"1-{network_id[:10]}"))
                env = {**stack.orchestrator.env, "ORCHESTRATOR_DOCKER_URL": node.docker_url,
                       "ORCHESTRATOR_NETNS_DIR": str(node.netns_dir), "ORCHESTRATOR_NETWORK": network}  # fmt: skip
                guards.enter_context(guarding(env, tmp_path / f"netguard-{node.host}.log", node.netns))
            reached = await asyncio.gather(*(asyncio.to_thread(probe, pair) for pair in pairs))
            injected = {v.node: await asyncio.to_thread(forged, v) for v in victims}
            opened = await asyncio.to_thread(reach_nodes)
            for site in one_per_node.values():
                response = await fetch(site.host)
                assert response.status_code == 200 and site.page in response.text, (site.name, response.status_code)
    finally:
        for engine in engines.values():
            engine.close()
    MEASURED.append(
        f"network guard on {len(guarded)} nodes, each in its own namespace: {sum(reached)} of {len(pairs)} "
        f"cross-node site-to-site connections opened; a forged VXLAN datagram from a site on {attacker.node} "
        f"reached {sum(map(bool, injected.values()))} of {len(injected)} sites ({', '.join(injected)}); "
        f"{sum(opened.values())} of {len(opened)} node ports opened ({', '.join(opened)}); every site served"
    )
    assert not any(reached), [pair for pair, ok in zip(pairs, reached, strict=True) if ok]
    assert not any(injected.values()), injected
    assert not any(opened.values()), opened


async def test_a_terminal_and_a_file_read_of_a_worker_placed_site(
    stack: Running, fleet: list[Site], bus: TerminalBus
) -> None:
    remote = on_a_worker(stack.api, fleet)
    assert remote, "no site runs on a worker"
    site = remote[0]
    worker_ms = await echo_latency(bus, site)
    local = [s for s in fleet if s not in on_a_worker(stack.api, fleet)]
    local_ms = await echo_latency(bus, local[0]) if local else None
    MEASURED.append(
        f"terminal echo, median of 20: {worker_ms:.1f} ms for a site on a worker"
        + (f", {local_ms:.1f} ms for one on the manager" if local_ms is not None else "")
    )
    async with await Client.connect(f"amqp://director:director@127.0.0.1:5672/{stack.vhost}") as client:
        data, result = await client.files.read(site.id, "public/index.html")
    assert data.decode() == site.page and result.eof


async def test_a_site_deleted_on_a_worker_is_removed_once_its_container_there_is_gone(
    stack: Running, fleet: list[Site]
) -> None:
    """`site.removed` moves the files to the trash only once no container of the site runs on any
    node (the swarm's tasks, not the manager's own containers)."""
    site = on_a_worker(stack.api, fleet)[-1]
    worker = ready_nodes(stack.api)[node_of(stack.api, site) or ""].removeprefix("director-")
    fleet.remove(site)
    result = await deploy(stack.director, stack.results, site_event("site.deleted", site.id, 2))
    assert result.type == "site.removed", result.error
    engine = docker.APIClient(base_url=f"unix://{STATE}/{worker}.sock", version="auto")
    try:
        assert engine.containers(filters={"label": f"com.docker.swarm.service.name={site.name}"}) == []
    finally:
        engine.close()
    assert not (stack.sites_root / site.name).exists()


async def test_a_custom_image_is_built_pushed_and_pulled_by_a_worker_from_the_registry(stack: Running) -> None:
    """`site.image_requested` builds on the manager and pushes to the registry on the bridge; a site
    of that image placed on a worker (an orchestrator of its own here, constrained to workers) is
    pulled there, by digest, and served through Traefik."""
    site_id = fresh_site_id()
    with fresh_vhost(f"orchestrator-cluster-images-{scope.NAME}") as vhost:
        env = orchestrator_env(
            vhost,
            stack.sites_root,
            site_node_label=stack.orchestrator.env["ORCHESTRATOR_SITE_NODE_LABEL"],
            placement_constraints="node.role==worker",
        )
        log = stack.sites_root.parent / f"cluster-images-{scope.NAME}.log"
        async with (
            orchestrator_running(env, log),
            connected("director", vhost) as listening,
            publishing_as_director(vhost) as director,
        ):
            results = Results(listening)
            await results.start()
            recipe = {"parent": "director/base:latest", "packages": ["jq"]}
            started = time.monotonic()
            built = await deploy(director, results, site_event("site.image_requested", site_id, 1, image=recipe))
            build_s = time.monotonic() - started
            assert built.type == "site.image_built" and built.image, built
            write_jq_site(stack.sites_root, site_id)
            host = f"img{site_id}.cluster.example.com"
            image = {"name": built.image, "custom": True}
            started = time.monotonic()
            result = await deploy(
                director, results, site_event("site.created", site_id, 1, domains=[host], image=image), timeout=120
            )
            deploy_s = time.monotonic() - started
            assert result.type == "site.deployed", result.error
            site = Site(site_id, host, f"made by jq for site {site_id}")
            worker = ready_nodes(stack.api)[node_of(stack.api, site) or ""].removeprefix("director-")
            assert worker.startswith("w"), worker
            response = await fetch(host)
            assert response.status_code == 200 and site.page in response.text
            engine = docker.APIClient(base_url=f"unix://{STATE}/{worker}.sock", version="auto")
            try:  # the worker pulled it from the registry, by digest: nothing was loaded into it
                tagged, digest = built.image.split("@")
                pulled = f"{tagged.rsplit(':', 1)[0]}@{digest}"
                assert pulled in engine.inspect_image(pulled)["RepoDigests"]
            finally:
                engine.close()
    MEASURED.append(
        f"custom image (jq): site.image_requested -> site.image_built {build_s:.1f} s; "
        f"site.created with it -> site.deployed on {worker} (pulled from the registry) {deploy_s:.1f} s"
    )


async def moved_off(api: docker.APIClient, fleet: list[Site], node: str) -> bool:
    where = placement(api, fleet)
    return all(n is not None and n != node for n in where.values())


async def under_load(fleet: list[Site], action: object, settle: float = 3.0) -> tuple[Load, float]:
    """Run `action` (a coroutine) while every site is visited in a loop; the load goes on `settle`
    seconds after it, while the old tasks stop."""
    load = Load(fleet)
    stop = asyncio.Event()
    visiting = asyncio.create_task(load.run(stop))
    await asyncio.sleep(1)
    started = time.monotonic()
    await action  # type: ignore[misc]
    took = time.monotonic() - started
    await asyncio.sleep(settle)
    stop.set()
    await visiting
    return load, took


async def test_draining_a_worker(stack: Running, fleet: list[Site]) -> None:
    """Swarm's own drain stops a one-replica site before its replacement answers (measured, not
    asserted: it is Swarm's behaviour); `orchestrator drain` moves them start-first: no failure."""
    api = stack.api
    w2 = node_id(api, "director-w2")

    async def swarm_drain() -> None:
        set_availability(api, w2, "drain")
        await eventually(lambda: moved_off(api, fleet, w2), 90)
        for site in fleet:
            await eventually(lambda s=site: served_now(s), 60)

    swarm_load, swarm_took = await under_load(fleet, swarm_drain())
    set_availability(api, w2, "active")
    MEASURED.append(
        f"docker node update --availability drain: {len(swarm_load.failed)} of "
        f"{swarm_load.ok + len(swarm_load.failed)} requests failed, every site served again after {swarm_took:.1f} s"
    )

    w1 = node_id(api, "director-w1")
    before = [s.name for s in fleet if node_of(api, s) == w1]
    assert before, "no site on director-w1 to move"

    async def orchestrator_drain() -> None:
        done = await asyncio.to_thread(stack.orchestrator.cli, "drain", w1, "--yes")
        assert done.returncode == 0, done.stdout + done.stderr

    load, took = await under_load(fleet, orchestrator_drain())
    set_availability(api, w1, "active")
    MEASURED.append(
        f"orchestrator drain ({len(before)} sites on the node): {len(load.failed)} of "
        f"{load.ok + len(load.failed)} requests failed, {took:.1f} s"
    )
    assert await moved_off(api, fleet, w1)
    assert load.failed == [], load.failed[:20]


async def served_now(site: Site) -> bool:
    try:
        response = await fetch(site.host)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and site.page in response.text


async def test_a_worker_lost_outright(stack: Running, fleet: list[Site], director: Director, results: Results) -> None:
    """Its engine, containerd and containers killed at once: its sites are reported down, then
    healthy on another node; a site event arriving meanwhile is applied and answered truthfully."""
    api = stack.api
    nodes = ready_nodes(api)
    by_node = Counter(node_of(api, s) for s in fleet)
    victim = max((n for n in by_node if n and nodes.get(n, "").startswith("director-w")), key=lambda n: by_node[n])
    doomed = [s for s in fleet if node_of(api, s) == victim]
    watched, updated = doomed[0], doomed[-1]
    assert watched is not updated, f"want two sites on {nodes[victim]}: {by_node}"
    seen_before = len([h for h in results.health if h.site_id == watched.id])

    started, killed_at = time.monotonic(), time.time()
    node = nodes[victim].removeprefix("director-")
    await asyncio.to_thread(subprocess.run, ["bash", str(ROOT / "scripts" / "cluster.sh"), "kill", node], check=True)
    updated.version += 1
    event = site_event("site.updated", updated.id, updated.version, domains=[updated.host], env={"MOVED": "1"})
    answered = asyncio.create_task(deploy(director, results, event, timeout=150))

    health = await results.wait_health(watched.id, seen_before + 2, timeout=150)
    down, back = health[seen_before], health[seen_before + 1]
    assert down.status in ("down", "unhealthy") and back.status == "healthy", health
    down_after, back_after = down.since.timestamp() - killed_at, back.since.timestamp() - killed_at
    result = await answered
    answered_after = time.monotonic() - started
    assert result.type == "site.deployed", result.error
    assert result.applied_version == updated.version
    assert node_of(api, watched) not in (None, victim) and node_of(api, updated) not in (None, victim)
    for site in fleet:
        await eventually(lambda s=site: served_now(s), 90)
    MEASURED.append(
        f"worker killed: {watched.name} reported {down.status} after {down_after:.1f} s, healthy on another node "
        f"after {back_after:.1f} s; a site.updated published at the kill answered site.deployed after "
        f"{answered_after:.1f} s"
    )
    # Swarm's node heartbeat timeout and a survey, then a start (docs/guarantees.md), with room to spare.
    assert down_after < 45 and back_after < 75


def test_nothing_is_left_on_the_lost_node_to_wait_for(stack: Running) -> None:
    """The swarm knows the node is down (cluster-down removes it afterwards)."""
    states = {n["Description"]["Hostname"]: n["Status"]["State"] for n in api_nodes(stack.api)}
    assert "down" in states.values(), states
