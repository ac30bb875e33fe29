"""The broker and the orchestrator's credentials: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.config.base import Group, with_password


class BrokerSettings(Group):
    # --- broker -------------------------------------------------------------------------------
    # The broker, as the orchestrator's user (`amqps://` for TLS).
    amqp_url: str = "amqp://orchestrator:orchestrator@127.0.0.1:5672/"
    # A Docker secret holding the broker password; replaces the password in amqp_url.
    amqp_password_file: Path | None = None
    # TLS: the CA that verifies the broker, and a client certificate and key.
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None
    # The AMQP heartbeat: low enough that a dead broker is noticed within seconds.
    heartbeat_seconds: int = Field(default=5, ge=1)
    # The broker's `max_message_size` (rabbitmq.conf): a larger message closes the channel that
    # carried it. Every reply stays below it, and a file chunk (FILES_CHUNK_BYTES) must fit in it.
    amqp_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=256 * 1024)
    # Operators replay dead letters as a publisher Director trusts (the broker checks user_id): its
    # URL, and a file holding its password.
    replay_amqp_url: str = "amqp://director:director@127.0.0.1:5672/"
    replay_password_file: Path | None = None

    def broker_url(self) -> str:
        return with_password(self.amqp_url, self.amqp_password_file)

    def replay_broker_url(self) -> str:
        return with_password(self.replay_amqp_url, self.replay_password_file)
