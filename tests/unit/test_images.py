"""Site images from a recipe: the contract's package names, what policy admits, the generated
Dockerfile, which old tags go, and the handler's answers over an in-memory registry."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import docker.errors
import pytest
from fakes import BASE, PINNED, FakeImages, FakeRoutes, FakeSiteDirs, FakeSwarm

from orchestrator.bus.decoding import parse_event
from orchestrator.config import Settings
from orchestrator.errors import ImageBuildFailed, ImageNotAllowed, InvalidEvent
from orchestrator.sites import admission
from orchestrator.sites.handlers import Context, dispatch
from orchestrator.sites.images import (
    admit_build,
    dockerfile,
    log_tail,
    missing_packages,
    newest_tag,
    tags_in_use,
    tags_to_delete,
)
from orchestrator.slices import Admission
from orchestrator.swarm.builds import _check_tools_image
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.sites import Image, ImageRecipe, SiteImageRequested

REPOSITORY = "198.18.213.1:5000/sites/site_0042"


def event(packages: Any = ("jq",), version: int = 3, parent: str = "director/base:latest") -> bytes:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "site.image_requested",
        "occurred_at": datetime.now(UTC).isoformat(),
        "version": version,
        "site": {"id": 42},
        "image": {"parent": parent, "packages": list(packages)},
    }
    return json.dumps(body).encode()


def request(packages: Any = ("jq",), version: int = 3, parent: str = "director/base:latest") -> SiteImageRequested:
    parsed = parse_event(event(packages, version, parent), "site.image_requested")
    assert isinstance(parsed, SiteImageRequested)
    return parsed


@pytest.mark.parametrize("name", ["jq", "libc6", "g++", "python3.11", "libstdc++6", "a" * 63, "0ad"])
def test_debian_package_names_are_accepted(name: str) -> None:
    assert request([name]).image.packages == [name]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Jq",
        "-jq",
        ".jq",
        "jq;rm -rf /",
        "jq && id",
        "$(id)",
        "`id`",
        "jq\nRUN id",
        "jq=1.6",
        "jq/x",
        "a" * 64,
        "jq ",
        "../jq",
        "jq'",
        'jq"',
        "jq|x",
        "jq>x",
        "*",
        "jq_1",
        "ünï",
    ],
)
def test_anything_but_a_package_name_is_an_invalid_event(name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event([name]), "site.image_requested")
    assert "image.packages" in caught.value.message
    assert caught.value.site_id == 42  # so the owner hears it


def test_setup_commands_are_not_part_of_the_contract() -> None:
    # Unknown fields are ignored (Director may add fields): a "setup" never reaches a build.
    recipe = ImageRecipe.model_validate({"parent": "director/base:latest", "packages": [], "setup": ["id"]})
    assert not hasattr(recipe, "setup")
    assert "setup" not in dockerfile(admit_build(42, 1, recipe, Admission.of(Settings())))


def test_the_parent_must_be_an_allowed_default_image() -> None:
    with pytest.raises(ImageNotAllowed):
        admit_build(42, 1, request(parent="evil.io/x:1").image, Admission.of(Settings()))
    assert admit_build(42, 1, request(parent="director/base").image, Admission.of(Settings(**PINNED))).parent == BASE


def test_packages_are_bounded_by_the_setting_and_counted_once() -> None:
    settings = Settings(max_image_packages=2)
    assert admit_build(42, 1, request(["jq", "tree", "jq"]).image, Admission.of(settings)).packages == ("jq", "tree")
    with pytest.raises(ImageNotAllowed):
        admit_build(42, 1, request(["jq", "tree", "sqlite3"]).image, Admission.of(settings))
    with pytest.raises(InvalidEvent):  # the contract's own ceiling
        parse_event(event([f"p{i}" for i in range(257)]), "site.image_requested")


def test_the_image_lands_in_the_sites_own_namespace_which_policy_admits() -> None:
    settings = Settings()
    build = admit_build(42, 7, request().image, Admission.of(settings))
    assert build.reference == f"{REPOSITORY}:7"
    pinned = f"{build.reference}@sha256:{'a' * 64}"
    assert admission.resolve_image(Image(name=pinned, custom=True), 42, Admission.of(settings)) == pinned
    with pytest.raises(ImageNotAllowed):  # another tenant cannot run it
        admission.resolve_image(Image(name=f"{REPOSITORY}:7", custom=True), 43, Admission.of(settings))


def test_the_dockerfile_unpacks_offline_into_the_parent_and_runs_nothing_there() -> None:
    build = admit_build(42, 3, request(["tree", "jq"]).image, Admission.of(Settings(**PINNED)))
    text = dockerfile(build)
    lines = text.splitlines()
    assert lines[0] == "FROM director/debian:bookworm AS packages"
    assert "install jq tree;" in text  # sorted, as words
    assert "copy:/debs" in text and "http" not in text  # the local repository only
    final = lines[lines.index(f"FROM {BASE}") :]
    assert [line.split()[0] for line in final] == ["FROM", "COPY", "LABEL"]  # no RUN, no USER in the site's image
    assert 'com.director.image.version="3"' in text


def test_a_recipe_without_packages_is_the_parent_relabelled() -> None:
    text = dockerfile(admit_build(42, 3, request([]).image, Admission.of(Settings(**PINNED))))
    assert text.splitlines()[0] == f"FROM {BASE}" and "RUN" not in text  # the parent's bytes, as pinned


def test_same_recipe_other_version_is_another_image() -> None:
    a, b = (admit_build(42, v, request().image, Admission.of(Settings())) for v in (3, 4))
    assert a.recipe == b.recipe and dockerfile(a) != dockerfile(b)


def test_gc_keeps_the_newest_versions_and_tags_that_are_no_version() -> None:
    assert tags_to_delete(["1", "10", "2", "9", "latest", "3"], 3) == ["1", "2"]
    assert tags_to_delete(["5"], 3) == []
    assert tags_to_delete(["2", "3", "4", "4"], 3) == []  # a rebuilt version counts once
    assert newest_tag(["latest", "9", "10"]) == 10 and newest_tag(["x"]) is None


def test_log_tail_is_the_end() -> None:
    log = "".join(f"line {i}\n" for i in range(100))
    assert log_tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert len(log_tail("x" * 10_000)) == 2000


@pytest.fixture
def images() -> FakeImages:
    return FakeImages()


@pytest.fixture
def ctx(images: FakeImages) -> Context:
    return Context(
        settings=Settings(image_keep=2), swarm=FakeSwarm(), sitedirs=FakeSiteDirs(), routes=FakeRoutes(), images=images
    )


async def test_built_answers_the_pinned_reference_and_old_tags_go(ctx: Context, images: FakeImages) -> None:
    images.registry[REPOSITORY] = ["1", "2"]
    result = await dispatch(request(version=3), ctx)
    assert result.type == "site.image_built" and result.version == 3
    assert result.image == f"{REPOSITORY}:3@sha256:{'a' * 64}"
    assert images.deleted == [(REPOSITORY, "1")] and images.registry[REPOSITORY] == ["2", "3"]


async def test_an_older_request_than_the_registry_holds_is_stale(ctx: Context, images: FakeImages) -> None:
    images.registry[REPOSITORY] = ["5"]
    result = await dispatch(request(version=4), ctx)
    assert result.type == "site.stale" and result.applied_version == 5
    assert images.built == []


async def test_a_refused_recipe_builds_nothing(ctx: Context, images: FakeImages) -> None:
    with pytest.raises(ImageNotAllowed):
        await dispatch(request(parent="nginx:latest"), ctx)
    assert images.built == []


async def test_a_failed_build_is_the_owners_and_not_dead_lettered(ctx: Context, images: FakeImages) -> None:
    images.fails = "E: Unable to locate package nope"
    with pytest.raises(ImageBuildFailed) as caught:
        await dispatch(request(["nope"]), ctx)
    assert caught.value.code is ErrorCode.IMAGE_BUILD_FAILED
    assert not caught.value.retryable and not caught.value.dead_letter
    assert images.deleted == []


async def test_without_a_builder_builds_are_refused() -> None:
    ctx = Context(settings=Settings(), swarm=FakeSwarm(), sitedirs=FakeSiteDirs(), routes=FakeRoutes())
    with pytest.raises(ImageBuildFailed):
        await dispatch(request(), ctx)


def test_a_tag_a_service_runs_or_rolls_back_to_is_in_use_however_old() -> None:
    repository = "198.18.213.1:5000/sites/site_0042"
    images = [
        f"{repository}:3@sha256:{'a' * 64}",  # what runs (pinned by digest, as built)
        f"{repository}:1",  # what an update would roll back to
        f"{repository}/app:7",  # another repository under the site's namespace
        "198.18.213.1:5000/sites/site_0043:2",  # another site's
        "director/base:latest",
    ]
    assert tags_in_use(repository, images) == {"3", "1"}


async def test_a_request_for_a_site_deleted_since_builds_nothing(ctx: Context, images: FakeImages) -> None:
    assert isinstance(ctx.swarm, FakeSwarm)
    ctx.swarm.tombstones[42] = 5
    result = await dispatch(request(version=4), ctx)
    assert result.type == "site.stale" and images.built == []


async def test_a_deleted_site_takes_its_built_images_with_it(ctx: Context, images: FakeImages) -> None:
    images.registry[REPOSITORY] = ["2", "3"]
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "site.deleted",
        "version": 9,
        "occurred_at": datetime.now(UTC).isoformat(),
        "site": {"id": 42},
    }
    deleted = parse_event(json.dumps(body).encode(), "site.deleted")
    result = await dispatch(deleted, ctx)
    assert result.type == "site.removed"
    assert images.registry[REPOSITORY] == [] and images.deleted == [(REPOSITORY, "2"), (REPOSITORY, "3")]


INDEX = """Package: jq
Version: 1.6-2.1
Depends: libjq1 (= 1.6-2.1)

