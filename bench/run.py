"""On-demand system benchmark on the local stack (`make bench`): the whole orchestrator, measured
against baselines run in the same session, printed as ratios (a JSON document and a table).

burst     N site.created for healthy sites until every site.deployed, against
          (a) the swarm's own limit: the same service specs created in parallel with the docker
              SDK, waited until running and served through Traefik;
          (b) a naive script: sequential `docker service create` (it waits for convergence).
truth     how many site.deployed were already served when they arrived; the broken-site corpus
          (exit at once, crash 4 s after start, wrong port, no run.sh, missing image): false
          successes.
terminal  a keystroke's echo through the bus (terminal.input -> output event), median and p99,
          against the same echo over a bare Docker attach.
no-op     redelivered same-version events per second, against a bare aio-pika consume ->
          publish (confirm) -> ack loop at the same prefetch.
redeploy  requests through Traefik during 10 updates of a serving site: failed requests.
memory    peak RSS of the orchestrator during the burst; the cost of one apply with 1,000 other
          managed services present, against none.
pure      the pure path (parse + spec) against json.loads.
files     site files over the bus (`--only files` runs this section alone): a 4 KiB `files.read`
          round trip against a bare aio-pika request/reply echo on the same broker (median and p99);
          50 MiB uploaded and downloaded against bare chunked publishing of the same bytes to and
          from a bare consumer (`bench/echo.py`, a process of its own); a listing of 10,000
          entries against reading the same directory locally (scandir + lstat).

The orchestrator runs with its production defaults (health every 2 s, 5 s stability window),
except the concurrency and prefetch it is given. These machines are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika
import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import (
    TRAEFIK,
    Director,
    OrchestratorProcess,
    Results,
    connected,
    fresh_vhost,
    site_event,
    write_site,
)

from orchestrator.client import FilesClient
from orchestrator.config import Settings
from orchestrator.contract.decoding import parse_event
from orchestrator.contract.sites import SiteCreated
from orchestrator.contract.terminals import TerminalUpdate
from orchestrator.sites.spec import desired_service
from orchestrator.swarm.mapping import to_docker

VHOST = "orchestrator-bench"
FIRST_SITE = 8000  # 8000-8999 belong to the benchmark
FILLER = "bench_filler_"  # other managed services, for the apply cost
API = docker.APIClient(version="auto")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the stack ---------------------------------------------------------------------------------


def wipe(site_ids: range = range(FIRST_SITE, FIRST_SITE + 1000)) -> None:
    names = {f"site_{i:04d}" for i in site_ids}
    doomed = [s["ID"] for s in API.services() if s["Spec"]["Name"] in names or s["Spec"]["Name"].startswith(FILLER)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(_remove_quietly, doomed))
    for config in API.configs(filters={"label": "com.director.managed-by=orchestrator"}):
        if int(config["Spec"]["Labels"].get("com.director.site-id", "0")) in site_ids:
            API.remove_config(config["ID"])


def _remove_quietly(service_id: str) -> None:
    try:
        API.remove_service(service_id)
    except docker.errors.NotFound:
        pass


def orchestrator_env(root: Path, **overrides: str) -> dict[str, str]:
    env = {
        "ORCHESTRATOR_AMQP_URL": f"amqp://orchestrator:orchestrator@127.0.0.1:5672/{VHOST}",
        "ORCHESTRATOR_SITES_ROOT": str(root),
        "ORCHESTRATOR_TRAEFIK_URL": TRAEFIK,
    }
    env.update({f"ORCHESTRATOR_{k.upper()}": v for k, v in overrides.items()})
    return env


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def served_now(client: httpx.AsyncClient, host: str, text: str) -> bool:
    try:
        response = await client.get("/", headers={"Host": host})
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and text in response.text


async def until_served(client: httpx.AsyncClient, host: str, text: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not await served_now(client, host, text):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host} not served")
        await asyncio.sleep(0.05)


# --- burst ---------------------------------------------------------------------------------------


async def burst_orchestrator(
    director: Director, results: Results, root: Path, process: OrchestratorProcess, sites: list[int]
) -> dict[str, Any]:
    events = []
    for site_id in sites:
        write_site(root, site_id, page=f"bench page {site_id}")
        events.append(site_event("site.created", site_id, 1, domains=[f"b{site_id}.bench.example.com"]))
    served_at_result = 0
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:

        async def one(event: dict[str, Any]) -> bool:
            site_id = event["site"]["id"]
            result = await results.wait_for(event["event_id"], timeout=300)
            ok = await served_now(client, f"b{site_id}.bench.example.com", f"bench page {site_id}")
            return result.type == "site.deployed" and ok

        waiting = [asyncio.create_task(one(e)) for e in events]
        started = time.monotonic()
        for event in events:
            await director.publish(event)
        outcome = await asyncio.gather(*waiting)
        elapsed = time.monotonic() - started
    served_at_result = sum(outcome)
    return {"seconds": round(elapsed, 2), "served_at_result": served_at_result, "sites": len(sites),
            "peak_rss_mb": round(peak_rss_mb(process.proc.pid), 1)}  # type: ignore[union-attr]  # fmt: skip


def bench_specs(sites: list[int], root: Path, settings: Settings) -> list[Any]:
    specs = []
    for site_id in sites:
        write_site(root, site_id, page=f"bench page {site_id}")
        event = SiteCreated.model_validate(
            site_event("site.created", site_id, 1, domains=[f"b{site_id}.bench.example.com"])
        )
        spec = desired_service(event.site, 1, settings, root / f"site_{site_id:04d}")
        specs.append(spec)
        os.chown(root / f"site_{site_id:04d}", settings.site_uid_base + site_id, settings.site_uid_base + site_id)
    return specs


async def burst_swarm_limit(sites: list[int], root: Path) -> dict[str, Any]:
    """The same specs (health checks included), created at once with the SDK: the swarm's own pace."""
    settings = Settings(sites_root=root)
    specs = bench_specs(sites, root, settings)
    started = time.monotonic()
    with ThreadPoolExecutor(len(specs)) as pool:
        futures = [pool.submit(API.create_service, name=s.name, **to_docker(s)) for s in specs]
        for future in futures:
            future.result()
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
        await asyncio.gather(*(until_served(client, f"b{i}.bench.example.com", f"bench page {i}") for i in sites))
    return {"seconds": round(time.monotonic() - started, 2), "sites": len(sites)}


