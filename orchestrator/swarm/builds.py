"""Site images in Docker and the registry: build (no network, limited, bounded in time), push,
list a repository's tags and delete old ones. `sites.images` decides what; this does it.

Builds run on Docker calls of their own (`BUILD_CONCURRENCY` threads), so a build of minutes never
holds a deploy's worker, and each build talks to the engine on a connection of its own, which is
closed at the deadline: Docker cancels a build whose client went away.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
import urllib3

from orchestrator.config import Settings
from orchestrator.errors import DockerRejected, ImageBuildFailed, OrchestratorError, TransientError
from orchestrator.labels import IMAGE_RECIPE
from orchestrator.logging_setup import fields, mask
from orchestrator.sites.images import (
    PACKAGES_DIR,
    Build,
    dockerfile,
    log_tail,
    missing_packages,
    tags_in_use,
)
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.logs import site_secrets
from orchestrator.swarm.registry import basic_auth, credential
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.images import in_registry
from orchestrator_contract.sites import service_name

log = logging.getLogger("orchestrator.builds")
# What a manifest may be: Docker's own, and OCI's (what newer builders push).
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
# A build's log kept in memory: its end says why it failed.
MAX_LOG = 256 * 1024
REGISTRY_TIMEOUT = 10.0
# The package repository in a build context: its index and .debs, nothing else.
_REPOSITORY_FILES = ("Packages",)
_MAX_INDEX = 256 * 2**20  # a Packages index read line by line to check names (all of Debian's is ~50 MB)


class ImageBuilder:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._docker = DockerClient(settings.docker_url, settings.docker_timeout_seconds, settings.build_concurrency)

    def close(self) -> None:
        self._docker.close()

    async def tags(self, repository: str) -> list[str]:
        return await self._docker.run(lambda api: self._tags(repository))

    async def build(self, build: Build) -> str:
        return await self._docker.run(lambda api: self._reuse(api, build) or self._build_and_push(api, build))

    async def delete(self, repository: str, tags: Sequence[str]) -> None:
        if tags:
            await self._docker.run(lambda api: self._delete(api, repository, tags))

    # --- blocking, on the build pool ----------------------------------------------------------

    def _reuse(self, api: docker.APIClient, build: Build) -> str | None:
        """A redelivered request: the image of this version and recipe is built and in the registry."""
        try:
            image = api.inspect_image(build.reference)
        except docker.errors.NotFound:
            return None
        if (image.get("Config", {}).get("Labels") or {}).get(IMAGE_RECIPE) != build.recipe:
            return None
        pushed = self._digest(build.repository, build.tag)
        mine = {d.partition("@")[2] for d in image.get("RepoDigests") or [] if d.startswith(build.repository + "@")}
        return f"{build.reference}@{pushed}" if pushed and pushed in mine else None

    def _build_and_push(self, api: docker.APIClient, build: Build) -> str:
        settings = self._settings
        started = time.monotonic()
        deadline = started + settings.build_timeout_seconds
        _check_tools_image(api, build)
        _check_packages(build, settings.build_packages_dir)
        with tempfile.TemporaryFile() as context:
            _context(context, build, settings.build_packages_dir)
            self._run_build(api, build, context, deadline)
        digest = self._push(api, build)
        log.info(
            "image built",
            extra=fields(site_id=build.site_id, image=build.reference, seconds=round(time.monotonic() - started, 1)),
        )
        return f"{build.reference}@{digest}"

    def _run_build(self, api: docker.APIClient, build: Build, context: Any, deadline: float) -> None:
        """The build on a connection of its own: closing it at the deadline cancels the build."""
        settings = self._settings
        lines: list[str] = []
        size = 0
        # A silent step past the deadline is a read timeout; a chatty one is caught between lines.
        remaining = max(1.0, deadline - time.monotonic())
        client = docker.APIClient(base_url=settings.docker_url, version=api.api_version, timeout=remaining)
        failure = ""
        try:
            stream = client.build(
                fileobj=context,
                custom_context=True,
                tag=build.reference,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode="none",
                container_limits={
                    "memory": settings.build_memory_mib * 2**20,
                    "memswap": settings.build_memory_mib * 2**20,
                    "cpushares": settings.build_cpu_shares,
                },
                decode=True,
                # Without it the SDK sends `timeout=None` and the client's own is never used.
                timeout=remaining,
            )
            for chunk in stream:
                text = str(chunk.get("stream") or chunk.get("status") or "")
                if "error" in chunk:
                    failure = str(chunk.get("error") or "the build failed")
                lines.append(text)
                size += len(text)
                if size > MAX_LOG:  # keep the end: that is where the error is
                    lines, size = lines[len(lines) // 2 :], sum(len(t) for t in lines[len(lines) // 2 :])
                if time.monotonic() > deadline:
                    failure = f"the build took longer than {settings.build_timeout_seconds:.0f}s"
                    break
        except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
            # A read past the deadline while streaming surfaces as urllib3's own error.
            failure = f"the build took longer than {settings.build_timeout_seconds:.0f}s"
        except docker.errors.APIError as exc:
            failure = str(exc.explanation or exc)
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            docker.errors.DockerException,
            OSError,
        ) as exc:
            raise TransientError(
                f"docker is unreachable during a build: {exc}", code=ErrorCode.DOCKER_UNAVAILABLE
            ) from exc
        finally:
            client.close()
        if failure:
            # The site's env values are masked as in every log line we quote (they may be secrets).
            secrets = site_secrets(api, service_name(build.site_id)) or []
            tail = mask(log_tail("".join(lines)), secrets)
            reason = mask(failure[:300], secrets)
            raise ImageBuildFailed(f"{build.reference} did not build: {reason}; last lines of the build log:\n{tail}")

    def _push(self, api: docker.APIClient, build: Build) -> str:
        digest = ""
        for chunk in api.push(
            build.repository, tag=build.tag, stream=True, decode=True, auth_config=credential(build.repository)
        ):
            if "error" in chunk:
                raise TransientError(f"pushing {build.reference} failed: {chunk['error']}", code=ErrorCode.DOCKER_ERROR)
            digest = str((chunk.get("aux") or {}).get("Digest") or digest)
        if not digest:
            raise TransientError(f"pushing {build.reference} gave no digest", code=ErrorCode.DOCKER_ERROR)
        return digest

    def _delete(self, api: docker.APIClient, repository: str, tags: Iterable[str]) -> None:
        """Best effort: what fails now goes at the next build (the list is recomputed from the registry).
        A tag the site's service runs or would roll back to is kept, however old."""
        in_use = tags_in_use(repository, self._service_images(api, repository.rpartition("/")[2]))
        for tag in tags:
            if tag in in_use:
                continue
            try:
                if digest := self._digest(repository, tag):
                    response = requests.delete(
                        self._url(repository, f"manifests/{digest}"), auth=self._auth(), timeout=REGISTRY_TIMEOUT
                    )
                    if response.status_code not in (202, 404):
                        response.raise_for_status()
                api.remove_image(f"{repository}:{tag}", noprune=False)
            except docker.errors.NotFound:
                pass
            except (requests.exceptions.RequestException, docker.errors.APIError, OrchestratorError) as exc:
                log.warning(
                    "an old site image was not deleted", extra=fields(image=f"{repository}:{tag}", error=str(exc)[:200])
                )

    @staticmethod
    def _service_images(api: docker.APIClient, name: str) -> list[str]:
        images = []
        for service in api.services(filters={"name": name}):
            for spec in (service.get("Spec"), service.get("PreviousSpec")):
                image = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image")
                if image:
                    images.append(str(image))
        return images

    # --- the registry's HTTP API ----------------------------------------------------------------

    def _auth(self) -> tuple[str, str] | None:
        return basic_auth(self._settings.registry_api_url)

    def _url(self, repository: str, path: str) -> str:
        name = repository.partition("/")[2]  # without the registry's host
        return f"{self._settings.registry_api_url.rstrip('/')}/v2/{name}/{path}"

    def _tags(self, repository: str) -> list[str]:
        try:
            response = requests.get(self._url(repository, "tags/list"), auth=self._auth(), timeout=REGISTRY_TIMEOUT)
            if response.status_code == 404:
                return []
            _refused(response, f"list {repository}")
            return [str(tag) for tag in (response.json().get("tags") or [])[:10_000]]
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise TransientError(f"the registry did not list {repository}: {exc}", code=ErrorCode.DOCKER_ERROR) from exc

    def _digest(self, repository: str, tag: str) -> str | None:
        try:
            response = requests.head(
                self._url(repository, f"manifests/{tag}"),
                headers={"Accept": MANIFEST},
                auth=self._auth(),
                timeout=REGISTRY_TIMEOUT,
            )
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"the registry did not answer for {repository}:{tag}: {exc}") from exc
        if response.status_code == 404:
            return None
        _refused(response, f"look up {repository}:{tag}")
        return response.headers.get("Docker-Content-Digest")


