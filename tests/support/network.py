"""The sites network as a hostile site sees it: a request from inside a container, and the
network guard run as on a production node (`orchestrator netguard`), each namespace's filter put
back as it was found."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker

from orchestrator.sites.isolation import NODE_CHAIN
from support.stack import ROOT


def answers(api: docker.APIClient, container: dict[str, Any], target: str, port: int) -> bool:
    """Whether an HTTP request from inside `container` (as its own user) gets an answer."""
    probe = api.exec_create(
        container["Id"], ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} {port}"]
    )
    return b"HTTP/" in api.exec_start(probe["Id"])


def address(api: docker.APIClient, container: dict[str, Any], network: str) -> str:
    return str(api.inspect_container(container["Id"])["NetworkSettings"]["Networks"][network]["IPAddress"])


@contextlib.contextmanager
def filter_restored(namespace: Path) -> Iterator[None]:
    """The namespace's filter table as found, again afterwards."""
    assert namespace.exists(), f"{namespace}: the network has no namespace on this node (no endpoint on it?)"
    found = subprocess.run(
        ["nsenter", f"--net={namespace}", "iptables-save", "-t", "filter"], capture_output=True, check=True
    ).stdout
    try:
        yield
    finally:
        if namespace.exists():
            subprocess.run(["nsenter", f"--net={namespace}", "iptables-restore"], input=found, check=True)


@contextlib.contextmanager
def node_chain_removed() -> Iterator[None]:
    """The guard's chain in this machine's own filter table (sites/isolation.py `node_chain`)
    removed afterwards, unless it was there before (a guard of the demo's, say)."""
    there = subprocess.run(["iptables", "-S", NODE_CHAIN], capture_output=True).returncode == 0
    try:
        yield
    finally:
        if not there:
            while subprocess.run(["iptables", "-D", "INPUT", "-j", NODE_CHAIN], capture_output=True).returncode == 0:
                pass
            subprocess.run(["iptables", "-F", NODE_CHAIN], capture_output=True)
            subprocess.run(["iptables", "-X", NODE_CHAIN], capture_output=True)


@contextlib.contextmanager
def guarding(env: dict[str, str], log_path: Path) -> Iterator[None]:
    """`orchestrator netguard` with `env`, once it has written the filter (a second or so: waited
    for here, off the event loop's mind), stopped cleanly afterwards."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "netguard"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 20
        while "sites network filtered" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        yield
        assert "cannot filter" not in log_path.read_text()
    finally:
        process.terminate()
        assert process.wait(10) == 0, log_path.read_text()[-2000:]