def burst_naive(sites: list[int], root: Path) -> dict[str, Any]:
    """Sequential `docker service create`, which waits for convergence: the naive script."""
    settings = Settings(sites_root=root)
    specs = bench_specs(sites, root, settings)
    times = []
    for spec in specs:
        health = spec.healthcheck
        assert health is not None
        command = ["docker", "service", "create", "--quiet", "--no-resolve-image", "--name", spec.name]
        command += ["--network", spec.network, "--endpoint-mode", "dnsrr", "--user", spec.user or ""]
        command += ["--mount", f"type=bind,source={spec.mounts[0].source},target=/site"]
        command += ["--health-cmd", health.command, "--health-interval", f"{health.interval_ns}ns"]
        command += ["--health-start-period", f"{health.start_period_ns}ns", "--health-retries", str(health.retries)]
        for key, value in spec.labels.items():
            command += ["--label", f"{key}={value}"]
        for key, value in spec.env.items():
            command += ["--env", f"{key}={value}"]
        command += [spec.image, *(spec.command or ())]
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        times.append(time.monotonic() - started)
    return {"seconds_per_site": round(statistics.median(times), 2), "sites": len(sites)}


# --- truth: the broken-site corpus ------------------------------------------------------------------

CORPUS = {
    "exits at once": ("run_script_failed", 'echo "cannot start" >&2\nexit 1\n', None),
    "crashes 4 s after start": (
        "run_script_failed", 'httpd -f -p "$PORT" -h /site/public &\nsleep 4\nkill $!\nexit 3\n', None),
    "listens on 8080": ("not_listening", "exec httpd -f -p 8080 -h /site/public\n", None),
    "no run.sh": ("no_run_script", None, None),
    "missing image": ("image_not_found", 'exec httpd -f -p "$PORT"\n', {"name": "no-such-image:1", "custom": True}),
}  # fmt: skip


async def truth_corpus(director: Director, results: Results, root: Path, first: int) -> dict[str, Any]:
    events = {}
    for offset, (label, (_, script, image)) in enumerate(CORPUS.items()):
        site_id = first + offset
        site_dir = write_site(root, site_id, page="broken", run_sh=script is not None)
        if script is not None:
            (site_dir / "run.sh").write_text("#!/bin/sh\n" + script)
        events[label] = site_event("site.created", site_id, 1, image=image)
        await director.publish(events[label])
    outcome = {}
    false_successes = 0
    for label, (code, _, _) in CORPUS.items():
        result = await results.wait_for(events[label]["event_id"], timeout=300)
        got = result.error.code if result.error else result.type
        false_successes += result.type == "site.deployed"
        outcome[label] = {"expected": code, "got": str(got)}
    return {"false_successes": false_successes, "cases": outcome}


