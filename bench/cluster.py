"""The cluster figures (`make bench-cluster`: the local stack's manager and the test cluster's two
workers, scripts/cluster.sh): a burst on three nodes against the swarm's own parallel create of the
same services on the same cluster, and `orchestrator drain` of a worker under a request loop
(requests failed: goal 0). Each repeated; the medians go to bench/results/."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any

import deploys
import httpx
from common import API, TRAEFIK, Bench, host, log, page, wipe

SITE_NODE_LABEL = "director.sites"  # the bench orchestrator's default, on every node of the cluster


def site_nodes() -> dict[str, str]:
    """Node id -> host name of the ready, active nodes sites may run on."""
    return {
        n["ID"]: n["Description"]["Hostname"]
        for n in API.nodes()
        if n["Status"]["State"] == "ready"
        and n["Spec"].get("Availability") == "active"
        and n["Spec"].get("Labels", {}).get(SITE_NODE_LABEL) == "true"
    }


def placement(sites: list[int]) -> dict[str, int]:
    """How many of the sites' running tasks each node holds."""
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in API.nodes()}
    counts: Counter[str] = Counter()
    for site_id in sites:
        tasks = API.tasks(filters={"service": f"site_{site_id:04d}", "desired-state": "running"})
        counts.update(nodes.get(t["NodeID"], "?") for t in tasks if t["Status"]["State"] == "running")
    return dict(sorted(counts.items()))


def set_availability(node: str, availability: str) -> None:
    raw = API.inspect_node(node)
    API.update_node(raw["ID"], raw["Version"]["Index"], {**raw["Spec"], "Availability": availability})


async def drain_under_load(bench: Bench, sites: list[int], node: str) -> dict[str, Any]:
    """`orchestrator drain NODE` while every site is visited in a loop; the node is made active again."""
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def visitor(first: int) -> None:
        turn = first
        async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
            while not stop.is_set():
                site_id = sites[turn % len(sites)]
                turn += 1
                try:
                    response = await client.get("/", headers={"Host": host(site_id)})
                    ok = response.status_code == 200 and page(site_id) in response.text
                    outcomes["ok" if ok else str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                await asyncio.sleep(0.02)

    on_node = placement(sites).get(node, 0)
    visiting = asyncio.gather(*(visitor(i) for i in range(6)))
    await asyncio.sleep(1)
    started = time.monotonic()
    done = await asyncio.to_thread(bench.process.cli, "drain", node)
    took = time.monotonic() - started
    await asyncio.sleep(3)  # the old tasks stop meanwhile
    stop.set()
    await visiting
    set_availability(node, "active")
    assert done.returncode == 0, done.stdout + done.stderr
    failed = sum(n for k, n in outcomes.items() if k != "ok")
    return {"node": node, "sites_on_node": on_node, "seconds": round(took, 1), "requests": sum(outcomes.values()),
            "failed": failed}  # fmt: skip


async def cluster_section(bench: Bench, sites: list[int], runs: int) -> dict[str, Any]:
    nodes = site_nodes()
    if len(nodes) < 3:
        raise SystemExit(f"the cluster figures need 3 site nodes, found {sorted(nodes.values())}: make cluster-up")
    bursts, drains, placements = [], [], []
    for run in range(runs):
        log(f"cluster {run + 1}/{runs}: burst of {len(sites)} on {len(nodes)} nodes, and its floor")
        burst = await deploys.burst_section(bench, sites)
        placements.append(placement(sites))
        bursts.append(burst)
        worker = sorted(h for h in nodes.values() if h != API.info()["Name"])[run % 2]
        log(f"cluster {run + 1}/{runs}: orchestrator drain {worker} under a request loop")
        drains.append(await drain_under_load(bench, sites, worker))
        wipe()
    return {
        "nodes": len(nodes),
        "sites": len(sites),
        "runs": runs,
        "burst_seconds_median": statistics.median(b["seconds"] for b in bursts),
        "floor_seconds_median": statistics.median(b["floor_seconds"] for b in bursts),
        "ratio_median": statistics.median(b["ratio_to_floor"] for b in bursts),
        "served_at_result": [b["served_at_result"] for b in bursts],
        "placement": placements,
        "drain_failed_median": statistics.median(d["failed"] for d in drains),
        "drain_seconds_median": statistics.median(d["seconds"] for d in drains),
        "bursts": bursts,
        "drains": drains,
    }
