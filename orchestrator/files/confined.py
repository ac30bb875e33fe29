"""Opening paths inside a directory without ever leaving it: the one module that resolves a path
under a site directory (or the sites root).

A path is resolved from a directory descriptor, never from a string the kernel walks on its own:
with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | ...)` where the kernel has it (one call), or
component by component with `O_NOFOLLOW | O_DIRECTORY` (each step relative to the last one's
descriptor). A link anywhere on the way, or a directory swapped for a link between our check and
our use, fails the open instead of being followed. The last component of a path is looked at
with `lstat` semantics (the link itself); regular files are opened with `O_NOFOLLOW | O_NONBLOCK`
only after `lstat` said they are regular, and checked again with `fstat`, so a FIFO, socket or
device is never opened for I/O (nothing hangs on a FIFO).

The caller's thread acts as the site's user (`acting_as`: the thread's filesystem uid and gid,
no supplementary groups), so the kernel itself refuses anything the site's own processes could
not do, and everything created belongs to the site.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import stat
from collections.abc import Iterator

from orchestrator.errors import FileRefused
from orchestrator_contract.codes import ErrorCode

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

# linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
RENAME_NOREPLACE = 1
AT_FDCWD = -100

_SYSCALLS = {
    "x86_64": {"openat2": 437, "renameat2": 316, "setgroups": 116},
    "aarch64": {"openat2": 437, "renameat2": 276, "setgroups": 159},
}.get(platform.machine(), {})
_libc = ctypes.CDLL(None, use_errno=True)
# uid_t and gid_t are unsigned: a site's uid may pass 2**31 (a site id past 1,147,483,647 above the
# default base), which a signed return would show as a negative number.
for _call in (_libc.setfsuid, _libc.setfsgid):
    _call.argtypes, _call.restype = [ctypes.c_uint32], ctypes.c_uint32
UNCHANGED = 0xFFFFFFFF  # (uid_t) -1: change nothing, say what it is


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _syscall(name: str, *args: object) -> int:
    number = _SYSCALLS.get(name)
    if number is None:
        raise OSError(errno.ENOSYS, f"{name} is not known on this machine")
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _probe_openat2() -> bool:
    try:
        os.close(openat2(AT_FDCWD, "/", DIR_FLAGS, 0))
    except OSError:
        return False
    return True


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    return _syscall(
        "openat2", ctypes.c_int(dir_fd), ctypes.c_char_p(path.encode()), ctypes.byref(how), ctypes.sizeof(how)
    )


# Set once at import; tests switch it off to exercise the component walk.
USE_OPENAT2 = _probe_openat2()


def _renameat2(src_fd: int, src: str, dst_fd: int, dst: str, flags: int) -> None:
    _syscall(
        "renameat2",
        ctypes.c_int(src_fd),
        ctypes.c_char_p(src.encode()),
        ctypes.c_int(dst_fd),
        ctypes.c_char_p(dst.encode()),
        ctypes.c_uint(flags),
    )


def rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """rename(2) that fails with EEXIST instead of replacing `dst` (atomically, where the kernel
    and file system support RENAME_NOREPLACE)."""
    try:
        _renameat2(src_fd, src, dst_fd, dst, RENAME_NOREPLACE)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    # Old kernel or a file system without it: check, then rename (a race the kernel could not close).
    try:
        os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


# --- acting as the site's user -------------------------------------------------------------------


def drop_supplementary_groups() -> None:
    """For a file worker thread, once: no supplementary groups (root's group 0 would otherwise let
    the thread write group-writable root files). setgroups(2) directly: glibc's wrapper would
    change every thread of the process."""
    if os.geteuid() == 0:
        _syscall("setgroups", ctypes.c_size_t(0), ctypes.c_void_p(None))


@contextlib.contextmanager
def acting_as(uid: int, gid: int) -> Iterator[None]:
    """This thread's file system access as uid/gid (setfsuid/setfsgid act on the calling thread
    only): permission checks are the site's and new files are the site's. Without root (a
    developer's machine) the process's own user is used."""
    if os.geteuid() != 0:
        yield
        return
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    try:
        if _libc.setfsuid(UNCHANGED) != uid or _libc.setfsgid(UNCHANGED) != gid:
            raise FileRefused("could not act as the site's user", code=ErrorCode.IO_ERROR)
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)


# --- resolving paths -----------------------------------------------------------------------------


def open_dir(base_fd: int, parts: tuple[str, ...], shown: str | None = None) -> int:
    """A descriptor of the directory at `parts` under `base_fd`; every component a real directory.
    `not_found`, `unsafe_path` (a link or a non-directory on the way) or `not_a_directory` (the
    last component is something else, a link included)."""
    if not parts:
        return os.dup(base_fd)
    shown = shown or "/".join(parts)
    if USE_OPENAT2:
        for _ in range(3):
            try:
                return openat2(base_fd, "/".join(parts), DIR_FLAGS, RESOLVE)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise FileRefused(f"{shown} crosses a mount point", code=ErrorCode.UNSAFE_PATH) from None
                if exc.errno != errno.EAGAIN:  # EAGAIN: a rename raced the lookup; look again
                    break  # the walk below says which component failed, and why
    return _walk(base_fd, parts, shown)


def child_dir(dir_fd: int, name: str) -> int:
    """The real directory `name` directly under `dir_fd` (OSError for a link or anything else)."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def _walk(base_fd: int, parts: tuple[str, ...], shown: str) -> int:
    """The same, one component at a time (also how a failed openat2 is explained)."""
    fd = os.dup(base_fd)
    try:
        for index, part in enumerate(parts):
            try:
                next_fd = child_dir(fd, part)
            except OSError as exc:
                raise _explain(exc, fd, part, shown, last=index == len(parts) - 1) from None
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(base_fd: int, parts: tuple[str, ...]) -> tuple[int, str]:
    """The directory holding the last component (every step a real directory) and that name."""
    shown = "/".join(parts)
    if not parts:
        raise FileRefused("the site directory has no parent here", code=ErrorCode.UNSAFE_PATH)
    parent = parts[:-1]
    try:
        return open_dir(base_fd, parent, shown), parts[-1]
    except FileRefused as exc:
        if exc.code is ErrorCode.NOT_A_DIRECTORY:  # the parent is on the way to the target
            raise FileRefused(f"{shown}: {'/'.join(parent)} is not a directory", code=ErrorCode.UNSAFE_PATH) from None
        raise


def lstat(dir_fd: int, name: str, shown: str) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise failure(exc, shown) from None


def open_regular(dir_fd: int, name: str, shown: str) -> tuple[int, os.stat_result]:
    """Open a regular file for reading: never a link (not followed), never a FIFO, socket or
    device (looked at, never opened)."""
    st = lstat(dir_fd, name, shown)
    _require_regular(st, shown)
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # swapped for a link or a socket meanwhile
            raise FileRefused(f"{shown} is not a regular file", code=ErrorCode.NOT_REGULAR) from None
        raise failure(exc, shown) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO meanwhile: opened without blocking, closed
        os.close(fd)
        _require_regular(st, shown)
    return fd, st


def _require_regular(st: os.stat_result, shown: str) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise FileRefused(f"{shown} is a directory", code=ErrorCode.IS_A_DIRECTORY)
    if stat.S_ISLNK(st.st_mode):
        raise FileRefused(f"{shown} is a symbolic link (never followed)", code=ErrorCode.NOT_REGULAR)
    raise FileRefused(f"{shown} is not a regular file (a FIFO, socket or device)", code=ErrorCode.NOT_REGULAR)


def open_path(dir_fd: int, name: str, shown: str) -> tuple[int, os.stat_result]:
    """An O_PATH descriptor of the entry itself (a link is the link): pins the inode for a
    change of its metadata, without opening it for I/O."""
    try:
        fd = os.open(name, PATH_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise failure(exc, shown) from None
    return fd, os.fstat(fd)


def chmod_pinned(fd: int, mode: int) -> None:
    """chmod of the inode an O_PATH descriptor holds (through its /proc link, as glibc's own
    fchmodat does): the name may have been swapped since; the inode cannot."""
    os.chmod(f"/proc/self/fd/{fd}", mode)


def _explain(exc: OSError, dir_fd: int, part: str, shown: str, *, last: bool) -> FileRefused:
    """Why `part` could not be opened as a directory under `dir_fd`, as a file error."""
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        try:
            mode = os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
        if last:
            return FileRefused(f"{shown} is {what}", code=ErrorCode.NOT_A_DIRECTORY)
        return FileRefused(f"{shown}: {part} on the way is {what}", code=ErrorCode.UNSAFE_PATH)
    return failure(exc, shown)


def failure(exc: OSError, shown: str) -> FileRefused:
    """An OSError of a file operation as the error its requester hears."""
    codes = {
        errno.ENOENT: (ErrorCode.NOT_FOUND, "does not exist"),
        errno.EEXIST: (ErrorCode.EXISTS, "exists already"),
        errno.ENOTEMPTY: (ErrorCode.NOT_EMPTY, "is a directory that is not empty"),
        errno.EISDIR: (ErrorCode.IS_A_DIRECTORY, "is a directory"),
        errno.ENOTDIR: (ErrorCode.NOT_A_DIRECTORY, "is not a directory"),
        errno.ELOOP: (ErrorCode.UNSAFE_PATH, "is a symbolic link (never followed)"),
        errno.EXDEV: (ErrorCode.UNSAFE_PATH, "leaves the site directory"),
        errno.ENXIO: (ErrorCode.NOT_REGULAR, "is not a regular file"),
        errno.EFBIG: (ErrorCode.TOO_LARGE, "is too large"),
        errno.ENOSPC: (ErrorCode.TOO_LARGE, "does not fit: no space left"),
        errno.EDQUOT: (ErrorCode.DISK_QUOTA_EXCEEDED, "does not fit: the site's disk limit is reached"),
        errno.EACCES: (ErrorCode.IO_ERROR, "is not accessible to the site's user (permission denied)"),
        errno.EPERM: (ErrorCode.IO_ERROR, "may not be changed by the site's user (operation not permitted)"),
    }
    code, why = codes.get(exc.errno or 0, (ErrorCode.IO_ERROR, f"failed: {exc.strerror or exc}"))
    return FileRefused(f"{shown or 'the site directory'} {why}", code=code)
