from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import BASE, PINNED
from pydantic import TypeAdapter, ValidationError

from orchestrator.config import Settings
from orchestrator.sites.admission import resolve_image
from orchestrator.slices import Admission
from orchestrator_contract.results import failed
from orchestrator_contract.sites import (
    Resources,
    Site,
    SiteCreated,
    SiteDeleted,
    SiteEvent,
    SiteKind,
    SiteUpdated,
    memory_bytes,
)

SiteData = Callable[..., dict[str, Any]]
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
EVENT: TypeAdapter[Any] = TypeAdapter(SiteEvent)


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def event_with_site(site: dict[str, Any]) -> dict[str, Any]:
    return {**example("site.created"), "site": site}


def test_parses_site_created() -> None:
    event = EVENT.validate_python(example("site.created"))
    assert isinstance(event, SiteCreated)
    assert event.event_id == uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert event.version == 1
    assert event.occurred_at.utcoffset() is not None
    site = event.site
    assert site.id == 1
    assert site.name == "hello"
    assert site.kind is SiteKind.DYNAMIC
    assert site.domains == ["hi.example.com"]
    assert site.image.name == "director/base:latest"
    assert site.image.custom is False
    assert site.resources.cpus == 0.5
    assert site.resources.memory_bytes == 256 * 2**20
    assert site.serving is True
    assert site.env == {"GREETING": "hello"}


def test_parses_site_updated() -> None:
    event = EVENT.validate_python(example("site.updated"))
    assert isinstance(event, SiteUpdated)
    assert event.version == 2
    assert event.site.hostnames == ("hello.example.com",)


def test_parses_site_deleted() -> None:
    event = EVENT.validate_python(example("site.deleted"))
    assert isinstance(event, SiteDeleted)
    assert event.site.id == 1
    assert event.version == 3


def test_parses_from_json_bytes() -> None:
    event = EVENT.validate_json(json.dumps(example("site.created")).encode())
    assert isinstance(event, SiteCreated)


def test_deleted_event_needs_only_the_site_id() -> None:
    data = {**example("site.deleted"), "site": {"id": 5, "name": "ignored"}}
    assert EVENT.validate_python(data).site.id == 5


def test_optional_site_fields_have_defaults(site_data: SiteData) -> None:
    data = site_data()
    for key in ("resources", "serving", "env"):
        del data[key]
    site = Site.model_validate(data)
    assert site.resources == Resources(cpus=1.0, memory="256Mi")
    assert site.serving is True
    assert site.env == {}


def test_events_are_immutable() -> None:
    event = EVENT.validate_python(example("site.created"))
    with pytest.raises(ValidationError):
        event.version = 9


def test_unknown_fields_are_ignored() -> None:
    data = example("site.created")
    data["future_field"] = {"anything": 1}
    data["site"]["owner"] = "someone"
    data["site"]["resources"]["gpus"] = 1
    data["site"]["image"]["pull_policy"] = "always"
    event = EVENT.validate_python(data)
    assert isinstance(event, SiteCreated)
    assert "future_field" not in event.model_dump()
    assert "owner" not in event.site.model_dump()


def test_duplicate_domains_are_deduplicated_in_order(site_data: SiteData) -> None:
    site = Site.model_validate(site_data(domains=["b.example.com", "A.example.com", "a.example.com", "b.example.com"]))
    assert site.hostnames == ("b.example.com", "a.example.com")


def test_domains_are_lower_cased(site_data: SiteData) -> None:
    assert Site.model_validate(site_data(domains=["Hi.Example.COM"])).domains == ["hi.example.com"]


@pytest.mark.parametrize(
    ("value", "expected"), [("6144Ki", 6 * 2**20), ("256Mi", 256 * 2**20), ("2Gi", 2 * 2**30), ("1000Mi", 1000 * 2**20)]
)
def test_memory_quantities(value: str, expected: int) -> None:
    assert memory_bytes(value) == expected
    assert Resources(memory=value).memory_bytes == expected


@pytest.mark.parametrize("value", ["1Ki", "6143Ki", "5Mi"])
def test_memory_below_dockers_smallest_limit_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="at least 6Mi"):
        Resources(memory=value)


def test_failed_result_carries_the_error() -> None:
    result = failed(causation_id=None, site_id=3, version=None, code="invalid_event", message="bad", retryable=False)
    assert result.type == "site.failed"
    assert result.error is not None
    assert result.error.code == "invalid_event"
    assert result.site_id == 3
    assert result.occurred_at.utcoffset() is not None


# --- refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["site.created", "site.updated", "site.deleted"])
@pytest.mark.parametrize("version", [0, -1, "one", None, 1.5])
def test_refuses_a_bad_version(name: str, version: object) -> None:
    with pytest.raises(ValidationError):
        EVENT.validate_python({**example(name), "version": version})


