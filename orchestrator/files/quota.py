"""A disk limit per site, where the sites root's filesystem can enforce one: btrfs with simple
quotas (`btrfs quota enable --simple <root>`). Each site directory is a subvolume, and a qgroup of
its own one level up (`1/<subvolume>`) holds it and carries the limit. The kernel refuses a write
past it (EDQUOT) to everyone alike: the site's own processes, its terminals and the file API.

Why one level up, and why simple quotas: anyone may create a subvolume (or a snapshot) in a
directory they can write, and its data count against a qgroup of its own, not the site's. Under
simple quotas the kernel puts a new subvolume into its parent subvolume's qgroup when that has
exactly one parent, which `1/<subvolume>` is: a site's own subvolumes and snapshots, at any depth,
count against its limit (tests/security/test_disk_quota.py makes them as the site's user). Full
qgroups have no such inheritance, so they are refused here as unable to enforce a limit.

Why btrfs and not ext4/XFS project quotas: the kernels this runs on were built without
CONFIG_QFMT_V2 and CONFIG_XFS_QUOTA (an ext4 with the `project` feature refuses to mount), and a
file's owner may change its project id outside a user namespace. Everything is plain ioctls and
sysfs: no package is needed.

Elsewhere (ext4, XFS, NFS, a btrfs without simple quotas) `probe` says why not, the orchestrator
says so once at start, and sites run without a limit: nothing here raises on an unsupported
filesystem.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

# linux/btrfs.h: _IOC(dir, 0x94, nr, size)
_BTRFS_IOC_SUBVOL_CREATE = 0x5000940E  # _IOW(14, struct btrfs_ioctl_vol_args: 4096 bytes)
_BTRFS_IOC_INO_LOOKUP = 0xD0009412  # _IOWR(18, struct btrfs_ioctl_ino_lookup_args: 4096 bytes)
_BTRFS_IOC_FS_INFO = 0x8400941F  # _IOR(31, struct btrfs_ioctl_fs_info_args: 1024 bytes)
_BTRFS_IOC_QUOTA_CTL = 0xC0109428  # _IOWR(40, struct btrfs_ioctl_quota_ctl_args: 16 bytes)
_BTRFS_IOC_QGROUP_ASSIGN = 0x40189429  # _IOW(41, struct btrfs_ioctl_qgroup_assign_args: 24 bytes)
_BTRFS_IOC_QGROUP_CREATE = 0x4010942A  # _IOW(42, struct btrfs_ioctl_qgroup_create_args: 16 bytes)
_BTRFS_IOC_QGROUP_LIMIT = 0x8030942B  # _IOR(43, struct btrfs_ioctl_qgroup_limit_args: 48 bytes)
_QUOTA_CTL_ENABLE_SIMPLE_QUOTA = 4
_LEVEL_SHIFT = 48  # a qgroup id is level << 48 | id
_QGROUP_LIMIT_MAX_RFER = 1
_NO_LIMIT = 2**64 - 1
# The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
SUBVOLUME_ROOT_INO = 256
_NAME_MAX = 4087  # btrfs_ioctl_vol_args.name, NUL included
SYSFS = Path("/sys/fs/btrfs")
CAP_SYS_ADMIN = 21  # linux/capability.h


@dataclass(frozen=True)
class DiskUsage:
    """What a site's directory holds (bytes referenced by its subvolume) and its limit (None: none)."""

    used: int
    limit: int | None


@dataclass(frozen=True)
class Support:
    """Whether the sites root can carry per-site limits; `why` says why not (for the operator)."""

    fsid: str | None
    why: str = ""

    @property
    def enforced(self) -> bool:
        return self.fsid is not None


