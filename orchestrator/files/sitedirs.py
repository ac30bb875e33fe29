"""Site directories under one root, without symlink surprises.

Every step opens the next path component relative to a directory descriptor with O_NOFOLLOW,
so a link a site planted (its directory or `public/` pointing at /etc or at another site) is
refused instead of being mounted or moved. Deleting a site moves its directory to the trash
under the root: no event ever destroys user data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.errors import UnsafePath
from orchestrator.files import confined, quota
from orchestrator.files.quota import DiskUsage, Support
from orchestrator.logging_setup import fields
from orchestrator_contract.sites import disk_bytes

log = logging.getLogger("orchestrator")

SUBDIRS = ("public", "private")
# The site's own uid (and gid) reads them; nobody else on the host.
SITE_MODE = 0o750
SUBDIR_MODES = {"public": 0o750, "private": 0o700}
RUN_SCRIPT = "run.sh"
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_STAMP = re.compile(r"-(\d{8}T\d{12}Z)-")


class SiteDirs:
    def __init__(self, root: Path, trash_name: str = ".trash", disk_limit: str = "0") -> None:
        self.root = Path(os.path.realpath(root))
        self.trash_name = trash_name
        self.disk_limit = disk_bytes(disk_limit)  # a bad setting fails at start
        self._support: Support | None = None

    @classmethod
    def of(cls, settings: Settings) -> SiteDirs:
        return cls(settings.sites_root, settings.trash_dir_name, settings.site_disk_limit)

    def quota_problem(self) -> str | None:
        """Why a disk limit is set but cannot be enforced (None: it is, or none is set)."""
        support = self.quota_support()
        return support.why if self.disk_limit and not support.enforced else None

    def quota_support(self) -> Support:
        """Whether the sites root can limit each site's disk (asked once, when the root exists)."""
        if self._support is None:
            support = quota.probe(self.root)
            if not self.root.is_dir():
                return support
            self._support = support
        return self._support

    def disk_usage(self, names: list[str]) -> dict[str, DiskUsage]:
        """Each site directory's usage and limit, where the filesystem keeps them (no walk)."""
        support = self.quota_support()
        found = ((name, quota.site_usage(support, self.root, name)) for name in names)
        return {name: usage for name, usage in found if usage is not None}

    def missing_mount_options(self) -> list[str]:
        """What the sites root's mount lacks of `nosuid` and `nodev`: site directories are bind
        mounts of it and inherit both, so without them a setuid file or a device node a site
        leaves would mean something on the host."""
        where = self.root
        while not where.exists() and where != where.parent:  # not made yet: it will be on its parent's mount
            where = where.parent
        try:
            flags = os.statvfs(where).f_flag
        except OSError:
            return []
        wanted = {"nosuid": os.ST_NOSUID, "nodev": os.ST_NODEV}
        return [name for name, bit in wanted.items() if not flags & bit]

    def path(self, name: str) -> Path:
        """Where the site's directory is (or will be); no I/O."""
        return self.root / name

    async def check(self, name: str) -> bool:
        """UnsafePath unless `<root>/<name>` is missing (False) or a real directory (True)."""
        return await asyncio.to_thread(self._check, name)

    async def ensure(self, name: str, owner: int) -> Path:
        """Create `<root>/<name>/{public,private}` if missing, owned by uid = gid = `owner`; return
        the site directory. A directory owned by someone else (made before sites had their own
        users) is handed over whole, links included but never followed."""
        return await asyncio.to_thread(self._ensure, name, owner)

    async def has_run_script(self, name: str) -> bool:
        """Whether `run.sh` is in the site directory, `private/` or `public/` (links count: they
        resolve inside the container)."""
        return await asyncio.to_thread(self._has_run_script, name)

    def trash_path(self, name: str, tag: str) -> Path:
        """Where a file of the site's goes into the trash (a final database dump), stamped as a
        directory moved there is, so the trash's age limit counts it alike. Makes the trash."""
        root_fd = _open_dir(str(self.root))
        try:
            os.close(_make_dir(root_fd, self.trash_name, 0o700))
        finally:
            os.close(root_fd)
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        return self.root / self.trash_name / f"{name}-{stamp}-{tag}"

    async def trash(self, name: str, tag: str) -> Path | None:
        """Move `<root>/<name>` into the trash; None when there is no such directory."""
        return await asyncio.to_thread(self._trash, name, tag)

    async def inventory(self) -> tuple[list[str], list[tuple[str, float]]]:
        """Names of the directories under the root, and of the trash entries with their age in
        seconds (as `<trash>/<name>`). Nothing is opened or followed."""
        return await asyncio.to_thread(self._inventory)

    def _inventory(self) -> tuple[list[str], list[tuple[str, float]]]:
        if not self.root.is_dir():
            return [], []
        names = sorted(e.name for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False))
        trash_dir = self.root / self.trash_name
        trash = []
        if trash_dir.is_dir() and not trash_dir.is_symlink():
            now = time.time()
            for entry in os.scandir(trash_dir):
                moved = _trashed_at(entry.name) or entry.stat(follow_symlinks=False).st_mtime
                trash.append((f"{self.trash_name}/{entry.name}", now - moved))
        return [n for n in names if n != self.trash_name], sorted(trash)

    def _ensure(self, name: str, owner: int) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        root_fd = _open_dir(str(self.root))
        try:
            support = self.quota_support()
            site_fd = _make_dir(root_fd, name, SITE_MODE, subvolume=support.enforced)
            try:
                if support.enforced and not quota.set_limit(site_fd, self.disk_limit) and self.disk_limit:
                    log.warning(
                        "a site directory made before quotas were on is not limited (move it into a subvolume)",
                        extra=fields(site=name),
                    )
                if os.fstat(site_fd).st_uid != owner:
                    _hand_over(site_fd, owner)
                # No other host user reads a site (its private/ holds its secrets), whatever the
                # modes were: set at every deploy.
                os.fchmod(site_fd, SITE_MODE)
                for sub in SUBDIRS:
                    sub_fd = _make_dir(site_fd, sub, SUBDIR_MODES[sub])
                    try:
                        os.fchown(sub_fd, owner, owner)
                        os.fchmod(sub_fd, SUBDIR_MODES[sub])
                    finally:
                        os.close(sub_fd)
            finally:
                os.close(site_fd)
        finally:
            os.close(root_fd)
        return self.root / name

    def _has_run_script(self, name: str) -> bool:
        try:
            root_fd = _open_dir(str(self.root))
        except OSError:
            return False
        try:
            site_fd = _open_dir(name, dir_fd=root_fd)
        except OSError:
            return False
        finally:
            os.close(root_fd)
        try:
            for where in ("", *SUBDIRS):
                try:
                    folder = _open_dir(where, dir_fd=site_fd) if where else os.dup(site_fd)
                except OSError:
                    continue
                try:
                    mode = os.stat(RUN_SCRIPT, dir_fd=folder, follow_symlinks=False).st_mode
                    if not stat.S_ISDIR(mode):
                        return True
                except FileNotFoundError:
                    pass
                finally:
                    os.close(folder)
            return False
        finally:
            os.close(site_fd)

    def _check(self, name: str) -> bool:
        return _real_dir_exists(str(self.root / name))

    def _trash(self, name: str, tag: str) -> Path | None:
        if not self.root.is_dir():
            return None
        root_fd = _open_dir(str(self.root))
        try:
            if not _real_dir_exists(name, root_fd):
                return None
            trash_fd = _make_dir(root_fd, self.trash_name, 0o700)
            try:
                stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
                target = f"{name}-{stamp}-{tag}"
                # rename(2) moves the entry itself, never a link's target, and stays inside root.
                os.rename(name, target, src_dir_fd=root_fd, dst_dir_fd=trash_fd)
            finally:
                os.close(trash_fd)
        finally:
            os.close(root_fd)
        return self.root / self.trash_name / target


