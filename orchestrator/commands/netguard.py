"""`orchestrator netguard`: keep sites from opening connections on the sites network of this node,
until stopped (the guard alone, on a node that runs sites: `orchestrator.app.guard`)."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.app import guard
from orchestrator.commands.output import OK
from orchestrator.config import Settings


def main(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(guard(settings))
    return OK
