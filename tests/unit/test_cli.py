"""The operator CLI as operators meet it: help, --version, one line for an outage, `-o json`,
exit codes for drift, drain's dry run and confirmation, progress only on a terminal, log lines
never on stdout, ORCHESTRATOR_LOG_LEVEL."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import orchestrator_contract.version
from orchestrator import cli
from orchestrator.commands import drain, reconcile, status
from orchestrator.commands.output import DRIFT, OK, REFUSED, UNAVAILABLE, Progress
from orchestrator.commands.reconcile import ReconcileStep
from orchestrator.config import Settings
from orchestrator.labels import SITE_ID
from orchestrator.monitor.drift import Fleet
from orchestrator.sites.service import Service
from orchestrator_contract.results import Drift

REPORTING = [
    ["status"],
    ["reconcile", "--dry-run"],
    ["drain", "node-1", "--dry-run"],
    ["site", "reset-version", "7"],
    ["dead-letters", "list"],
    ["dead-letters", "replay", "--all"],
    ["dead-letters", "purge"],
    ["schema", "export"],
]


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _service(site_id: int) -> Service:
    return Service(id="x", name=f"site_{site_id:04d}", index=1, labels={SITE_ID: str(site_id)}, replicas=1, running=1)


def _fleet(*drift: Drift) -> Fleet:
    return Fleet([_service(1), _service(2)], list(drift))


EDITED = Drift(kind="edited", subject="site_0002", site_id=2, detail="edited by hand")


def test_without_a_command_it_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: orchestrator") and all(verb in out for verb in cli.COMMANDS)


def test_version_names_the_server_and_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    contract = orchestrator_contract.version.VERSION  # the contract's version is the package's
    assert capsys.readouterr().out.startswith(f"orchestrator 0.1.0, orchestrator-contract {contract}")


def test_every_verb_has_a_command_module() -> None:
    import importlib

    for verb in cli.COMMANDS.values():
        assert callable(importlib.import_module(f"orchestrator.commands.{verb.module}").main)


@pytest.mark.parametrize("argv", REPORTING, ids=lambda argv: " ".join(argv))
def test_every_reporting_command_takes_output_json_and_the_old_json_flag(argv: list[str]) -> None:
    parser = cli._parser()
    assert parser.parse_args(argv).output == "table"
    assert parser.parse_args([*argv, "-o", "json"]).output == "json"
    assert parser.parse_args([*argv, "--json"]).output == "json"


def test_a_broker_outage_is_one_line_and_exit_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_AMQP_URL", "amqp://orchestrator:secret-pw@127.0.0.1:1/")
    assert cli.main(["dead-letters", "list"]) == UNAVAILABLE
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.count("\n") == 1 and said.err.startswith("orchestrator dead-letters: cannot connect to the broker")
    assert "secret-pw" not in said.err


def test_a_docker_outage_is_one_line_and_exit_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DOCKER_URL", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("ORCHESTRATOR_SITES_ROOT", str(tmp_path))
    assert cli.main(["status"]) == UNAVAILABLE
    said = capsys.readouterr()
    assert said.out == "" and said.err.count("\n") == 1 and said.err.startswith("orchestrator status: docker")


def test_invalid_settings_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONCURRENCY", "none")
    assert cli.main(["status"]) == REFUSED
    assert capsys.readouterr().err.startswith("orchestrator: invalid settings: ORCHESTRATOR_CONCURRENCY:")


@pytest.mark.parametrize(("drift", "site", "code"), [((), None, OK), ((EDITED,), None, DRIFT), ((EDITED,), 1, OK)])
def test_status_exits_non_zero_on_the_drift_it_shows(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    drift: tuple[Drift, ...],
    site: int | None,
    code: int,
) -> None:
    async def survey(settings: Settings) -> Fleet:
        return _fleet(*drift)

    monkeypatch.setattr(status, "run_status", survey)
    assert cli.main(["status", "-o", "json", *(["--site", str(site)] if site else [])]) == code
    shown = json.loads(capsys.readouterr().out)
    assert [s["site_id"] for s in shown["sites"]] == ([site] if site else [1, 2])


def test_reconcile_dry_run_exits_non_zero_on_drift_and_a_real_run_does_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def run(settings: Settings, *, dry_run: bool) -> list[ReconcileStep]:
        return [ReconcileStep(EDITED, "restore", "restore site_0002", done=not dry_run)]

    monkeypatch.setattr(reconcile, "run_reconcile", run)
    assert cli.main(["reconcile", "--dry-run"]) == DRIFT
    assert "[would] edited: restore site_0002" in capsys.readouterr().out
    assert cli.main(["reconcile", "--yes", "-o", "json"]) == OK
    assert json.loads(capsys.readouterr().out)["steps"][0]["done"] is True

    async def clean(settings: Settings, *, dry_run: bool) -> list[ReconcileStep]:
        return []

    monkeypatch.setattr(reconcile, "run_reconcile", clean)
    assert cli.main(["reconcile", "--dry-run"]) == OK


@pytest.fixture
def drained(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The nodes `drain` really drained (the sites on any node: site_0001, site_0002)."""
    done: list[str] = []

    async def sites_on(settings: Settings, node: str) -> list[str]:
        return ["site_0001", "site_0002"]

    async def run(settings: Settings, node: str) -> list[drain.Moved]:
        done.append(node)
        return [drain.Moved("site_0001"), drain.Moved("site_0002", "no answer")]

    monkeypatch.setattr(drain, "sites_on", sites_on)
    monkeypatch.setattr(drain, "run_drain", run)
    return done


