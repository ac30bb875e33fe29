"""The databases section of the benchmark (`bench/run.py --only databases`): what a site's database
costs, on the local stack's PostgreSQL and MariaDB.

- provisioning: `Engine.provision` of a new site database (group role or users, database, grants,
  limits, the login enabled with a SCRAM verifier or native hash), one site after another, against
  the floor: the same driver's bare `CREATE ROLE ... LOGIN PASSWORD` (MariaDB: `CREATE USER`) and
  `CREATE DATABASE` as the same admin in the same run; median and p99 per site, each engine.
- deploy latency: `site.created` until `site.deployed`, one site at a time, with and without a
  database (alternating, so the machine's drift weighs on both alike); the extra latency a
  database adds is the difference of the medians.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import aiomysql
import asyncpg
from common import Bench, host, log, page

from harness.databases import SERVERS, engine
from harness.director import site_event, write_site
from orchestrator.databases.engines import admin_password
from orchestrator.sites.databases import logins, new_password

FLOOR_SITE, PROVISIONED_SITE, DEPLOYED_SITE = 8700, 8750, 8800  # of the benchmark's 8000-8999
KINDS = ("postgres", "mysql")


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


async def _floor_postgres(sites: list[int]) -> list[float]:
    server = SERVERS["postgres"]
    connection = await asyncpg.connect(
        host=server.host, port=server.port, user=server.admin_user, password=admin_password(server), database="postgres"
    )
    times = []
    try:
        for site_id in sites:
            name, (user, _) = f"site_{site_id:04d}", logins(site_id)
            started = time.perf_counter()
            await connection.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{new_password()}'")
            await connection.execute(f'CREATE DATABASE "{name}"')
            times.append(time.perf_counter() - started)
    finally:
        await connection.close()
    return times


async def _floor_mysql(sites: list[int]) -> list[float]:
    server = SERVERS["mysql"]
    connection = await aiomysql.connect(
        host=server.host, port=server.port, user=server.admin_user, password=admin_password(server), autocommit=True
    )
    times = []
    try:
        async with connection.cursor() as cursor:
            for site_id in sites:
                name, (user, _) = f"site_{site_id:04d}", logins(site_id)
                started = time.perf_counter()
                await cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{new_password()}'")
                await cursor.execute(f"CREATE DATABASE `{name}`")
                times.append(time.perf_counter() - started)
    finally:
        connection.close()
    return times


async def provisioning(kind: str, count: int) -> dict[str, Any]:
    floor_sites = list(range(FLOOR_SITE, FLOOR_SITE + count))
    sites = list(range(PROVISIONED_SITE, PROVISIONED_SITE + count))
    held = engine(kind, timeout=30, limit=20)
    try:
        await _drop(held, floor_sites + sites)
        await held.held()  # the admin's pool is open before anything is timed
        floor = await (_floor_postgres if kind == "postgres" else _floor_mysql)(floor_sites)
        times = []
        for site_id in sites:
            started = time.perf_counter()
            await held.provision(site_id, logins(site_id)[0], new_password(), fresh=True)
            times.append(time.perf_counter() - started)
        ours, bare = _ms(times), _ms(floor)
        return {
            "sites": count,
            **ours,
            "floor": bare,
            "ratio": round(ours["median_ms"] / bare["median_ms"], 2),
        }
    finally:
        await _drop(held, floor_sites + sites)
        await held.close()


async def _drop(held: Any, sites: list[int]) -> None:
    for site_id in sites:
        await held.drop(site_id)


async def deploy_latency(bench: Bench, pairs: int) -> dict[str, Any]:
    """`site.created` until `site.deployed`, alternating a site without a database and one with
    (PostgreSQL and MariaDB in turn)."""
    bare: list[float] = []
    with_database: dict[str, list[float]] = {kind: [] for kind in KINDS}
    sites = list(range(DEPLOYED_SITE, DEPLOYED_SITE + 2 * pairs))
    try:
        for n, site_id in enumerate(sites):
            kind = KINDS[(n // 2) % 2] if n % 2 else None
            write_site(bench.root, site_id, page=page(site_id))
            event = site_event("site.created", site_id, 1, domains=[host(site_id)])
            if kind is not None:
                event["site"]["database"] = {"kind": kind}
            started = time.monotonic()
            await bench.director.publish(event)
            result = await bench.results.wait_for(event["event_id"], timeout=300)
            assert result.type == "site.deployed", result
            (bare if kind is None else with_database[kind]).append(time.monotonic() - started)
    finally:
        for kind in KINDS:
            held = engine(kind)
            try:
                await _drop(held, sites)
            finally:
                await held.close()
    without = statistics.median(bare)
    extra = {kind: round((statistics.median(times) - without) * 1000) for kind, times in with_database.items()}
    return {
        "pairs": pairs,
        "without_seconds_median": round(without, 2),
        "with_seconds_median": {kind: round(statistics.median(times), 2) for kind, times in with_database.items()},
        "extra_ms": extra,
    }


async def databases_section(bench: Bench, count: int, pairs: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for kind in KINDS:
        log(f"databases: {count} {kind} provisions against bare CREATE ROLE + CREATE DATABASE")
        report[kind] = await provisioning(kind, count)
    log(f"databases: {pairs} deploys with a database and {pairs} without, alternating")
    report["deploy"] = await deploy_latency(bench, pairs)
    return report


def databases_table(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = [
        (
            "database",
            f"{kind} provision median {r['median_ms']} ms, p99 {r['p99_ms']} ms",
            f"{r['ratio']}x bare CREATE ROLE + CREATE DATABASE ({r['floor']['median_ms']} ms)",
        )
        for kind, r in report.items()
        if kind in KINDS
    ]
    d = report["deploy"]
    rows.append(
        (
            "database",
            f"deploy with a database: +{d['extra_ms']['postgres']} ms (postgres), +{d['extra_ms']['mysql']} ms (mysql)",
            f"over {d['without_seconds_median']} s without (medians of {d['pairs']})",
        )
    )
    return rows
