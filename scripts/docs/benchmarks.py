"""docs/benchmarks.md from bench/results/*.json: each section's newest run against its goals, and
what each section measures as bench/run.py's docstring says."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from page import GENERATED, ROOT, cell

RESULTS = ROOT / "bench" / "results"
BENCH_RUNNER = ROOT / "bench" / "run.py"

Report = dict[str, Any]


@dataclass(frozen=True)
class Row:
    section: str
    measured: str
    against: str
    goal: str = ""
    met: bool | None = None


def _rows_pure(p: Report) -> Iterator[Row]:
    measured = f"parse an event {p['parse_event_x']}x, parse and build its spec {p['parse_and_spec_x']}x"
    yield Row("pure", measured, f"`json.loads` of the same body ({p['json_loads_us']} µs)")


def _rows_burst(b: Report) -> Iterator[Row]:
    measured = (
        f"{b['sites']} `site.created` until every `site.deployed`: {b['seconds']} s, {b['served_at_result']}/"
        f"{b['sites']} served when their result arrived; peak RSS {b.get('peak_rss_mb', '?')} MB"
    )
    against = (
        f"{b['ratio_to_floor']}x the floor: the same services without a health check created in parallel, "
        f"waited until served through Traefik ({b['floor_seconds']} s)"
    )
    met = b["ratio_to_floor"] <= 1.35 and b["served_at_result"] == b["sites"]
    yield Row("burst", measured, against, "≤ 1.35x, every site served at its result", met)


def _rows_truth(t: Report) -> Iterator[Row]:
    measured = f"{t['false_successes']} false successes of {len(t['cases'])} broken sites"
    corpus = "exit at once, crash after 4 s, wrong port, no `run.sh`, missing image"
    yield Row("truth", measured, corpus, "0", t["false_successes"] == 0)


def _rows_noop(n: Report) -> Iterator[Row]:
    against = (
        f"{n['ratio']}x a bare aio-pika consume → publish (confirm) → ack loop on the same queue types "
        f"({n['bare_loop_per_second']}/s)"
    )
    measured = f"{n['orchestrator_per_second']} redelivered same-version events/s"
    yield Row("no-op", measured, against, "≥ 0.5x", n["ratio"] >= 0.5)


def _rows_terminal(t: Report) -> Iterator[Row]:
    measured = f"a keystroke's echo through the bus: median {t['median_ms']} ms, p99 {t['p99_ms']} ms"
    if "bare_echo_median_ms" not in t:  # runs before the bus's own floor was measured
        yield Row("terminal", measured, f"{t['ratio']}x a bare Docker attach ({t['bare_attach_median_ms']} ms)")
        return
    against = (
        f"{t['median_ratio']}x / {t['p99_ratio']}x a bare 4 KiB request/reply echo's median on the same broker "
        f"({t['bare_echo_median_ms']} ms); a bare Docker attach: {t['bare_attach_median_ms']} ms"
    )
    met = t["median_ratio"] <= 2 and t["p99_ratio"] <= 3
    yield Row("terminal", measured, against, "≤ 2x / ≤ 3x", met)


def _rows_deploy(d: Report) -> Iterator[Row]:
    for sites, one in d.items():
        phases = ", ".join(f"{k} {v} s" for k, v in one["runs"][0]["timeline"].items() if v is not None)
        measured = (
            f"one new site at {sites} sites, event → `site.deployed`: {one['seconds_median']} s (median of "
            f"{len(one['runs'])}; the first: {phases})"
        )
        against = (
            f"the floor {one['floor_seconds_median']} s + the stability window {one['window_seconds']} s: "
            f"{one['over_floor_and_window_seconds']:+} s"
        )
        yield Row("deploy", measured, against, "≤ floor + window", one["over_floor_and_window_seconds"] <= 0)


def _rows_redeploy(r: Report) -> Iterator[Row]:
    measured = (
        f"{r['failed']} failed of {r['requests']} requests through Traefik during 10 updates "
        f"({r['median_redeploy_seconds']} s per update)"
    )
    yield Row("redeploy", measured, "", "0 failed", r["failed"] == 0)


def _rows_health(h: Report, where: str = "health", prefix: str = "") -> Iterator[Row]:
    measured = (
        f"{prefix}a site's server killed: `down` after {h['down_after_seconds']} s, `healthy` again after "
        f"{h['healthy_after_seconds']} s"
    )
    yield Row(where, measured, "", "down ≤ 10 s", h["down_after_seconds"] <= 10)


def _rows_idle(i: Report) -> Iterator[Row]:
    nothing = i["readings_mc"]["0"]["machine_mc"]
    for n, per in i["per_site_mc"].items():
        measured = (
            f"{n} idle serving sites, per site: Docker's daemons {per['docker_mc']} mc, Traefik "
            f"{per['traefik_mc']} mc; the whole machine {per['machine_mc']} mc"
        )
        against = f"the same with no site (the machine: {nothing} mc)"
        if int(n) >= 100:
            met = per["docker_mc"] + per["traefik_mc"] <= 3
            yield Row("idle", measured, against, "Docker + Traefik ≤ 3 mc per site", met)
        else:
            yield Row("idle", measured, against)
    yield from _rows_metrics_idle(i)


def _rows_metrics_idle(i: Report) -> Iterator[Row]:
    for n, m in i.get("metrics_on_off", {}).items():
        per, bound = m["machine_mc_per_site"], m["docker_traefik_metrics_mc_per_site"]
        measured = (
            f"{n} idle serving sites with metrics on (`METRICS_SECONDS` 60), per site: Docker + Traefik + the "
            f"metrics' own cost {bound['on']} mc, {bound['on_again']} mc measured again after; the metrics' "
            f"cost {m['metrics_cost_mc_per_site']} mc (the orchestrator and the broker: "
            f"{m['orchestrator_and_broker_mc']['on']} mc on, {m['orchestrator_and_broker_mc']['off']} mc off)"
        )
        against = (
            f"the same sites with metrics off in between; the whole machine per site on/off/on again: "
            f"{per['on']}/{per['off']}/{per['on_again']} mc"
        )
        met = max(bound.values()) <= 3
        yield Row("idle", measured, against, "Docker + Traefik + metrics ≤ 3 mc per site", met)


def _rows_metrics(m: Report) -> Iterator[Row]:
    measured = (
        f"one collector pass over {m['sites']} real cgroups: {m['pass_seconds_median']} s "
        f"({m['cpu_us_per_site']} µs of CPU per site; the first, finding each cgroup, {m['first_pass_seconds']} s)"
    )
    yield Row("metrics", measured, f"{m['millicores_at_60s']} millicores for the node at the 60 s period")


def _rows_fleet(f: Report) -> Iterator[Row]:
    if "levels" not in f:  # runs before the fleet had levels
        yield from _rows_fleet_level(f, f, f[f"at_{f['serving']}_sites"])
    else:
        for level in f["levels"].values():
            yield from _rows_fleet_level(f, level, f[f"at_{f['serving']}_sites"])
    if "health" in f:
        sites = max((int(n) for n in f.get("levels", {})), default=f.get("sites", 0))
        yield from _rows_health(f["health"], "fleet", f"at {sites} sites, ")


def _rows_fleet_level(f: Report, level: Report, small: Report) -> Iterator[Row]:
    scale = level["sites"] / f["serving"]
    linear = all(level[key] <= small[key] * scale for key in ("status_seconds", "drift_survey_seconds"))
    takeover = f", takeover {level['takeover_seconds']} s" if "takeover_seconds" in level else ""
    cpu = level["cpu_mc"]
    measured = (
        f"{level['sites']} managed sites ({f['serving']} serving): start-up {level['startup_seconds']} s{takeover}, "
        f"`status` {level['status_seconds']} s, drift survey {level['drift_survey_seconds']} s, a deploy "
        f"{level['deploy_seconds_median']} s (median), RSS {level['orchestrator_rss_mb']} MB; the machine "
        f"{cpu['machine_mc']} mc, of it Docker {cpu.get('docker_mc', '?')} mc and Traefik "
        f"{cpu.get('traefik_mc', '?')} mc"
    )
    against = f"at {f['serving']} sites: `status` {small['status_seconds']} s, drift {small['drift_survey_seconds']} s"
    if level["sites"] >= 10_000:
        goal = "start-up, takeover ≤ 10 s; status, drift ≤ 5 s; RSS ≤ 200 MB"
        met = (
            level["startup_seconds"] <= 10
            and level.get("takeover_seconds", 99) <= 10
            and level["status_seconds"] <= 5
            and level["drift_survey_seconds"] <= 5
            and level["orchestrator_rss_mb"] <= 200
        )
    else:
        goal, met = "linear or better; RSS ≤ 150 MB", linear and level["orchestrator_rss_mb"] <= 150
    yield Row("fleet", measured, against, goal, met)


def _rows_files(f: Report) -> Iterator[Row]:
    read, up, down, listing = f["read_4k"], f["upload_50mib"], f["download_50mib"], f["list_10000"]
    yield Row(
        "files",
        f"4 KiB `files.read` round trip: median {read['median_ms']} ms, p99 {read['p99_ms']} ms",
        f"{read['median_ratio']}x / {read['p99_ratio']}x a bare request/reply echo of 4 KiB in base64 JSON "
        f"({read['bare_median_ms']} / {read['bare_p99_ms']} ms)",
        "≤ 1.15x / ≤ 1.5x",
        read["median_ratio"] <= 1.15 and read["p99_ratio"] <= 1.5,
    )
    yield Row(
        "files",
        f"50 MiB upload: {up['mib_per_s']} MiB/s",
        f"{up['ratio']}x bare chunked publishing as base64 JSON ({up['bare_mib_per_s']} MiB/s); "
        f"{up['ratio_to_raw']}x of raw bytes ({up['bare_raw_mib_per_s']} MiB/s)",
        "≥ 0.5x",
        up["ratio"] >= 0.5,
    )
    yield Row(
        "files",
        f"50 MiB download: {down['mib_per_s']} MiB/s; RSS +{f['rss_growth_mb_during_transfers']} MB",
        f"{down['ratio']}x the bare server sending the same base64 JSON chunks ({down['bare_mib_per_s']} MiB/s)",
        "≥ 0.5x",
        down["ratio"] >= 0.5,
    )
    yield Row(
        "files",
        f"10,000 entries listed in {listing['seconds']} s ({listing['pages']} pages)",
        f"{listing['ratio']}x a local scandir + lstat ({listing['local_seconds']} s)",
    )


def _rows_databases(d: Report) -> Iterator[Row]:
    for kind in ("postgres", "mysql"):
        p = d[kind]
        yield Row(
            "databases",
            f"a {kind} site database provisioned: median {p['median_ms']} ms, p99 {p['p99_ms']} ms "
            f"({p['sites']} sites)",
            f"{p['ratio']}x a bare `CREATE ROLE` + `CREATE DATABASE` by the same driver ({p['floor']['median_ms']} ms)",
        )
    deploy = d["deploy"]
    extra = ", ".join(f"{kind} +{ms} ms" for kind, ms in deploy["extra_ms"].items())
    yield Row(
        "databases",
        f"a deploy with a database: {extra} (medians of {deploy['pairs']} each)",
        f"the same deploy without one, alternating ({deploy['without_seconds_median']} s)",
    )


def _rows_https(h: Report) -> Iterator[Row]:
    c = h["created"]
    measured = (
        f"`site.created` until the first verified HTTPS answer: median {c['https_seconds_median']} s, max "
        f"{c['https_seconds_max']} s ({c['sites']} sites one after another); {c['served_at_result']}/{c['sites']} "
        "served at their `site.deployed`"
    )
    against = f"{c['ratio']}x the first plain HTTP answer of the same sites ({c['http_seconds_median']} s)"
    within = c["https_seconds_max"] <= 30 and c["served_at_result"] == c["sites"]
    yield Row("https", measured, against, "≤ 30 s, served at the result", within)
    s = h["handshake"]
    yield Row(
        "https",
        f"{s['traefik_per_second']} full TLS handshakes/s through Traefik ({s['client_threads']} clients)",
        f"{s['ratio']}x a bare TLS server with the same certificate (nginx: {s['bare_per_second']}/s)",
    )
    idle = h.get("idle")
    if idle:
        nothing = idle["readings_mc"]["0"]["machine_mc"]
        for n, per in idle["per_site_mc"].items():
            measured = (
                f"{n} idle serving sites with certificates, per site: Docker's daemons {per['docker_mc']} mc, "
                f"Traefik {per['traefik_mc']} mc; the whole machine {per['machine_mc']} mc"
            )
            met = per["docker_mc"] + per["traefik_mc"] <= 3
            against = f"the same with no site (the machine: {nothing} mc)"
            yield Row("https", measured, against, "Docker + Traefik ≤ 3 mc per site", met)


def _rows_cluster(c: Report) -> Iterator[Row]:
    burst = (
        f"burst of {c['sites']} on {c['nodes']} nodes: median {c['burst_seconds_median']} s of {c['runs']} runs, "
        f"served at result {c['served_at_result']}"
    )
    yield Row("cluster", burst, f"{c['ratio_median']}x the floor on the same cluster ({c['floor_seconds_median']} s)")
    failed = [d["failed"] for d in c["drains"]]
    drain = (
        f"`orchestrator drain` of a worker under a request loop: {failed} failed of "
        f"{[d['requests'] for d in c['drains']]} requests; median {c['drain_seconds_median']} s"
    )
    yield Row("cluster", drain, "", "0 failed", not any(failed))


# Each section of a run's report, in the order the page shows them: its rows, with their goals.
SECTIONS: dict[str, Callable[[Report], Iterator[Row]]] = {
    "burst": _rows_burst,
    "truth": _rows_truth,
    "noop": _rows_noop,
    "redeploy": _rows_redeploy,
    "health": _rows_health,
    "terminal": _rows_terminal,
    "idle": _rows_idle,
    "deploy": _rows_deploy,
    "fleet": _rows_fleet,
    "files": _rows_files,
    "metrics": _rows_metrics,
    "databases": _rows_databases,
    "https": _rows_https,
    "cluster": _rows_cluster,
    "pure": _rows_pure,
}


def newest_runs(results: Path) -> dict[str, tuple[str, Report, Report]]:
    """Each section's newest run: the file's name, the run's record, the section's report."""
    newest: dict[str, tuple[str, Report, Report]] = {}
    for path in sorted(results.glob("*.json")):
        run = json.loads(path.read_text())
        for section, report in run.get("report", {}).items():
            newest[section] = (path.name, run, report)
    return newest


def section_descriptions() -> list[tuple[str, str]]:
    """What each section measures, as bench/run.py's docstring says."""
    doc = ast.get_docstring(ast.parse(BENCH_RUNNER.read_text())) or ""
    described: list[tuple[str, str]] = []
    for line in doc.splitlines():
        if match := re.match(r"^([a-z-]+)\s{2,}(\S.*)$", line):
            described.append((match[1], match[2]))
        elif described and line.startswith(" ") and line.strip():
            described[-1] = (described[-1][0], f"{described[-1][1]} {line.strip()}")
    return described


