"""`orchestrator run`: consume site events, terminal commands and file requests, and keep the swarm
matching them (the composition root: `orchestrator.app`)."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.app import serve
from orchestrator.commands.output import OK
from orchestrator.config import Settings


def main(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(serve(settings))
    return OK
