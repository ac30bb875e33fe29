"""Draining a node: paused first (nothing new lands there, nothing stops), each site moved with a
start-first restart that must answer, and only then drained."""

from __future__ import annotations

from typing import Any

from orchestrator.commands.drain import Moved, drain
from orchestrator.config import Settings
from orchestrator.sites.protocols import Rollout
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.service import Service
from orchestrator_contract.codes import ErrorCode


class NodeSwarm:
    def __init__(self, sites: list[str], broken: set[str]) -> None:
        self.sites = [Service(id=n, name=n, index=1, labels={}, replicas=1) for n in sites]
        self.broken = broken
        self.calls: list[str] = []
        self.nodes = self  # the swarm's nodes too

    async def set_availability(self, node: str, availability: str) -> None:
        self.calls.append(f"{availability} {node}")

    async def sites_on(self, node: str) -> list[Service]:
        return self.sites

    async def restart(self, current: Service, marker: str) -> Service:
        self.calls.append(f"restart {current.name} ({marker})")
        return current

    async def converge(self, service: Service, rollout: Rollout) -> Ready | Broken:
        self.calls.append(f"converge {service.name}")
        if service.name in self.broken:
            return Broken(ErrorCode.NOT_LISTENING, "nothing answered")
        return Ready(("http://10.0.1.5:80",))


async def test_sites_move_start_first_between_the_pause_and_the_drain() -> None:
    swarm: Any = NodeSwarm(["site_0001", "site_0002"], broken={"site_0002"})
    moved = await drain(swarm, "w1", Settings())
    assert moved == [Moved("site_0001"), Moved("site_0002", "nothing answered")]
    assert swarm.calls[0] == "pause w1" and swarm.calls[-1] == "drain w1"
    assert set(swarm.calls[1:-1]) == {
        "restart site_0001 (drain w1)",
        "converge site_0001",
        "restart site_0002 (drain w1)",
        "converge site_0002",
    }
