"""Sites: directories, images, the registry: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field

from orchestrator.config.base import CsvList, Group


class SiteSettings(Group):
    # --- sites --------------------------------------------------------------------------------
    # Site directories: the same path on the host (site tasks bind-mount them by host path); mount it
    # nosuid,nodev.
    sites_root: Path = Path("/srv/director/sites")
    # Where deleted sites' directories go, under the sites root.
    trash_dir_name: str = ".trash"
    # The image of a dynamic site that names none, and of static sites' terminals. Like every
    # default image, written in full and pinned by digest, `<registry>/<name>:<tag>@sha256:<digest>`
    # (scripts/stack-up.sh and scripts/stack.sh write them): a tag moved in the registry changes
    # nothing that runs, and no node pulls it from a public registry. `orchestrator run` refuses
    # any other (docs/security.md#images); the default is only the name.
    default_image: str = "director/base:latest"
    # Non-custom images a site may name (and a built image's parents), pinned likewise. Director
    # names one by `<name>:<tag>` (`director/base:latest`), as written here without its registry.
    allowed_default_images: Annotated[CsvList, Field(default_factory=lambda: ["director/base:latest"])]
    # The image of static sites, pinned likewise.
    static_image: str = "nginx:latest"
    # The port sites listen on ($PORT).
    site_port: int = Field(default=80, ge=1, le=65535)
    # The Traefik entrypoint site routers use.
    traefik_entrypoint: str = "web"
    # Custom images: the local stack's registry (scripts/stack-up.sh) on the bridge every test node
    # reaches; production names its own (TLS).
    registry: str = "198.18.213.1:5000/sites"
    # The registry's HTTP API (tags listed, old manifests deleted): plain HTTP on the local stack's
    # bridge, declared insecure to every engine; production: https.
    registry_api_url: str = "http://198.18.213.1:5000"

    def registry_hosts(self) -> list[str]:
        """The registry's host names or addresses (of the image names and of its API)."""
        hosts = {self.registry.split("/")[0].rpartition(":")[0] or self.registry.split("/")[0]}
        hosts.add(urlsplit(self.registry_api_url).hostname or "")
        return sorted(h for h in hosts if h)
