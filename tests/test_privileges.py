"""`run --user`: what root hands to the unprivileged sensor, and only that (issue #15, item 1).

Why these tests: root chowned the state and events paths by following links, and everything
named like `state-*`, so whoever could write the directory could make root give them any
file (a link to a root-only file, /dev/null, a hard link to /etc/shadow). The sensor's own
files must still be handed over: the unprivileged sensor goes on writing them, and reopens
the events file by name after a log rotation.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netlab import Lab

from arpwatchd.frames import announcement
from arpwatchd.store import state_files

ROOT = Path(__file__).parents[1]
ARPWATCHD = [sys.executable, "-m", "arpwatchd"]
NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners and users needs root")

_DROP = """
import json, logging, sys
from pathlib import Path
from arpwatchd.privileges import PrivilegeError, drop_to
logging.basicConfig(format="%(levelname)s %(message)s")
files, directories = json.loads(sys.argv[1])
try:
    drop_to("nobody", [Path(p) for p in files], *([[Path(p) for p in directories]]
                                                 if directories else []))
except PrivilegeError as exc:
    sys.exit(f"arpwatchd: {exc}")
"""


def drop(files: list[Path], directories: list[Path] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """A real `drop_to("nobody", ...)` in a process of its own (it cannot be undone)."""
    argument = json.dumps([[str(f) for f in files], [str(d) for d in directories or []]])
    return subprocess.run([sys.executable, "-c", _DROP, argument], capture_output=True,
                          text=True, cwd=ROOT, timeout=30, check=False)


def root_only(path: Path) -> Path:
    path.write_text("root:secret:19000::::::\n")
    path.chmod(0o600)
    return path


def owner(path: Path) -> int:
    return os.lstat(path).st_uid


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory anyone can write, as a careless state directory is, that nobody can reach
    (pytest's own are root-only); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="arpwatchd-user-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_a_symlink_to_a_root_only_file_is_not_handed_over(shared: Path) -> None:
    victim = root_only(shared / "shadow")
    events = shared / "e.jsonl"
    events.symlink_to(victim)
    out = drop([events])
    assert owner(victim) == 0 and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert f"not handed over: {events} is a symbolic link" in out.stderr
    # nobody could not write it either, so the sensor would break later: it stops now
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith(f"arpwatchd: --user nobody: {events} is a "
                                                  f"symbolic link")


def test_a_device_node_is_not_handed_over(shared: Path) -> None:
    null = shared / "null"
    os.mknod(null, stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    null.chmod(0o666)
    out = drop([null, Path(f"{null}-wal")])
    assert owner(null) == 0
    lines = out.stderr.splitlines()
    assert lines == [f"WARNING --user nobody: not handed over: {null} is a character device, "
                     f"not a regular file"]
    assert out.returncode == 0  # anyone can write it: the sensor keeps working


def test_a_hard_link_is_not_handed_over(shared: Path) -> None:
    victim = root_only(shared / "shadow")
    state = shared / "s.sqlite"
    os.link(victim, state)
    out = drop([state])
    assert owner(victim) == 0
    assert "has 2 hard links" in out.stderr and out.returncode == 1


def test_a_fifo_nobody_cannot_write_is_one_clear_line(shared: Path) -> None:
    fifo = shared / "events.fifo"
    os.mkfifo(fifo, 0o600)
    fifo.chmod(0o600)
    out = drop([fifo])
    assert owner(fifo) == 0
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        f"arpwatchd: --user nobody: {fifo} is a FIFO, not a regular file, so it was not "
        f"handed over, and user nobody cannot write it; give another path")


def test_only_the_sensors_own_files_are_handed_over(shared: Path) -> None:
    state = shared / "s.sqlite"
    mine = [*state_files(str(state)), shared / "e.jsonl"]
    for path in mine:
        path.write_bytes(b"")
        path.chmod(0o600)
    others = [root_only(shared / "s.sqlite-backup"), root_only(shared / "e.jsonl-old")]
    out = drop(mine)
    assert out.returncode == 0, out.stderr
    assert [owner(p) for p in mine] == [NOBODY.pw_uid] * len(mine)
    assert [owner(p) for p in others] == [0, 0]  # no globbing of `s.sqlite-*`


def test_only_directories_the_sensor_made_are_handed_over(shared: Path) -> None:
    made, found = shared / "made", shared / "found"
    made.mkdir()
    found.mkdir()
    (shared / "linked").symlink_to(found)
    out = drop([], [made, shared / "linked"])
    assert owner(made) == NOBODY.pw_uid
    assert owner(found) == 0
    assert "linked is a symbolic link" in out.stderr


# ------------------------------------------------------------ the real sensor, as nobody

def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.live
def test_sensor_as_nobody_keeps_writing_its_own_private_files(lab: Lab, shared: Path) -> None:
    host = lab.add_host("h1", "02:00:00:00:aa:01", ["192.0.2.10"])
    var = shared / "var"  # made by the sensor
    state, events, log = var / "s.sqlite", var / "e.jsonl", shared / "stderr.log"
    with log.open("w") as err:
        sensor = lab.sensor_popen(
            [*ARPWATCHD, "run", "-i", host.port, "--user", "nobody", "--state", str(state),
             "--events", str(events), "--metrics-address", "0"], cwd=ROOT, stderr=err)
    wait_for(lambda: "capturing on" in log.read_text(), 20, "the sensor to start")
    host.send_frames([announcement("192.0.2.10", host.mac)])
    wait_for(lambda: events.exists() and "192.0.2.10" in events.read_text(), 10, "an event")
    found = {p.name: (owner(p), stat.S_IMODE(os.lstat(p).st_mode))
             for p in (var, *state_files(str(state)), events)}
    uid = NOBODY.pw_uid
    assert found == {"var": (uid, 0o700), "s.sqlite": (uid, 0o600), "s.sqlite-wal": (uid, 0o600),
                     "s.sqlite-shm": (uid, 0o600), "e.jsonl": (uid, 0o640)}
    # logrotate moves the file away and sends SIGHUP: nobody creates the new one
    events.rename(var / "e.jsonl.1")
    sensor.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in log.read_text(), 10, "the reload")
    host.send_frames([announcement("192.0.2.11", host.mac)])
    wait_for(lambda: events.exists() and "192.0.2.11" in events.read_text(), 10, "a new event")
    assert (owner(events), stat.S_IMODE(events.stat().st_mode)) == (uid, 0o640)
    sensor.send_signal(signal.SIGTERM)
    assert sensor.wait(timeout=10) == 0, log.read_text()
    assert "not handed over" not in log.read_text()
    db = sqlite3.connect(state)
    stored = {row[0] for row in db.execute("SELECT ip FROM bindings")}
    db.close()
    assert stored == {0xC000020A, 0xC000020B}
