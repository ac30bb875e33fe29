"""compose.yaml run for real (`scripts/stack.sh deploy`): every service healthy, the swarm-native
details as deployed, the broker's users as loaded inside the stack, an event served as a page through
the stack's Traefik and removed again, upgrades and a killed replica without a lost event, and a broker
outage that restarts no orchestrator replica. The tests run in this order."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from collections.abc import Iterator

import aio_pika
import aio_pika.exceptions
import httpx
import pytest
from prod import TIMINGS, Prod, Stream, docker_cli, fresh_site_id, parse_time, run_stack, timed
from support import broker_definitions, eventually, publish_reliably, site_event, write_site

from orchestrator.config import Settings

SERVICES = ("rabbitmq", "traefik", "docker-proxy", "netguard", "collector", "orchestrator", "acme-http01")


def test_every_service_is_running_and_healthy(prod: Prod) -> None:
    for name in SERVICES:
        spec = prod.service(name)["Spec"]
        desired = spec["Mode"].get("Replicated", {}).get("Replicas", 1)
        containers = prod.containers(name)
        health = [prod.api.inspect_container(c["Id"])["State"]["Health"]["Status"] for c in containers]
        assert health == ["healthy"] * desired, f"{name}: {health}"
    assert len(prod.containers("orchestrator")) == 2  # active + standby


def test_swarm_native_details_as_deployed(prod: Prod) -> None:
    for name in SERVICES:
        spec = prod.service(name)["Spec"]
        task = spec["TaskTemplate"]
        assert spec["EndpointSpec"]["Mode"] == "dnsrr", name  # no VIP: this kernel has no IPVS
        assert all(p["PublishMode"] == "host" for p in spec["EndpointSpec"].get("Ports", [])), name
        assert task["Resources"]["Limits"]["NanoCPUs"] and task["Resources"]["Limits"]["MemoryBytes"], name
        assert task["RestartPolicy"]["Condition"] == "any", name
        assert task["LogDriver"] == {"Name": "json-file", "Options": {"max-file": "3", "max-size": "10m"}}, name
        assert task["ContainerSpec"]["ReadOnly"] is True and task["ContainerSpec"]["CapabilityDrop"] == ["ALL"], name
        # Passwords travel as secrets only: no environment variable holds one.
        env = task["ContainerSpec"].get("Env", [])
        for secret in (prod.state / "secrets").glob("*password"):
            assert not any(secret.read_text() in e for e in env), (name, secret.name)

    orchestrator = prod.service("orchestrator")["Spec"]
    container = orchestrator["TaskTemplate"]["ContainerSpec"]
    assert orchestrator["Mode"]["Replicated"]["Replicas"] == 2
    assert orchestrator["UpdateConfig"]["Order"] == "start-first"
    # Root in the container with five capabilities, nothing else (not even in its bounding set).
    caps = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
    assert sorted(container["CapabilityAdd"]) == [f"CAP_{c}" for c in caps]
    bits = sum(1 << n for n in (0, 1, 3, 6, 7))  # their numbers in linux/capability.h
    for replica in prod.containers("orchestrator"):
        code, status = prod.exec(replica["Id"], "cat", "/proc/1/status")
        assert code == 0, status
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == int(fields["CapBnd"], 16) == bits, status
    assert {s["File"]["Name"] for s in container["Secrets"]} == {
        "orchestrator_amqp_password",
        "director_amqp_password",
        "config.json",  # the registry's credential (DOCKER_CONFIG)
    }
    root = prod.settings["SITES_ROOT"]
    assert {"Type": "bind", "Source": root, "Target": root} in container["Mounts"]

    rabbitmq = prod.service("rabbitmq")["Spec"]
    assert "node.labels.director.broker == true" in rabbitmq["TaskTemplate"]["Placement"]["Constraints"]
    (volume,) = [m for m in rabbitmq["TaskTemplate"]["ContainerSpec"]["Mounts"] if m["Type"] == "volume"]
    assert (volume["Source"], volume["Target"]) == (f"{prod.name}_rabbitmq-data", "/var/lib/rabbitmq")
    configs = {c["File"]["Name"] for c in rabbitmq["TaskTemplate"]["ContainerSpec"]["Configs"]}
    assert "/etc/rabbitmq/definitions.json" in configs

    traefik = prod.service("traefik")["Spec"]
    assert "node.role == manager" in traefik["TaskTemplate"]["Placement"]["Constraints"]
    # No Docker socket (the proxy reads for it): only the certificate issuer's directory, read-only.
    mounts = traefik["TaskTemplate"]["ContainerSpec"].get("Mounts", [])
    certificates = f"{prod.settings['TLS_ROOT']}/traefik"
    assert [(m["Source"], m["Target"], m.get("ReadOnly")) for m in mounts] == [
        (certificates, "/etc/traefik/dynamic", True)
    ]
    proxy = prod.service("docker-proxy")["Spec"]
    (socket,) = proxy["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert socket["Source"] == "/var/run/docker.sock"
    (network,) = proxy["TaskTemplate"]["Networks"]
    assert prod.api.inspect_network(network["Target"])["Internal"] is True  # Traefik's and its own
    # From Traefik's side of it: reads answer, a write is refused before Docker sees it.
    (proxy_task,) = prod.containers("docker-proxy")
    ask = "import sys, urllib.request as u; r = u.Request('http://127.0.0.1:2375' + sys.argv[2], method=sys.argv[1])"
    ask += "\ntry: print(u.urlopen(r).status)\nexcept Exception as e: print(getattr(e, 'code', e))"
    for method, path, status in (("GET", "/v1.41/services", "200"), ("POST", "/v1.41/containers/create", "403")):
        code, out = prod.exec(proxy_task["Id"], "python3", "-c", ask, method, path)
        assert code == 0 and out.strip() == status, (method, path, out)

    network = prod.api.inspect_network(prod.settings["SITES_NETWORK"])
    assert (network["Driver"], network["Attachable"]) == ("overlay", True)

    # The network guard: on every site node, able to enter the network's namespace and write its
    # filter, and nothing else (what it achieves: test_event_to_served_page_then_deleted).
    guard = prod.service("netguard")["Spec"]
    assert "Global" in guard["Mode"]
    assert "node.labels.director.sites == true" in guard["TaskTemplate"]["Placement"]["Constraints"]
    assert sorted(guard["TaskTemplate"]["ContainerSpec"]["CapabilityAdd"]) == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    assert len(prod.containers("netguard")) == 1


async def test_broker_users_and_permissions_as_loaded_in_the_stack(prod: Prod) -> None:
    (broker,) = prod.containers("rabbitmq")
    code, users = prod.exec(broker["Id"], "rabbitmqctl", "-q", "list_users", "--formatter", "json")
    assert code == 0, users
    admin = (prod.state / "secrets" / "rabbitmq_admin_user").read_text()
    assert {u["user"]: u["tags"] for u in json.loads(users)} == {
        admin: ["administrator"], "collector": [], "director": [], "observer": [], "orchestrator": [],
    }  # fmt: skip
    code, perms = prod.exec(broker["Id"], "rabbitmqctl", "-q", "list_permissions", "--formatter", "json")
    assert code == 0, perms
    loaded = {p["user"]: (p["configure"], p["write"], p["read"]) for p in json.loads(perms)}
    for grant in broker_definitions()["permissions"]:
        assert loaded[grant["user"]] == (grant["configure"], grant["write"], grant["read"])
    # The topic permissions (routing keys) too, exactly: docs/security.md#broker's, which
    # tests/director/test_broker_rights.py compares with the same definitions.
    code, topics = prod.exec(broker["Id"], "rabbitmqctl", "-q", "list_topic_permissions", "--formatter", "json")
    assert code == 0, topics
    assert sorted((t["user"], t["exchange"], t["write"], t["read"]) for t in json.loads(topics)) == sorted(
        (t["user"], t["exchange"], t["write"], t["read"]) for t in broker_definitions()["topic_permissions"]
    )

    # Director may not publish results (nor anything but its own two exchanges).
    channel = await prod.director.connection.channel(publisher_confirms=True)
    results = await channel.get_exchange("orchestrator.results", ensure=False)
    fake = site_event("site.created", fresh_site_id(), 1)
    with pytest.raises(aio_pika.exceptions.ChannelClosed, match="ACCESS_REFUSED"):
        await results.publish(aio_pika.Message(json.dumps(fake).encode(), user_id="director"), "site.deployed")
    # Nor pass itself off as the orchestrator.
    channel = await prod.director.connection.channel(publisher_confirms=True)
    sites = await channel.get_exchange("director.sites", ensure=False)
    with pytest.raises(aio_pika.exceptions.ChannelClosed, match="PRECONDITION_FAILED"):
        await sites.publish(aio_pika.Message(b"{}", user_id="orchestrator"), "site.created")


async def test_event_to_served_page_then_deleted(prod: Prod, foreign_service: str) -> None:
    """Director's event becomes a page served through the stack's Traefik (which routes this
    deployment's sites only: not a service on its network labelled with another deployment);
    `site.deleted` removes it and keeps its files."""
    site_id = fresh_site_id()
    host = f"page{site_id}.stack.example.com"
    site_dir = write_site(prod.sites_root, site_id, page=f"<h1>served by stack {prod.name}</h1>")
    created = site_event("site.created", site_id, 1, domains=[host])
    started = time.monotonic()
    await publish_reliably(prod.director, created)
    result = await prod.wait_result(created)
    TIMINGS.append(
        f"site.created -> site.deployed, served through the stack's Traefik: {time.monotonic() - started:.1f}s"
    )
    assert result.type == "site.deployed", result
    assert result.probe is not None and result.probe.url == "http://traefik-control:80" and result.probe.status == 200
    async with httpx.AsyncClient(timeout=5) as client:
        page = await client.get(prod.web, headers={"Host": host})
        assert page.status_code == 200 and f"served by stack {prod.name}" in page.text
        assert page.headers["X-Served-By"] == f"site_{site_id}"
        # The other deployment's service has been up longer than Traefik's refresh: never routed.
        assert (await client.get(prod.web, headers={"Host": f"{foreign_service}.example.com"})).status_code == 404
    routers = await asyncio.to_thread(traefik_routers, prod)
    assert f"site_{site_id}@swarm" in routers and f"{foreign_service}@swarm" not in routers
    # From inside another container on the sites network (as a hostile site): the network guard
    # lets it open no connection there, to Traefik's API, to the site or to an orchestrator, nor to
    # the node itself by its way out.
    (foreign,) = prod.api.containers(filters={"label": f"com.docker.swarm.service.name={foreign_service}"})
    (site_task,) = prod.api.containers(filters={"label": f"com.docker.swarm.service.name=site_{site_id:04d}"})
    targets = {
        "Traefik's API": "traefik 8080",
        "the site": f"{prod.address(site_task['Id'])} 80",
        "an orchestrator": f"{prod.address(prod.containers('orchestrator')[0]['Id'])} 9",
        "the node's swarm port": f"{prod.api.info()['Swarm']['NodeAddr']} 2377",
    }
    for target, where in targets.items():
        code, out = prod.exec(foreign["Id"], "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {where}")
        assert "timed out" in out, (target, out)  # not "refused": no packet reached it
    TIMINGS.append(f"from inside the sites network: {', '.join(targets)} unreachable (timed out)")
    # Nor is the Docker API's proxy: it is not on the sites' network at all.
    code, out = prod.exec(foreign["Id"], "wget", "-q", "-O-", "http://docker-proxy:2375/v1.41/version")
    assert code != 0 and "bad address" in out, out
    # Handed to the site's uid by the orchestrator with its five capabilities (compose.yaml's
    # settings leave the uid base at its default).
    assert site_dir.stat().st_uid == Settings().site_uid_base + site_id

    deleted = site_event("site.deleted", site_id, 2)
    started = time.monotonic()
    await publish_reliably(prod.director, deleted)
    removed = await prod.wait_result(deleted)
    TIMINGS.append(f"site.deleted -> site.removed: {time.monotonic() - started:.1f}s")
    assert removed.type == "site.removed", removed
    assert not prod.api.services(filters={"name": f"site_{site_id}"})
    assert not site_dir.exists()
    assert list((prod.sites_root / ".trash").glob(f"site_{site_id}-*"))  # the files are kept

    async def gone() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(prod.web, headers={"Host": host})).status_code == 404

    await eventually(gone, 15)


async def test_an_upgrade_loses_no_event(prod: Prod) -> None:
    """`docker service update --image` rolls both replicas (start-first) while Director publishes:
    every event gets exactly one result, and the standby takes over from the active replica."""
    current = prod.service("orchestrator")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    upgrade = f"director/orchestrator:upgrade-test-{int(time.time())}"
    # A new image (a new id, as a release would be), built in a second from the current one.
    await asyncio.to_thread(docker_cli, "build", "-q", "-t", upgrade, "-", stdin=f"FROM {current}\nLABEL upgrade=1\n")
    before = {c["Id"] for c in prod.containers("orchestrator")}
    async with Stream(prod.director) as stream:
        await asyncio.sleep(1)
        with timed("docker service update --image (2 replicas, start-first) until completed"):
            await asyncio.to_thread(update_image, prod, upgrade)
        await asyncio.sleep(1)
    await audit(prod, stream, exactly_once=True)

    handled = await prod.handled(stream.ids())
    handlers = ordered_handlers(stream, handled)
    assert len(handlers) >= 2, "no replica took over"
    for previous, taking_over in itertools.pairwise(handlers):
        last_of_previous = max(h.at for h in handled.values() if h.container == previous)
        # The replica that took over was running (a standby) before the previous one stopped.
        assert prod.started_at(taking_over) < last_of_previous, "the new active replica was not a standby"
    assert handlers[0] in before
    (now_active,) = [c for c in prod.containers("orchestrator") if c["Id"] == handlers[-1]]
    assert now_active["Image"] == upgrade


async def test_killing_the_active_replica_loses_no_event(prod: Prod) -> None:
    """SIGKILL of the active replica's container: the standby takes over at once; results are
    at-least-once (a result published but not yet acked is sent again), none is lost."""
    probe = site_event("site.created", fresh_site_id(), 1, serving=False)
    await publish_reliably(prod.director, probe)
    await prod.wait_result(probe)
    active = (await prod.handled([probe["event_id"]]))[probe["event_id"]].container
    (standby,) = [c["Id"] for c in prod.containers("orchestrator") if c["Id"] != active]
    async with Stream(prod.director) as stream:
        await asyncio.sleep(1.5)
        killed_at = time.time()
        prod.api.kill(active)
        await asyncio.sleep(3)
    duplicates = await audit(prod, stream, exactly_once=False)
    TIMINGS.append(f"kill -9 of the active replica: {len(stream.events)} events, 0 lost, {duplicates} repeated results")
    # (An event the killed replica answered may have no log line: the kill can fall in between.)
    later = [i for i in stream.ids() if stream.published_at[i] > killed_at + 0.5]
    handled = await prod.handled(later)
    assert later and {handled[i].container for i in later} == {standby}, "the standby did not take over: " + repr(
        dict(
            active=active[:12],
            standby=standby[:12],
            killed_at=killed_at,
            later=[
                (
                    handled[i].container[:12],
                    round(handled[i].at - killed_at, 2),
                    round(stream.published_at[i] - killed_at, 2),
                )
                for i in later
            ],
            finished=prod.api.inspect_container(active)["State"]["FinishedAt"],
            tasks=prod.task_history("orchestrator"),
            standby_health=prod.health_log(standby),
        )
    )
    with timed("killed replica replaced by the swarm, every service healthy"):
        await asyncio.to_thread(run_stack, "wait")
    assert len(prod.containers("orchestrator")) == 2


async def test_a_broker_outage_restarts_no_replica(prod: Prod, rabbitmq_scaled: None) -> None:
    """With the stack's broker scaled to 0, `orchestrator healthcheck` (the image's HEALTHCHECK)
    says in every replica that the broker is away, and passes: Docker's own runs of it pass, so
    the replicas stay healthy and Swarm replaces none however long the outage lasts (it replaces
    a container after `retries` failed runs in a row). Scaled back, the same replicas reconnect
    and serve."""
    replicas = [c["Id"] for c in prod.containers("orchestrator")]
    stopped_at = time.time()
    await asyncio.to_thread(docker_cli, "service", "scale", "-d", f"{prod.name}_rabbitmq=0")

    def runs_during_outage(container: str) -> list[dict[str, object]]:
        health = prod.api.inspect_container(container)["State"]["Health"]
        assert health["Status"] == "healthy" and health["FailingStreak"] == 0, (container[:12], health)
        return [run for run in health["Log"] if parse_time(str(run["Start"])) > stopped_at]

    def docker_saw_it() -> bool:
        # Docker's own runs of the HEALTHCHECK since the stop: none failed, two said why.
        runs = {c: runs_during_outage(c) for c in replicas}
        assert all(run["ExitCode"] == 0 for rs in runs.values() for run in rs), runs
        return all(sum("not connected to the broker" in str(run["Output"]) for run in rs) >= 2 for rs in runs.values())

    with timed("broker stopped -> every replica's health check said so twice, passing"):
        await eventually(lambda: asyncio.to_thread(docker_saw_it), 60, interval=1)
    for container in replicas:
        code, out = prod.exec(container, "orchestrator", "healthcheck")
        assert code == 0 and "degraded: not connected to the broker" in out, out
    await asyncio.to_thread(docker_cli, "service", "scale", "-d", f"{prod.name}_rabbitmq=1")
    with timed("broker back -> every service healthy"):
        await asyncio.to_thread(run_stack, "wait")
    after = {c["Id"] for c in prod.containers("orchestrator")}
    assert after == set(replicas), prod.why_gone(set(replicas) - after, "orchestrator")
    for container in replicas:  # Docker keeps its last five runs: none failed meanwhile either
        assert all(run["ExitCode"] == 0 for run in runs_during_outage(container))
    probe = site_event("site.created", fresh_site_id(), 1, serving=False)
    await publish_reliably(prod.director, probe)
    assert (await prod.wait_result(probe)).type == "site.deployed"


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def foreign_service(prod: Prod) -> Iterator[str]:
    """A web server on the stack's sites network with Traefik labels, of another deployment."""
    name = f"{prod.name}-foreign-{int(time.time())}"
    network = prod.settings["SITES_NETWORK"]
    labels = {
        "traefik.enable": "true",
        f"traefik.http.routers.{name}.rule": f"Host(`{name}.example.com`)",
        f"traefik.http.services.{name}.loadbalancer.server.port": "80",
        "traefik.swarm.network": network,
        "com.director.deployment": "someone-else",
    }
    command = ["docker", "service", "create", "-d", "--no-resolve-image", "--name", name, "--network", network,
               "--endpoint-mode", "dnsrr", "--limit-cpu", "0.1", "--limit-memory", "32m",
               # On this engine, where the test looks for its container (also beside a test cluster).
               "--constraint", f"node.id=={prod.api.info()['Swarm']['NodeID']}"]  # fmt: skip
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    subprocess.run([*command, "director/base:latest", "httpd", "-f", "-p", "80"], check=True, capture_output=True)
    yield name
    subprocess.run(["docker", "service", "rm", name], capture_output=True)