def _check_tools_image(api: docker.APIClient, build: Build) -> None:
    """The tools stage's image is made on this node (scripts/images.sh): a missing one named
    without a registry would be pulled from Docker Hub, where someone else owns the name."""
    if in_registry(build.tools_image, "-") != build.tools_image:  # no registry of its own
        try:
            api.inspect_image(build.tools_image)
        except docker.errors.ImageNotFound:
            raise ImageBuildFailed(
                f"the build tools image {build.tools_image} is not on this node (scripts/images.sh makes it): "
                "it is never pulled"
            ) from None


def _refused(response: requests.Response, what: str) -> None:
    """A registry's 4xx is a refusal (credentials, rights: retrying asks the same), anything else
    not 2xx passes (a registry restarting); both raised as our errors, never as Docker's."""
    if 400 <= response.status_code < 500 and response.status_code != 429:
        raise DockerRejected(f"the registry refused to {what} ({response.status_code}): check its credentials")
    if not response.ok:
        raise TransientError(f"the registry could not {what} ({response.status_code})", code=ErrorCode.DOCKER_ERROR)


def _check_packages(build: Build, packages_dir: Path) -> None:
    """Fail before building when the repository lacks a package asked for (`missing_packages`)."""
    if not build.packages:
        return
    try:
        with open(packages_dir / "Packages", encoding="utf-8", errors="replace") as index:
            if os.fstat(index.fileno()).st_size > _MAX_INDEX:
                return  # past what is worth reading here: apt checks it
            missing = missing_packages(build.packages, index)
    except FileNotFoundError:
        return  # no index to read: apt in the build says what it cannot find
    except OSError as exc:
        raise ImageBuildFailed(f"the package repository {packages_dir} cannot be read: {exc}") from None
    if missing:
        raise ImageBuildFailed(
            f"{build.reference} was not built: the site package repository has no {', '.join(missing)}"
        )


def _context(out: Any, build: Build, packages_dir: Path) -> None:
    """The build context: the Dockerfile and, when packages are asked for, the package repository
    (regular files of its top level only: no link, no directory is followed into)."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        text = dockerfile(build).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        if build.packages:
            try:
                entries = sorted(os.scandir(packages_dir), key=lambda e: e.name)
            except OSError as exc:
                raise ImageBuildFailed(f"the package repository {packages_dir} cannot be read: {exc}") from None
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and (entry.name.endswith(".deb") or entry.name in _REPOSITORY_FILES):
                    tar.add(entry.path, arcname=f"{PACKAGES_DIR}/{entry.name}", recursive=False)
    out.seek(0)