@pytest.mark.parametrize("site_id", [0, -1, 2**31, "abc", None])
def test_refuses_a_bad_site_id(site_data: SiteData, site_id: object) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(id=site_id))
    with pytest.raises(ValidationError):
        EVENT.validate_python({**example("site.deleted"), "site": {"id": site_id}})


def test_accepts_the_largest_site_id(site_data: SiteData) -> None:
    assert Site.model_validate(site_data(id=2**31 - 1)).id == 2**31 - 1


@pytest.mark.parametrize("memory", ["256MB", "256", "256mi", "0Mi", "-1Mi", "1.5Gi", "1Ti", " 256Mi", "256Mi\n", ""])
def test_refuses_bad_memory(site_data: SiteData, memory: str) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(resources={"cpus": 1, "memory": memory}))


@pytest.mark.parametrize("cpus", [0, -1, -0.5, math.nan, math.inf, -math.inf, "lots"])
def test_refuses_bad_cpus(site_data: SiteData, cpus: object) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(resources={"cpus": cpus, "memory": "256Mi"}))


@pytest.mark.parametrize("body", [b'{"cpus": NaN}', b'{"cpus": Infinity}', b'{"cpus": -Infinity}'])
def test_refuses_non_finite_cpus_from_json(body: bytes) -> None:
    with pytest.raises(ValidationError):
        Resources.model_validate_json(body)


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "A.B", "", "A=B", "\u00c4", "A\x00"])
def test_refuses_bad_env_keys(site_data: SiteData, key: str) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(env={key: "x"}))


@pytest.mark.parametrize("key", ["PORT", "HOST", "PATH", "HOME", "SITE_ID", "SITE_DIR"])
def test_refuses_reserved_env_keys(site_data: SiteData, key: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        Site.model_validate(site_data(env={key: "x"}))


def test_accepts_shell_identifier_env_keys(site_data: SiteData) -> None:
    env = {"_X": "1", "a1": "", "DATABASE_URL": "postgres://u:p@h/db", "port": "lower-case is not reserved"}
    assert Site.model_validate(site_data(env=env)).env == env


def test_refuses_env_value_with_nul(site_data: SiteData) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        Site.model_validate(site_data(env={"SECRET": "abc\x00def"}))


def test_refuses_overlong_env_value(site_data: SiteData) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(env={"BIG": "x" * 32769}))


@pytest.mark.parametrize("value", [1, None, True, ["x"]])
def test_refuses_non_string_env_values(site_data: SiteData, value: object) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(env={"KEY": value}))


@pytest.mark.parametrize(
    "domains",
    [[], ["localhost"], ["a.com`) || PathPrefix(`/"], ["ex\u0430mple.com"], [1], ["a.example.com"] * 101],
    ids=["none", "single-label", "injection", "cyrillic", "not-a-string", "too-many"],
)
def test_refuses_bad_domains(site_data: SiteData, domains: list[object]) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(domains=domains))


@pytest.mark.parametrize("kind", ["Dynamic", "php", "", None])
def test_refuses_unknown_kinds(site_data: SiteData, kind: object) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(kind=kind))


@pytest.mark.parametrize("name", ["", "Evil Image", "a b", "x:", "Upper", "a/../b", "a" * 256])
def test_refuses_bad_image_references(site_data: SiteData, name: str) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(image={"name": name}))


@pytest.mark.parametrize(
    "change",
    [
        {"type": "site.renamed"},
        {"event_id": "not-a-uuid"},
        {"occurred_at": "2026-01-01T12:00:00"},  # naive: refused
        {"occurred_at": "yesterday"},
    ],
    ids=["type", "event-id", "naive-time", "bad-time"],
)
def test_refuses_bad_envelopes(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EVENT.validate_python({**example("site.created"), **change})


@pytest.mark.parametrize("missing", ["event_id", "occurred_at", "version", "type", "site"])
def test_refuses_missing_event_fields(missing: str) -> None:
    data = example("site.created")
    del data[missing]
    with pytest.raises(ValidationError):
        EVENT.validate_python(data)


@pytest.mark.parametrize("missing", ["id", "name", "kind", "domains"])
def test_refuses_missing_site_fields(site_data: SiteData, missing: str) -> None:
    data = site_data()
    del data[missing]
    with pytest.raises(ValidationError):
        EVENT.validate_python(event_with_site(data))


def test_a_site_without_an_image_gets_the_default_base_image(site_data: SiteData) -> None:
    data = site_data()
    del data["image"]
    site = Site.model_validate(data)
    assert site.image is None
    assert resolve_image(site.image, site.id, Admission.of(Settings(**PINNED))) == BASE


@pytest.mark.parametrize("cpus", [1e-10, 0.001, 0.0099])
def test_cpus_below_dockers_smallest_limit_are_refused(site_data: SiteData, cpus: float) -> None:
    with pytest.raises(ValidationError):
        Site.model_validate(site_data(resources={"cpus": cpus, "memory": "64Mi"}))