def traefik_routers(prod: Prod) -> set[str]:
    """The routers the stack's Traefik has, from its API (not published: read from inside an
    orchestrator replica over the control network, as the orchestrator does)."""
    orchestrator = prod.containers("orchestrator")[0]
    code, out = prod.exec(
        orchestrator["Id"], "/opt/orchestrator/bin/python3", "-c",
        "import httpx; print(httpx.get('http://traefik-control:8080/api/http/routers').text)",
    )  # fmt: skip
    assert code == 0, out
    return {r["name"] for r in json.loads(out)}


def update_image(prod: Prod, image: str) -> None:
    subprocess.run(
        ["docker", "service", "update", "-d", "--no-resolve-image", "--image", image, f"{prod.name}_orchestrator"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        status = prod.service("orchestrator").get("UpdateStatus") or {}
        if status.get("State") == "completed":
            return
        assert status.get("State") in (None, "updating"), f"update {status}"
        assert time.monotonic() < deadline, f"update not completed: {status}"
        time.sleep(0.5)


async def audit(prod: Prod, stream: Stream, *, exactly_once: bool) -> int:
    """Every event of the stream got a result (site.deployed); the number that got more than one."""
    ids = stream.ids()
    assert len(ids) >= 15, f"only {len(ids)} events published"

    def all_answered() -> bool:
        return set(ids) <= prod.results.by_cause.keys()

    try:
        await eventually(all_answered, 90)
    except AssertionError:
        lost = [i for i in ids if i not in prod.results.by_cause]
        raise AssertionError(f"{len(lost)} of {len(ids)} events got no result: {lost[:5]}") from None
    answers = {i: prod.results.by_cause[i] for i in ids}
    assert all(r.type == "site.deployed" for rs in answers.values() for r in rs), answers
    repeated = sum(len(rs) > 1 for rs in answers.values())
    if exactly_once:
        assert repeated == 0, f"{repeated} events got more than one result"
    else:
        assert repeated <= 3, f"{repeated} events got more than one result (more than were in flight)"
    return repeated


def ordered_handlers(stream: Stream, handled: dict[str, object]) -> list[str]:
    """The containers that handled the stream's events, in the order they took over."""
    order: list[str] = []
    for event_id in stream.ids():
        container = handled[event_id].container  # type: ignore[attr-defined]
        if not order or order[-1] != container:
            order.append(container)
    assert len(order) == len(set(order)), f"the active replica went back and forth: {order}"
    return order
