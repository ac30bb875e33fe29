from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator_contract.env import RESERVED_ENV_KEYS


def test_defaults_match_the_local_stack() -> None:
    settings = Settings()
    assert settings.sites_root == Path("/srv/director/sites")
    assert settings.default_image == "director/base:latest"
    assert settings.allowed_default_images == ["director/base:latest"]
    assert settings.network == "director-sites"
    assert settings.static_image == "nginx:latest"
    assert settings.registry == "198.18.213.1:5000/sites"
    assert settings.allowed_publishers == ["director"]
    assert settings.inbound_exchange == "director.sites"
    assert settings.work_queue == "orchestrator.site-events"
    assert settings.site_port == 80
    assert settings.traefik_entrypoint == "web"
    assert settings.allowed_domain_suffixes == []
    assert settings.allow_ip_domains is False
    assert settings.allow_wildcard_domains is False
    assert settings.amqp_url == "amqp://orchestrator:orchestrator@127.0.0.1:5672/"


def test_default_image_is_allowed_by_default() -> None:
    settings = Settings()
    assert settings.default_image in settings.allowed_default_images


def test_sites_keep_no_capability_by_default() -> None:
    # Sites run as their own non-root user: a capability would only matter to root.
    assert Settings().cap_add == []


def test_reserved_env_keys() -> None:
    assert {"PORT", "HOST"} <= RESERVED_ENV_KEYS


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.network = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("ORCHESTRATOR_ALLOWED_PUBLISHERS", "allowed_publishers"),
        ("ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES", "allowed_default_images"),
        ("ORCHESTRATOR_ALLOWED_DOMAIN_SUFFIXES", "allowed_domain_suffixes"),
        ("ORCHESTRATOR_CAP_ADD", "cap_add"),
    ],
)
def test_csv_variables_parse_to_lists(monkeypatch: pytest.MonkeyPatch, variable: str, field: str) -> None:
    monkeypatch.setenv(variable, "director, ops")
    assert getattr(Settings(), field) == ["director", "ops"]


def test_csv_variable_drops_empty_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ALLOWED_PUBLISHERS", " director ,, ops ,")
    assert Settings().allowed_publishers == ["director", "ops"]


def test_empty_csv_variable_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CAP_ADD", "")
    assert Settings().cap_add == []


def test_csv_fields_accept_lists_in_python() -> None:
    assert Settings(allowed_publishers=["a", "b"]).allowed_publishers == ["a", "b"]


def test_scalar_variables_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_MAX_CPUS", "4")
    monkeypatch.setenv("ORCHESTRATOR_ALLOW_WILDCARD_DOMAINS", "true")
    monkeypatch.setenv("ORCHESTRATOR_SITES_ROOT", "/data/sites")
    settings = Settings()
    assert settings.max_cpus == 4.0
    assert settings.allow_wildcard_domains is True
    assert settings.sites_root == Path("/data/sites")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_MAX_CPUS", "0"),
        ("ORCHESTRATOR_CONCURRENCY", "0"),
        ("ORCHESTRATOR_SITE_PORT", "70000"),
        ("ORCHESTRATOR_MAX_ATTEMPTS", "0"),
    ],
)
def test_out_of_range_variables_are_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_broker_url_without_a_password_file_is_the_url() -> None:
    assert Settings().broker_url() == "amqp://orchestrator:orchestrator@127.0.0.1:5672/"


def test_password_file_replaces_the_url_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "amqp_password"
    secret.write_text("n3w-pass\n")
    monkeypatch.setenv("ORCHESTRATOR_AMQP_URL", "amqp://orchestrator:old@rabbitmq:5672/vhost")
    monkeypatch.setenv("ORCHESTRATOR_AMQP_PASSWORD_FILE", str(secret))
    assert Settings().broker_url() == "amqp://orchestrator:n3w-pass@rabbitmq:5672/vhost"


def test_password_file_value_is_url_quoted(tmp_path: Path) -> None:
    secret = tmp_path / "amqp_password"
    secret.write_text("p@ss/w:rd%\n")
    settings = Settings(amqp_url="amqps://orchestrator@broker.example/", amqp_password_file=secret)
    assert settings.broker_url() == "amqps://orchestrator:p%40ss%2Fw%3Ard%25@broker.example/"


def test_replay_password_file_replaces_the_replay_url_password(tmp_path: Path) -> None:
    secret = tmp_path / "director_password"
    secret.write_text("replay-pass")
    settings = Settings(replay_password_file=secret)
    assert settings.replay_broker_url() == "amqp://director:replay-pass@127.0.0.1:5672/"
    assert settings.broker_url() == "amqp://orchestrator:orchestrator@127.0.0.1:5672/"


def test_password_file_keeps_an_ipv6_host_and_an_encoded_user(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw\n")
    settings = Settings(amqp_url="amqp://my%40user:old@[::1]:5672/vh", amqp_password_file=secret)
    assert settings.broker_url() == "amqp://my%40user:pw@[::1]:5672/vh"


def test_a_file_chunk_must_fit_the_brokers_message_size() -> None:
    assert Settings(files_chunk_bytes=2 * 1024 * 1024).files_chunk_bytes == 2 * 1024 * 1024
    with pytest.raises(ValidationError, match="max_message_size"):
        Settings(files_chunk_bytes=4 * 1024 * 1024)
    with pytest.raises(ValidationError, match="max_message_size"):
        Settings(amqp_max_message_bytes=1024 * 1024, files_chunk_bytes=1024 * 1024)
    assert Settings(amqp_max_message_bytes=1024 * 1024, files_chunk_bytes=512 * 1024).reply_budget_bytes() == 256 * 1024


def test_the_guards_blocked_networks_are_ipv4_networks() -> None:
    assert Settings(network_guard_blocked="10.0.0.0/8, 192.0.2.7").network_guard_blocked == ["10.0.0.0/8", "192.0.2.7"]
    with pytest.raises(ValidationError):
        Settings(network_guard_blocked="not-a-network")
