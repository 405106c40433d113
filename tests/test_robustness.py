"""Faults a production sensor meets: damaged files, kill -9, reloads, full disks, lost
interfaces, floods, and running without root. Each test fails if the promise breaks."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netlab import Host, Lab, lab_available

from arpwatchd.addresses import mac_text
from arpwatchd.frames import announcement, write_pcap
from arpwatchd.privileges import CAP_NET_ADMIN, CAP_NET_RAW, capabilities
from arpwatchd.store import Store, StoreError

ROOT = Path(__file__).parents[1]
ARPWATCHD = [sys.executable, "-m", "arpwatchd"]
IS_ROOT = os.geteuid() == 0


def fast_pcap(path: Path, count: int, seed: int = 7, start: float = 1_700_000_000.0) -> None:
    """`count` announcements of random stations (a spoofing tool's flood), written quickly."""
    rng = random.Random(seed)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    addresses = rng.sample(range(0x0A000001, 0x0AFFFFFE), count)  # all different
    for i in range(count):
        mac = bytes([0x02, *rng.randbytes(5)])
        ip = addresses[i].to_bytes(4, "big")
        frame = (b"\xff" * 6 + mac + b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01" + mac + ip
                 + b"\x00" * 6 + ip + b"\x00" * 18)
        ts = start + i * 0.001
        out += struct.pack("<IIII", int(ts), round((ts % 1) * 1e6) % 1_000_000, 60, 60)
        out += frame
    path.write_bytes(out)


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_damaged_capture_names_file_and_frame_and_keeps_what_came_before(tmp_path: Path) -> None:
    capture = tmp_path / "cut.pcap"
    write_pcap(capture, [(1000.0 + i, announcement(f"10.0.0.{i}", f"02:00:00:00:00:{i:02x}"))
                         for i in range(1, 11)])
    data = capture.read_bytes()
    capture.write_bytes(data[: len(data) - 30])  # the 10th record loses its tail
    out = subprocess.run([*ARPWATCHD, "replay", str(capture)], capture_output=True, text=True,
                         check=False, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"arpwatchd: {capture}: damaged after frame 9: truncated dump file; tried to read 60 "
        "captured bytes, only got 30"]
    assert [json.loads(line)["ip"] for line in out.stdout.splitlines()] == [
        f"10.0.0.{i}" for i in range(1, 10)]


def test_kill_9_mid_replay_loses_at_most_a_batch_and_never_the_file(tmp_path: Path) -> None:
    capture = tmp_path / "flood.pcap"
    fast_pcap(capture, 150_000)
    state = tmp_path / "state.sqlite"
    argv = [*ARPWATCHD, "replay", "--state", str(state), "--events", "/dev/null", str(capture)]
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.DEVNULL)

    def stored() -> set[tuple[int, str]]:
        """What a reader sees: the bindings table with the journal applied."""
        try:
            store = Store(str(state), readonly=True)
        except StoreError:
            return set()
        try:
            return {(b.ip, mac_text(b.mac)) for b in store.load_bindings()}
        except StoreError:
            return set()
        finally:
            store.close()

    try:
        wait_for(lambda: len(stored()) >= 5_000, 60, "bindings in the store")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    known = stored()
    assert len(known) >= 5_000
    again = subprocess.run([*argv[:-3], "--events", str(tmp_path / "e.jsonl"), str(capture)],
                           cwd=ROOT, check=True, capture_output=True)
    assert again.returncode == 0
    reported = set()
    for line in (tmp_path / "e.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "new_station":
            ip = sum(int(p) << (24 - 8 * i) for i, p in enumerate(event["ip"].split(".")))
            reported.add((ip, event["mac"]))
    assert not known & reported


@pytest.mark.skipif(not IS_ROOT, reason="capturing on lo needs root")
def test_sighup_reloads_and_a_bad_config_is_rejected_keeping_the_old(tmp_path: Path) -> None:
    config = tmp_path / "site.yml"
    config.write_text("hold: 5s\n")
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*ARPWATCHD, "run", "-i", "lo", "-c", str(config), "--state",
             str(tmp_path / "s.sqlite"), "--metrics-address", "0", "--events",
             str(tmp_path / "e.jsonl")], cwd=ROOT, stderr=err)
    try:
        wait_for(lambda: "capturing on lo" in log.read_text(), 20, "the sensor to start")
        config.write_text("hold: 5s\nnetworks: [\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.read_text(), 10, "the rejection")
        assert proc.poll() is None
        config.write_text("hold: 7s\ncapture: {buffer_mib: 64}\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in log.read_text(), 10, "the reload")
        wait_for(lambda: "capture changed, kept" in log.read_text(), 10, "the restart note")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rejected = [line for line in log.read_text().splitlines() if "reload rejected" in line]
    assert len(rejected) == 1 and "not valid YAML" in rejected[0]


@pytest.mark.skipif(not IS_ROOT, reason="mounting a small tmpfs needs root")
def test_full_state_store_raises_a_log_line_and_capture_carries_on(tmp_path: Path) -> None:
    capture = tmp_path / "many.pcap"
    fast_pcap(capture, 20_000)
    script = (
        "set -e; mount -t tmpfs -o size=256k tmpfs \"$1\"; "
        "exec \"$2\" -m arpwatchd replay --state \"$1/state.sqlite\" \"$3\""
    )
    mount = tmp_path / "small"
    mount.mkdir()
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                          str(mount), sys.executable, str(capture)], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert out.returncode == 1, out.stderr  # the state is not saved: the exit code says so
    state = mount / "state.sqlite"
    lines = out.stderr.splitlines()
    assert len(lines) == 2, lines
    # one journal entry per batch: the batches before the disk filled are stored
    kept = re.search(f"ERROR {re.escape(str(state))}: cannot write state: disk full; keeping "
                     r"(\d+) changes and \d+ events in memory and retrying, first in 1 s$",
                     lines[0])
    assert kept and 0 < int(kept[1]) <= 512
    lost = re.fullmatch(f"arpwatchd: {re.escape(str(state))}: cannot write state: disk full: "
                        r"(\d+) binding changes and (\d+) events are not stored", lines[1])
    assert lost and 0 < int(lost[1]) < 20_000 and 0 < int(lost[2]) <= 402
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = {e["event"] for e in events}
    assert "new_station" in kinds and "events_suppressed" in kinds


@pytest.mark.skipif(not IS_ROOT, reason="dropping privileges needs root")
def test_user_option_drops_to_that_user_with_only_capture_capabilities(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*ARPWATCHD, "run", "-i", "lo", "--user", "nobody", "--state",
             str(tmp_path / "s.sqlite"), "--metrics-address", "0", "--events", "-"],
            cwd=ROOT, stderr=err, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: "capturing on lo" in log.read_text(), 20, "the sensor to start")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert set(uid_line.split()[1:]) == {str(65534)}
        caps = capabilities(proc.pid)
        allowed = (1 << CAP_NET_RAW) | (1 << CAP_NET_ADMIN)
        assert caps["CapEff"] == allowed and caps["CapPrm"] == allowed
        assert caps["CapBnd"] == allowed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_flood_keeps_bindings_capped_and_evictions_counted(tmp_path: Path) -> None:
    capture = tmp_path / "flood.pcap"
    fast_pcap(capture, 60_000, seed=3)
    config = tmp_path / "small.yml"
    config.write_text("limits: {max_bindings: 5000}\n")
    state = tmp_path / "s.sqlite"
    out = subprocess.run([*ARPWATCHD, "replay", "-c", str(config), "--state", str(state),
                          str(capture)], capture_output=True, text=True, check=True, cwd=ROOT)
    db = sqlite3.connect(state)
    stored = db.execute("SELECT COUNT(*) FROM bindings").fetchone()[0]
    assert 5000 - 5000 // 64 <= stored <= 5000  # evicted a slice at a time when full
    events = [json.loads(line) for line in out.stdout.splitlines()]
    suppressed = sum(e["count"] for e in events if e["event"] == "events_suppressed"
                     and e["suppressed_event"] == "new_station")
    shown = sum(1 for e in events if e["event"] == "new_station")
    assert shown + suppressed == 60_000
    assert shown <= 200 * (60 / 10 + 1)  # 60 s of packet time, 200 per 10 s window


