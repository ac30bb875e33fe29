"""A default image runs the bytes the operator pinned (round four, item 8): the default images came
from our registry but by tag, so whoever moved the tag there (a holder of the registry's
credential, or a mistake) changed what every new site and every rescheduled task ran, with sites'
files mounted. Now the settings name each default image in full and by digest
(`<registry>/<name>:<tag>@sha256:<digest>`, written by scripts/stack-up.sh and scripts/stack.sh
after they push), `orchestrator run` refuses to start with one that is not, and a moved tag
changes nothing: a new site and a task restarted on a node that no longer holds the image both run
the pinned image, pulled by its digest.

The image is this run's own repository (a copy of director/base), never the shared
director/base:latest every other test runs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
import requests
from support import (
    ROOT,
    Director,
    Results,
    Running,
    deploy,
    eventually,
    orchestrator_env,
    registry_auth,
    scope,
    served,
    site_event,
    stack_running,
    write_site,
)

from orchestrator.config import Settings
from orchestrator_contract.sites import service_name

REGISTRY = Settings().registry_api_url.split("//", 1)[1].rstrip("/")  # the local stack's, 198.18.213.1:5000
REPOSITORY, TAG = f"director/pinned-{scope.NAME}", "latest"
TAGGED = f"{REGISTRY}/{REPOSITORY}:{TAG}"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
APPROVED, OTHER = "director/base:latest", "nginx:latest"  # what the operator pinned; what the tag moves to


def registry_digest() -> str:
    """The digest the registry holds under the tag now."""
    response = requests.head(
        f"http://{REGISTRY}/v2/{REPOSITORY}/manifests/{TAG}",
        headers={"Accept": MANIFEST},
        auth=registry_auth(),
        timeout=10,
    )
    assert response.status_code == 200, response.status_code
    return response.headers["Docker-Content-Digest"]


def push(api: docker.APIClient, image: str) -> str:
    """`image` pushed under the tag: the registry's digest of it."""
    api.tag(image, f"{REGISTRY}/{REPOSITORY}", TAG)
    errors = [line for line in api.push(f"{REGISTRY}/{REPOSITORY}", TAG, stream=True, decode=True) if "error" in line]
    assert not errors, errors
    return registry_digest()


def the_sites_containers(api: docker.APIClient, site_id: int) -> list[dict]:  # type: ignore[type-arg]
    running = api.containers(filters={"label": f"com.docker.swarm.service.name={service_name(site_id)}"})
    return [api.inspect_container(container["Id"]) for container in running]


@pytest.fixture(scope="module")
def pinned() -> Iterator[str]:
    """This run's default image, pushed and pinned as the operator's scripts do."""
    api = docker.APIClient()
    digests = [push(api, APPROVED)]
    try:
        yield f"{TAGGED}@{digests[0]}"
    finally:
        digests.append(registry_digest())
        for digest in dict.fromkeys(digests):  # the repository's manifests (the images' blobs are shared)
            requests.delete(f"http://{REGISTRY}/v2/{REPOSITORY}/manifests/{digest}", auth=registry_auth(), timeout=10)
        for reference in (TAGGED, *(f"{REGISTRY}/{REPOSITORY}@{digest}" for digest in digests)):
            try:
                api.remove_image(reference)  # a name only: the images stay
            except docker.errors.NotFound:
                pass


@pytest.fixture(scope="module")
async def stack(pinned: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    settings = {"default_image": pinned, "allowed_default_images": pinned}
    async with stack_running("default-pin", tmp_path_factory.mktemp("pin-logs"), **settings) as running:
        yield running


def test_an_orchestrator_with_a_default_image_by_tag_refuses_to_start(tmp_path: Path) -> None:
    env = orchestrator_env("no-such-vhost", tmp_path, default_image=TAGGED, allowed_default_images=TAGGED)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 78, (run.returncode, run.stderr[-2000:])
    assert "pinned by digest" in run.stderr and f"DEFAULT_IMAGE={TAGGED!r}" in run.stderr, run.stderr[-2000:]
    assert time.monotonic() - started < 30  # before any connection is tried


async def test_a_moved_tag_changes_nothing_a_new_site_or_a_restarted_task_runs(
    stack: Running, pinned: str, director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    api = stack.api
    approved = api.inspect_image(APPROVED)["Id"]
    # The attack: the registry's tag now names other bytes, and this node no longer holds the
    # pinned reference, so a task start must go to the registry.
    digest = pinned.rsplit("@", 1)[1]
    assert push(api, OTHER) != digest
    api.remove_image(f"{REGISTRY}/{REPOSITORY}@{digest}")

    write_site(sites_root, site_id, page="pinned")
    # Director names the default image by its name and tag, as it always has.
    event = site_event("site.created", site_id, 1, image={"name": f"{REPOSITORY}:{TAG}", "custom": False})
    result = await deploy(director, results, event)
    assert result.type == "site.deployed", result
    (first,) = the_sites_containers(api, site_id)
    assert (first["Image"], first["Config"]["Image"]) == (approved, pinned)
    await served(f"site{site_id}.test.example.com", "pinned")

    # The task's container dies on a node that again lacks the pinned reference: Swarm starts
    # another task from the spec, after its restart delay.
    api.remove_image(f"{REGISTRY}/{REPOSITORY}@{digest}")
    api.kill(first["Id"])
    await eventually(lambda: [c["Id"] for c in the_sites_containers(api, site_id)] not in ([], [first["Id"]]), 30)
    (second,) = the_sites_containers(api, site_id)
    assert (second["Image"], second["Config"]["Image"]) == (approved, pinned)
    assert api.inspect_image(OTHER)["Id"] not in (first["Image"], second["Image"])
