"""What sites may ask for: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.config.base import CsvList, Group


class SecuritySettings(Group):
    # --- security -----------------------------------------------------------------------------
    # When set, a site's domains must end in one of these.
    allowed_domain_suffixes: Annotated[CsvList, Field(default_factory=list)]
    # Whether IP literals, and wildcards (`*.school.example`, which own their zone), may be domains.
    allow_ip_domains: bool = False
    allow_wildcard_domains: bool = False
    # Ceilings of a site's CPU and memory limits (larger requests are clamped).
    max_cpus: float = Field(default=2.0, gt=0)
    max_memory: str = "2Gi"
    # Host names (and everything under them) no site may claim, e.g. the panel's own.
    reserved_domains: Annotated[CsvList, Field(default_factory=list)]
    # Domains one site may claim.
    max_domains_per_site: int = Field(default=20, ge=1)
    # A claim on a domain another site holds waits this long for a move in flight, then fails.
    domain_wait_seconds: float = Field(default=5.0, ge=0)
    # Site tasks run as uid = gid = base + site id and own their site directory: nothing a site
    # leaves on the host (a setuid binary) belongs to root.
    # The default sits above the /etc/subuid ranges Debian hands out (100000 on, 65536 each), and
    # every uid base + site id stays below 2^32 - 1 (which chown reads as "do not change").
    site_uid_base: int = Field(default=1_000_000_000, ge=1000, le=2**32 - 2**31 - 2)
    # Capabilities a site keeps; none needed by a non-root site (Docker lets containers bind
    # low ports without NET_BIND_SERVICE).
    cap_add: Annotated[CsvList, Field(default_factory=list)]
    # Processes per site task.
    pids_limit: int = Field(default=512, ge=16)
    # The most a site's directory may hold ("0": no limit; else e.g. 512Mi or 10Gi), enforced by
    # the kernel where the sites root allows it (btrfs with quotas: see files/quota.py).
    site_disk_limit: str = "0"
    # Site containers' json-file logs: the size of a file, and the files kept.
    log_max_size: str = "10m"
    log_max_files: int = Field(default=3, ge=1)
