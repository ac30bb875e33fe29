"""All terminal sessions of a node under one bound (orchestrator.terminals.cgroup): the limits
written for cgroup v1 and v2, a session's own limits never above the bound, and a node where the
bound cannot be set refused, saying why."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest

from orchestrator.config import Settings
from orchestrator.errors import PromiseNotKept
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.terminals.cgroup import TerminalsCap, enforce, limit_files
from orchestrator.terminals.container import session_container

CAP = TerminalsCap.of(Settings(terminals_cgroup="t/terms", terminals_max_cpus=0.5, terminals_max_memory="256Mi"))


def test_the_bound_is_read_from_the_settings_and_can_be_turned_off() -> None:
    assert TerminalsCap(cgroup="t/terms", nano_cpus=500_000_000, memory_bytes=256 * 2**20, pids=2048) == CAP
    assert CAP.parent == "/t/terms" and CAP.quota_us == 50_000
    assert TerminalsCap.of(Settings(terminals_cgroup="")) is None
    with pytest.raises(ValueError):
        Settings(terminals_cgroup="../escape")


def test_limits_for_cgroup_v1_and_v2() -> None:
    assert CAP is not None
    assert limit_files(CAP, unified=False) == {
        "cpu/t/terms/cpu.cfs_period_us": "100000",
        "cpu/t/terms/cpu.cfs_quota_us": "50000",
        "memory/t/terms/memory.limit_in_bytes": str(256 * 2**20),
        "pids/t/terms/pids.max": "2048",
    }
    assert limit_files(CAP, unified=True) == {
        "t/terms/cpu.max": "50000 100000",
        "t/terms/memory.max": str(256 * 2**20),
        "t/terms/pids.max": "2048",
    }


@pytest.mark.parametrize("unified", [False, True])
def test_enforce_makes_the_cgroup_and_writes_its_limits(tmp_path: Path, unified: bool) -> None:
    assert CAP is not None
    if unified:
        (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    enforce(CAP, tmp_path)
    for relative, value in limit_files(CAP, unified).items():
        assert (tmp_path / relative).read_text() == value
    if unified:
        assert (tmp_path / "t" / "terms" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_a_node_where_the_bound_cannot_be_set_is_refused(tmp_path: Path) -> None:
    assert CAP is not None
    (tmp_path / "cpu").write_text("not a directory")  # as a read-only or missing hierarchy fails
    with pytest.raises(PromiseNotKept, match="terminals cannot be bounded together"):
        enforce(CAP, tmp_path)


def test_a_sessions_own_limits_stay_under_the_bound() -> None:
    settings = Settings()
    limits = {"NanoCPUs": 2_000_000_000, "MemoryBytes": 2**30, "Pids": 512}
    service = {"Labels": {}, "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Resources": {"Limits": limits}}}
    args = (service, 7, __import__("uuid").uuid4(), PurePath("/srv/sites/site_0007"))
    capped = session_container(*args, SiteRuntime.of(settings), Admission.of(settings), cap=CAP)
    assert (capped.nano_cpus, capped.memory_bytes, capped.cgroup_parent) == (500_000_000, 256 * 2**20, "/t/terms")
    free = session_container(*args, SiteRuntime.of(settings), Admission.of(settings))
    assert (free.nano_cpus, free.memory_bytes, free.cgroup_parent) == (2_000_000_000, 2**30, "")