def sensor_on_a_host(
    lab: Lab, tmp_path: Path, *extra: str
) -> tuple[Host, subprocess.Popen[bytes], Path, Path]:
    """A sensor (`extra`: more arguments) capturing on the port of one lab host (h1,
    192.0.2.10) that has announced itself, its event reported: (host, sensor process, events
    file, stderr log)."""
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)
    host = lab.add_host("h1", "02:00:00:00:aa:01", ["192.0.2.10"])
    events = tmp_path / "e.jsonl"
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        sensor = lab.sensor_popen([*ARPWATCHD, "run", "-i", host.port, "--state",
                                   str(tmp_path / "s.sqlite"), "--metrics-address", "0",
                                   "--events", str(events), *extra], cwd=ROOT, stderr=err)
    wait_for(lambda: "capturing on" in log.read_text(), 20, "the sensor to start")
    host.send_frames([announcement("192.0.2.10", host.mac)])
    wait_for(lambda: events.exists() and "192.0.2.10" in events.read_text(), 10, "first event")
    return host, sensor, events, log


@pytest.mark.live
def test_lost_interface_is_retried_and_capture_resumes(lab: Lab, tmp_path: Path) -> None:
    host, _, events, log = sensor_on_a_host(lab, tmp_path)
    subprocess.run(["ip", "-n", lab.sensor_ns, "link", "del", "dev", host.port], check=True)
    wait_for(lambda: "disappeared" in log.read_text() or "capture failed" in log.read_text(),
             10, "the loss to be noticed")
    subprocess.run(["ip", "-n", lab.sensor_ns, "link", "add", "name", host.port, "type", "veth",
                    "peer", "name", host.dev, "netns", host.ns], check=True)
    subprocess.run(["ip", "-n", lab.sensor_ns, "link", "set", "dev", host.port, "master",
                    lab.bridge, "up"], check=True)
    subprocess.run(["ip", "-n", host.ns, "link", "set", "dev", host.dev, "address", host.mac,
                    "up"], check=True)
    wait_for(lambda: "capturing again" in log.read_text(), 20, "the capture to resume")
    host.send_frames([announcement("192.0.2.11", host.mac)])
    wait_for(lambda: "192.0.2.11" in events.read_text(), 10, "an event after the restart")
    lost = [line for line in log.read_text().splitlines() if "retry" in line]
    assert len(lost) == 1


