"""Creating, opening and handing over files as root without being steered to another file.

The sensor starts as root and writes into directories that other users may be able to write
(a state directory given to `--user`, a log directory). A symbolic link planted as the last
component of a path would make root create, append to or chown a file of the planter's
choosing; a hard link to /etc/shadow is the same attack with nothing to follow. So a path is
opened with O_NOFOLLOW (its last component is never followed) and O_NONBLOCK (a FIFO cannot
hang the start), and what was opened is checked with fstat before it is used: a regular file
with a single name, or, where the caller allows it, a character device or FIFO (/dev/null as
the events file). The directories above the last component are trusted: whoever can replace
them owns the path anyway. lstat before the open keeps root from opening a device at all
(opening some devices does something); fstat after it is the check that counts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Collection
from pathlib import Path

REGULAR = frozenset({stat.S_IFREG})
STREAMS = frozenset({stat.S_IFREG, stat.S_IFCHR, stat.S_IFIFO})
"""What an events file may be: a file, /dev/null, a FIFO another program reads."""
DIRECTORY = frozenset({stat.S_IFDIR})

_GUARDS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_SYMLINK = "is a symbolic link (arpwatchd follows none to a file it writes or hands over)"
_KINDS = {stat.S_IFREG: "a regular file", stat.S_IFDIR: "a directory",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


class UnsafeFileError(Exception):
    """A path is a link, or not the kind of file expected: one line naming it and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.reason = reason


def refusal(st: os.stat_result, kinds: Collection[int] = REGULAR) -> str | None:
    """Why a file must not be written or handed over, or None when it is safe to."""
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFLNK:
        return _SYMLINK
    if kind not in kinds:
        wanted = "a directory" if kinds == DIRECTORY else "a regular file"
        return f"is {_KINDS.get(kind, 'of an unknown kind')}, not {wanted}"
    if kind == stat.S_IFREG and st.st_nlink != 1:
        return f"has {st.st_nlink} hard links (another name of the same file may be anywhere)"
    return None


def check_existing(path: str | Path, kinds: Collection[int] = REGULAR) -> None:
    """Refuses what is at `path` without opening it; nothing there is fine.

    Raises:
        UnsafeFileError: `path` is a symbolic link, a hard link or an unexpected kind.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    reason = refusal(st, kinds)
    if reason is not None:
        raise UnsafeFileError(path, reason)


def open_file(path: str | Path, flags: int, mode: int = 0o600, *,
              kinds: Collection[int] = REGULAR) -> int:
    """`os.open` that never follows a link and never writes through one; a file it creates
    gets exactly `mode`, whatever the umask. The descriptor is blocking again on return.

    Raises:
        UnsafeFileError: see `check_existing`.
        OSError: the open itself failed.
    """
    check_existing(path, kinds)
    fd, created = -1, False
    if flags & os.O_CREAT:
        with contextlib.suppress(FileExistsError):  # made meanwhile: checked below as it is
            fd, created = os.open(path, flags | os.O_EXCL | _GUARDS, mode), True
    if fd < 0:
        try:
            fd = os.open(path, flags & ~os.O_CREAT | _GUARDS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(path, _SYMLINK) from None
            raise
    try:
        reason = refusal(os.fstat(fd), kinds)
        if reason is not None:
            raise UnsafeFileError(path, reason)
        if created:
            os.fchmod(fd, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def hand_over(path: str | Path, uid: int, gid: int, kinds: Collection[int] = REGULAR
              ) -> str | None:
    """chowns exactly the file at `path` (fchown of what was opened, after the checks).

    Returns:
        Why it was left as it was, or None when it was handed over or does not exist.
    """
    directory = os.O_DIRECTORY if stat.S_IFDIR in kinds else 0
    try:
        fd = open_file(path, os.O_RDONLY | directory, kinds=kinds)
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path} cannot be opened: {exc.strerror}"
    try:
        os.fchown(fd, uid, gid)
    except OSError as exc:
        return f"{path} cannot be chowned: {exc.strerror}"
    finally:
        os.close(fd)
    return None


def make_directories(path: str | Path, mode: int = 0o700) -> list[Path]:
    """Creates `path` and its missing parents with exactly `mode`; returns those it created,
    outermost first (only these are the sensor's to hand over)."""
    missing = []
    for directory in (Path(path), *Path(path).parents):
        if os.path.lexists(directory):
            break
        missing.append(directory)
    created = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:  # made meanwhile by someone else: not ours
            continue
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | _GUARDS)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away
        finally:
            os.close(fd)
        created.append(directory)
    return created
