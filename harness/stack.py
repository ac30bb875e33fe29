"""The local stack as the tests see it: addresses, the broker's vhosts and users, Docker, and the
wipe of this process's test sites."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from harness.rabbit import LOCAL_BROKER, Broker, broker_definitions
from harness.scope import SITE_IDS
from orchestrator.config import Settings
from orchestrator.files import quota
from orchestrator.swarm.registry import basic_auth
from orchestrator_contract import exchanges

ADMIN_URL = os.environ.get("TEST_ADMIN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DIRECTOR_URL = os.environ.get("TEST_DIRECTOR_AMQP_URL", "amqp://director:director@127.0.0.1:5672/")
TRAEFIK = os.environ.get("TEST_TRAEFIK_URL", "http://127.0.0.1:8000")
TRAEFIK_API = os.environ.get("TEST_TRAEFIK_API_URL", "http://127.0.0.1:8080")
ROOT = Path(__file__).resolve().parents[1]
INBOUND = exchanges.SITE_EVENTS
RESULTS = exchanges.RESULTS
DEAD_LETTERS = "orchestrator.site-events.dead"
# A dead-letter queue per kind (bus/topology.py): site events', file requests', terminal commands'.
ALL_DEAD_LETTERS = (DEAD_LETTERS, "orchestrator.file-requests.dead", "orchestrator.terminal-commands.dead")
SITE_RESULTS = exchanges.SITE_RESULTS
MANAGED = {"label": "com.director.managed-by=orchestrator"}
SITE_UID_BASE = Settings.model_fields["site_uid_base"].default  # a site's uid is this + its id
# Site images: the local stack's registry (the settings' defaults) and the label a built image carries.
REGISTRY = Settings.model_fields["registry"].default
REGISTRY_API = Settings.model_fields["registry_api_url"].default
IMAGE_SITE_LABEL = "com.director.image.site"
# The default images as the local stack pushed and pinned them (scripts/stack-up.sh, section 11):
# ORCHESTRATOR_DEFAULT_IMAGE, ORCHESTRATOR_STATIC_IMAGE, ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES.
DEFAULT_IMAGES_ENV = Path("/etc/director-stack/default-images.env")


def make_vhost(name: str, broker: Broker = LOCAL_BROKER) -> None:
    """A fresh vhost with the local stack's users and their least-privilege permissions and topic
    permissions, in one import of definitions."""
    broker.delete_vhost(name, missing_ok=True)
    # The permissions the file grants on "/", granted on `name` instead; guest administers the tests.
    definitions = broker_definitions()
    grants = [{**g, "vhost": name} for g in definitions["permissions"] if g["vhost"] == "/"]
    grants.append({"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"})
    topic_grants = [{**g, "vhost": name} for g in definitions.get("topic_permissions", []) if g["vhost"] == "/"]
    # Director's exchanges and the queue policies, as the definitions give them to "/".
    exchanges = [{**e, "vhost": name} for e in definitions.get("exchanges", []) if e["vhost"] == "/"]
    policies = [{**p, "vhost": name} for p in definitions.get("policies", []) if p["vhost"] == "/"]
    broker.import_definitions(
        {
            "vhosts": [{"name": name}],
            "permissions": grants,
            "topic_permissions": topic_grants,
            "exchanges": exchanges,
            "policies": policies,
        }
    )


@contextlib.contextmanager
def fresh_vhost(name: str, broker: Broker = LOCAL_BROKER) -> Iterator[str]:
    make_vhost(name, broker)
    yield name
    broker.delete_vhost(name)


@contextlib.contextmanager
def scratch_sites_root(prefix: str) -> Iterator[Path]:
    """A sites root of its own, mounted nosuid,nodev as production's must be (and stack-up's is)."""
    root = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:8]}/sites")
    root.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,nosuid,nodev", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root.parent, ignore_errors=True)


@contextlib.contextmanager
def btrfs_sites_root(prefix: str, size_mib: int = 160) -> Iterator[Path]:
    """A sites root on a small btrfs of its own (a loop image, simple quotas, `nosuid,nodev`),
    where a site's disk limit is enforced; unmounted and deleted after."""
    base = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:8]}")
    image, root = base / "sites.btrfs", base / "sites"
    root.mkdir(parents=True)
    try:
        with image.open("wb") as file:
            file.truncate(size_mib * 2**20)
        subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
        # A loop device set up by mount is detached (autoclear) when the file system is unmounted.
        subprocess.run(["mount", "-o", "loop,nosuid,nodev", str(image), str(root)], check=True)
        try:
            quota.enable_simple_quotas(root)
            yield root
        finally:
            # The sites' containers (removed with their services just before) may still be
            # stopping and hold their bind mounts; past the wait it is detached, and the loop
            # device goes when the last of them lets go.
            deadline = time.monotonic() + 30
            while subprocess.run(["umount", str(root)], check=False, capture_output=True).returncode:
                if time.monotonic() > deadline:
                    subprocess.run(["umount", "-l", str(root)], check=False)
                    break
                time.sleep(0.5)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def docker_api() -> docker.APIClient:
    return docker.APIClient(version="auto")


