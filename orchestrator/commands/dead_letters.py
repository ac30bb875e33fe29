"""`orchestrator dead-letters list | replay | purge`: inspect and replay dead-lettered events
(the queue's reading and replay rules: `bus.dead_letters`)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict

from orchestrator.bus import dead_letters
from orchestrator.bus.dead_letters import DeadLetter, Filter
from orchestrator.commands.output import OK, REFUSED, Progress, confirmed, print_json, say
from orchestrator.commands.tables import escaped, render
from orchestrator.config import Settings

LIST_PAGE = 200  # table rows printed at once


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "purge":
        return _purge(args, settings)
    ids = getattr(args, "ids", [])
    keep = dead_letters.make_filter(ids=ids, site=args.site, reason=args.reason)
    if args.action == "list":
        asyncio.run(_list(dead_letters.stream_letters(settings, keep), as_json=args.output == "json"))
        return OK
    return _replay(args, settings, keep)


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    question = f"Delete every message in {settings.dead_letter_queue}? Type 'purge' to confirm: "
    if not args.yes and not confirmed(question, "purge"):
        return REFUSED
    purged = asyncio.run(dead_letters.purge(settings))
    if args.output == "json":
        print_json({"purged": purged})
    else:
        print(f"purged {purged} dead letters")
    return OK


def _replay(args: argparse.Namespace, settings: Settings, keep: Filter) -> int:
    if not (args.ids or args.site is not None or args.reason or args.all):
        say("say what to replay: message ids, --site, --reason or --all")
        return REFUSED
    if args.include_unauthenticated and not args.ids:
        say("--include-unauthenticated needs explicit message ids")
        return REFUSED
    progress = Progress()
    done, skipped = asyncio.run(
        dead_letters.replay(
            settings,
            keep,
            dry_run=args.dry_run,
            include_unauthenticated=args.include_unauthenticated,
            progress=progress,
        )
    )
    progress.done()
    if args.output == "json":
        print_json(
            {
                "dry_run": args.dry_run,
                "replayed": [asdict(letter) for letter in done],
                "skipped": [asdict(letter) for letter in skipped],
            }
        )
        return OK
    print(f"{'would replay' if args.dry_run else 'replayed'} {len(done)} dead letters")
    print(as_table(done))
    if skipped:
        print(f"skipped {len(skipped)} dead letters from an unproven publisher (a replay would make them trusted):")
        print(as_table(skipped))
    return OK


async def _list(letters: AsyncIterator[DeadLetter], *, as_json: bool) -> None:
    """Printed as they are read: ten thousand letters never sit in memory. JSON: one array, a
    letter per line. Table: a page at a time, its columns sized per page."""
    if as_json:
        count = 0
        print("[", end="")
        async for letter in letters:
            print(("\n" if not count else ",\n") + json.dumps(asdict(letter)), end="", flush=True)
            count += 1
        print("\n]" if count else "]")
        return
    page: list[DeadLetter] = []
    header = True

    def flush() -> None:
        rows = as_table(page).splitlines()
        print("\n".join(rows if header else rows[1:]), flush=True)

    async for letter in letters:
        page.append(letter)
        if len(page) >= LIST_PAGE:
            flush()
            page, header = [], False
    if page or header:
        flush()


def as_table(letters: list[DeadLetter]) -> str:
    rows = [
        (
            escaped(letter.id),
            escaped(letter.routing_key),
            "-" if letter.site_id is None else str(letter.site_id),
            escaped(letter.reason),
            str(letter.attempts),
            _human(letter.age_seconds),
        )
        for letter in letters
    ]
    return render(("ID", "ROUTING KEY", "SITE", "REASON", "ATTEMPTS", "AGE"), rows)


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
