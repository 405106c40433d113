"""No silent data loss and exit codes that tell the truth (issue 15): a full disk under the
state store, a bad file among several replayed, capture files and interfaces of a link type
without Ethernet ARP. Each test fails if what a user relies on breaks: bindings kept while the
disk is full, the good files stored, a one-line error and exit 1 instead of silence and 0."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_robustness import ARPWATCHD, IS_ROOT, ROOT, fast_pcap, wait_for

from arpwatchd import sensor as sensor_module
from arpwatchd import tracker as tracker_module
from arpwatchd.config import parse_config
from arpwatchd.daemon import replay
from arpwatchd.decode import ArpFrame, Decoder
from arpwatchd.events import EventKind
from arpwatchd.frames import announcement, write_pcap
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.store import Store, StoreError
from arpwatchd.tracker import Tracker

STATIONS = 210_000
"""More than the 200,000 pending changes the sensor used to clear without a word."""


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where`, always unmounted afterwards."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fills the disk, then frees `leave` bytes: room to open a store, not to write much."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        chunk = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
                out.flush()
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


@pytest.mark.skipif(not IS_ROOT, reason="mounting a small tmpfs needs root")
def test_full_disk_then_freed_stores_every_binding(tmp_path: Path) -> None:
    capture = tmp_path / "flood.pcap"
    fast_pcap(capture, STATIONS)
    port = free_port()
    with small_disk(tmp_path / "small", "96m") as disk:
        filler = fill(disk, leave=256 << 10)
        state = disk / "state.sqlite"
        log = tmp_path / "stderr.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [*ARPWATCHD, "replay", "--state", str(state), "--events", os.devnull,
                 "--serve", "--metrics-address", f"127.0.0.1:{port}", str(capture)],
                cwd=ROOT, stderr=err)
        try:
            wait_for(lambda: "serving metrics" in log.read_text(), 60, "the replay to end")
            assert (metric(port, "arpwatchd_store_write_errors_total") or 0) >= 1
            assert metric(port, "arpwatchd_store_events_dropped_total") == 0
            filler.unlink()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert len(Store(str(state), readonly=True).load_bindings()) == STATIONS
        lines = log.read_text().splitlines()
        failures = [line for line in lines if "cannot write state" in line]
        assert len(failures) == 1, lines
        assert re.search(f"ERROR {state}: cannot write state: disk full; keeping [0-9]+ "
                         "changes and [0-9]+ events in memory and retrying, first in 1 s$",
                         failures[0]), failures
        events = tmp_path / "again.jsonl"
        again = subprocess.run([*ARPWATCHD, "replay", "--state", str(state), "--events",
                                str(events), str(capture)], cwd=ROOT, capture_output=True,
                               text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert [line for line in events.read_text().splitlines()
            if json.loads(line)["event"] == EventKind.NEW_STATION] == []


class FailingStore(Store):
    """A real store whose first `failures` writes fail, as on a full disk."""

    failures = 0
    attempts = 0
    rows: list[int] = []  # noqa: RUF012  (replaced per instance)

    def write(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        self.attempts += 1
        self.rows = [*self.rows, len(args[0]) + len(args[1])]  # type: ignore[arg-type]
        if self.failures:
            self.failures -= 1
            raise StoreError(f"{self.path}: cannot write state: disk full")
        super().write(*args, **kwargs)  # type: ignore[arg-type]


def sensor_on(tmp_path: Path, failures: int, clock: list[float]) -> tuple[Sensor, FailingStore]:
    store = FailingStore(str(tmp_path / "s.sqlite"))
    store.failures = failures
    config = parse_config("output: {events_per_window: 1000}\n")
    return Sensor(config, EventWriter(os.devnull), store, clock=lambda: clock[0]), store


def stations(tmp_path: Path, count: int) -> list[str]:
    path = tmp_path / "stations.pcap"
    write_pcap(path, [(1000.0 + i, announcement(f"10.0.{i // 250}.{i % 250 + 1}", MAC))
                      for i in range(count)])
    return [str(path)]


MAC = "02:00:00:00:00:01"


def test_events_beyond_the_cap_are_counted_logged_and_bindings_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sensor_module, "MAX_PENDING_EVENTS", 50)
    clock = [0.0]
    sensor, store = sensor_on(tmp_path, 2, clock)
    with caplog.at_level("ERROR", logger="arpwatchd"):
        assert replay(sensor, stations(tmp_path, 200), "eth0") == []
        assert sensor.store_error is not None  # the final write failed
        sensor.flush()  # and fails again
        sensor.flush()
    assert sensor.store_error is None and store.attempts == 3
    assert len(store.load_bindings()) == 200
    assert sensor.events_dropped == 150 and sensor.stats.store_events_dropped == 150
    assert len(store.events_for(mac=MAC)) == 50
    dropped = [r.message for r in caplog.records if "dropped from the history" in r.message]
    assert dropped == [f"{store.path}: 150 events dropped from the history waiting for the "
                       "store (150 in all); the events output has them"]


def test_retries_back_off_from_1_s_doubling(tmp_path: Path) -> None:
    clock = [0.0]
    sensor, store = sensor_on(tmp_path, 3, clock)
    # the batch's write fails at 0 s (next try 1 s later), and so does the final write,
    # always tried (next try 2 s later)
    replay(sensor, stations(tmp_path, 10), "eth0", finish=False)
    assert store.attempts == 2
    tried = []
    for step in range(1, 80):
        clock[0] = step * 0.1
        before = store.attempts
        sensor.tick(2000.0)
        if store.attempts > before:
            tried.append(round(clock[0], 1))
    assert tried == [2.0, 6.0]  # then 4 s after the third failure
    assert sensor.store_error is None and len(store.load_bindings()) == 10


def test_a_backlog_is_written_in_chunks_so_a_retry_costs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensor_module, "STORE_CHUNK", 10)
    clock = [0.0]
    sensor, store = sensor_on(tmp_path, 2, clock)
    replay(sensor, stations(tmp_path, 35), "eth0", finish=False)
    sensor.flush()
    sensor.flush()
    assert store.rows == [10, 10, 10, 10, 10, 5]
    assert sensor.store_error is None and len(store.load_bindings()) == 35


def test_a_long_failure_under_evictions_rewrites_the_store_to_match_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker_module, "MAX_REMOVALS_KEPT", 100)
    tracker = Tracker(parse_config("limits: {max_bindings: 64}\n").policy)
    store = Store(str(tmp_path / "s.sqlite"))
    feed(tracker, 0, 64)
    write_changes(tracker, store)
    assert tracker.changed_count == 0 and len(store.load_bindings()) == 64
    feed(tracker, 64, 1000)  # the disk is full: nothing is stored meanwhile
    assert tracker.changed_count == 64  # the removals are not remembered one by one
    assert write_changes(tracker, store)
    assert sorted(store.load_bindings()) == sorted(tracker.bindings())
    assert len(tracker.bindings()) == 64


def feed(tracker: Tracker, first: int, last: int) -> None:
    decoder = Decoder("eth0", 1)
    for i in range(first, last):
        frame = decoder.decode(announcement(f"10.1.{i // 250}.{i % 250 + 1}", MAC))
        assert isinstance(frame, ArpFrame)
        tracker.observe(frame, 1000.0 + i)


def write_changes(tracker: Tracker, store: Store) -> bool:
    """Writes what the tracker says the store lacks; returns whether it was a rewrite."""
    changes = tracker.changes()
    store.write(changes.upserts, changes.removed, [], replace=changes.replace)
    tracker.changes_stored(changes)
    return changes.replace


def test_a_bad_file_among_several_is_named_and_the_others_are_read_and_stored(
    tmp_path: Path
) -> None:
    first, bad, last = tmp_path / "first.pcap", tmp_path / "notes.pcap", tmp_path / "last.pcap"
    write_pcap(first, [(1000.0 + i, announcement(f"10.0.0.{i}", f"02:00:00:00:00:{i:02x}"))
                       for i in range(1, 4)])
    bad.write_text("not a capture\n" * 10)
    write_pcap(last, [(2000.0 + i, announcement(f"10.0.1.{i}", f"02:00:00:00:01:{i:02x}"))
                      for i in range(1, 4)])
    state = tmp_path / "m.sqlite"
    out = subprocess.run([*ARPWATCHD, "replay", "--state", str(state), str(first), str(bad),
                          str(last)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"arpwatchd: {bad}: cannot read capture: unknown file format"]
    assert [json.loads(line)["ip"] for line in out.stdout.splitlines()] == [
        "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "10.0.1.2", "10.0.1.3"]
    db = sqlite3.connect(state)
    assert db.execute("SELECT COUNT(*) FROM bindings").fetchone()[0] == 6
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 6
    db.close()


@pytest.mark.parametrize(("linktype", "name"), [
    (105, "802.11"), (127, "802.11 radiotap"), (101, "raw IP"), (0, "BSD loopback (DLT_NULL)"),
])
def test_a_capture_of_a_link_type_without_arp_is_an_error(
    tmp_path: Path, linktype: int, name: str
) -> None:
    capture = tmp_path / "wifi.pcap"
    write_pcap(capture, [(1.0, announcement("10.0.0.1", MAC))], linktype=linktype)
    out = subprocess.run([*ARPWATCHD, "replay", str(capture)], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.splitlines() == [
        f"arpwatchd: {capture}: link type {name} is not supported (Ethernet, Linux cooked "
        "capture only)"]


@pytest.mark.live
def test_capture_on_a_tun_interface_is_refused_naming_it(tmp_path: Path) -> None:
    script = ("set -e; ip tuntap add dev tun7 mode tun; ip link set tun7 up; "
              "exec \"$1\" -m arpwatchd run -i tun7 --metrics-address 0 --events /dev/null "
              "--state \"$2\"")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", sys.executable,
                          str(tmp_path / "s.sqlite")], capture_output=True, text=True,
                         cwd=ROOT, check=False, timeout=60)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "arpwatchd: tun7: link type raw IP is not supported (Ethernet, Linux cooked capture "
        "only)"]


@pytest.mark.skipif(not IS_ROOT, reason="capturing on lo and mounting a tmpfs need root")
def test_run_stopped_with_its_store_full_exits_1_saying_what_is_not_stored(
    tmp_path: Path
) -> None:
    log = tmp_path / "stderr.log"
    with small_disk(tmp_path / "small", "256k") as disk:
        state = disk / "state.sqlite"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [*ARPWATCHD, "run", "-i", "lo", "--state", str(state), "--metrics-address", "0",
                 "--events", os.devnull], cwd=ROOT, stderr=err)
        try:
            wait_for(lambda: "capturing on lo" in log.read_text(), 30, "the sensor to start")
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
                sock.bind(("lo", 0))
                for i in range(20_000):
                    sock.send(announcement(0x0A000000 + i + 1, bytes([2, 0, 0, 0, i >> 8,
                                                                       i & 0xFF])))
            wait_for(lambda: "cannot write state" in log.read_text(), 30, "the store to fail")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    last = log.read_text().splitlines()[-1]
    assert re.fullmatch(f"arpwatchd: {state}: cannot write state: disk full: [0-9]+ binding "
                        "changes and [0-9]+ events are not stored", last), last
