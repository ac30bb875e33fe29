"""The environment the orchestrator gives every site container: the one definition of its keys.

A site's own env may not set these (`events.Site.env` refuses them), so a site cannot move its
port, its home or its idea of which site it is.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SITE_MOUNT = "/site"
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SiteEnv(NamedTuple):
    PORT: str
    HOST: str
    HOME: str
    PATH: str
    SITE_ID: str
    SITE_DIR: str
    # Read by the programs in `sites.scripts` (drain on stop, stability before healthy, the
    # health probe's rest once steady, its request timeout and the age from which a task is steady).
    DRAIN_SECONDS: str
    STABLE_SECONDS: str
    # Whether the health probe holds the task back for the window ("1") or passes at the first
    # answer and watches it in the background ("0"): a Swarm template of a service label, so the
    # same spec rolls out either way (the orchestrator sets the label per rollout).
    STABLE_GATE: str
    HEALTH_IDLE_SECONDS: str
    HEALTH_TIMEOUT_SECONDS: str
    HEALTH_YOUNG_SECONDS: str


# A site with a database gets these (`sites.databases`); DIRECTOR_DATABASE_* are always the
# orchestrator's, DATABASE_URL only when the site asks for a database (without one, a site may
# point it at a database of its own elsewhere).
DATABASE_URL = "DATABASE_URL"
DATABASE_ENV_KEYS = (
    DATABASE_URL,
    "DIRECTOR_DATABASE_HOST",
    "DIRECTOR_DATABASE_PORT",
    "DIRECTOR_DATABASE_NAME",
    "DIRECTOR_DATABASE_USER",
    "DIRECTOR_DATABASE_PASSWORD",
)
RESERVED_ENV_KEYS = frozenset(SiteEnv._fields) | frozenset(DATABASE_ENV_KEYS[1:])
# The orchestrator's own keys whose values are no secret (logs need not mask them).
OPEN_ENV_KEYS = RESERVED_ENV_KEYS - {"DIRECTOR_DATABASE_PASSWORD"}


def site_env(
    site_id: int,
    port: int,
    *,
    drain_seconds: float,
    stable_seconds: float,
    health_idle_seconds: float,
    health_timeout_seconds: float,
    health_young_seconds: float = 0.0,
    stable_gate: str = "1",
) -> dict[str, str]:
    return SiteEnv(
        PORT=str(port),
        HOST="0.0.0.0",
        HOME=SITE_MOUNT,
        PATH=SEARCH_PATH,
        SITE_ID=str(site_id),
        SITE_DIR=SITE_MOUNT,
        DRAIN_SECONDS=str(round(drain_seconds)),
        # Quarters of a second: the probe counts the window in them (see `sites.scripts`).
        STABLE_SECONDS=f"{round(stable_seconds * 4) / 4:g}",
        STABLE_GATE=stable_gate,
        HEALTH_IDLE_SECONDS=str(round(health_idle_seconds)),
        HEALTH_TIMEOUT_SECONDS=str(max(1, round(health_timeout_seconds))),
        HEALTH_YOUNG_SECONDS=str(math.ceil(health_young_seconds)),
    )._asdict()
