"""Publish one sample `site.created` as Director would and print the result event, both with
Director's own broker credential (no admin: docs/security.md#broker).

Usage: python scripts/demo_publish.py SITE_ID DOMAIN [AMQP_URL_OF_DIRECTOR]

For a broker with TLS and real passwords (scripts/stack.sh demo): an `amqps://` URL without a
password, and DEMO_CA_FILE (the broker's CA) and DEMO_DIRECTOR_PASSWORD_FILE (a file holding the
password, kept off the command line).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from yarl import URL


def password(variable: str) -> str | None:
    """The password in the file the environment variable names, if it names one."""
    path = os.environ.get(variable)
    return Path(path).read_text().strip() if path else None


async def connect(url: str, secret: str | None) -> Any:
    """A robust connection; `secret` as the URL's password when given, TLS against DEMO_CA_FILE."""
    target = URL(url)
    if secret:
        target = target.with_password(secret)
    context = None
    if target.scheme == "amqps":
        context = ssl.create_default_context(cafile=os.environ.get("DEMO_CA_FILE"))
    return await aio_pika.connect_robust(target, ssl_context=context)


async def main(site_id: int, domain: str, director_url: str) -> int:
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "site.created",
        "occurred_at": datetime.now(UTC).isoformat(),
        "version": int(datetime.now(UTC).timestamp()),  # newer than any earlier demo run
        "site": {
            "id": site_id,
            "name": "demo",
            "kind": "dynamic",
            "domains": [domain],
            "image": {"name": "director/base:latest", "custom": False},
            "resources": {"cpus": 0.5, "memory": "128Mi"},
            "serving": True,
            "env": {"GREETING": "hello"},
        },
    }
    connection = await connect(director_url, password("DEMO_DIRECTOR_PASSWORD_FILE"))
    async with connection:
        # Director's own queue for this watch (director.replies.*), bound to the orchestrator's results.
        channel = await connection.channel()
        queue = await channel.declare_queue(f"director.replies.demo-{uuid.uuid4().hex[:8]}", exclusive=True)
        await queue.bind("orchestrator.results", "site.*")

        out = await connection.channel(publisher_confirms=True)
        sites = await out.get_exchange("director.sites", ensure=False)  # the broker's: Director only publishes
        await sites.publish(
            aio_pika.Message(
                json.dumps(event).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event["event_id"],
                user_id="director",
            ),
            routing_key="site.created",
        )
        print(f"published site.created {event['event_id']} for site {site_id} ({domain})")
        async with queue.iterator(timeout=120) as messages:
            async for message in messages:
                await message.ack()
                result = json.loads(message.body)
                if result.get("causation_id") == event["event_id"]:
                    print(json.dumps(result, indent=2))
                    return 0 if result["type"] == "site.deployed" else 1
    return 1


if __name__ == "__main__":
    args = sys.argv[1:]
    director = args[2] if len(args) > 2 else "amqp://director:director@127.0.0.1:5672/"
    sys.exit(asyncio.run(main(int(args[0]), args[1], director)))