def _trashed_at(name: str) -> float | None:
    """When `_trash` moved it, from the stamp in its name (a move keeps the directory's mtime)."""
    match = _STAMP.search(name)
    try:
        return datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=UTC).timestamp() if match else None
    except ValueError:  # named by hand: its mtime will do
        return None


def _real_dir_exists(path: str, dir_fd: int | None = None) -> bool:
    """False when missing; True for a real directory; UnsafePath for a link, file or anything else."""
    try:
        mode = os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(mode):
        raise UnsafePath(f"{os.path.basename(path)} is not a real directory under the sites root; left alone")
    return True


def _hand_over(site_fd: int, owner: int) -> None:
    """chown the whole tree under `site_fd` to `owner`, never following a link (lchown)."""
    os.fchown(site_fd, owner, owner)
    for _, dirs, files, folder_fd in os.fwalk(".", dir_fd=site_fd, follow_symlinks=False):
        for entry in (*dirs, *files):
            os.chown(entry, owner, owner, dir_fd=folder_fd, follow_symlinks=False)


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    """The sites root by its configured path (an operator's choice), or one real directory under
    a descriptor (see `files.confined`)."""
    if dir_fd is None:
        return os.open(path, confined.DIR_FLAGS)
    return confined.child_dir(dir_fd, path)


def _make_dir(parent_fd: int, name: str, mode: int, *, subvolume: bool = False) -> int:
    """Open (creating if needed: as a subvolume of its own, where its disk is limited) the real
    directory `name` under `parent_fd`; refuse links."""
    if "/" in name or name in ("", ".", ".."):
        raise UnsafePath(f"{name!r} is not a single path component")
    with contextlib.suppress(FileExistsError):
        if subvolume:
            quota.make_site_dir(parent_fd, name)
        else:
            os.mkdir(name, mode, dir_fd=parent_fd)
    try:
        return _open_dir(name, dir_fd=parent_fd)
    except OSError as exc:
        # ELOOP: a symlink; ENOTDIR: a file. Either way a site put something else in its place.
        raise UnsafePath(f"{name} is not a real directory (a link or a file); refusing to use it") from exc
