"""Pure: the container a terminal session runs in, derived from the site's live service.

A session gets what the site's tasks get (image, user, env, limits, capabilities, read-only root)
except the server: a login shell with a TTY in /site, the site directory read-write (also for a
static site, whose files are edited here), the operator's base image for a static site (nginx is
not a shell), no published ports, and no container log (terminal data is never logged).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from orchestrator.labels import DEPLOYMENT, KIND, MANAGED_BY, MANAGER, OWNER, SESSION, SITE_ID
from orchestrator.sites.spec import site_uid
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.terminals.cgroup import TerminalsCap
from orchestrator_contract.env import SITE_MOUNT
from orchestrator_contract.sites import SiteKind

# Env of a site's service about its server or its rollouts, not about the site.
_SERVER_ONLY_ENV = ("NGINX_CONF", "STABLE_GATE")


@dataclass(frozen=True)
class SessionContainer:
    name: str
    image: str
    command: tuple[str, ...]
    user: str
    env: dict[str, str]
    workdir: str
    site_dir: str
    labels: dict[str, str]
    nano_cpus: int
    memory_bytes: int
    pids_limit: int
    cap_add: tuple[str, ...]
    cgroup_parent: str = ""  # the cgroup bounding every session on the node together ("": Docker's)


def container_name(site_id: int, session_id: uuid.UUID) -> str:
    return f"terminal_{site_id:04d}_{session_id.hex}"


def session_container(
    service: Mapping[str, Any],
    site_id: int,
    session_id: uuid.UUID,
    site_dir: PurePath,
    runtime: SiteRuntime,
    admission: Admission,
    owner: str = "",
    cap: TerminalsCap | None = None,
) -> SessionContainer:
    """The session container for a site whose service spec (Docker's `Spec`) is `service`; with a
    `cap`, under the cgroup that bounds all sessions together, its own limits never above it."""
    task = service.get("TaskTemplate", {})
    container = task.get("ContainerSpec", {})
    limits = task.get("Resources", {}).get("Limits", {})
    labels = service.get("Labels", {})
    static = labels.get(KIND) == SiteKind.STATIC.value
    uid = site_uid(site_id, runtime.uid_base)
    env = dict(_pair(item) for item in container.get("Env", []) if "=" in item)
    for key in _SERVER_ONLY_ENV:
        env.pop(key, None)
    env["TERM"] = "xterm-256color"
    nano_cpus = int(limits.get("NanoCPUs", 0)) or round(admission.max_cpus * 1e9)
    memory = int(limits.get("MemoryBytes", 0)) or admission.max_memory_bytes
    if cap is not None:
        nano_cpus, memory = cap.clamp(nano_cpus, memory)
    return SessionContainer(
        name=container_name(site_id, session_id),
        # The image the site runs now (pinned digest included), or a shell image for nginx sites.
        image=admission.default_image if static else str(container.get("Image", admission.default_image)),
        command=("/bin/sh", "-l"),
        # Never the live spec's user or capabilities: a service made before sites had their own
        # uid, or edited by hand, must not hand out a root shell.
        user=f"{uid}:{uid}",
        env=env,
        workdir=SITE_MOUNT,
        site_dir=str(site_dir),
        labels={
            MANAGED_BY: MANAGER,
            SITE_ID: str(site_id),
            SESSION: str(session_id),
            OWNER: owner,
            DEPLOYMENT: runtime.deployment,
        },
        nano_cpus=nano_cpus,
        memory_bytes=memory,
        pids_limit=int(limits.get("Pids", 0)) or runtime.pids_limit,
        cap_add=runtime.cap_add,
        cgroup_parent=cap.parent if cap is not None else "",
    )


def _pair(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value
