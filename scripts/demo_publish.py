"""Publish one sample `site.created` as Director would and print its result, both through
Director's client (clients/python) with Director's own broker credential (no admin:
docs/security.md#broker).

Usage: python scripts/demo_publish.py SITE_ID DOMAIN [AMQP_URL_OF_DIRECTOR]

For a broker with TLS and real passwords (scripts/stack.sh demo): an `amqps://` URL without a
password, and DEMO_CA_FILE (the broker's CA) and DEMO_DIRECTOR_PASSWORD_FILE (a file holding the
password, kept off the command line).
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from orchestrator_client import Client
from orchestrator_contract.results import SiteResult


def password(variable: str) -> str | None:
    """The password in the file the environment variable names, if it names one."""
    path = os.environ.get(variable)
    return Path(path).read_text().strip() if path else None


async def main(site_id: int, domain: str, director_url: str) -> int:
    site = {
        "id": site_id,
        "name": "demo",
        "kind": "dynamic",
        "domains": [domain],
        "image": {"name": "director/base:latest", "custom": False},
        "resources": {"cpus": 0.5, "memory": "128Mi"},
        "serving": True,
        "env": {"GREETING": "hello"},
    }
    password_ = password("DEMO_DIRECTOR_PASSWORD_FILE")
    async with (
        await Client.connect(director_url, password=password_, ca_file=os.environ.get("DEMO_CA_FILE")) as client,
        client.results.watch() as results,  # a queue of Director's own, bound to the results
    ):
        version = int(datetime.now(UTC).timestamp())  # newer than any earlier demo run
        event = await client.sites.publish_created(site, version=version)
        print(f"published site.created {event.event_id} for site {site_id} ({domain})")
        async with asyncio.timeout(120):
            async for delivery in results:
                await delivery.ack()
                result = delivery.message
                if isinstance(result, SiteResult) and result.causation_id == event.event_id:
                    print(result.model_dump_json(indent=2))
                    return 0 if result.type == "site.deployed" else 1
    return 1


if __name__ == "__main__":
    args = sys.argv[1:]
    director = args[2] if len(args) > 2 else "amqp://director:director@127.0.0.1:5672/"
    sys.exit(asyncio.run(main(int(args[0]), args[1], director)))