def benchmarks_page() -> str:
    newest = newest_runs(RESULTS)
    out = [
        GENERATED.format(source="the newest run of each section in bench/results/"),
        "",
        "# Benchmarks",
        "",
        "`make bench` runs `bench/run.py` on the local stack with the production defaults, then the cluster",
        "section (`make bench-cluster`: the manager and the test cluster's two workers). It is on demand,",
        "never in CI. Each figure is set against a floor measured in the same run (a bare parallel create",
        "until served, a bare aio-pika loop on the same queue types, a bare request/reply echo, a bare",
        "Docker attach): these machines are noisy, so compare ratios, not absolute numbers. Every run",
        "writes `bench/results/<UTC start>.json`; `make docs` turns the newest run of each section into",
        "the table below. `bench/run.py --only SECTION,...` runs a part.",
        "",
        "## What each section measures",
        "",
        "| section | measures |",
        "| --- | --- |",
    ]
    out += [f"| {name} | {cell(text)} |" for name, text in section_descriptions()]
    out += ["", "## Latest results", ""]
    if not newest:
        return "\n".join([*out, "No results yet: run `make bench`.", ""])
    out += ["| section | measured | against | goal | met |", "| --- | --- | --- | --- | --- |"]
    runs: dict[str, Report] = {}
    for section, rows in SECTIONS.items():
        if section not in newest:
            continue
        name, run, report = newest[section]
        runs[name] = run
        for row in rows(report):
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            out.append(f"| {row.section} | {cell(row.measured)} | {cell(row.against)} | {row.goal} | {met} |")
    out += ["", "From:", ""]
    for name, run in sorted(runs.items()):
        machine = run.get("machine", {})
        commit = (run.get("commit") or "?")[:10]
        if run.get("uncommitted_changes"):
            commit += " with uncommitted changes"
        sections = ", ".join(s for s in SECTIONS if s in run.get("report", {}))
        where = f"[`bench/results/{name}`](../bench/results/{name})"
        machine_text = f"{machine.get('cpus', '?')} CPUs, kernel {machine.get('kernel', '?')}"
        out.append(f"- {where}: {sections}; commit {commit}, {machine_text}")
    return "\n".join(out) + "\n"
