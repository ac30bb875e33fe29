"""`orchestrator run`: consume site events, terminal commands and file requests, and keep the swarm
matching them (the composition root: `orchestrator.app`)."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.app import serve
from orchestrator.commands.output import OK, PROMISE_NOT_KEPT, say
from orchestrator.config import Settings
from orchestrator.errors import PromiseNotKept
from orchestrator.slices import unpinned_default_images


def main(args: argparse.Namespace, settings: Settings) -> int:
    if unpinned := unpinned_default_images(settings):
        say(
            "refusing to start: default images must be written in full and pinned by digest, "
            "<registry>/<name>:<tag>@sha256:<digest>, so that a tag moved in the registry changes nothing "
            f"that runs (docs/security.md#images): {', '.join(unpinned)}"
        )
        return PROMISE_NOT_KEPT
    try:
        asyncio.run(serve(settings))
    except PromiseNotKept as exc:
        say(f"refusing to start: {exc}")
        return PROMISE_NOT_KEPT
    return OK
