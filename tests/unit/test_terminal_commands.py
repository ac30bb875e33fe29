"""Terminal commands and session containers: the pure parts."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import pytest
from fakes import BASE, NGINX, PINNED

from orchestrator.bus.decoding import parse_command, session_id_of
from orchestrator.config import Settings
from orchestrator.errors import InvalidEvent
from orchestrator.sites.admission import admit
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.terminals.container import SESSION, session_container
from orchestrator_contract.sites import Site
from orchestrator_contract.terminals import MAX_TERMINAL_INPUT, TerminalInput, TerminalOpen, TerminalResize

SiteData = Callable[..., dict[str, Any]]

SESSION_ID = uuid.UUID("6f1c1e8e-2f0d-4c1a-9f5e-0000000000aa")


def command(**body: Any) -> bytes:
    return json.dumps({"session_id": str(SESSION_ID), **body}).encode()


def test_the_routing_key_names_the_command() -> None:
    opened = parse_command(command(site_id=7, cols=120, rows=40), "terminal.open")
    assert isinstance(opened, TerminalOpen) and (opened.site_id, opened.cols, opened.rows) == (7, 120, 40)
    typed = parse_command(command(data=base64.b64encode(b"ls\n").decode()), "terminal.input")
    assert isinstance(typed, TerminalInput) and typed.raw == b"ls\n"
    assert isinstance(parse_command(command(cols=1, rows=1), "terminal.resize"), TerminalResize)


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("terminal.explode", command()),
        ("terminal.open", command(site_id=7, type="terminal.close")),  # body says another type
        ("terminal.open", command(site_id="7")),  # strict JSON types
        ("terminal.open", command(site_id=0)),
        ("terminal.resize", command(cols=0, rows=24)),
        ("terminal.resize", command(cols=100_000, rows=24)),
        ("terminal.input", command(data="not base64!")),
        ("terminal.input", command()),
        ("terminal.close", json.dumps({"session_id": "nope"}).encode()),
        ("terminal.close", b"\\xff not json"),
    ],
)
def test_malformed_commands_are_invalid(key: str, body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_command(body, key)


def test_input_beyond_the_bound_is_refused() -> None:
    fits = base64.b64encode(b"x" * MAX_TERMINAL_INPUT).decode()
    assert len(parse_command(command(data=fits), "terminal.input").raw) == MAX_TERMINAL_INPUT  # type: ignore[union-attr]
    too_much = base64.b64encode(b"x" * (MAX_TERMINAL_INPUT + 1)).decode()
    with pytest.raises(InvalidEvent, match="data"):
        parse_command(command(data=too_much), "terminal.input")


def test_the_session_id_of_an_invalid_command_is_read_when_it_can_be() -> None:
    assert session_id_of(command(cols="x")) == SESSION_ID
    assert session_id_of(b"[1, 2]") is None and session_id_of(b"{") is None
    assert session_id_of(json.dumps({"session_id": "../../etc"}).encode()) is None


def _service(site_data: SiteData, settings: Settings, **site: Any) -> dict[str, Any]:
    """The Docker `Spec` of a site's service, as the swarm adapter would write it."""
    admitted = admit(Site.model_validate(site_data(**site)), Admission.of(settings))
    spec = desired_service(admitted, 3, SiteRuntime.of(settings), PurePath("/srv/sites/site_0001"))
    return {
        "Labels": spec.labels,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": spec.image,
                "User": spec.user,
                "Env": [f"{k}={v}" for k, v in spec.env.items()],
                "CapabilityAdd": list(spec.cap_add),
            },
            "Resources": {"Limits": {"NanoCPUs": spec.nano_cpus, "MemoryBytes": spec.memory_bytes, "Pids": 512}},
        },
    }


def test_a_dynamic_sites_session_runs_its_image_user_env_and_limits(site_data: SiteData) -> None:
    settings = Settings()
    service = _service(site_data, settings, env={"GREETING": "hi"}, resources={"cpus": 0.5, "memory": "128Mi"})
    container = session_container(
        service, 1, SESSION_ID, PurePath("/srv/sites/site_0001"), SiteRuntime.of(settings), Admission.of(settings)
    )

    assert container.image == service["TaskTemplate"]["ContainerSpec"]["Image"]
    assert container.user == "1000000001:1000000001"
    assert container.env["GREETING"] == "hi" and container.env["SITE_ID"] == "1"
    assert (container.nano_cpus, container.memory_bytes, container.pids_limit) == (500_000_000, 128 * 2**20, 512)
    assert container.command == ("/bin/sh", "-l") and container.workdir == "/site"
    assert container.site_dir == "/srv/sites/site_0001"
    assert container.labels[SESSION] == str(SESSION_ID) and container.labels["com.director.site-id"] == "1"


def test_a_static_sites_session_runs_the_base_image_not_nginx(site_data: SiteData) -> None:
    settings = Settings(**PINNED)
    service = _service(site_data, settings, kind="static")
    container = session_container(
        service, 1, SESSION_ID, PurePath("/srv/sites/site_0001"), SiteRuntime.of(settings), Admission.of(settings)
    )

    assert service["TaskTemplate"]["ContainerSpec"]["Image"] == NGINX
    assert container.image == BASE
    assert "NGINX_CONF" not in container.env


def test_a_session_never_takes_its_user_or_capabilities_from_the_live_service() -> None:
    """A service made before sites had their own uid, or edited by hand, has no user or root."""
    for container in ({"Image": "php:8"}, {"Image": "php:8", "User": "0:0", "CapabilityAdd": ["CAP_SYS_ADMIN"]}):
        service = {"Labels": {}, "TaskTemplate": {"ContainerSpec": container}}
        session = session_container(
            service,
            5,
            SESSION_ID,
            PurePath("/srv/sites/site_0005"),
            SiteRuntime.of(Settings()),
            Admission.of(Settings()),
        )
        assert session.user == "1000000005:1000000005"
        assert session.cap_add == ()
