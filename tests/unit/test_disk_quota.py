"""The per-site disk limit's pure parts and its behaviour where the filesystem cannot enforce one
(the unit tests' tmp directory is not a btrfs with quotas): the setting's sizes, the kernel's
"no limit", what `status` shows, and a site directory made as before, without a crash."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from orchestrator.commands.status import disk_cell, disk_json
from orchestrator.commands.tables import size
from orchestrator.files import confined, quota
from orchestrator.files.quota import DiskUsage
from orchestrator.files.sitedirs import SiteDirs
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.sites import disk_bytes


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), (" 0 ", 0), ("64Mi", 64 * 2**20), ("10Gi", 10 * 2**30), ("512Ki", 2**19)]
)
def test_a_disk_limit_is_0_or_a_quantity_written_as_memory_is(value: str, expected: int) -> None:
    assert disk_bytes(value) == expected


@pytest.mark.parametrize("value", ["", "1G", "-1Mi", "0Mi", "1.5Gi", "lots"])
def test_a_bad_disk_limit_fails_when_the_sites_root_is_set_up(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad quantity"):
        SiteDirs(tmp_path, disk_limit=value)


def test_the_kernels_no_limit_reads_as_none() -> None:
    assert quota.limit_of(0) is None
    assert quota.limit_of(2**64 - 1) is None
    assert quota.limit_of(4096) == 4096


def test_a_refusal_of_the_disk_limit_is_disk_quota_exceeded_and_a_full_disk_too_large() -> None:
    assert confined.failure(OSError(errno.EDQUOT, "quota"), "public/f").code is ErrorCode.DISK_QUOTA_EXCEEDED
    assert confined.failure(OSError(errno.ENOSPC, "full"), "public/f").code is ErrorCode.TOO_LARGE


def test_status_shows_usage_and_limit_where_known() -> None:
    assert disk_json(DiskUsage(2**20, 64 * 2**20)) == {"used": 2**20, "limit": 64 * 2**20}
    assert disk_json(None) is None
    assert disk_cell(DiskUsage(3 * 2**19, 64 * 2**20)) == "1.5Mi/64.0Mi"
    assert disk_cell(DiskUsage(100, None)) == "100/no limit"
    assert disk_cell(None) == "-"
    assert [size(n) for n in (0, 1023, 1024, 5 * 2**30)] == ["0", "1023", "1.0Ki", "5.0Gi"]


async def test_without_quotas_a_limit_is_reported_not_enforced_and_sites_are_made_as_before(tmp_path: Path) -> None:
    dirs = SiteDirs(tmp_path, disk_limit="64Mi")
    problem = dirs.quota_problem()
    assert problem is not None and "btrfs" in problem
    site = await dirs.ensure("site_0001", 100_001)
    assert (site / "public").is_dir()
    assert dirs.disk_usage(["site_0001", "site_0002"]) == {}
    assert SiteDirs(tmp_path).quota_problem() is None  # no limit asked: nothing to say


def test_setting_a_limit_needs_cap_sys_admin_in_the_effective_set() -> None:
    status = "Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t%s\n"
    assert quota.has_capability(status % "000001ffffffffff", quota.CAP_SYS_ADMIN)
    assert not quota.has_capability(status % "00000000000000c3", quota.CAP_SYS_ADMIN)  # CHOWN, DAC_OVERRIDE, SETUID...
    assert not quota.has_capability("Name:\tpython\n", quota.CAP_SYS_ADMIN)


def test_a_site_is_limited_through_a_qgroup_one_level_above_its_subvolume() -> None:
    # Level 1, the subvolume's own id: unique per site directory, and the one parent the kernel's
    # simple quotas give to every subvolume made inside it.
    assert quota.site_qgroup(257) == (1 << 48) | 257
    assert quota.site_qgroup(257) >> 48 == 1 and quota.site_qgroup(257) & (2**48 - 1) == 257
