from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.commands.healthcheck import HEARTBEAT_FILE, HEARTBEAT_INTERVAL, without_settings
from orchestrator.config import Settings
from orchestrator.monitor.heartbeat import Beat, check, orchestrator_beat, write

ROOT = Path(__file__).resolve().parents[2]


def test_a_fresh_beat_with_everything_up_is_healthy(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    write(path, orchestrator_beat(time.time(), broker_away=None, consuming=True, docker=True))
    healthy, why = check(path, max_age=15)
    assert healthy and "healthy" in why and "degraded" not in why


def test_each_problem_is_named(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    write(path, orchestrator_beat(time.time(), broker_away=None, consuming=False, docker=False))
    healthy, why = check(path, max_age=15)
    assert not healthy
    assert "not consuming" in why and "docker" in why


def test_a_broker_away_is_said_but_does_not_fail_the_check(tmp_path: Path) -> None:
    """Swarm replaces a container whose check keeps failing: an outage longer than its retries would
    restart every replica at once, and again, while the connection comes back by itself."""
    path = tmp_path / "beat"
    write(path, orchestrator_beat(time.time(), broker_away=42.4, consuming=False, docker=True))
    healthy, why = check(path, max_age=15)
    assert healthy, why
    assert "degraded: not connected to the broker for 42s (reconnecting)" in why
    # What a restart could mend still fails it, the broker away or not.
    write(path, orchestrator_beat(time.time(), broker_away=42.4, consuming=False, docker=False))
    healthy, why = check(path, max_age=15)
    assert not healthy and why == "docker does not answer"


def test_a_beat_without_degraded_reads_as_before(tmp_path: Path) -> None:
    """A beat written by the release before (no `degraded` field) during a rolling update."""
    (tmp_path / "old").write_text(json.dumps({"at": time.time(), "problems": []}))
    assert check(tmp_path / "old", max_age=15)[0]
    (tmp_path / "bad").write_text(json.dumps({"at": time.time(), "problems": [], "degraded": "x"}))
    assert not check(tmp_path / "bad", max_age=15)[0]


def test_a_stale_beat_means_a_stuck_process(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    write(path, Beat(1000.0, []))
    healthy, why = check(path, max_age=15, now=1016.0)
    assert not healthy and "16s ago" in why


def test_no_or_garbled_beat_is_unhealthy(tmp_path: Path) -> None:
    assert not check(tmp_path / "missing", max_age=15)[0]
    (tmp_path / "bad").write_text("{not json")
    assert not check(tmp_path / "bad", max_age=15)[0]
    (tmp_path / "wrong").write_text('{"at": 1}')
    assert not check(tmp_path / "wrong", max_age=15)[0]


def test_the_command_imports_only_what_reading_the_beat_needs(tmp_path: Path) -> None:
    """Docker runs it every 5 s in every replica: pydantic alone would cost a fifth of a second, and
    argparse, logging, dataclasses, pathlib and package metadata together twice the bare start-up.
    Run from the source without `site` (as the image's installed package: no editable finder)."""
    heavy = ("aio_pika", "aiormq", "docker", "pydantic", "argparse", "logging", "dataclasses", "pathlib")
    heavy += ("importlib.metadata", "importlib.util")
    code = (
        "import sys; from orchestrator.__main__ import main; rc = main(['healthcheck']);"
        f"print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {heavy!r})))"
    )
    env = {"ORCHESTRATOR_HEARTBEAT_FILE": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert done.stdout.strip().endswith("[]"), done.stdout + done.stderr
    assert "no heartbeat" in done.stderr


def test_a_beat_from_the_future_is_not_healthy(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    write(path, Beat(time.time() + 3600, []))
    healthy, why = check(path, max_age=15)
    assert not healthy and "future" in why


def test_a_planted_link_is_neither_written_through_nor_read(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses-file"
    target.write_text("precious")
    path = tmp_path / "beat"
    partial = tmp_path / f".beat.{os.getpid()}"
    partial.symlink_to(target)  # planted where the temporary file goes
    path.symlink_to(target)  # and where the beat goes
    assert not check(path, max_age=15)[0]
    write(path, Beat(time.time(), []))
    assert target.read_text() == "precious" and not path.is_symlink()
    assert check(path, max_age=15)[0]


def test_the_healthcheck_reads_its_two_settings_as_settings_does(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = Settings.model_fields
    assert ("ORCHESTRATOR_HEARTBEAT_FILE", str(fields["heartbeat_file"].default)) == HEARTBEAT_FILE
    assert HEARTBEAT_INTERVAL[0] == "ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS"
    assert float(HEARTBEAT_INTERVAL[1]) == fields["heartbeat_interval_seconds"].default
    for env in ({}, {"ORCHESTRATOR_HEARTBEAT_FILE": "/run/beat", "ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "2.5"}):
        for key in (HEARTBEAT_FILE[0], HEARTBEAT_INTERVAL[0]):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert without_settings(env) == (str(settings.heartbeat_file), settings.heartbeat_interval_seconds)


@pytest.mark.parametrize(
    "env",
    [
        {"ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "0"},
        {"ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "-1"},
        {"ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "inf"},
        {"ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "soon"},
        {"ORCHESTRATOR_HEARTBEAT_FILE": ""},
        {"orchestrator_heartbeat_file": "/elsewhere"},  # Settings ignores case; this reader does not
    ],
)
def test_anything_unusual_is_left_to_settings(env: dict[str, str]) -> None:
    assert without_settings(env) is None
