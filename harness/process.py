"""The real orchestrator as a child process of the tests, with test settings and its JSON log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from harness.rabbit import LOCAL_BROKER, Broker
from harness.scope import DEPLOYMENT
from harness.stack import ROOT, TRAEFIK, TRAEFIK_API, default_images
from harness.waiting import eventually


class OrchestratorProcess:
    """The real orchestrator, as a child process, with its JSON log captured to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run"], env=self.env, stdout=log, stderr=log, cwd=ROOT
        )

    async def wait_consuming(self, timeout: float = 60) -> None:
        """Wait for the "consuming" log line of the current start."""

        def consuming() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"orchestrator exited with {self.proc.returncode}: {self.tail()}")
            return b'"msg": "consuming"' in self.log_path.read_bytes()[self._offset :]

        await eventually(consuming, timeout)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`orchestrator ARGS...` as an operator runs it next to this process (same settings, no
        terminal to ask on)."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """`orchestrator healthcheck` as Docker's HEALTHCHECK runs it, against this process."""
        return self.cli("healthcheck", timeout=30)

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def orchestrator_env(vhost: str, sites_root: Path, broker: Broker = LOCAL_BROKER, **overrides: str) -> dict[str, str]:
    """Settings for a test orchestrator: short timings, its own vhost and sites root."""
    env = {
        **default_images(),  # pinned by digest, as `orchestrator run` requires
        "ORCHESTRATOR_AMQP_URL": broker.url("orchestrator", vhost),
        "ORCHESTRATOR_REPLAY_AMQP_URL": broker.url("director", vhost),
        "ORCHESTRATOR_SITES_ROOT": str(sites_root),
        "ORCHESTRATOR_CONVERGE_TIMEOUT_SECONDS": "45",
        # Fast health checks: a task answers within ~3 s, a silent one is found out within ~8 s.
        "ORCHESTRATOR_HEALTH_INTERVAL_SECONDS": "0.5",
        "ORCHESTRATOR_HEALTH_START_PERIOD_SECONDS": "3",
        "ORCHESTRATOR_HEALTH_TIMEOUT_SECONDS": "1",
        "ORCHESTRATOR_HEALTH_RETRIES": "2",
        "ORCHESTRATOR_STABLE_SECONDS": "2",
        # The local Traefik refreshes every second, but its poll of a loaded daemon can take seconds
        # more: the drain leaves it about three times the ~2 s lag it usually shows under the suite.
        "ORCHESTRATOR_DRAIN_SECONDS": "6",
        "ORCHESTRATOR_DOMAIN_WAIT_SECONDS": "1.5",
        "ORCHESTRATOR_TRAEFIK_URL": TRAEFIK,
        "ORCHESTRATOR_TRAEFIK_API_URL": TRAEFIK_API,
        "ORCHESTRATOR_RETRY_BUDGET_SECONDS": "2",
        "ORCHESTRATOR_RETRY_DELAY_SECONDS": "2",
        "ORCHESTRATOR_MAX_ATTEMPTS": "2",
        "ORCHESTRATOR_UPDATE_DELAY_SECONDS": "0",
        "ORCHESTRATOR_UPDATE_MONITOR_SECONDS": "1",
        "ORCHESTRATOR_RESTART_DELAY_SECONDS": "1",
        "ORCHESTRATOR_RESTART_MAX_ATTEMPTS": "8",  # past test_health's crash loop of three
        "ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "20",
        "ORCHESTRATOR_HEARTBEAT_SECONDS": "2",
        # Long enough for a test to use its session, short enough to see one closed for idling.
        "ORCHESTRATOR_TERMINAL_IDLE_SECONDS": "8",
        "ORCHESTRATOR_HEARTBEAT_FILE": str(sites_root.parent / f"heartbeat-{vhost}"),
        "ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "1",
        "ORCHESTRATOR_DRIFT_REPORT_SECONDS": "0",
        # A few Docker calls at once, far past them in messages: a burst for one site cannot hold
        # every slot (test_site_events checks it with a burst of five).
        "ORCHESTRATOR_CONCURRENCY": "3",
        "ORCHESTRATOR_PREFETCH": "12",
        "ORCHESTRATOR_DEPLOYMENT": DEPLOYMENT,
        # The sites network's filter is tests/security/test_site_network.py's: it runs the guard
        # alone (`orchestrator netguard`) and puts the network back as it found it.
        "ORCHESTRATOR_NETWORK_GUARD": "false",
        # Site files: an abandoned upload is seen removed within seconds, and a walk's entry budget
        # is met by the 100,000-entry directory of tests/integration/test_files.py.
        "ORCHESTRATOR_FILES_UPLOAD_IDLE_SECONDS": "3",
        "ORCHESTRATOR_FILES_WALK_MAX_ENTRIES": "50000",
        # Metrics are tests/integration/test_metrics.py's (its own orchestrator, a short period):
        # elsewhere their events would only be noise on the results exchange.
        "ORCHESTRATOR_METRICS_SECONDS": "0",
    }
    env.update({f"ORCHESTRATOR_{k.upper()}": v for k, v in overrides.items()})
    return env


@contextlib.asynccontextmanager
async def orchestrator_running(env: dict[str, str], log_path: Path) -> AsyncIterator[OrchestratorProcess]:
    """The orchestrator consuming; on exit SIGTERM must stop it with exit code 0."""
    process = OrchestratorProcess(env, log_path)
    process.start()
    try:
        await process.wait_consuming()
        yield process
    except BaseException:
        # A failed test must not leave it consuming: a vhost of the same name later is joined again.
        if process.alive:
            process.stop()
        raise
    if process.alive:
        code = process.stop()
        assert code == 0, f"orchestrator exited {code} on SIGTERM: {process.tail()}"
