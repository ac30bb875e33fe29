"""Tenants on the network (finding 5): from inside a site, the other sites' task addresses and
Traefik (its API and its entrypoint) are unreachable on the sites network once the network guard
runs, for sites started before it and after it, and for a site whose image claims to be the edge;
every site is still served through Traefik.

The guard runs here as it does on a production node (`orchestrator netguard`, alone); the test
orchestrators leave the network alone (ORCHESTRATOR_NETWORK_GUARD=false), and the network's filter
is put back as it was found."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, cast

import docker
from support import (
    Director,
    OrchestratorProcess,
    Results,
    deploy,
    fresh_site_id,
    served,
    site_event,
    write_site,
)
from support.network import address, answers, database_answers, filter_restored, guarding, node_chain_removed

from orchestrator.config import Settings
from orchestrator_contract.sites import service_name

PORT = Settings().site_port
NETWORK = Settings().network


def task_container(api: docker.APIClient, site_id: int) -> dict[str, Any]:
    (container,) = api.containers(filters={"label": f"com.docker.swarm.service.name={service_name(site_id)}"})
    return cast(dict[str, Any], container)


def edge_claiming_image(api: docker.APIClient, site_id: int) -> str:
    """`REGISTRY/site_NNNN:edge`: the base image with `LABEL director.edge=true`, in the site's own
    namespace of the registry (as a site owner may push one)."""
    repository, tag = f"{Settings().registry}/{service_name(site_id)}", "edge"
    dockerfile = io.BytesIO(b"FROM director/base:latest\nLABEL director.edge=true\n")
    for _ in api.build(fileobj=dockerfile, tag=f"{repository}:{tag}", network_mode="none", rm=True, decode=True):
        pass
    for line in api.push(repository, tag, stream=True, decode=True):
        assert "error" not in line, line
    return f"{repository}:{tag}"


async def test_a_site_reaches_no_other_site_and_not_traefik_yet_every_site_is_served(
    director: Director,
    results: Results,
    sites_root: Path,
    api: docker.APIClient,
    orchestrator: OrchestratorProcess,
    tmp_path: Path,
) -> None:
    first, second, later = fresh_site_id(), fresh_site_id(), fresh_site_id()
    # Site A runs an image of its own that claims to be the edge: a site's task never is one.
    spoofing = await asyncio.to_thread(edge_claiming_image, api, first)

    async def create(site_id: int, image: str | None = None) -> dict[str, Any]:
        write_site(sites_root, site_id, page=f"tenant {site_id}")
        custom = {"name": image, "custom": True} if image else None
        event = site_event("site.created", site_id, 1, domains=[f"net{site_id}.example.com"], image=custom)
        assert (await deploy(director, results, event)).type == "site.deployed"
        return task_container(api, site_id)

    a, b = await asyncio.gather(create(first, spoofing), create(second))
    assert api.inspect_container(a["Id"])["Config"]["Labels"]["director.edge"] == "true"
    (traefik,) = api.containers(filters={"name": "director-traefik"})
    a_ip, b_ip, traefik_ip = (address(api, container, NETWORK) for container in (a, b, traefik))
    # Without the guard the probe does reach a neighbour: what follows is the guard's doing. (The
    # node's own ports are not asked first: the production stack's netguard, which the stack
    # tests run beside this one, may have closed them already.)
    registry_host, _, registry_port = Settings().registry.split("/")[0].partition(":")
    assert await asyncio.to_thread(answers, api, a, b_ip, PORT)

    namespace = Settings().netns_dir / f"1-{api.inspect_network(NETWORK)['Id'][:10]}"
    with filter_restored(namespace), node_chain_removed(), guarding(orchestrator.env, tmp_path / "netguard.log"):
        c = await create(later)  # a site started while the guard runs is closed in as well
        c_ip = address(api, c, NETWORK)
        probes = {
            f"site A -> site B {b_ip}:{PORT}": (a, b_ip, PORT),
            f"site B -> site A {a_ip}:{PORT}": (b, a_ip, PORT),
            f"site C (started after the guard) -> site A {a_ip}:{PORT}": (c, a_ip, PORT),
            f"site A -> site C {c_ip}:{PORT}": (a, c_ip, PORT),
            f"site A -> Traefik's API {traefik_ip}:8080": (a, traefik_ip, 8080),
            f"site A -> Traefik's entrypoint {traefik_ip}:80": (a, traefik_ip, 80),
            f"site A -> the node's registry {registry_host}:{registry_port}": (a, registry_host, int(registry_port)),
            f"site B -> the node's swarm port {registry_host}:2377": (b, registry_host, 2377),
        }
        reached = await asyncio.gather(*(asyncio.to_thread(answers, api, *probe) for probe in probes.values()))
        assert not any(reached), {name: "REACHED" for name, ok in zip(probes, reached, strict=True) if ok}
        # The one way onto the node: its database servers' ports (what a login may do there is the
        # servers' own business: tests/integration/test_database_engines.py).
        for server in Settings().database_servers:
            host, port = server.site_host or server.host, server.site_port or server.port
            assert await asyncio.to_thread(database_answers, api, c, host, port), (
                f"site C -> {server.name} {host}:{port}"
            )
        # Traefik still opens connections to every site, and a site still reaches itself.
        for site_id in (first, second, later):
            await served(f"net{site_id}.example.com", f"tenant {site_id}")
        assert await asyncio.to_thread(answers, api, a, a_ip, PORT)
