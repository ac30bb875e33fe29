"""A site service, the record every layer passes around: `ServiceSpec`, what we ask the swarm for
(built by `sites.spec`, mapped to Docker's spec by `swarm.mapping`), and `Service`, what the swarm
holds (read back by `swarm.mapping`; surveyed for status and drift)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from orchestrator.labels import DOMAINS, FINGERPRINT, KIND, SITE_ID, STABLE_GATE, VERSION, version_of
from orchestrator.sites.databases import Grant, grant_of


@dataclass(frozen=True)
class Mount:
    target: str
    source: str = ""
    type: Literal["bind", "tmpfs"] = "bind"
    read_only: bool = False


@dataclass(frozen=True)
class HealthCheck:
    """Docker's health check of a task (times in nanoseconds, as the Engine takes them)."""

    command: str
    interval_ns: int
    timeout_ns: int
    start_period_ns: int
    retries: int


LATER_FIELDS = ("restart_max_attempts", "restart_window_ns")
# Labels about a rollout, not the site's desired state: never part of the fingerprint.
ROLLOUT_LABELS = (VERSION, FINGERPRINT, STABLE_GATE)


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the swarm adapter needs to create or update one site service."""

    name: str
    image: str
    labels: dict[str, str]
    network: str
    replicas: int
    nano_cpus: int
    memory_bytes: int
    command: tuple[str, ...] | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    mounts: tuple[Mount, ...] = ()
    read_only: bool = True
    init: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    pids_limit: int = 0
    healthcheck: HealthCheck | None = None
    log_options: dict[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    update_delay_ns: int = 0
    update_monitor_ns: int = 0
    restart_delay_ns: int = 0
    stop_grace_ns: int = 0
    # Fields added after services were first fingerprinted: left out of the fingerprint at zero,
    # so an upgrade does not make every older service look edited by hand.
    restart_max_attempts: int = 0
    restart_window_ns: int = 0

    def fingerprint(self) -> str:
        """A digest of the spec without our bookkeeping labels: equal fingerprints, nothing to change."""
        # Shallow and explicit: dataclasses.asdict deep-copies and cost two thirds of a spec's build.
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["mounts"] = [vars(m) for m in self.mounts]
        data["healthcheck"] = vars(self.healthcheck) if self.healthcheck else None
        data["labels"] = {k: v for k, v in self.labels.items() if k not in ROLLOUT_LABELS}
        for name in LATER_FIELDS:
            if not data[name]:
                del data[name]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def with_fingerprint(spec: ServiceSpec) -> ServiceSpec:
    return replace(spec, labels=spec.labels | {FINGERPRINT: spec.fingerprint()})


@dataclass(frozen=True)
class Service:
    """A site service as the swarm holds it. A survey (status, drift) also maps its live and
    previous Docker specs back to `ServiceSpec`s and reads its last task error."""

    id: str
    name: str
    index: int  # Docker's version index, for optimistic concurrency
    labels: dict[str, str]
    replicas: int
    # From a status listing: tasks running (answering: site tasks are health-gated) and the
    # rollout's state; None when the swarm was not asked.
    running: int | None = None
    update_state: str | None = None
    updated_at: float = 0.0  # epoch seconds of the last change to the service
    # Survey only: the spec as Docker holds it now, Docker's previous one, the last task error.
    live: ServiceSpec | None = None
    previous: ServiceSpec | None = None
    last_error: str | None = None
    # The database variables of its env (`sites.databases`), kept from a listing.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def settled(self) -> bool:
        """Every task of the spec in force answers and no rollout is under way."""
        return self.running == self.replicas and self.update_state in (None, "completed", "rollback_completed")

    @property
    def site_version(self) -> int:
        return version_of(self.labels)

    @property
    def site_id(self) -> int | None:
        value = self.labels.get(SITE_ID, "")
        return int(value) if value.isdigit() else None

    @property
    def fingerprint(self) -> str | None:
        return self.labels.get(FINGERPRINT)

    @property
    def kind(self) -> str:
        return self.labels.get(KIND, "dynamic")

    @property
    def database(self) -> Grant | None:
        """The database its spec hands its tasks (from a listing: label and env), if any."""
        return grant_of(self.labels, self.env)

    @property
    def domains(self) -> tuple[str, ...]:
        raw = self.labels.get(DOMAINS, "")
        return tuple(d for d in raw.split(",") if d)
