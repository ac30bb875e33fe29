"""Connecting: one robust AMQP connection per client, TLS when the URL says `amqps://`.

Reconnect policy: the connection is aio-pika's robust one. When the broker goes away it reconnects
every `reconnect_interval` seconds (1 by default), for as long as the client is open, and restores
its channels, its own queues, their bindings and its consumers. Meanwhile a publish or a request
fails at once with `BrokerUnavailable` (nothing is queued in the client: publish again later); a
request in flight when the connection drops gets no reply (`TimeoutError`); unacknowledged results
are delivered again after the reconnect (results are at least once anyway: deduplicate by
`causation_id`).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractRobustConnection

NAME = "orchestrator-client"  # a connection's name on the broker (its management UI lists them)


def target(url: str, password: str | None = None, heartbeat: int = 30) -> str:
    """The URL with `password` (read from a secret file, say) in place of the URL's, and a
    heartbeat (seconds) unless the URL sets one."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{quote(user(url), safe='')}:{quote(password, safe='')}@{host}"
    query = parse_qs(parts.query)
    query.setdefault("heartbeat", [str(heartbeat)])
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, doseq=True)))


def user(url: str) -> str:
    """The URL's user (RabbitMQ's default, guest, when it names none)."""
    return urlsplit(url).username or "guest"


def tls(ca_file: str | Path | None) -> ssl.SSLContext:
    """Verify the broker against `ca_file` (the deployment's CA), or the system's CAs."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


async def connect(
    url: str,
    *,
    password: str | None = None,
    ca_file: str | Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
    name: str = NAME,
    reconnect_interval: float = 1.0,
) -> AbstractRobustConnection:
    """A robust connection (see the module's reconnect policy); fails at once when the broker
    cannot be reached or refuses the login."""
    address = target(url, password)
    if urlsplit(address).scheme == "amqps" and ssl_context is None:
        ssl_context = tls(ca_file)
    return await aio_pika.connect_robust(
        address,
        ssl_context=ssl_context,
        reconnect_interval=reconnect_interval,
        client_properties={"connection_name": name},
    )