def probe(root: Path) -> Support:
    """Whether `root` is on a btrfs with quotas enabled."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return Support(None, f"the sites root cannot be opened ({exc.strerror})")
    try:
        info = bytearray(1024)
        fcntl.ioctl(fd, _BTRFS_IOC_FS_INFO, info, True)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            return Support(None, "the sites root is not on btrfs (the one filesystem whose quotas this kernel has)")
        return Support(None, f"the sites root's filesystem could not be asked ({exc.strerror})")
    finally:
        os.close(fd)
    fsid = str(uuid.UUID(bytes=bytes(info[16:32])))
    qgroups = SYSFS / fsid / "qgroups"
    if not qgroups.is_dir():
        return Support(None, f"quotas are not enabled on the sites root's btrfs (btrfs quota enable --simple {root})")
    try:
        mode = (qgroups / "mode").read_text().strip()
    except OSError:
        mode = "qgroup"  # kernels before 6.7 know full qgroups only
    if mode != "squota":
        return Support(
            None,
            "the sites root's btrfs has full qgroups, not simple quotas: a site's own subvolumes would escape "
            f"its limit (btrfs quota disable, then btrfs quota enable --simple {root})",
        )
    if not has_capability(Path("/proc/self/status").read_text(), CAP_SYS_ADMIN):
        return Support(None, "the orchestrator lacks CAP_SYS_ADMIN, which setting a qgroup's limit needs")
    return Support(fsid)


def has_capability(proc_status: str, capability: int) -> bool:
    """Whether the effective set in a /proc/<pid>/status text holds `capability`."""
    for line in proc_status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> capability & 1)
    return False


def make_site_dir(parent_fd: int, name: str) -> None:
    """Create `name` under `parent_fd` as a subvolume (mode 0755, root's: the caller hands it over).
    FileExistsError when something has the name already, as mkdir."""
    encoded = name.encode()
    if len(encoded) > _NAME_MAX or "/" in name:
        raise OSError(errno.ENAMETOOLONG, f"{name!r} cannot name a subvolume")
    args = bytearray(4096)
    args[8 : 8 + len(encoded)] = encoded
    fcntl.ioctl(parent_fd, _BTRFS_IOC_SUBVOL_CREATE, args, True)


def subvolume_id(site_fd: int) -> int | None:
    """The subvolume whose root `site_fd` is; None for a plain directory (one made before
    quotas were on: it shares its parent's subvolume and cannot be limited on its own)."""
    if os.fstat(site_fd).st_ino != SUBVOLUME_ROOT_INO:
        return None
    lookup = bytearray(4096)
    struct.pack_into("QQ", lookup, 0, 0, SUBVOLUME_ROOT_INO)
    fcntl.ioctl(site_fd, _BTRFS_IOC_INO_LOOKUP, lookup, True)
    return int(struct.unpack_from("Q", lookup)[0])


def set_limit(site_fd: int, limit: int) -> bool:
    """Limit the site whose directory (a subvolume) `site_fd` is to `limit` bytes (0: no limit),
    through its qgroup `1/<subvolume>` (made and given the subvolume on first use); False when it
    is a plain directory."""
    subvolume = subvolume_id(site_fd)
    if subvolume is None:
        return False
    group = site_qgroup(subvolume)
    _ignoring(errno.EEXIST, _BTRFS_IOC_QGROUP_CREATE, site_fd, struct.pack("QQ", 1, group))
    _ignoring(errno.EEXIST, _BTRFS_IOC_QGROUP_ASSIGN, site_fd, struct.pack("QQQ", 1, subvolume, group))
    args = bytearray(48)
    struct.pack_into("QQQQQQ", args, 0, group, _QGROUP_LIMIT_MAX_RFER, limit or _NO_LIMIT, 0, 0, 0)
    fcntl.ioctl(site_fd, _BTRFS_IOC_QGROUP_LIMIT, args, True)
    return True


def site_qgroup(subvolume: int) -> int:
    """The level-1 qgroup that holds a site's subvolume and everything made inside it."""
    return 1 << _LEVEL_SHIFT | subvolume


def enable_simple_quotas(root: Path) -> None:
    """`btrfs quota enable --simple` (btrfs-progs 6.7 and later) for older progs: an operator's
    step, and the tests' (tests/support/stack.py)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _BTRFS_IOC_QUOTA_CTL, bytearray(struct.pack("QQ", _QUOTA_CTL_ENABLE_SIMPLE_QUOTA, 0)), True)
    finally:
        os.close(fd)


def _ignoring(code: int, request: int, fd: int, args: bytes) -> None:
    try:
        fcntl.ioctl(fd, request, bytearray(args), True)
    except OSError as exc:
        if exc.errno != code:
            raise


def usage(support: Support, site_fd: int) -> DiskUsage | None:
    """The site's usage and limit from the kernel's own accounting (sysfs: no walk); None when
    they are not known (no quotas, a plain directory, a site not limited yet)."""
    if support.fsid is None:
        return None
    subvolume = subvolume_id(site_fd)
    if subvolume is None:
        return None
    group = SYSFS / support.fsid / "qgroups" / f"1_{subvolume}"
    try:
        used = int((group / "referenced").read_text())
        limit = int((group / "max_referenced").read_text())
    except (OSError, ValueError):
        return None
    return DiskUsage(used, limit_of(limit))


def limit_of(max_referenced: int) -> int | None:
    """A qgroup's `max_referenced` as a limit: the kernel shows "none" as 0 (or all ones)."""
    return None if max_referenced in (0, _NO_LIMIT) else max_referenced


def site_usage(support: Support, root: Path, name: str) -> DiskUsage | None:
    """`usage` of `<root>/<name>`, opened without following a link; None when it is not there."""
    if support.fsid is None:
        return None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        root_fd = os.open(root, flags)
    except OSError:
        return None
    try:
        fd = os.open(name, flags, dir_fd=root_fd)
    except OSError:
        return None
    finally:
        os.close(root_fd)
    try:
        return usage(support, fd)
    finally:
        os.close(fd)
