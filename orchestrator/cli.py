"""The command line: `orchestrator run | healthcheck | status | reconcile | schema export | dead-letters ...
| docker-proxy | netguard`.

Heavy imports (aio-pika, the docker SDK, pydantic) happen inside the commands that need them, so
`healthcheck` starts fast."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import logging_setup
from orchestrator.monitor import heartbeat

if TYPE_CHECKING:
    from orchestrator.config import Settings

LIST_PAGE = 200  # dead letters' table rows printed at once


# What `healthcheck` reads without Settings, as Settings reads it (tests/unit/test_heartbeat.py pins both).
HEARTBEAT_FILE = ("ORCHESTRATOR_HEARTBEAT_FILE", "/tmp/orchestrator.heartbeat")
HEARTBEAT_INTERVAL = ("ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS", "5.0")


def healthcheck_without_settings(environ: Mapping[str, str]) -> tuple[Path, float] | None:
    """The heartbeat's path and interval for `healthcheck`, which Docker runs every 5 s in every
    replica: reading them without pydantic's import saves a fifth of a second of CPU a run (5 % of
    a core per replica). None for anything unusual (a value Settings would refuse or a key spelled
    in another case), which Settings then reads, and refuses with its own message."""
    names = {HEARTBEAT_FILE[0], HEARTBEAT_INTERVAL[0]}
    if any(key.upper() in names and key not in names for key in environ):
        return None
    try:
        interval = float(environ.get(*HEARTBEAT_INTERVAL))
    except ValueError:
        return None
    path = environ.get(*HEARTBEAT_FILE)
    if not (math.isfinite(interval) and interval > 0) or not path:
        return None
    return Path(path), interval


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["healthcheck"]:
        lean = healthcheck_without_settings(os.environ)
        if lean is not None:
            return _healthcheck(*lean)
    import asyncio  # not for the healthcheck above: a twentieth of a second

    from orchestrator.config import Settings

    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="consume site events and make the swarm match (the default)")
    commands.add_parser(
        "healthcheck", help="exit 0 if the running orchestrator is connected, consuming and sees Docker"
    )

    status = commands.add_parser("status", help="every managed site: version, tasks, health, domains, drift")
    status.add_argument("--json", action="store_true")
    status.add_argument("--site", type=int, help="only this site id")
    reconcile = commands.add_parser("reconcile", help="restore services changed by hand to their applied spec")
    mode = reconcile.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="only say what would be done")
    mode.add_argument("--yes", action="store_true", help="do it")

    commands.add_parser(
        "drain", help="move every site off a swarm node with start-first rollouts, then drain it (no failed request)"
    ).add_argument("node", help="node id or host name")

    site = commands.add_parser("site", help="one site's records, for an operator").add_subparsers(dest="action")
    reset = site.add_parser("reset-version", help="forget a site's recorded version and tombstone (asks first)")
    reset.add_argument("site_id", type=int)
    reset.add_argument("--yes", action="store_true", help="do not ask")

    schema = commands.add_parser("schema", help="the published event contract").add_subparsers(dest="action")
    export = schema.add_parser("export", help="write JSON Schemas and examples generated from the models")
    export.add_argument("--dir", type=Path, default=Path("schemas"))

    letters = commands.add_parser("dead-letters", help="inspect and replay dead-lettered events")
    actions = letters.add_subparsers(dest="action", required=True)
    list_ = actions.add_parser("list", help="show dead letters: id, routing key, site, reason, attempts, age")
    list_.add_argument("--json", action="store_true")
    replay = actions.add_parser("replay", help="republish dead letters to their original exchange")
    replay.add_argument("ids", nargs="*", help="message ids to replay")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.add_argument("--dry-run", action="store_true")
    replay.add_argument(
        "--include-unauthenticated",
        action="store_true",
        help="also replay letters whose publisher is not proven trusted (only with explicit ids)",
    )
    for sub in (list_, replay):
        sub.add_argument("--site", type=int, help="only this site id")
        sub.add_argument("--reason", help="only this error code, e.g. docker_unavailable")
    purge = actions.add_parser("purge", help="delete every dead letter (asks first)")
    purge.add_argument("--yes", action="store_true", help="do not ask")

    proxy = commands.add_parser("docker-proxy", help="a read-only window on the Docker API for Traefik")
    proxy.add_argument("--listen", default="0.0.0.0:2375", help="HOST:PORT (a network only Traefik shares)")

    commands.add_parser(
        "netguard", help="keep sites from opening connections on the sites network of this node (runs until stopped)"
    )

    args = parser.parse_args(argv)
    settings = Settings()
    logging_setup.setup()
    if args.command in (None, "run"):
        from orchestrator.app import serve

        asyncio.run(serve(settings))
        return 0
    if args.command == "healthcheck":
        return _healthcheck(settings.heartbeat_file, settings.heartbeat_interval_seconds)
    if args.command == "status":
        from orchestrator.commands import status as fleet

        print(asyncio.run(fleet.run_status(settings, as_json_output=args.json, site=args.site)))
        return 0
    if args.command == "reconcile":
        from orchestrator.commands.reconcile import run_reconcile

        steps = asyncio.run(run_reconcile(settings, dry_run=args.dry_run))
        for step in steps:
            mark = "done" if step.done else ("would" if args.dry_run and step.action != "report" else "-")
            print(f"[{mark}] {step.drift.kind}: {step.note}")
        print(f"{len(steps)} drifted, {sum(s.done for s in steps)} restored or removed")
        return 0
    if args.command == "drain":
        from orchestrator.commands.drain import run_drain

        moved = asyncio.run(run_drain(settings, args.node))
        for one in moved:
            print(f"{one.site}: {'moved' if one.error is None else 'left to the drain: ' + one.error}")
        print(f"{sum(m.error is None for m in moved)} of {len(moved)} sites moved; {args.node} drained")
        return 0 if all(m.error is None for m in moved) else 1
    if args.command == "site":
        if args.action != "reset-version":
            parser.error("site needs an action: reset-version")
        if not args.yes and not _confirmed(
            f"Forget the recorded version of site {args.site_id}? Type 'reset' to confirm: ", "reset"
        ):
            return 2
        from orchestrator.commands.reset import reset_version

        print(asyncio.run(reset_version(settings, args.site_id)))
        return 0
    if args.command == "docker-proxy":
        from orchestrator.traefik.docker_proxy import DockerProxy

        host, _, port = args.listen.rpartition(":")
        if not settings.docker_url.startswith("unix://"):
            parser.error("docker-proxy forwards to a unix socket (ORCHESTRATOR_DOCKER_URL=unix://...)")
        asyncio.run(DockerProxy(settings.docker_url.removeprefix("unix://")).serve(host, int(port)))
        return 0
    if args.command == "netguard":
        from orchestrator.app import guard

        asyncio.run(guard(settings))
        return 0
    if args.command == "schema":
        from orchestrator.schemas import export as contract

        if args.action != "export":
            parser.error("schema needs an action: export")
        for path in contract.export(args.dir):
            print(path)
        return 0
    return _dead_letters(args, settings)


def _healthcheck(path: Path, interval: float) -> int:
    healthy, why = heartbeat.check(path, max_age=3 * interval)
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def _dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from orchestrator.commands import dead_letters as deadletters

    if args.action == "purge":
        if not args.yes and not _confirmed(
            f"Delete every message in {settings.dead_letter_queue}? Type 'purge' to confirm: ", "purge"
        ):
            return 2
        print(f"purged {asyncio.run(deadletters.purge(settings))} dead letters")
        return 0
    ids = getattr(args, "ids", [])
    keep = deadletters.make_filter(ids=ids, site=args.site, reason=args.reason)
    if args.action == "list":
        asyncio.run(_list_letters(settings, keep, as_json=args.json))
        return 0
    if not (ids or args.site is not None or args.reason or args.all):
        print("say what to replay: message ids, --site, --reason or --all", file=sys.stderr)
        return 2
    if args.include_unauthenticated and not ids:
        print("--include-unauthenticated needs explicit message ids", file=sys.stderr)
        return 2
    done, skipped = asyncio.run(
        deadletters.replay(settings, keep, dry_run=args.dry_run, include_unauthenticated=args.include_unauthenticated)
    )
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {len(done)} dead letters")
    print(deadletters.as_table(done))
    if skipped:
        print(f"skipped {len(skipped)} dead letters from an unproven publisher (a replay would make them trusted):")
        print(deadletters.as_table(skipped))
    return 0


def _confirmed(question: str, word: str) -> bool:
    """An operator typed `word` at a terminal; without a terminal to ask on, no."""
    if not sys.stdin.isatty():
        print(f"refusing to {word} without --yes (no terminal to ask)", file=sys.stderr)
        return False
    if input(question).strip() != word:
        print(f"nothing done: {word} was not confirmed", file=sys.stderr)
        return False
    return True


async def _list_letters(settings: Settings, keep: Any, *, as_json: bool) -> None:
    """Printed as they are read: ten thousand letters never sit in memory. JSON: one array, a
    letter per line. Table: a page at a time, its columns sized per page."""
    from orchestrator.commands import dead_letters as deadletters

    letters = deadletters.stream_letters(settings, keep)
    if as_json:
        count = 0
        print("[", end="")
        async for letter in letters:
            print(("\n" if not count else ",\n") + deadletters.as_json_line(letter), end="", flush=True)
            count += 1
        print("\n]" if count else "]")
        return
    page: list[Any] = []
    header = True

    def flush() -> None:
        rows = deadletters.as_table(page).splitlines()
        print("\n".join(rows if header else rows[1:]), flush=True)

    async for letter in letters:
        page.append(letter)
        if len(page) >= LIST_PAGE:
            flush()
            page, header = [], False
    if page or header:
        flush()
