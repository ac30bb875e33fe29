"""`orchestrator run`: consume site events, terminal commands and file requests, and keep the swarm
matching them (the composition root: `orchestrator.app`)."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.app import serve
from orchestrator.commands.output import OK, PROMISE_NOT_KEPT, say
from orchestrator.config import Settings
from orchestrator.errors import PromiseNotKept


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        asyncio.run(serve(settings))
    except PromiseNotKept as exc:
        say(f"refusing to start: {exc}")
        return PROMISE_NOT_KEPT
    return OK