def test_drain_dry_run_names_the_sites_and_changes_nothing(
    drained: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["drain", "node-1", "--dry-run"]) == OK
    assert capsys.readouterr().out.splitlines() == [
        "site_0001: would move",
        "site_0002: would move",
        "2 sites would move off node-1",
    ]
    assert cli.main(["drain", "node-1", "--dry-run", "-o", "json"]) == OK
    assert json.loads(capsys.readouterr().out) == {
        "node": "node-1",
        "dry_run": True,
        "sites": ["site_0001", "site_0002"],
    }
    assert drained == []


def test_drain_asks_first_and_refuses_without_a_terminal(
    drained: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["drain", "node-1"]) == REFUSED
    assert "refusing to drain without --yes" in capsys.readouterr().err and drained == []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    assert cli.main(["drain", "node-1"]) == REFUSED and drained == []
    monkeypatch.setattr("sys.stdin", Terminal("drain\n"))
    assert cli.main(["drain", "node-1"]) == 1  # one site did not move
    assert drained == ["node-1"]
    out = capsys.readouterr().out
    assert "Move 2 sites off node-1 and drain it?" in out and "1 of 2 sites moved; node-1 drained" in out


def test_drain_yes_does_not_ask(drained: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["drain", "node-1", "--yes", "-o", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["sites"][1] == {"site": "site_0002", "error": "no answer"}
    assert drained == ["node-1"]


def test_progress_shows_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    piped, terminal = io.StringIO(), Terminal()
    for out in (piped, terminal):
        progress = Progress(out)
        for _ in range(40):
            progress.step(40)
        progress.done()
    assert piped.getvalue() == ""
    assert "40/40" in terminal.getvalue() and terminal.getvalue().endswith("\n")


def test_log_lines_go_to_stderr_never_into_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def survey(settings: Settings) -> Fleet:
        logging.getLogger("orchestrator.test").warning("something to say")
        return _fleet()

    monkeypatch.setattr(status, "run_status", survey)
    assert cli.main(["status", "-o", "json"]) == OK
    said = capsys.readouterr()
    assert json.loads(said.out)["sites"]  # stdout is the report alone
    assert json.loads(said.err.splitlines()[-1])["msg"] == "something to say"


@pytest.mark.parametrize(("env", "argv", "level"), [
    (None, ["status"], logging.WARNING),
    ("debug", ["status"], logging.DEBUG),
    (None, ["run"], logging.INFO),
    ("ERROR", ["run"], logging.ERROR),
])  # fmt: skip
def test_the_log_level_is_orchestrator_log_level_or_the_commands_default(
    monkeypatch: pytest.MonkeyPatch, env: str | None, argv: list[str], level: int
) -> None:
    if env is not None:
        monkeypatch.setenv("ORCHESTRATOR_LOG_LEVEL", env)
    seen: list[int] = []

    def main(args: Any, settings: Settings) -> int:
        seen.append(logging.getLogger().level)
        return OK

    monkeypatch.setattr(f"orchestrator.commands.{cli.COMMANDS[argv[0]].module}.main", main)
    assert cli.main(argv) == OK
    assert seen == [level]
