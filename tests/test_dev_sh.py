"""dev.sh's package step on a real Debian system: it keeps an operator's policy-rc.d, cleans up
after a failed apt-get, and waits for another apt instead of failing at once."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POLICY = Path("/usr/sbin/policy-rc.d")
FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")
NO_SUCH_PACKAGE = "arpwatchd-test-no-such-package"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dpkg") is None or shutil.which("apt-get") is None,
    reason="needs root on Debian (apt-get, dpkg)",
)


@pytest.fixture
def operator_policy() -> Iterator[bytes]:
    """A policy-rc.d of the operator's own, put back as it was after the test."""
    saved = POLICY.read_bytes() if POLICY.exists() else None
    mine = b"#!/bin/sh\n# the operator's own policy\nexit 101\n"
    POLICY.write_bytes(mine)
    POLICY.chmod(0o755)
    try:
        yield mine
    finally:
        if saved is None:
            POLICY.unlink(missing_ok=True)
        else:
            POLICY.write_bytes(saved)


def _package_step(*packages: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(ROOT / "dev.sh"), "debian-packages", *packages], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def _saved_copies() -> set[Path]:
    return set(Path("/usr/sbin").glob(".policy-rc.d.*"))


def test_a_failed_install_keeps_the_operators_policy_rc_d(operator_policy: bytes) -> None:
    # copies already there belong to another dev.sh still installing (a second test run)
    before = _saved_copies()
    proc = _package_step(NO_SUCH_PACKAGE)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out
    assert POLICY.read_bytes() == operator_policy
    assert not _saved_copies() - before


def test_a_failed_install_leaves_no_policy_rc_d_of_its_own() -> None:
    if POLICY.exists():
        pytest.skip("this machine has a policy-rc.d of its own (the other test covers it)")
    proc = _package_step(NO_SUCH_PACKAGE)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out
    assert not POLICY.exists()


def _apt_waiting_for_lock() -> bool:
    """An apt-get of this test asleep in its lock retry loop (apt prints nothing under -qq)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"install" in argv and NO_SUCH_PACKAGE.encode() in argv:
                return (proc / "wchan").read_text() in ("hrtimer_nanosleep", "do_nanosleep")
        except OSError:
            continue
    return False


def test_waits_for_another_apt_holding_the_dpkg_lock() -> None:
    """Holds the dpkg front-end lock as apt does (fcntl) until the package step's apt-get is
    seen waiting for it: without the wait, apt-get fails at once on the lock."""
    with FRONTEND_LOCK.open("a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = _package_step(NO_SUCH_PACKAGE)
        deadline = time.monotonic() + 300
        while proc.poll() is None and not _apt_waiting_for_lock():
            assert time.monotonic() < deadline, "apt-get never reached the lock"
            time.sleep(0.05)
        waited = proc.poll() is None
        fcntl.lockf(lock, fcntl.LOCK_UN)
    out = proc.communicate(timeout=600)[0]
    assert waited, f"apt-get did not wait for the lock:\n{out}"
    assert "Unable to locate package" in out, out