def service(api: docker.APIClient, name: str) -> dict[str, Any] | None:
    try:
        return api.inspect_service(name)  # type: ignore[no-any-return]
    except docker.errors.NotFound:
        return None


def wipe_sites(api: docker.APIClient, site_ids: range | set[int] = SITE_IDS) -> None:
    """Remove every service, tombstone and terminal container of these sites (by default: all of
    this process's)."""

    def ours(labels: dict[str, str] | None) -> bool:
        value = (labels or {}).get("com.director.site-id", "")
        return value.isdigit() and int(value) in site_ids

    for svc in api.services(filters=MANAGED):
        if ours(svc["Spec"].get("Labels")):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(svc["ID"])
    for config in api.configs(filters=MANAGED):
        if ours(config["Spec"].get("Labels")):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_config(config["ID"])
    for container in api.containers(all=True, filters=MANAGED):
        if ours(container["Labels"]):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True)
    wipe_images(api, site_ids)


def registry_tags(site_id: int) -> list[str]:
    """The tags the local registry holds for a site's image."""
    response = requests.get(f"{REGISTRY_API}/v2/{_registry_name(site_id)}/tags/list", auth=registry_auth(), timeout=10)
    if response.status_code == 404:
        return []
    response.raise_for_status()  # a refusal is not "no tags"
    return sorted(response.json().get("tags") or [])


def _registry_name(site_id: int) -> str:
    return f"{REGISTRY.partition('/')[2]}/site_{site_id:04d}"


def wipe_images(api: docker.APIClient, site_ids: range | set[int]) -> None:
    """The sites' built images: their manifests in the registry and the builder's local copies (an
    image a removed site's container still uses is waited for, briefly)."""
    deadline = time.monotonic() + 20
    for image in api.images(filters={"label": IMAGE_SITE_LABEL}):
        if int((image.get("Labels") or {}).get(IMAGE_SITE_LABEL, "0")) in site_ids:
            while True:
                try:
                    api.remove_image(image["Id"], force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:
                    if time.monotonic() < deadline:
                        time.sleep(0.5)
                        continue
                break
    try:
        catalog = _catalog()
    except requests.exceptions.RequestException:
        return  # no registry: nothing of ours in it
    names = {_registry_name(site_id) for site_id in site_ids}
    for name in set(catalog) & names:
        for tag in (
            requests.get(f"{REGISTRY_API}/v2/{name}/tags/list", auth=registry_auth(), timeout=10).json().get("tags")
            or []
        ):
            head = requests.head(
                f"{REGISTRY_API}/v2/{name}/manifests/{tag}",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
                auth=registry_auth(),
                timeout=10,
            )
            if digest := head.headers.get("Docker-Content-Digest"):
                requests.delete(f"{REGISTRY_API}/v2/{name}/manifests/{digest}", auth=registry_auth(), timeout=10)


def registry_auth() -> tuple[str, str] | None:
    """The local registry's credential, as the orchestrator reads it (root's Docker client
    configuration: scripts/stack-up.sh logs it in)."""
    return basic_auth(REGISTRY_API)


def _catalog() -> list[str]:
    """Every repository in the registry (a page holds at most 1,000)."""
    names: list[str] = []
    while True:
        params = {"n": "1000", **({"last": names[-1]} if names else {})}
        page = (
            requests.get(f"{REGISTRY_API}/v2/_catalog", params=params, auth=registry_auth(), timeout=10)
            .json()
            .get("repositories")
            or []
        )
        names += page
        if len(page) < 1000:
            return names


@contextlib.contextmanager
def docker_without_test_sites() -> Iterator[docker.APIClient]:
    """A Docker client; this process's test sites are wiped before and after."""
    wipe_sites(docker_api())
    yield docker_api()
    wipe_sites(docker_api())  # a fresh client: the daemon may have restarted meanwhile


def default_images() -> dict[str, str]:
    """The pinned default images every test orchestrator runs with (`DEFAULT_IMAGES_ENV`)."""
    try:
        lines = DEFAULT_IMAGES_ENV.read_text().splitlines()
    except FileNotFoundError:
        raise RuntimeError(f"{DEFAULT_IMAGES_ENV} is missing: the default images are not pinned (make up)") from None
    return dict(line.split("=", 1) for line in lines if line.startswith("ORCHESTRATOR_") and "=" in line)
