"""Test support for the real stack, by job, on the harness the benchmark shares (`harness`: scope,
the stack, the broker, Director, the orchestrator as a process, waiting):

- `running`: the one fixture chain every suite builds on;
- `terminals`: a terminal session as Director's web layer drives it;
- `web`: requests through Traefik; `report`: measured figures after the results.

The names below are re-exported so a test imports what it uses from `support`.
"""

from harness import scope
from harness.broker import DeadLetters, connected, publishing_as_director, reason
from harness.director import Director, Results, deploy, publish_reliably, site_event, write_jq_site, write_site
from harness.process import OrchestratorProcess, orchestrator_env, orchestrator_running
from harness.rabbit import broker_definitions
from harness.scope import fresh_site_id
from harness.stack import (
    DEAD_LETTERS,
    DIRECTOR_URL,
    INBOUND,
    RESULTS,
    ROOT,
    SITE_RESULTS,
    SITE_UID_BASE,
    TRAEFIK,
    TRAEFIK_API,
    default_images,
    docker_api,
    docker_without_test_sites,
    fresh_vhost,
    make_vhost,
    registry_auth,
    registry_tags,
    scratch_sites_root,
    service,
    wipe_sites,
)
from harness.waiting import eventually
from support.report import terminal_section
from support.running import Running, stack_running
from support.terminals import SESSION_LABEL, Terminal, TerminalBus, terminal_bus
from support.web import fetch, served

__all__ = [
    "DEAD_LETTERS",
    "DIRECTOR_URL",
    "INBOUND",
    "RESULTS",
    "ROOT",
    "SESSION_LABEL",
    "SITE_RESULTS",
    "SITE_UID_BASE",
    "TRAEFIK",
    "TRAEFIK_API",
    "DeadLetters",
    "Director",
    "OrchestratorProcess",
    "Results",
    "Running",
    "Terminal",
    "TerminalBus",
    "broker_definitions",
    "connected",
    "default_images",
    "deploy",
    "docker_api",
    "docker_without_test_sites",
    "eventually",
    "fetch",
    "fresh_site_id",
    "fresh_vhost",
    "make_vhost",
    "orchestrator_env",
    "orchestrator_running",
    "publish_reliably",
    "publishing_as_director",
    "reason",
    "registry_auth",
    "registry_tags",
    "scope",
    "scratch_sites_root",
    "served",
    "service",
    "site_event",
    "stack_running",
    "terminal_bus",
    "terminal_section",
    "wipe_sites",
    "write_jq_site",
    "write_site",
]
