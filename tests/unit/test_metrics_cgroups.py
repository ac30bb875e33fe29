"""Reading a task's cgroup: both hierarchies (files as the kernel writes them), finding a
container wherever the engine's driver put it, and the machine's own real cgroups."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.metrics import cgroups
from orchestrator.metrics.cgroups import Hierarchy, Limits, Usage
from orchestrator.metrics.node import busy_seconds, meminfo, read_node

ID = "a" * 64
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compr
    lo:    9999       8    0    0    0     0          0         0     9999       8    0    0    0     0       0  0
  eth0:    1200       8    0    0    0     0          0         0      300       4    0    0    0     0       0  0
  eth1:      34       1    0    0    0     0          0         0        6       1    0    0    0     0       0  0
"""


def write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def proc_with(root: Path, pid: int) -> Path:
    proc = root / "proc"
    write(proc / str(pid) / "net", {"dev": NET_DEV})
    write(proc, {"stat": "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 1 0 1 1 1 0 0 0 0 0\n"})
    write(proc, {"meminfo": "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\n"})
    return proc


def v2_tree(root: Path, relative: str, *, oom_kills: int = 0) -> Path:
    """A cgroup v2 container directory as the systemd driver makes it."""
    write(root, {"cgroup.controllers": "cpuset cpu io memory pids\n"})
    cgroup = root / relative
    write(
        cgroup,
        {
            "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\n"
            "nr_throttled 3\nthrottled_usec 120000\nnr_bursts 0\nburst_usec 0\n",
            "cpu.max": "50000 100000\n",
            "memory.current": "73400320\n",
            "memory.max": "268435456\n",
            "memory.stat": "anon 50000000\nfile 23400320\nactive_file 3400320\ninactive_file 20000000\n",
            "memory.events": "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n".replace(
                "oom_kill 2", f"oom_kill {oom_kills}"
            ),
            "pids.current": "7\n",
            "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
            "8:16 rbytes=1000 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
            "cgroup.procs": "4242\n4243\n",
        },
    )
    return cgroup


def v1_tree(root: Path, parent: str, *, co_mounted: bool = False, memory_parent: str | None = None) -> None:
    """cgroup v1 controllers with a cgroupfs-driver container under `parent` (in the memory
    controller under `memory_parent` when given)."""
    controllers = {
        "cpu": {
            "cpu.stat": "nr_periods 65\nnr_throttled 4\nthrottled_time 250000000\nnr_bursts 0\nburst_time 0\n",
            "cpu.cfs_quota_us": "25000\n",
            "cpu.cfs_period_us": "100000\n",
        },
        "cpuacct": {"cpuacct.usage": "191676770\n"},
        "memory": {
            "memory.usage_in_bytes": "974848\n",
            "memory.limit_in_bytes": "67108864\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            "memory.stat": "cache 4096\nrss 970752\ninactive_file 1\ntotal_inactive_file 4096\n",
        },
        "blkio": {"blkio.throttle.io_service_bytes": "8:0 Read 512\n8:0 Write 1024\n8:0 Total 1536\nTotal 1536\n"},
        "pids": {"pids.current": "5\n", "cgroup.procs": "4242\n"},
    }
    for name, files in controllers.items():
        mount = "cpu,cpuacct" if co_mounted and name in ("cpu", "cpuacct") else name
        write(root / mount / (memory_parent if memory_parent and name == "memory" else parent) / ID, files)
    write(root / "unified" / "docker" / ID, {"cgroup.procs": "4242\n"})  # a hybrid's empty unified tree