# --- no-op throughput ------------------------------------------------------------------------------


async def publish_all(exchange: aio_pika.abc.AbstractExchange, messages: list[tuple[bytes, str, str]]) -> None:
    """Publish with confirms pipelined (in flight together), as a busy Director would."""
    await asyncio.gather(
        *(
            exchange.publish(aio_pika.Message(body, message_id=message_id, user_id=user), routing_key)
            for body, routing_key, message_id, user in ((*m, "director") for m in messages)
        )
    )


async def noop_orchestrator(director: Director, results: Results, sites: list[int], count: int) -> float:
    """Redeliveries of each site's applied event, published at once: results per second."""
    originals = [site_event("site.created", s, 1, domains=[f"b{s}.bench.example.com"]) for s in sites]
    messages = [(json.dumps(e).encode(), "site.created", e["event_id"]) for e in originals]
    before = len(results.messages)
    started = time.monotonic()
    await publish_all(director.exchange, [messages[i % len(messages)] for i in range(count)])
    await results.wait_total(before + count, timeout=600)
    return count / (time.monotonic() - started)


async def noop_bare(prefetch: int, count: int) -> float:
    """The least any consumer does: consume, publish a result with confirms, ack; the same
    queue types (quorum work queue, durable results queue) and the same way of publishing."""
    async with connected("guest", VHOST) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        tag = uuid.uuid4().hex[:6]
        inbound = await channel.declare_exchange(f"bench.bare.in.{tag}", aio_pika.ExchangeType.TOPIC, auto_delete=True)
        queue = await channel.declare_queue(f"bench.bare.{tag}", durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(inbound, "#")
        out = await channel.declare_exchange(f"bench.bare.out.{tag}", aio_pika.ExchangeType.TOPIC, auto_delete=True)
        sink = await channel.declare_queue(
            f"bench.bare.results.{tag}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await sink.bind(out, "#")
        done = asyncio.Event()
        seen = 0

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            json.loads(message.body)
            result = aio_pika.Message(b'{"type": "site.deployed"}', delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await out.publish(result, "site.deployed", mandatory=True)
            await message.ack()
            seen += 1
            if seen == count:
                done.set()

        await queue.consume(handle)
        body = json.dumps(site_event("site.created", FIRST_SITE, 1)).encode()
        publisher = await connection.channel(publisher_confirms=True)
        exchange = await publisher.get_exchange(inbound.name)
        started = time.monotonic()
        await asyncio.gather(*(exchange.publish(aio_pika.Message(body), "site.created") for _ in range(count)))
        await done.wait()
        return count / (time.monotonic() - started)  # the queues go with the bench's vhost


# --- redeploy ---------------------------------------------------------------------------------------


async def redeploys(director: Director, results: Results, root: Path, site_id: int, count: int = 10) -> dict[str, Any]:
    host = f"redeploy{site_id}.bench.example.com"
    write_site(root, site_id, page=f"always up {site_id}")
    first = site_event("site.created", site_id, 1, domains=[host])
    await director.publish(first)
    assert (await results.wait_for(first["event_id"], timeout=180)).type == "site.deployed"
    outcomes: dict[str, int] = {}
    stop = asyncio.Event()

    async def loop() -> None:
        async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = await client.get("/", headers={"Host": host})
                    key = "ok" if response.status_code == 200 and f"always up {site_id}" in response.text else str(
                        response.status_code)  # fmt: skip
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                outcomes[key] = outcomes.get(key, 0) + 1
                await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    durations = []
    for version in range(2, count + 2):
        event = site_event("site.updated", site_id, version, domains=[host], env={"RELEASE": str(version)})
        started = time.monotonic()
        await director.publish(event)
        result = await results.wait_for(event["event_id"], timeout=180)
        assert result.type == "site.deployed", result
        durations.append(time.monotonic() - started)
    await asyncio.sleep(2)
    stop.set()
    await task
    failed = sum(n for k, n in outcomes.items() if k != "ok")
    return {"requests": sum(outcomes.values()), "failed": failed, "outcomes": outcomes,
            "median_redeploy_seconds": round(statistics.median(durations), 2)}  # fmt: skip


# --- apply cost with many services -----------------------------------------------------------------


async def apply_cost(director: Director, results: Results, site_id: int, rounds: int = 15) -> float:
    """Median time of a not-serving site.updated (no container to wait for): the apply itself."""
    times = []
    for version in range(1, rounds + 1):
        kind = "site.created" if version == 1 else "site.updated"
        event = site_event(
            kind, site_id, version, serving=False, domains=[f"cost{site_id}-{version}.bench.example.com"]
        )
        started = time.monotonic()
        await director.publish(event)
        await results.wait_for(event["event_id"], timeout=60)
        times.append(time.monotonic() - started)
    return statistics.median(times[1:])


def docker_apply_cost(rounds: int = 15) -> float:
    """The same apply with the docker SDK alone (update a not-serving service's labels, read it
    back, list its tasks): Docker's own share, the baseline the orchestrator's apply adds to."""
    name = f"{FILLER}baseline"
    spec = docker.types.ContainerSpec(image="director/base:latest", command=["sleep", "1"])
    template = docker.types.TaskTemplate(container_spec=spec)
    created = API.create_service(template, name=name, mode=docker.types.ServiceMode("replicated", replicas=0))
    times = []
    try:
        for version in range(rounds):
            started = time.monotonic()
            current = API.inspect_service(created["ID"])
            index = current["Version"]["Index"]
            idle = docker.types.ServiceMode("replicated", replicas=0)
            API.update_service(created["ID"], index, task_template=template, name=name, labels={"v": str(version)},
                               mode=idle)  # fmt: skip
            API.inspect_service(created["ID"])
            API.tasks(filters={"service": created["ID"]})
            times.append(time.monotonic() - started)
    finally:
        API.remove_service(created["ID"])
    return statistics.median(times[1:])


def many_services(count: int) -> None:
    def create(i: int) -> None:
        site_id = 20_000 + i
        labels = {"com.director.managed-by": "orchestrator", "com.director.site-id": str(site_id),
                  f"com.director.host.filler{site_id}.bench.example.com": "",
                  "com.director.zone.bench.example.com": "", "com.director.zone.example.com": ""}  # fmt: skip
        spec = docker.types.ContainerSpec(image="director/base:latest", command=["sleep", "1"])
        API.create_service(docker.types.TaskTemplate(container_spec=spec), name=f"{FILLER}{i}",
                           labels=labels, mode=docker.types.ServiceMode("replicated", replicas=0))  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


# --- pure path ---------------------------------------------------------------------------------------


def pure_ratios() -> dict[str, float]:
    settings = Settings()
    body = json.dumps(site_event("site.created", 42, 3, domains=[f"d{i}.example.com" for i in range(5)])).encode()
    root = Path("/srv/director/sites/site_0042")

    def per_call(fn: Any, calls: int = 2000, rounds: int = 11) -> float:
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            samples.append((time.perf_counter() - started) / calls)
        return statistics.median(samples)

    def spec() -> None:
        event = parse_event(body, "site.created")
        assert isinstance(event, SiteCreated)
        desired_service(event.site, event.version, settings, root)

    base = per_call(lambda: json.loads(body))
    return {
        "json_loads_us": round(base * 1e6, 1),
        "parse_event_x": round(per_call(lambda: parse_event(body, "site.created")) / base, 1),
        "parse_and_spec_x": round(per_call(spec) / base, 1),
    }


# --- terminal ------------------------------------------------------------------------------------


async def terminal_rtt(site_id: int, count: int = 200) -> dict[str, Any]:
    """Keystroke echo through the bus: terminal.input published as Director would, until the
    `output` event carrying the echo arrives; against the same echo over a bare Docker attach."""
    async with connected("director", VHOST) as director, connected("guest", VHOST) as admin:
        commands = await (await director.channel()).get_exchange("director.terminals", ensure=False)
        listener = await admin.channel()
        events = await listener.get_exchange("orchestrator.terminals", ensure=False)
        session = uuid.uuid4()
        queue = await listener.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, f"terminal.{session}")
        received: asyncio.Queue[TerminalUpdate] = asyncio.Queue()

        async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received.put_nowait(TerminalUpdate.model_validate_json(message.body))

        await queue.consume(on_event, no_ack=True)

        async def send(command: str, **body: Any) -> None:
            payload = json.dumps({"session_id": str(session), **body}).encode()
            await commands.publish(aio_pika.Message(payload, user_id="director"), f"terminal.{command}")

        async def quiet() -> None:  # the prompt and anything else pending
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(received.get(), 1.0)

        await send("open", site_id=site_id, cols=200, rows=50)
        await quiet()
        rtts = []
        for _ in range(count):
            started = time.perf_counter()
            await send("input", data=base64.b64encode(b"x").decode())
            while b"x" not in base64.b64decode((await asyncio.wait_for(received.get(), 10)).data or ""):
                pass
            rtts.append((time.perf_counter() - started) * 1000)
        await send("input", data=base64.b64encode(b"\x15").decode())  # clear the line
        await send("close")
        await quiet()
    bare = await asyncio.to_thread(attach_rtt, count)
    median, p99 = statistics.median(rtts), statistics.quantiles(rtts, n=100)[98]
    return {
        "keystrokes": count,
        "median_ms": round(median, 2),
        "p99_ms": round(p99, 2),
        "bare_attach_median_ms": round(bare, 2),
        "ratio": round(median / bare, 1),
    }


def attach_rtt(count: int) -> float:
    """Median echo over a plain Docker attach to a shell container (no bus): the floor."""
    container = API.create_container("director/base:latest", command=["/bin/sh"], tty=True, stdin_open=True)
    try:
        sock = API.attach_socket(container["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = sock._sock
        API.start(container["Id"])
        time.sleep(0.5)
        raw.recv(65536)
        rtts = []
        for _ in range(count):
            started = time.perf_counter()
            raw.sendall(b"x")
            raw.recv(65536)
            rtts.append((time.perf_counter() - started) * 1000)
        return statistics.median(rtts)
    finally:
        API.remove_container(container["Id"], force=True)


# --- files ---------------------------------------------------------------------------------------------

FILES_VHOST = "orchestrator-bench-files"
FILES_SITE = FIRST_SITE + 950
DIRECT = "amq.rabbitmq.reply-to"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def _bare_channel(url: str) -> tuple[aio_pika.abc.AbstractRobustConnection, Any, dict[str, Any]]:
    """A client of bench/echo.py: direct reply-to, replies dispatched by correlation id."""
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=False)
    pending: dict[str, Any] = {}

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        waiting = pending.get(message.correlation_id or "")
        if isinstance(waiting, asyncio.Queue):
            waiting.put_nowait(message.body)
        elif waiting is not None and not waiting.done():
            waiting.set_result(message.body)

    replies = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
    await replies.consume(on_reply, no_ack=True)
    return connection, channel, pending


async def _bare_request(channel: Any, pending: dict[str, Any], key: str, body: bytes, **headers: Any) -> bytes:
    correlation_id = uuid.uuid4().hex
    future = asyncio.get_running_loop().create_future()
    pending[correlation_id] = future
    message = aio_pika.Message(
        body, correlation_id=correlation_id, reply_to="amq.rabbitmq.reply-to", headers={"op": key, **headers}
    )
    await channel.default_exchange.publish(message, "bench-echo", mandatory=False)
    try:
        return await asyncio.wait_for(future, 60)  # type: ignore[no-any-return]
    finally:
        pending.pop(correlation_id, None)


async def files_section(args: argparse.Namespace) -> dict[str, Any]:
    """Site files over the bus against bare aio-pika floors on the same broker (see the docstring)."""
    size, count, total = 4096, args.files_reads, 50 * 1024 * 1024
    chunk = Settings().files_chunk_bytes
    with fresh_vhost(FILES_VHOST), tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        root = Path(tmp) / "sites"
        root.mkdir()
        wipe(range(FILES_SITE, FILES_SITE + 1))
        env = orchestrator_env(root) | {
            "ORCHESTRATOR_AMQP_URL": f"amqp://orchestrator:orchestrator@127.0.0.1:5672/{FILES_VHOST}"
        }
        process = OrchestratorProcess(env, Path(tmp) / "orchestrator.log")
        process.start()
        guest = f"amqp://guest:guest@127.0.0.1:5672/{FILES_VHOST}"
        echo = _start_echo(guest)
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            await process.wait_consuming()
            async with connected("guest", FILES_VHOST) as admin, connected("director", FILES_VHOST) as dc:
                results = Results(admin)
                await results.start()
                director = Director(dc)
                await director.start()
                write_site(root, FILES_SITE, page="bench files", run_sh=False)
                event = site_event("site.created", FILES_SITE, 1, serving=False)
                await director.publish(event)
                assert (await results.wait_for(event["event_id"], 120)).type == "site.deployed"
                director_url = f"amqp://director:director@127.0.0.1:5672/{FILES_VHOST}"
                async with await FilesClient.connect(director_url) as client:
                    report = await _files_measure(client, process, root, size, count, total, chunk)
        finally:
            echo.terminate()
            echo.wait(10)
            process.stop()
            wipe(range(FILES_SITE, FILES_SITE + 1))
    return report


async def _files_measure(
    client: FilesClient, process: OrchestratorProcess, root: Path, size: int, count: int, total: int, chunk: int
) -> dict[str, Any]:
    site = FILES_SITE
    guest = f"amqp://guest:guest@127.0.0.1:5672/{FILES_VHOST}"
    log("files: 4 KiB read round trips, the orchestrator and the bare echo")
    await client.write(site, "public/4k.bin", os.urandom(size))
    ours = []
    for i in range(count + 100):
        started = time.perf_counter()
        await client.read(site, "public/4k.bin")
        if i >= 100:  # warmed up
            ours.append(time.perf_counter() - started)
    connection, channel, pending = await _bare_channel(guest)
    bare = []
    request = json.dumps({"size": size}).encode()
    for i in range(count + 100):
        started = time.perf_counter()
        await _bare_request(channel, pending, "echo", request)
        if i >= 100:
            bare.append(time.perf_counter() - started)
    ours_median, ours_p99 = _percentiles(ours)
    bare_median, bare_p99 = _percentiles(bare)

    log("files: 50 MiB up and down, the orchestrator and bare chunked publishing")
    data = os.urandom(total)
    pid = process.proc.pid  # type: ignore[union-attr]
    _reset_peak(pid)
    rss_before = _rss_mb(pid, "VmRSS")
    started = time.perf_counter()
    await client.write(site, "public/50m.bin", data)
    upload = time.perf_counter() - started
    started = time.perf_counter()
    downloaded = hashlib.sha256()
    async for piece in client.download(site, "public/50m.bin"):
        downloaded.update(piece)
    download = time.perf_counter() - started
    assert downloaded.hexdigest() == hashlib.sha256(data).hexdigest()
    rss_growth = _rss_mb(pid, "VmHWM") - rss_before

    # Bare push: the same bytes in chunks of the same size, 8 in flight with confirms (as the
    # client's upload window), to a consumer that answers once it has them all: raw, and as the
    # contract carries them (base64 in JSON, decoded by the consumer). The last chunk carries the
    # reply_to: a direct reply-to request leaves on the channel that consumes the replies.
    publisher = await connection.channel(publisher_confirms=True)
    bare_push: dict[str, float] = {}
    for encoding in ("raw", "json"):
        done = asyncio.get_running_loop().create_future()
        correlation_id = uuid.uuid4().hex
        pending[correlation_id] = done
        started = time.perf_counter()
        inflight: list[Any] = []
        offsets = range(0, total, chunk)
        for offset in offsets:
            last = offset == offsets[-1]
            piece = data[offset : offset + chunk]
            if encoding == "json":
                piece = json.dumps({"offset": offset, "data": base64.b64encode(piece).decode()}).encode()
            headers = {"op": "sink", "total": total, "encoding": encoding}
            message = aio_pika.Message(
                piece, correlation_id=correlation_id, reply_to=DIRECT if last else None, headers=headers
            )
            sender = channel if last else publisher
            inflight.append(asyncio.create_task(sender.default_exchange.publish(message, "bench-echo")))
            if len(inflight) >= 8:
                await inflight.pop(0)
        await asyncio.gather(*inflight)
        await asyncio.wait_for(done, 120)
        bare_push[encoding] = time.perf_counter() - started
    # Bare pull: the same bytes sent back in chunks to a reply queue.
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    correlation_id = uuid.uuid4().hex
    pending[correlation_id] = replies
    started = time.perf_counter()
    body = json.dumps({"size": chunk, "count": total // chunk}).encode()
    await channel.default_exchange.publish(
        aio_pika.Message(
            body, correlation_id=correlation_id, reply_to="amq.rabbitmq.reply-to", headers={"op": "source"}
        ),
        "bench-echo",
    )
    for _ in range(total // chunk):
        base64.b64decode(json.loads(await asyncio.wait_for(replies.get(), 60))["result"]["data"])
    bare_pull = time.perf_counter() - started
    await connection.close()

    log("files: listing 10,000 entries, over the bus and locally")
    folder = root / f"site_{site:04d}" / "public" / "many"
    folder.mkdir()
    for i in range(10_000):
        (folder / f"entry-{i:05d}").touch()
    started = time.perf_counter()
    listed = [entry.name async for entry in client.list_all(site, "public/many", limit=1000)]
    listing = time.perf_counter() - started
    assert len(listed) == 10_000
    started = time.perf_counter()
    with os.scandir(folder) as scan:
        local = sorted((e.name, e.stat(follow_symlinks=False).st_size) for e in scan)
    local_listing = time.perf_counter() - started
    assert len(local) == 10_000
    mib = total / 1024 / 1024
    return {
        "read_4k": {"median_ms": round(ours_median * 1000, 2), "p99_ms": round(ours_p99 * 1000, 2),
                    "bare_median_ms": round(bare_median * 1000, 2), "bare_p99_ms": round(bare_p99 * 1000, 2),
                    "median_ratio": round(ours_median / bare_median, 2), "p99_ratio": round(ours_p99 / bare_p99, 2),
                    "round_trips": count},
        "upload_50mib": {"mib_per_s": round(mib / upload, 1), "bare_mib_per_s": round(mib / bare_push["json"], 1),
                         "ratio": round(bare_push["json"] / upload, 2),
                         "bare_raw_mib_per_s": round(mib / bare_push["raw"], 1),
                         "ratio_to_raw": round(bare_push["raw"] / upload, 2)},
        "download_50mib": {"mib_per_s": round(mib / download, 1), "bare_mib_per_s": round(mib / bare_pull, 1),
                           "ratio": round(bare_pull / download, 2)},
        "list_10000": {"seconds": round(listing, 3), "pages": 10, "local_seconds": round(local_listing, 3),
                       "ratio": round(listing / local_listing, 1)},
        "rss_growth_mb_during_transfers": round(rss_growth, 1),
    }  # fmt: skip


def _start_echo(url: str) -> subprocess.Popen[str]:
    script = str(Path(__file__).with_name("echo.py"))
    return subprocess.Popen([sys.executable, script, url, "bench-echo", "16"], stdout=subprocess.PIPE, text=True)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def files_table(files: dict[str, Any]) -> list[tuple[str, str, str]]:
    read, up, down, listing = files["read_4k"], files["upload_50mib"], files["download_50mib"], files["list_10000"]
    return [
        ("files", f"4 KiB read median {read['median_ms']} ms, p99 {read['p99_ms']} ms",
         f"{read['median_ratio']}x / {read['p99_ratio']}x a bare echo ({read['bare_median_ms']} / "
         f"{read['bare_p99_ms']} ms)"),
        ("upload", f"50 MiB at {up['mib_per_s']} MiB/s", f"{up['ratio']}x bare chunked publishing as base64 JSON "
         f"({up['bare_mib_per_s']} MiB/s); {up['ratio_to_raw']}x of raw bytes ({up['bare_raw_mib_per_s']} MiB/s)"),
        ("download", f"50 MiB at {down['mib_per_s']} MiB/s", f"{down['ratio']}x bare chunked publishing as base64 JSON "
         f"({down['bare_mib_per_s']} MiB/s); RSS +{files['rss_growth_mb_during_transfers']} MB"),
        ("list", f"10,000 entries in {listing['seconds']} s ({listing['pages']} pages)",
         f"{listing['ratio']}x a local scandir + lstat ({listing['local_seconds']} s)"),
    ]  # fmt: skip


# --- main ----------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"pure": pure_ratios()}
    sites = list(range(FIRST_SITE, FIRST_SITE + args.sites))
    with fresh_vhost(VHOST), tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp) / "sites"
        root.mkdir()
        wipe()
        log(f"burst, baseline (a): {args.sites} services created in parallel with the SDK")
        swarm_limit = await burst_swarm_limit(sites, root)
        wipe()
        log("burst, baseline (b): sequential docker service create (3 sites)")
        naive = burst_naive(sites[:3], root)
        wipe()
        env = orchestrator_env(root, concurrency=str(args.concurrency), prefetch=str(args.prefetch))
        process = OrchestratorProcess(env, Path(tmp) / "orchestrator.log")
        process.start()
        try:
            await process.wait_consuming()
            async with connected("guest", VHOST) as admin, connected("director", VHOST) as director_connection:
                results = Results(admin)
                await results.start()
                director = Director(director_connection)
                await director.start()
                log(f"burst through the orchestrator: {args.sites} site.created")
                burst = await burst_orchestrator(director, results, root, process, sites)
                log("truth: the broken-site corpus")
                corpus = await truth_corpus(director, results, root, FIRST_SITE + 500)
                log(f"no-op: {args.noop} redelivered events")
                noop = await noop_orchestrator(director, results, sites, args.noop)
                bare = await noop_bare(args.prefetch, args.noop)
                log("terminal: keystroke echo through the bus")
                terminal = await terminal_rtt(sites[0])
                log("redeploy: 10 updates under a request loop")
                redeploy = await redeploys(director, results, root, FIRST_SITE + 600)
                log("apply cost: with no other service, then with 1,000 more")
                alone = await apply_cost(director, results, FIRST_SITE + 700)
                docker_alone = await asyncio.to_thread(docker_apply_cost)
                many_services(1000)
                await asyncio.sleep(30)  # the orchestrator reads each new service's labels once
                crowded = await apply_cost(director, results, FIRST_SITE + 701)
                docker_crowded = await asyncio.to_thread(docker_apply_cost)
        finally:
            process.stop()
            wipe()
    report |= {
        "burst": burst | {"swarm_limit_seconds": swarm_limit["seconds"], "naive_seconds_per_site": naive[
            "seconds_per_site"], "ratio_to_swarm_limit": round(burst["seconds"] / swarm_limit["seconds"], 2)},
        "truth": {"served_at_result": f"{burst['served_at_result']}/{burst['sites']}"} | corpus,
        "noop": {"orchestrator_per_second": round(noop), "bare_loop_per_second": round(bare),
                 "ratio": round(noop / bare, 2)},
        "redeploy": redeploy,
        "terminal": terminal,
        "memory": {"peak_rss_mb_during_burst": burst["peak_rss_mb"], "apply_ms_alone": round(alone * 1000, 1),
                   "apply_ms_with_1000_services": round(crowded * 1000, 1),
                   "ratio": round(crowded / alone, 2),
                   "docker_ms_alone": round(docker_alone * 1000, 1),
                   "docker_ms_with_1000_services": round(docker_crowded * 1000, 1),
                   "docker_ratio": round(docker_crowded / docker_alone, 2),
                   "ours_ms_alone": round((alone - docker_alone) * 1000, 1),
                   "ours_ms_with_1000_services": round((crowded - docker_crowded) * 1000, 1)},
    }  # fmt: skip
    return report


def table(report: dict[str, Any]) -> str:
    if set(report) == {"files"}:
        return _rows(files_table(report["files"]))
    burst, noop, memory = report["burst"], report["noop"], report["memory"]
    rows = [
        ("burst", f"{burst['sites']} sites in {burst['seconds']} s", f"{burst['ratio_to_swarm_limit']}x swarm limit "
         f"({burst['swarm_limit_seconds']} s); naive {burst['naive_seconds_per_site']} s/site"),
        ("truth", f"served at result {report['truth']['served_at_result']}",
         f"false successes {report['truth']['false_successes']}/{len(CORPUS)}"),
        ("no-op", f"{noop['orchestrator_per_second']}/s",
         f"{noop['ratio']}x bare loop ({noop['bare_loop_per_second']}/s)"),
        ("redeploy", f"{report['redeploy']['requests']} requests", f"{report['redeploy']['failed']} failed"),
        ("terminal", f"echo median {report['terminal']['median_ms']} ms, p99 {report['terminal']['p99_ms']} ms",
         f"{report['terminal']['ratio']}x a bare docker attach ({report['terminal']['bare_attach_median_ms']} ms)"),
        ("memory", f"peak RSS {memory['peak_rss_mb_during_burst']} MB",
         f"apply {memory['apply_ms_alone']} ms -> {memory['apply_ms_with_1000_services']} ms with 1,000 services "
         f"({memory['ratio']}x; Docker alone {memory['docker_ms_alone']} -> "
         f"{memory['docker_ms_with_1000_services']} ms, {memory['docker_ratio']}x)"),
        ("pure", f"json.loads {report['pure']['json_loads_us']} us",
         f"parse {report['pure']['parse_event_x']}x, parse+spec {report['pure']['parse_and_spec_x']}x"),
    ]  # fmt: skip
    if "files" in report:
        rows += files_table(report["files"])
    return _rows(rows)


def _rows(rows: list[tuple[str, str, str]]) -> str:
    width = max(len(r[1]) for r in rows)
    return "\n".join(f"{name:<9} {left:<{width}}  {right}" for name, left, right in rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--noop", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--files-reads", type=int, default=2000, help="4 KiB read round trips timed")
    parser.add_argument("--only", choices=["all", "files"], default="all", help="run one section alone")
    parser.add_argument("--json", type=Path, help="also write the report here")
    arguments = parser.parse_args()
    if arguments.only == "files":
        outcome = {"files": asyncio.run(files_section(arguments))}
    else:
        outcome = asyncio.run(main(arguments))
        outcome["files"] = asyncio.run(files_section(arguments))
    print(json.dumps(outcome, indent=2))
    print(table(outcome))
    if arguments.json:
        arguments.json.write_text(json.dumps(outcome, indent=2))
