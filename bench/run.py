"""On-demand system benchmark on the local stack (`make bench`): the whole orchestrator with its
production defaults, measured against baselines run in the same session, printed as ratios (a JSON
document and a table) and saved to bench/results/<UTC start>.json, from which docs/benchmarks.md is
generated (`make docs`). These machines are noisy: compare ratios, not absolute numbers.

pure      parse + spec against json.loads.
burst     N site.created until every site.deployed, against the floor: the same services without a
          health check created in parallel with the SDK, waited until served through Traefik.
truth     how many site.deployed were already served when they arrived; the broken-site corpus
          (exit at once, crash 4 s after start, wrong port, no run.sh, missing image).
no-op     redelivered same-version events per second, spread over the sites, against a bare
          aio-pika consume -> publish (confirm) -> ack loop on quorum queues at the same prefetch.
terminal  a keystroke's echo through the bus (median, p99) against a bare 4 KiB request/reply echo
          on the same broker (its median), interleaved; a bare Docker attach for context.
redeploy  requests through Traefik during 10 updates of a serving site: failed requests.
health    a site's server killed from inside: seconds until site.health says down, and healthy again.
idle      machine CPU with 0/50/100/200 idle, healthy, serving sites (Traefik at its production
          refresh), minus with none, per site; the Docker daemons' and Traefik's share; at 100 and
          200, metrics on (METRICS_SECONDS 60) against off, measured on, off, on again.
deploy    one new site, event -> site.deployed, against the floor (the same service without a health
          check created until served through Traefik) plus the stability window, with a timeline
          per run (service created, container started, healthy, first served, result): at 100
          sites (the idle section's), and at each fleet level.
fleet     1,000 then 10,000 managed sites (200 serving, the rest not): start-up, takeover by a
          standby, status, a drift survey, one deploy (see deploy), the orchestrator's RSS, the
          machine's CPU (Traefik's provider polling, through the docker proxy as in production,
          included); against the same at 200. The not-serving services are made straight
          through the SDK, reused from an interrupted run, and removed at the end.
metrics   one collector pass over 1,000 real cgroups (bench/metrics.py): wall and CPU time.
databases a site database (bench/databases.py): provisioning against a bare CREATE ROLE + CREATE
          DATABASE by the same driver, per engine; the extra deploy latency a database adds.
files     site files over the bus (bench/files.py): a 4 KiB files.read round trip against a bare
          aio-pika request/reply echo; 50 MiB up and down against bare chunked publishing of the
          same bytes; a listing of 10,000 entries against reading the directory locally.
https     site.created until the first verified HTTPS answer against the first HTTP answer; TLS
          handshakes per second through Traefik against a bare TLS server (nginx, same
          certificate); idle sites whose names all have certificates, per site (bench/https.py).
cluster   only when asked (`make bench-cluster`: the test cluster's two workers and the manager,
          bench/cluster.py): the burst on three nodes against the floor on the same cluster, and
          `orchestrator drain` of a worker under a request loop (requests failed); medians of runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# The benchmark's sections, and the harness the tests share (harness/, beside orchestrator/; not installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bus
import cluster
import databases
import deploys
import files
import https
import metrics
import scale
import timeline
from common import (
    FIRST_SITE,
    FLEET_SITE,
    bench_running,
    log,
    peak_rss_mb,
    traefik_refresh,
    traefik_through_proxy,
    wipe,
)

from harness.tls import acme_settings

SECTIONS = (
    "pure", "metrics", "burst", "truth", "noop", "terminal", "redeploy", "health", "idle", "deploy", "fleet", "files",
    "databases", "https", "cluster",
)  # fmt: skip
ON_REQUEST = {"cluster"}  # needs the test cluster up: never part of a plain `make bench`
PRODUCTION_REFRESH, LOCAL_REFRESH = 5, 1  # Traefik's swarm-provider refresh (deploy/traefik/traefik.yml)
RESULTS = Path(__file__).resolve().parent / "results"  # one JSON per run, named by its UTC start
DEPLOY_AT = 100  # sites when the deploy section times one new site (then at each fleet level)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    only = set(args.only.split(",")) if args.only else set(SECTIONS) - ON_REQUEST
    report: dict[str, Any] = {}
    if "pure" in only:
        report["pure"] = bus.pure_ratios()
    if "metrics" in only:
        report["metrics"] = await metrics.collection_pass(args.metrics_sites)
    sites = list(range(FIRST_SITE, FIRST_SITE + args.sites))
    wipe(keep_fleet=args.keep_fleet)
    try:
        async with bench_running(concurrency=str(args.concurrency), prefetch=str(args.prefetch)) as bench:
            if only & {"burst", "noop", "terminal", "health"}:
                report["burst"] = await deploys.burst_section(bench, sites)
                report["burst"]["peak_rss_mb"] = round(peak_rss_mb(bench.process.proc.pid), 1)  # type: ignore[union-attr]
            if "truth" in only:
                log("truth: the broken-site corpus")
                report["truth"] = await deploys.corpus(bench, FIRST_SITE + 500)
            if "noop" in only:
                log(f"no-op: {args.noop} redelivered events over {len(sites)} sites")
                report["noop"] = await bus.noop_section(bench, sites, args.noop, args.prefetch)
            if "terminal" in only:
                log("terminal: keystroke echo through the bus")
                report["terminal"] = await bus.terminal_rtt(sites[0])
            if "redeploy" in only:
                log("redeploy: 10 updates under a request loop")
                report["redeploy"] = await deploys.redeploys(bench, FIRST_SITE + 600)
            if "health" in only:
                log("health: a site's server killed from inside")
                report["health"] = await deploys.health_detection(bench, sites[1])
            if "files" in only:
                report["files"] = await files.files_section(bench, args.files_reads)
            if "databases" in only:
                report["databases"] = await databases.databases_section(bench, args.database_sites, args.database_pairs)
            if "cluster" in only:
                report["cluster"] = await cluster.cluster_section(bench, sites, args.cluster_runs)
            if only & {"idle", "deploy", "fleet"}:
                wipe(keep_fleet=True)
                log(f"Traefik at its production refresh ({PRODUCTION_REFRESH} s)")
                await asyncio.to_thread(traefik_refresh, PRODUCTION_REFRESH)
                report |= await scale_sections(bench, only, args)
        if "https" in only:
            report["https"] = await https_block(args)
    finally:
        log("removing the benchmark's sites")
        wipe(keep_fleet=args.keep_fleet)
        if only & {"idle", "deploy", "fleet", "https"}:
            await asyncio.to_thread(traefik_refresh, LOCAL_REFRESH)
    return report


async def scale_sections(bench: Any, only: set[str], args: argparse.Namespace) -> dict[str, Any]:
    """Idle sites' CPU, one deploy at 100 sites, the fleet levels (see the docstring)."""
    report: dict[str, Any] = {}
    singles: dict[str, Any] = {}
    on_off: dict[str, Any] = {}
    none: dict[str, float] = {}  # the machine with no site (the first level's reading)
    metrics_levels = {int(n) for n in args.metrics_levels.split(",") if n}

    async def after(level: int, reading: dict[str, float]) -> None:
        none.update(reading if not none else {})
        if level in metrics_levels:
            on_off[str(level)] = await metrics.idle_on_off(bench, level, none, args.window)
        if "deploy" in only and level == DEPLOY_AT:
            first = FLEET_SITE + scale.LEVEL_SITES + level
            singles[str(level)] = await timeline.one_site(bench, first, level)

    if only & {"idle", "fleet"}:
        levels = [int(n) for n in args.levels.split(",")]
        report["idle"] = await scale.idle_levels(bench, levels, args.window, after)
        report["idle"]["metrics_on_off"] = on_off
    else:  # the deploy alone: not-serving sites made through the SDK
        log(f"deploy: {DEPLOY_AT} not-serving sites")
        await asyncio.to_thread(scale.fill, DEPLOY_AT, FLEET_SITE)
        await after(DEPLOY_AT, {})
    if "fleet" in only:
        levels = [int(n) for n in args.levels.split(",")]
        fleet_levels = [int(n) for n in args.fleet.split(",")]
        log("fleet: Traefik reads the swarm through the docker proxy, as in production")
        with traefik_through_proxy(bench.root.parent, PRODUCTION_REFRESH) as proxy:
            report["fleet"] = await scale.fleet(bench, levels[-1], fleet_levels, args.window, proxy.pid)
        singles |= report["fleet"].pop("deploys")
        log(f"health at {fleet_levels[-1]} sites")
        report["fleet"]["health"] = await deploys.health_detection(bench, FLEET_SITE)
    if singles:
        report["deploy"] = singles
    return report


