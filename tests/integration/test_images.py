"""Custom images for real: Director asks for a recipe, the orchestrator builds it (offline, from
the local package repository), pushes it to the local registry, and a `site.updated` naming it
serves what only that image has, through Traefik."""

from __future__ import annotations

from pathlib import Path

import docker
from support import (
    DeadLetters,
    Director,
    Results,
    deploy,
    reason,
    registry_tags,
    served,
    site_event,
    write_jq_site,
)

from orchestrator.config import Settings

REGISTRY = Settings().registry


async def test_a_built_image_is_pushed_and_a_site_updated_to_it_serves_what_only_it_has(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    recipe = {"parent": "director/base:latest", "packages": ["jq"]}
    built = await deploy(director, results, site_event("site.image_requested", site_id, 1, image=recipe))

    assert built.type == "site.image_built", built
    assert built.image is not None and built.image.startswith(f"{REGISTRY}/site_{site_id:04d}:1@sha256:")
    assert registry_tags(site_id) == ["1"]
    write_jq_site(sites_root, site_id)
    host = f"img{site_id}.example.com"
    image = {"name": built.image, "custom": True}
    result = await deploy(director, results, site_event("site.created", site_id, 1, domains=[host], image=image))

    assert result.type == "site.deployed", result
    await served(host, f"made by jq for site {site_id}")
    spec = api.inspect_service(f"site_{site_id:04d}")["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["Image"] == built.image

    # Newer versions built but not deployed: the one the site runs is kept past IMAGE_KEEP (3), or
    # the swarm could not start its task again on another node.
    for version in (2, 3, 4, 5):
        newer = await deploy(director, results, site_event("site.image_requested", site_id, version, image=recipe))
        assert newer.type == "site.image_built", newer
    assert registry_tags(site_id) == ["1", "3", "4", "5"]

    # A deleted site's images go with it: a site made again under its id starts with none.
    removed = await deploy(director, results, site_event("site.deleted", site_id, 6))
    assert removed.type == "site.removed", removed
    assert registry_tags(site_id) == []


async def test_the_same_request_again_reuses_the_image_and_old_versions_are_deleted(
    director: Director, results: Results, site_id: int
) -> None:
    images = []
    for version in (1, 2, 3, 4):
        built = await deploy(director, results, site_event("site.image_requested", site_id, version))
        assert built.type == "site.image_built", built
        images.append(built.image)
    again = await deploy(director, results, site_event("site.image_requested", site_id, 4))
    older = await deploy(director, results, site_event("site.image_requested", site_id, 1))

    assert again.type == "site.image_built" and again.image == images[-1]  # not built twice
    assert len(set(images)) == 4  # every version its own image: deleting one never takes another
    assert registry_tags(site_id) == ["2", "3", "4"]  # IMAGE_KEEP (3)
    assert older.type == "site.stale" and older.applied_version == 4


async def test_a_package_name_that_is_no_name_is_refused_and_nothing_is_built(
    director: Director, results: Results, dead_letters: DeadLetters, site_id: int
) -> None:
    recipe = {"parent": "director/base:latest", "packages": ["jq;touch /x"]}
    event = site_event("site.image_requested", site_id, 1, image=recipe)

    result = await deploy(director, results, event)

    assert result.type == "site.failed" and result.error is not None, result
    assert (result.error.code, result.error.retryable) == ("invalid_event", False)
    assert "image.packages" in result.error.message
    letter = (await dead_letters.collect({event["event_id"]}))[event["event_id"]]
    assert reason(letter) == "invalid_event"
    assert registry_tags(site_id) == []


async def test_a_package_the_repository_lacks_fails_the_build_and_is_named(
    director: Director, results: Results, site_id: int
) -> None:
    recipe = {"parent": "director/base:latest", "packages": ["jq", "no-such-package"]}

    result = await deploy(director, results, site_event("site.image_requested", site_id, 1, image=recipe))

    assert result.type == "site.failed" and result.error is not None, result
    assert (result.error.code, result.error.retryable) == ("image_build_failed", False)
    assert result.error.message.endswith("the site package repository has no no-such-package"), result.error.message
    assert registry_tags(site_id) == []
