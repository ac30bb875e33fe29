"""The Docker engine, the swarm and site tasks' timings: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from orchestrator.config.base import CsvList, Group


class SwarmSettings(Group):
    # --- docker / swarm -----------------------------------------------------------------------
    # The Docker engine: a swarm manager's API.
    docker_url: str = "unix:///var/run/docker.sock"
    # The bound of one Docker API call.
    docker_timeout_seconds: float = Field(default=30.0, gt=0)
    # The overlay network site services join, which Traefik watches.
    network: str = "director-sites"
    # Keep sites from opening connections on that network (to each other, to Traefik's API, to
    # anything on it) with a filter in the network's namespace on this node (netguard/).
    # Needs root and the engine's exec-root; where the orchestrator runs in a container, leave it
    # to `orchestrator netguard` on every site node (compose.yaml) and turn it off here.
    network_guard: bool = True
    # `<the engine's --exec-root>/netns`, where Docker keeps its network namespaces.
    netns_dir: Path = Path("/var/run/docker/netns")
    # Networks (CIDRs) sites may not reach besides the nodes and the registry, which the guard
    # finds itself: the operator's own infrastructure (netguard/rules.py `node_chain`).
    network_guard_blocked: Annotated[CsvList, Field(default_factory=list)]
    # Besides every join Docker reports: how often the guard checks the filter anyway.
    network_guard_resync_seconds: float = Field(default=30.0, gt=0)
    # Time for a service's tasks to become healthy and stable before `site.failed`; covers a server
    # that never answers (health start period + retries) with room to spare.
    converge_timeout_seconds: float = Field(default=90.0, gt=0)
    # Swarm update/restart timings, in seconds (converted to the Engine's nanoseconds in spec.py).
    update_delay_seconds: float = Field(default=1.0, ge=0)
    update_monitor_seconds: float = Field(default=2.0, ge=0)
    restart_delay_seconds: float = Field(default=2.0, ge=0)
    # A crash-looping site costs the daemon a container start every few seconds, forever: Swarm
    # gives up on a task after this many restarts within the window (0 = never), the site is then
    # `down` (site.health) until its next update or restart_requested starts it afresh.
    restart_max_attempts: int = Field(default=30, ge=0, le=1000)
    restart_window_seconds: float = Field(default=600.0, ge=0)
    # How long a stopping task has after SIGTERM before it is killed (drain_seconds is added).
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    # A stopping task keeps serving this long after SIGTERM, so Traefik (which drops a task once
    # its desired state is shutdown, at its next refresh) stops sending it requests first: longer
    # than Traefik's refreshSeconds (5 in deploy/traefik/traefik.yml) and one poll of the fleet.
    drain_seconds: float = Field(default=8.0, ge=0)
    # Every site task is probed from inside ($PORT answers HTTP). Swarm counts a task as running
    # only once healthy, so a start-first update switches over only to a task that answers.
    # The interval is how often a new or failing task is looked at (a rollout waits on it); a
    # steady one rests `health_idle_seconds` inside its container first, so it costs Docker one
    # exec per rest instead of one per interval (see sites/scripts.py).
    health_interval_seconds: float = Field(default=0.25, gt=0)
    health_idle_seconds: float = Field(default=60.0, ge=0)
    # Each probe's bound, the grace at a task's start, and the failures before it is unhealthy.
    health_timeout_seconds: float = Field(default=3.0, gt=0)
    health_start_period_seconds: float = Field(default=30.0, ge=0)
    health_retries: int = Field(default=3, ge=1)
    # A task counts as deployed only after answering for this long without a miss: a server that
    # crashes a few seconds after start is never reported deployed, and a failing update is
    # rolled back while the old task still serves (a new site's task is routed meanwhile: nothing
    # older serves; docs/sites.md).
    stable_seconds: float = Field(default=5.0, ge=0)
    # Site tasks bind-mount their directory by host path, so they may run only on nodes that have
    # the sites root (shared storage, the same path on each): those labelled `<label>=true`
    # (scripts/stack-up.sh labels the local manager, scripts/cluster.sh its workers). Empty: any
    # node (a single-node swarm whose node nobody labels).
    site_node_label: str = Field(default="director.sites", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")
    # On a swarm of several nodes, how often the task counts of every service are surveyed: the
    # manager's event stream has no container events of other nodes (see swarm/changes.py). 0: never.
    task_survey_seconds: float = Field(default=2.0, ge=0)
    # More swarm constraints for site tasks, e.g. "node.labels.zone==a".
    placement_constraints: Annotated[CsvList, Field(default_factory=list)]

    # How long a deleted site's tombstone is kept (a late, older event cannot resurrect it): a
    # site that existed, and one the swarm never held (a reordered create may still come: at least
    # a message's longest way back through the retries).
    tombstone_days: float = Field(default=30.0, gt=0)
    unknown_tombstone_seconds: float = Field(default=3600.0, ge=60)
    # How often the active replica removes expired tombstones.
    housekeeping_seconds: float = Field(default=600.0, gt=0)

    # Every interval, a `orchestrator.drift` report when anything drifted (0: never).
    drift_report_seconds: float = Field(default=3600.0, ge=0)
    # Trash older than this shows as drift (it is never deleted by the orchestrator).
    trash_max_age_days: float = Field(default=30.0, gt=0)

    @field_validator("network_guard_blocked")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            IPv4Network(network)  # ValueError: not an IPv4 network
        return value