def test_v2_systemd_layout_is_found_and_read(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    v2_tree(root, f"system.slice/docker-{ID}.scope", oom_kills=2)
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    assert hierarchy.v2
    cgroup = hierarchy.find(ID)
    assert cgroup is not None and cgroup.memory == root / f"system.slice/docker-{ID}.scope"
    assert hierarchy.limits(cgroup) == Limits(cpus=0.5, memory_bytes=268435456)
    assert hierarchy.usage(cgroup) == Usage(
        cpu_usec=2500000,
        throttled_usec=120000,
        memory_bytes=73400320 - 20000000,  # the working set: without inactive file cache
        oom_kills=2,
        pids=7,
        io_read_bytes=5096,
        io_write_bytes=8192,
        net_rx_bytes=1234,  # loopback left out
        net_tx_bytes=306,
    )


def test_v1_cgroupfs_layout_with_a_cgroup_parent(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    v1_tree(root, "director-w1")
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    assert not hierarchy.v2  # a hybrid: the unified tree holds no controllers
    cgroup = hierarchy.find(ID)
    assert cgroup is not None
    assert hierarchy.limits(cgroup) == Limits(cpus=0.25, memory_bytes=67108864)
    usage = hierarchy.usage(cgroup)
    assert usage == Usage(191676, 250000, 974848 - 4096, 1, 5, 512, 1024, 1234, 306)


def test_v1_a_container_at_another_path_in_each_controller(tmp_path: Path) -> None:
    """A worker of scripts/cluster.sh: its engine runs in a memory cgroup of its own but the root
    of the other controllers, and its relative --cgroup-parent is placed under the engine's cgroup
    in each; the first container is searched for in each controller, the next by templates."""
    root = tmp_path / "cgroup"
    v1_tree(root, "director-w1", memory_parent="process_api/0f17/director-w1")
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    cgroup = hierarchy.find(ID)
    assert cgroup is not None
    assert cgroup.memory == root / "memory/process_api/0f17/director-w1" / ID
    assert cgroup.cpu == root / "cpu/director-w1" / ID and cgroup.pids == root / "pids/director-w1" / ID
    assert hierarchy.limits(cgroup) == Limits(cpus=0.25, memory_bytes=67108864)
    assert hierarchy.usage(cgroup) == Usage(191676, 250000, 974848 - 4096, 1, 5, 512, 1024, 1234, 306)


def test_v1_a_container_missing_from_a_controller_is_not_measured_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cgroup"
    v1_tree(root, "docker")
    shutil.rmtree(root / "blkio" / "docker" / ID)
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    assert hierarchy.find(ID) is None
    assert hierarchy.find(ID) is None
    said = [r for r in caplog.records if "missing from a controller" in r.getMessage()]
    assert len(said) == 1 and "blkio" in said[0].__dict__["fields"]["controller"]


def test_v1_co_mounted_cpu_and_cpuacct(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    v1_tree(root, "docker", co_mounted=True)
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    cgroup = hierarchy.find(ID)
    assert cgroup is not None and cgroup.cpu.parent.parent.name == "cpu,cpuacct"
    assert hierarchy.usage(cgroup).cpu_usec == 191676


def test_the_layout_found_once_serves_the_next_containers_without_a_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cgroup"
    v2_tree(root, f"system.slice/docker-{ID}.scope")
    other = "b" * 64
    v2_tree(root, f"system.slice/docker-{other}.scope")
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    assert hierarchy.find(ID) is not None
    searches: list[str] = []
    real = cgroups._search
    monkeypatch.setattr(cgroups, "_search", lambda base, cid: searches.append(cid) or real(base, cid))
    assert hierarchy.find(other) is not None
    assert searches == []
    # A container that has no cgroup (it ended) is searched for once, not at every pass.
    assert hierarchy.find("c" * 64) is None
    assert hierarchy.find("c" * 64) is None
    assert searches == ["c" * 64]


def test_a_cgroup_gone_between_listing_and_reading_raises_oserror(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cgroup_dir = v2_tree(root, f"docker/{ID}")
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    cgroup = hierarchy.find(ID)
    assert cgroup is not None
    for entry in cgroup_dir.iterdir():
        entry.unlink()
    with pytest.raises(OSError):
        hierarchy.usage(cgroup)


def test_no_process_to_read_the_network_through_reads_zero(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cgroup_dir = v2_tree(root, f"docker/{ID}")
    (cgroup_dir / "cgroup.procs").write_text("")
    hierarchy = Hierarchy(root, proc_with(tmp_path, 1))
    cgroup = hierarchy.find(ID)
    assert cgroup is not None
    usage = hierarchy.usage(cgroup)
    assert (usage.net_rx_bytes, usage.net_tx_bytes) == (0, 0)


@pytest.mark.parametrize("procs", ["", "0\n0\n"], ids=["v1", "v2"])
def test_a_collector_in_its_own_pid_namespace_reads_the_network_through_the_main_process(
    tmp_path: Path, procs: str
) -> None:
    """There cgroup.procs lists nothing (v1) or zeros (v2) for the node's processes: the task's
    main process, as Docker gave it, is the way in."""
    root = tmp_path / "cgroup"
    cgroup_dir = v2_tree(root, f"docker/{ID}")
    (cgroup_dir / "cgroup.procs").write_text(procs)
    hierarchy = Hierarchy(root, proc_with(tmp_path, 4242))
    cgroup = hierarchy.find(ID)
    assert cgroup is not None
    assert (hierarchy.usage(cgroup).net_rx_bytes, hierarchy.usage(cgroup).net_tx_bytes) == (0, 0)
    usage = hierarchy.usage(cgroup, pid=4242)
    assert (usage.net_rx_bytes, usage.net_tx_bytes) == (1234, 306)


def test_limits_none_and_max() -> None:
    assert cgroups.cpus_v2("max 100000\n") is None
    assert cgroups.cpus_v1("-1", "100000") is None
    assert cgroups.memory_limit("max\n") is None
    assert cgroups.memory_limit("9223372036854771712\n") is None  # v1's "no limit"
    assert cgroups.memory_limit("1048576\n") == 1048576


def test_the_node_files() -> None:
    cores, busy = busy_seconds("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0 0 0\n")
    assert cores == 2
    assert busy == pytest.approx(150 / os.sysconf("SC_CLK_TCK"))
    assert meminfo("MemTotal:       1000 kB\nMemAvailable:    600 kB\n") == (1024000, 614400)


def test_real_cgroups_of_this_machine(tmp_path: Path) -> None:
    """The kernel's own files: a cgroup made here (in every v1 controller, or in the unified tree)
    holding a child process, found by its name like a container's and read. On v1 it sits one
    level deeper in the memory controller than in the others, as a test cluster worker's do."""
    hierarchy = Hierarchy(Path("/sys/fs/cgroup"))
    prefix = f"orchestrator-unit-{os.getpid()}"
    name = f"{prefix}-" + "d" * 40
    bases = (
        [hierarchy.root]
        if hierarchy.v2
        else [hierarchy.root / c for c in ("cpu", "cpuacct", "blkio", "pids")] + [hierarchy.root / "memory" / prefix]
    )
    made: list[Path] = []
    # It waits to be moved in, then works a little (CPU and memory are charged as they are used).
    script = (
        'read go; i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; x=$(head -c 2000000 /dev/zero | tr "\\0" a); '
        "read done"
    )
    child = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE)
    try:
        for base in bases:
            try:
                if not base.exists():
                    base.mkdir()
                    made.append(base)
                (base / name).mkdir()
            except OSError as exc:
                pytest.skip(f"cannot make a cgroup under {base}: {exc.strerror}")
            made.append(base / name)
            (base / name / "cgroup.procs").write_text(str(child.pid))
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        cgroup = hierarchy.find("d" * 40)
        assert cgroup is not None and cgroup.memory == bases[-1] / name and cgroup.pids == bases[-2] / name
        for _ in range(100):
            usage = hierarchy.usage(cgroup)
            if usage.cpu_usec > 10_000 and usage.memory_bytes > 1_000_000:
                break
            time.sleep(0.05)
        assert usage.cpu_usec > 10_000 and usage.memory_bytes > 1_000_000 and usage.pids >= 1
        assert usage.net_rx_bytes >= 0  # through the child's /proc/<pid>/net/dev
        assert hierarchy.limits(cgroup) == Limits(None, None)
    finally:
        child.kill()
        child.wait()
        for directory in reversed(made):
            for _ in range(50):  # the killed child leaves the cgroup a moment later
                try:
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
    reading = read_node(Path("/proc"), tmp_path)
    assert reading.cpus >= 1 and reading.memory_total_bytes > reading.memory_available_bytes > 0
    assert reading.disk_total_bytes and reading.disk_free_bytes is not None
