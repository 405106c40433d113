"""Dropping root after the capture handles are open (`run --user NAME`).

The sensor reads hostile frames all day, so it should not do so as root. Opening a capture
needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode); after that, the open handles keep
working without privilege. The sensor keeps CAP_NET_RAW and CAP_NET_ADMIN in its permitted and
effective sets (PR_SET_KEEPCAPS across setuid, then capset), so it can reopen an interface
that went away and send defense frames, and nothing else: no file or process privileges.
Linux only; uses libc through ctypes because the standard library has no capset.

Before that, root hands the user the files the sensor goes on writing, and only those: the
state file, its exact -wal and -shm companions, the events file, and the directories the
sensor created itself. Anyone who can write their directory could have put a link there, so
each is chowned through a descriptor opened without following links (see `files`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import logging
import os
import pwd
from collections.abc import Sequence
from pathlib import Path

from arpwatchd.errors import PrivilegeError
from arpwatchd.files import DIRECTORY, REGULAR, hand_over

log = logging.getLogger("arpwatchd")

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_LAST = 63
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = 126  # x86_64
_SYS_CAPSET_BY_MACHINE = {"x86_64": 126, "aarch64": 91}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def drop_to(user: str, files: Sequence[Path], directories: Sequence[Path] = ()) -> None:
    """Becomes `user`, keeping only CAP_NET_RAW and CAP_NET_ADMIN.

    `files` (state, -wal, -shm, events) and `directories` (only those the sensor created) are
    handed to the user first, each refusal logged in one line: a link, a device (/dev/null),
    anything that is not what it should be stays as it is.

    Raises:
        PrivilegeError: unknown user, not root, the kernel refused, or a path that was not
            handed over is one the user cannot write (the sensor reopens it by name later).
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"--user {user}: no such user") from None
    if os.geteuid() != 0:
        if os.geteuid() == entry.pw_uid:
            return
        raise PrivilegeError(f"--user {user}: only root can change user")
    kept = _hand_over(user, entry, [(path, REGULAR) for path in files]
                      + [(path, DIRECTORY) for path in directories])
    libc = _libc()
    keep = (1 << CAP_NET_RAW) | (1 << CAP_NET_ADMIN)
    for cap in range(_CAP_LAST + 1):  # nothing exec'd later can regain other capabilities
        if not keep >> cap & 1:
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last cap
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"prctl(PR_SET_KEEPCAPS) failed: {os.strerror(ctypes.get_errno())}")
    try:
        groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
        os.setgroups(sorted({entry.pw_gid, *groups}))
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        raise PrivilegeError(f"--user {user}: cannot switch: {exc.strerror}") from None
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(keep, keep, 0), _CapData(0, 0, 0))
    number = _SYS_CAPSET_BY_MACHINE.get(os.uname().machine, _SYS_CAPSET)
    if libc.syscall(number, ctypes.byref(header), data) != 0:
        raise PrivilegeError(f"capset failed: {os.strerror(ctypes.get_errno())}")
    os.environ["HOME"] = entry.pw_dir
    for path, reason in kept:
        if not os.access(path, os.W_OK):
            raise PrivilegeError(f"--user {user}: {reason}, so it was not handed over, and "
                                 f"user {user} cannot write it; give another path")


def _hand_over(user: str, entry: pwd.struct_passwd,
               paths: list[tuple[Path, frozenset[int]]]) -> list[tuple[Path, str]]:
    """chowns each path to the user; returns those kept as they were, with why."""
    kept = []
    for path, kinds in paths:
        reason = hand_over(path, entry.pw_uid, entry.pw_gid, kinds)
        if reason is not None:
            log.warning("--user %s: not handed over: %s", user, reason)
            kept.append((path, reason))
    return kept


def store_owner(path: Path, user: str | None) -> tuple[str, int, int] | None:
    """Who must own a state store that this process writes, so that the sensor which opens it
    later as another user can write it (an import run by root): `user` when given; else, for
    root, the first of the store and the directory it goes in that another user owns
    (systemd's StateDirectory= gives the service's user its directory; a store that an earlier
    import left to root in it goes back to that user).

    Returns:
        (name, uid, gid), or None when the files may stay as this process makes them.

    Raises:
        PrivilegeError: `user` does not exist, or only root could give it the files.
    """
    if user is not None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise PrivilegeError(f"--user {user}: no such user") from None
        if os.geteuid() not in (0, entry.pw_uid):
            raise PrivilegeError(f"--user {user}: only root can give files to another user")
        return user, entry.pw_uid, entry.pw_gid
    if os.geteuid() != 0:
        return None
    for candidate in (path, path.parent):
        try:
            st = os.lstat(candidate)
        except OSError:
            continue
        if st.st_uid == 0:
            continue
        try:
            name = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            name = str(st.st_uid)
        return name, st.st_uid, st.st_gid
    return None


def give_files(owner: tuple[str, int, int], files: Sequence[Path],
               directories: Sequence[Path] = ()) -> list[str]:
    """chowns `files` and `directories` (only those this process created) to `owner`, never
    through a link; returns why each one left as it was could not be handed over."""
    name, uid, gid = owner
    problems = []
    for path, kinds in [(p, REGULAR) for p in files] + [(p, DIRECTORY) for p in directories]:
        reason = hand_over(path, uid, gid, kinds)
        if reason is not None:
            problems.append(f"not handed to {name}: {reason}")
    return problems


def capabilities(pid: int | str = "self") -> dict[str, int]:
    """CapEff/CapPrm/CapInh/CapBnd/CapAmb of a process as integers (for tests and logs)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cap"):
            name, value = line.split(":", 1)
            out[name] = int(value.strip(), 16)
    return out
