"""Site image builds: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.config.base import Group


class BuildSettings(Group):
    # --- site image builds (site.image_requested) ---------------------------------------------
    # Builds are heavy (a CPU for seconds, the tools image's apt): at most this many at once, on
    # Docker calls of their own, so a build never holds a deploy's worker.
    build_concurrency: int = Field(default=1, ge=1, le=8)
    # A build past this is cancelled (the connection is closed, which stops Docker's build).
    build_timeout_seconds: float = Field(default=300, gt=0)
    # Limits of every build step's container (Docker's `container_limits`).
    build_memory_mib: int = Field(default=512, ge=16)
    build_cpu_shares: int = Field(default=512, ge=2)
    # Builds have no network: packages come from this local repository (Debian .debs and their
    # Packages index, made by stack-up), resolved and unpacked by the tools image's apt.
    build_packages_dir: Path = Path("/var/lib/director-registry/debs")
    build_tools_image: str = "director/debian:bookworm"
    # Packages one image recipe may name.
    max_image_packages: int = Field(default=32, ge=0, le=256)
    # The newest tags kept per site in the registry (and on the builder); older ones are deleted.
    image_keep: int = Field(default=3, ge=1)