Package: libjq1
Provides: libjq (= 1.6), jq-lib
Description: Package: not-a-field-here
"""


def test_the_packages_a_repository_lacks_are_named_in_the_order_asked() -> None:
    lines = INDEX.splitlines()
    assert missing_packages(["jq", "libjq1", "jq-lib", "libjq"], lines) == []
    assert missing_packages(["zzz", "jq", "no-such-package", "Package"], lines) == ["zzz", "no-such-package", "Package"]
    assert missing_packages(["not-a-field-here"], lines) == ["not-a-field-here"]
    assert missing_packages(["jq"], []) == ["jq"]


def test_a_name_apt_would_find_is_never_called_missing() -> None:
    index = "\ufeffpackage: a\r\nProvides: b,\r\n c (= 1),\r\n\td\r\nDescription: x\r\n e\r\n"
    assert missing_packages(["a", "b", "c", "d"], index.splitlines(keepends=True)) == []
    assert missing_packages(["e", "x"], index.splitlines(keepends=True)) == ["e", "x"]


class _Engine:
    """The one call the tools image check makes, answered from a set of image names."""

    def __init__(self, images: set[str]) -> None:
        self.images = images

    def inspect_image(self, name: str) -> dict[str, Any]:
        if name not in self.images:
            raise docker.errors.ImageNotFound(name)
        return {"Id": name}


def test_a_build_never_pulls_its_tools_image_by_a_bare_name() -> None:
    """A node without the tools image (`director/debian:bookworm`) fails the build, saying so,
    instead of letting the builder pull the name from Docker Hub; one named in a registry may be
    pulled from there."""
    build = admit_build(7, 1, ImageRecipe(parent="director/base:latest", packages=["jq"]), Admission.of(Settings()))
    _check_tools_image(_Engine({build.tools_image}), build)
    with pytest.raises(ImageBuildFailed, match="is not on this node"):
        _check_tools_image(_Engine(set()), build)
    qualified = dataclasses.replace(build, tools_image="registry.example/director/debian:bookworm")
    _check_tools_image(_Engine(set()), qualified)