def test_replay_reads_ahead_in_order_and_stops_cleanly(tmp_path: Path) -> None:
    """Files are read on a thread a few batches ahead: the frames still come in file order,
    and a replay that stops early (Ctrl-C) does not leave the reader blocked."""
    from arpwatchd.capture import FileCapture, Prefetcher  # noqa: PLC0415

    path = tmp_path / "many.pcap"
    frames = [announcement(0x0A000000 + i, bytes([2, 0, 0, 0, i >> 8, i & 255]))
              for i in range(3000)]
    write_pcap(path, [(1_700_000_000 + i * 0.001, f) for i, f in enumerate(frames)])
    source = FileCapture(str(path))
    reader = Prefetcher(source, 100)
    seen = []
    while batch := reader.read_batch():
        seen.extend(frame for _, frame in batch.frames())
    reader.close()
    assert seen == frames and source.error is None
    source.close()

    source = FileCapture(str(path))
    reader = Prefetcher(source, 10)
    assert len(reader.read_batch()) == 10
    started = time.monotonic()
    reader.close()  # the thread is blocked on a full queue here
    assert time.monotonic() - started < 2.0
    assert not reader._thread.is_alive()
    source.close()


@pytest.mark.live
def test_sighup_after_log_rotation_writes_events_to_the_new_file(lab: Lab, tmp_path: Path) -> None:
    """logrotate moves the events file, then reloads the service (SIGHUP): events must go to a
    new file by the configured name, not on into the rotated one."""
    host, sensor, events, log = sensor_on_a_host(lab, tmp_path)
    rotated = tmp_path / "e.jsonl.1"
    events.rename(rotated)
    sensor.send_signal(signal.SIGHUP)  # what logrotate's postrotate does
    wait_for(lambda: "config reloaded" in log.read_text(), 10, "the reload")
    host.send_frames([announcement("192.0.2.11", host.mac)])
    wait_for(lambda: events.exists() and "192.0.2.11" in events.read_text(), 10,
             "an event in the new file")
    assert "192.0.2.11" not in rotated.read_text()
    assert "192.0.2.10" not in events.read_text()


@pytest.mark.live
def test_sighup_moves_syslog_to_the_new_collector(lab: Lab, tmp_path: Path) -> None:
    """A changed syslog destination applies at a reload: the next event goes to the new
    collector, none to the old one."""
    first, second = tmp_path / "first.sock", tmp_path / "second.sock"
    config = tmp_path / "site.yml"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as old_collector, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as new_collector:
        old_collector.bind(str(first))
        new_collector.bind(str(second))
        old_collector.settimeout(10)
        new_collector.settimeout(10)
        config.write_text(f"output:\n  syslog: {{address: '{first}', transport: unix}}\n")
        host, sensor, _, log = sensor_on_a_host(lab, tmp_path, "-c", str(config))
        assert b"192.0.2.10" in old_collector.recv(65535)
        config.write_text(f"output:\n  syslog: {{address: '{second}', transport: unix}}\n")
        sensor.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in log.read_text(), 10, "the reload")
        host.send_frames([announcement("192.0.2.11", host.mac)])
        assert b"192.0.2.11" in new_collector.recv(65535)
        old_collector.settimeout(0.5)
        with pytest.raises(TimeoutError):
            old_collector.recv(65535)
    assert "kept as they were" not in log.read_text()