async def https_block(args: argparse.Namespace) -> dict[str, Any]:
    """An orchestrator that orders certificates from the local CA (make up's pebble), on its own."""
    wipe(keep_fleet=args.keep_fleet)
    acme = acme_settings()
    async with bench_running(concurrency=str(args.concurrency), prefetch=str(args.prefetch), **acme) as bench:
        sites = list(range(FIRST_SITE + 700, FIRST_SITE + 700 + args.https_sites))
        idle = [0, args.https_idle] if args.https_idle else []
        if idle:
            log(f"Traefik at its production refresh ({PRODUCTION_REFRESH} s)")
            await asyncio.to_thread(traefik_refresh, PRODUCTION_REFRESH)
        try:
            return await https.https_section(bench, sites, args.handshake_seconds, idle, args.window)
        finally:
            wipe(keep_fleet=args.keep_fleet)
            https.forget_certificates(bench)


def table(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    if "burst" in report:
        b = report["burst"]
        rows.append(("burst", f"{b['sites']} sites in {b['seconds']} s, {b['served_at_result']} served at result",
                     f"{b['ratio_to_floor']}x the floor ({b['floor_seconds']} s)"))  # fmt: skip
    if "truth" in report:
        rows.append(("truth", "broken-site corpus", f"{report['truth']['false_successes']} false successes of "
                     f"{len(report['truth']['cases'])}"))  # fmt: skip
    if "noop" in report:
        n = report["noop"]
        rows.append(("no-op", f"{n['orchestrator_per_second']}/s",
                     f"{n['ratio']}x a bare loop ({n['bare_loop_per_second']}/s)"))  # fmt: skip
    if "terminal" in report:
        t = report["terminal"]
        rows.append(("terminal", f"echo median {t['median_ms']} ms, p99 {t['p99_ms']} ms",
                     f"{t['median_ratio']}x / {t['p99_ratio']}x a bare 4 KiB echo's median "
                     f"({t['bare_echo_median_ms']} ms)"))  # fmt: skip
    if "redeploy" in report:
        r = report["redeploy"]
        rows.append(("redeploy", f"{r['requests']} requests, {r['median_redeploy_seconds']} s per update",
                     f"{r['failed']} failed"))  # fmt: skip
    if "health" in report:
        h = report["health"]
        rows.append(("health", f"down after {h['down_after_seconds']} s",
                     f"healthy again after {h['healthy_after_seconds']} s"))  # fmt: skip
    if "idle" in report:
        for n, per in report["idle"]["per_site_mc"].items():
            rows.append(("idle", f"{n} sites: {per['machine_mc']} mc/site (machine)",
                         f"Docker {per['docker_mc']} mc/site, Traefik {per['traefik_mc']} mc/site"))  # fmt: skip
        for n, m in report["idle"].get("metrics_on_off", {}).items():
            per, bound = m["machine_mc_per_site"], m["docker_traefik_metrics_mc_per_site"]
            on_off = f"{per['on']}/{per['off']}/{per['on_again']}"
            rows.append(("idle", f"{n} sites, metrics on/off/on: {on_off} mc/site (machine)",
                         f"metrics cost {m['metrics_cost_mc_per_site']} mc/site; Docker + Traefik + metrics "
                         f"{bound['on']}/{bound['on_again']} mc/site"))  # fmt: skip
    if "metrics" in report:
        m = report["metrics"]
        rows.append(("metrics", f"collector pass over {m['sites']} cgroups: {m['pass_seconds_median']} s "
                     f"({m['cpu_us_per_site']} us CPU/site)",
                     f"{m['millicores_at_60s']} mc at the 60 s period"))  # fmt: skip
    for n, d in report.get("deploy", {}).items():
        rows.append(("deploy", f"one site at {n} sites: {d['seconds_median']} s (median)",
                     f"floor {d['floor_seconds_median']} s + window {d['window_seconds']} s: "
                     f"{d['over_floor_and_window_seconds']:+} s"))  # fmt: skip
    if "fleet" in report:
        f = report["fleet"]
        small = f[f"at_{f['serving']}_sites"]
        for n, level in f["levels"].items():
            cpu = level["cpu_mc"]
            rows.append(("fleet", f"{n} sites: start-up {level['startup_seconds']} s, takeover "
                         f"{level['takeover_seconds']} s, RSS {level['orchestrator_rss_mb']} MB",
                         f"status {small['status_seconds']} -> {level['status_seconds']} s, drift "
                         f"{small['drift_survey_seconds']} -> {level['drift_survey_seconds']} s; machine "
                         f"{cpu['machine_mc']} mc, Traefik {cpu['traefik_mc']} mc"))  # fmt: skip
    if "files" in report:
        rows += files.files_table(report["files"])
    if "databases" in report:
        rows += databases.databases_table(report["databases"])
    if "cluster" in report:
        c = report["cluster"]
        burst = f"burst of {c['sites']} on {c['nodes']} nodes: median {c['burst_seconds_median']} s of {c['runs']}"
        floor = f"{c['ratio_median']}x the floor on the cluster ({c['floor_seconds_median']} s)"
        drained = [d["failed"] for d in c["drains"]]
        rows.append(("cluster", burst, floor))
        rows.append(("cluster", f"orchestrator drain of a worker: median {c['drain_seconds_median']} s",
                     f"requests failed: median {c['drain_failed_median']} {drained}"))  # fmt: skip
    if "https" in report:
        rows += https.https_table(report["https"])
    if "pure" in report:
        p = report["pure"]
        rows.append(("pure", f"json.loads {p['json_loads_us']} us",
                     f"parse {p['parse_event_x']}x, parse+spec {p['parse_and_spec_x']}x"))  # fmt: skip
    width = max((len(r[1]) for r in rows), default=0)
    return "\n".join(f"{name:<9} {left:<{width}}  {right}" for name, left, right in rows)


def revision() -> dict[str, Any]:
    """The commit the run starts from, and whether the tree differs from it."""
    git = ["git", "-C", str(RESULTS.parent)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return {"commit": commit or None, "uncommitted_changes": bool(changed.stdout.strip())}


def save(
    report: dict[str, Any], arguments: argparse.Namespace, started: datetime.datetime, code: dict[str, Any]
) -> Path:
    """The run's report with what it ran, as `bench/results/<UTC start>.json` (or `--json`)."""
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **code,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(arguments).items()},
        "report": report,
    }
    path = arguments.json or RESULTS / f"{started.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--noop", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--levels", default="0,50,100,200", help="idle sites to measure at (the first: none)")
    parser.add_argument("--metrics-levels", default="100,200", help="idle levels measured with metrics off too")
    parser.add_argument("--metrics-sites", type=int, default=1000, help="cgroups of the collector pass")
    parser.add_argument("--fleet", default="1000,10000", help="managed sites of each fleet level")
    parser.add_argument(
        "--keep-fleet", action="store_true", help="keep the fleet's not-serving services (a later run reuses them)"
    )
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each CPU reading")
    parser.add_argument("--files-reads", type=int, default=2000, help="4 KiB files.read round trips timed")
    parser.add_argument("--database-sites", type=int, default=20, help="provisions timed per engine")
    parser.add_argument("--database-pairs", type=int, default=6, help="deploys with a database (and as many without)")
    parser.add_argument("--https-sites", type=int, default=8, help="sites timed from site.created to HTTPS")
    parser.add_argument("--https-idle", type=int, default=50, help="idle sites with certificates (0: skip)")
    parser.add_argument("--handshake-seconds", type=float, default=5.0, help="each handshake reading")
    parser.add_argument("--cluster-runs", type=int, default=3, help="bursts and drains of the cluster section")
    parser.add_argument("--json", type=Path, help=f"write the results here instead of {RESULTS}/<UTC start>.json")
    arguments = parser.parse_args()
    started, code = datetime.datetime.now(datetime.UTC), revision()
    outcome = asyncio.run(main(arguments))
    print(json.dumps(outcome, indent=2))
    print(table(outcome))
    saved = save(outcome, arguments, started, code)
    log(f"results: {saved}")
