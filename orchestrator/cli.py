"""The command line, like the tools operators know (docker, kubectl): `orchestrator COMMAND`.

This module parses arguments and dispatches through `COMMANDS`; each command lives in its own
module of `orchestrator.commands`, imported only when it runs (so `healthcheck` starts fast). A
broker or Docker outage ends a command with one line on stderr and a non-zero exit, never a
traceback; a command's report is on stdout, log lines on stderr.
"""

from __future__ import annotations

# Only what `healthcheck` needs here (Docker runs it every few seconds): argparse, logging and
# package metadata, which would triple its start-up, are imported by the functions that use them.
import os
import sys
from typing import TYPE_CHECKING, NamedTuple

from orchestrator.commands import healthcheck

if TYPE_CHECKING:
    import argparse
    from typing import Protocol

    from orchestrator.config import Settings

    class Command(Protocol):
        def main(self, args: argparse.Namespace, settings: Settings) -> int: ...


class Verb(NamedTuple):
    module: str  # in orchestrator.commands
    help: str
    long_running: bool = False  # logs at INFO by default (one-shot commands: WARNING)


COMMANDS: dict[str, Verb] = {
    "run": Verb("run", "consume site events and make the swarm match (the image's default)", long_running=True),
    "healthcheck": Verb("healthcheck", "exit 0 if the running orchestrator is connected, consuming and sees Docker"),
    "status": Verb("status", "every managed site: version, tasks, health, domains, drift (exit 1 on drift)"),
    "reconcile": Verb("reconcile", "restore services changed by hand to their applied spec"),
    "drain": Verb("drain", "move every site off a swarm node with start-first rollouts, then drain it"),
    "site": Verb("reset", "one site's records, for an operator"),
    "dead-letters": Verb("dead_letters", "inspect and replay dead-lettered events"),
    "schema": Verb("schema", "the published event contract"),
    "docker-proxy": Verb("docker_proxy", "a read-only window on the Docker API for Traefik", long_running=True),
    "netguard": Verb("netguard", "keep sites from opening connections on this node's sites network", long_running=True),
    "collect": Verb("collect", "measure this node's sites every period for site.metrics", long_running=True),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["healthcheck"] and (lean := healthcheck.without_settings(os.environ)) is not None:
        return healthcheck.check(*lean)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    import importlib
    import logging

    from pydantic import ValidationError

    from orchestrator import logging_setup
    from orchestrator.commands.output import REFUSED, UNAVAILABLE, say
    from orchestrator.config import Settings
    from orchestrator.errors import BrokerUnavailable, DockerUnavailable, OrchestratorError

    try:
        settings = Settings()
    except ValidationError as exc:
        wrong = (f"ORCHESTRATOR_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        say(f"orchestrator: invalid settings: {'; '.join(wrong)}")
        return REFUSED
    verb = COMMANDS[args.command]
    if verb.long_running:
        logging_setup.setup(settings.log_level or "INFO")
    else:
        logging_setup.setup(settings.log_level or "WARNING", libraries=logging.CRITICAL)
    command: Command = importlib.import_module(f"orchestrator.commands.{verb.module}")
    try:
        return command.main(args, settings)
    except (BrokerUnavailable, DockerUnavailable) as exc:
        say(f"orchestrator {args.command}: {exc.message}")
        return UNAVAILABLE
    except OrchestratorError as exc:
        say(f"orchestrator {args.command}: {exc.message}")
        return 1


def _parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="orchestrator", description="Turns Director's site events into running, routed Docker Swarm services."
    )
    parser.add_argument("--version", action="version", version=_version())
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub = {name: verbs.add_parser(name, help=verb.help, description=verb.help) for name, verb in COMMANDS.items()}

    _output(sub["status"]).add_argument("--site", type=int, help="only this site id")
    mode = _output(sub["reconcile"]).add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="only say what would be done (exit 1 on drift)")
    mode.add_argument("--yes", action="store_true", help="do it")

    drain = _output(sub["drain"])
    drain.add_argument("node", help="node id or host name")
    drain.add_argument("--dry-run", action="store_true", help="only name the sites that would move")
    drain.add_argument("--yes", action="store_true", help="do not ask")

    site = sub["site"].add_subparsers(dest="action", required=True, metavar="ACTION")
    reset = _output(site.add_parser("reset-version", help="forget a site's recorded version and tombstone"))
    reset.add_argument("site_id", type=int)
    reset.add_argument("--yes", action="store_true", help="do not ask")

    schema = sub["schema"].add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _output(schema.add_parser("export", help="write JSON Schemas and examples generated from the models"))
    export.add_argument("--dir", type=Path, default=Path("schemas"))

    _dead_letters(sub["dead-letters"])
    sub["docker-proxy"].add_argument(
        "--listen", default="0.0.0.0:2375", help="HOST:PORT (a network only Traefik shares) or unix:PATH"
    )
    return parser


def _dead_letters(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    list_ = _output(actions.add_parser("list", help="show dead letters: id, routing key, site, reason, attempts, age"))
    replay = _output(actions.add_parser("replay", help="republish dead letters to their original exchange"))
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
    purge = _output(actions.add_parser("purge", help="delete every dead letter (asks first)"))
    purge.add_argument("--yes", action="store_true", help="do not ask")


def _output(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`-o json` on a command that reports (`--json`: the same, as earlier versions spelled it)."""
    import argparse

    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="report format")
    parser.add_argument("--json", action="store_const", const="json", dest="output", help=argparse.SUPPRESS)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("orchestrator", "orchestrator-contract"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)
