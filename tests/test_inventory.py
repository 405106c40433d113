"""`arpwatchd bindings` and `arpwatchd history`: filters, output, and reading a live store.

Why: "who has had 10.0.0.5?" and "what is this MAC?" must be one command away, while the
sensor runs. The store is SQLite in WAL mode; the commands open it read-only with a busy
timeout, so they see whole batches only and never block or break the writer. These tests read
a store that a real `arpwatchd replay --serve` process holds open, and one that another
thread keeps writing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from arpwatchd import inventory
from arpwatchd.addresses import (
    V6,
    network_text,
    parse_ip,
    parse_mac,
    parse_mac_prefix,
    parse_network,
)
from arpwatchd.cli import main
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import announcement, write_pcap
from arpwatchd.store import Store
from arpwatchd.tracker import BindingRecord

ROOT = Path(__file__).resolve().parents[1]
ARPWATCHD = str(Path(sys.executable).with_name("arpwatchd"))
A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "00:1c:7f:00:00:0c"


def _store(path: Path) -> None:
    store = Store(str(path))
    store.write(
        [
            BindingRecord("eth1", None, parse_ip("10.0.0.9"), parse_mac(C), 1.0, 2.0),
            BindingRecord("eth0", 7, parse_ip("10.0.0.5"), parse_mac(B), 1000.0, 1500.0,
                          (parse_mac(A),), "hold"),
            BindingRecord("eth0", None, parse_ip("10.0.1.5"), parse_mac(A), 10.0, 20.0),
            BindingRecord("eth0", None, parse_ip("10.0.0.200"), parse_mac(C), 10.0, 20.0),
        ],
        [],
        [
            Event(100.0, EventKind.NEW_STATION, "eth0", 7, "10.0.0.5", A),
            Event(1000.0, EventKind.CHANGED_MAC, "eth0", 7, "10.0.0.5", B, previous_mac=A),
            Event(50.0, EventKind.NEW_STATION, "eth0", None, "10.0.1.5", A),
        ],
    )
    store.close()


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_filters_and_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s.sqlite"
    _store(state)
    rows = _json(capsys, "bindings", "--state", str(state), "--json")
    assert [(r["interface"], r["vlan"], r["ip"]) for r in rows] == [
        ("eth0", None, "10.0.0.200"), ("eth0", None, "10.0.1.5"), ("eth0", 7, "10.0.0.5"),
        ("eth1", None, "10.0.0.9")]
    assert rows[2] == {
        "ip": "10.0.0.5", "mac": B, "vendor": None, "interface": "eth0", "vlan": 7,
        "first_seen": "1970-01-01T00:16:40.000000Z", "last_seen": "1970-01-01T00:25:00.000000Z",
        "state": "hold", "previous": [A]}
    assert rows[0]["vendor"] == rows[3]["vendor"] == "Check Point Software Technologies"

    def ips(*argv: str) -> list[object]:
        return [r["ip"] for r in _json(capsys, "bindings", "--state", str(state), "--json",
                                       *argv)]

    assert ips("--ip", "10.0.0.0/24") == ["10.0.0.200", "10.0.0.5", "10.0.0.9"]
    assert ips("--ip", "10.0.1.5") == ["10.0.1.5"]
    assert ips("--mac", "00-1C-7F") == ["10.0.0.200", "10.0.0.9"]
    assert ips("--mac", "0200.0000.000a") == ["10.0.1.5"]
    assert ips("--vlan", "7") == ["10.0.0.5"]
    assert ips("--vlan", "untagged", "--interface", "eth0") == ["10.0.0.200", "10.0.1.5"]


def test_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s.sqlite"
    _store(state)
    capsys.readouterr()
    assert main(["bindings", "--state", str(state), "--vlan", "7"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["IP", "MAC", "VENDOR", "INTERFACE", "VLAN", "FIRST", "SEEN",
                              "(UTC)", "LAST", "SEEN", "(UTC)", "STATE", "PREVIOUS", "MACS"]
    assert row.split() == ["10.0.0.5", B, "-", "eth0", "7", "1970-01-01", "00:16:40",
                           "1970-01-01", "00:25:00", "hold", A]


def test_bad_filter_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["bindings", "--state", str(tmp_path / "s"), "--mac", "00:1c:7g"])
    assert stop.value.code == 2


def test_history_by_ip_and_by_mac(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s.sqlite"
    _store(state)
    by_ip = _json(capsys, "history", "10.0.0.5", "--state", str(state), "--json")
    assert [(e["event"], e["mac"]) for e in by_ip] == [("new_station", A), ("changed_mac", B)]
    # A MAC's history includes the events where it is the other side (it lost 10.0.0.5).
    by_mac = _json(capsys, "history", A.upper(), "--state", str(state), "--json")
    assert [(e["event"], e["ip"]) for e in by_mac] == [
        ("new_station", "10.0.1.5"), ("new_station", "10.0.0.5"), ("changed_mac", "10.0.0.5")]
    assert main(["history", "10.0.0.5", "--state", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "(UTC)", "EVENT"]
    assert lines[2].split()[:4] == ["1970-01-01", "00:16:40", "changed_mac", "warning"]
    assert main(["history", "no-such-thing", "--state", str(state)]) == 2


def test_missing_store_is_one_line_exit_1(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bindings", "--state", str(tmp_path / "none.sqlite")]) == 1
    assert "none.sqlite: no state store here" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates a store


def test_reading_while_another_connection_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each batch is one transaction: a reader sees a whole batch, never half of one."""
    state = tmp_path / "s.sqlite"
    size = 50
    started = threading.Event()
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:  # a connection belongs to its thread, as the sensor's does
        writer = Store(str(state))
        n = 0
        while not stop.is_set() and n < 100_000:
            n += 1  # batch n rewrites the same addresses with last_seen = n
            writer.write([BindingRecord("eth0", None, i, parse_mac(A), 1.0, float(n))
                          for i in range(size)], [], [])
            written.append(n)
            started.set()
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert started.wait(10)
        seen: list[str] = []
        for _ in range(20):
            rows = _json(capsys, "bindings", "--state", str(state), "--json")
            assert len(rows) == size
            assert len({r["last_seen"] for r in rows}) == 1  # all from one batch
            seen.append(str(rows[0]["last_seen"]))
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(seen)
    assert len(written) > 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_commands_against_a_running_sensor(tmp_path: Path) -> None:
    """`replay --serve` keeps the store open with a conflict still active at the last packet."""
    capture = tmp_path / "live.pcap"
    write_pcap(capture, [
        (1000.0, announcement("10.0.0.5", A)),
        (1001.0, announcement("10.0.0.6", C)),
        (1010.0, announcement("10.0.0.5", B)),  # takes over: hold
        (1011.0, announcement("10.0.0.5", A)),  # the owner announces it back: failback
        (1012.0, announcement("10.0.0.5", B)),  # and B again: both alive, conflict
    ])
    state = tmp_path / "state.sqlite"
    sensor = subprocess.Popen(
        [ARPWATCHD, "replay", str(capture), "--serve", "--state", str(state), "-i", "eth5",
         "--metrics-address", f"127.0.0.1:{_free_port()}", "--events", os.devnull, "-q"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert sensor.stderr is not None
        for line in sensor.stderr:  # the conflict is logged first, then the files are read
            if "files read" in line:
                break

        def run(*argv: str) -> list[dict[str, object]]:
            done = subprocess.run([ARPWATCHD, *argv, "--state", str(state), "--json"],
                                  capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
            return [json.loads(line) for line in done.stdout.splitlines()]

        rows = {r["ip"]: r for r in run("bindings")}
        assert rows["10.0.0.5"]["state"] == "conflict"
        assert rows["10.0.0.6"]["state"] == "ok"
        events = run("history", "10.0.0.5")
        assert [e["event"] for e in events] == ["new_station", "conflict"]
        assert events[1]["interface"] == "eth5"
        assert sensor.poll() is None  # the sensor is unharmed by its readers
    finally:
        sensor.send_signal(signal.SIGTERM)
        assert sensor.wait(timeout=10) == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not state.exists():
        time.sleep(0.05)
    store = Store(str(state), readonly=True)
    finished = {b.ip: b.state for b in store.load_bindings()}
    store.close()
    assert finished[parse_ip("10.0.0.5")] == "ok"  # stopping ran the conflict to its end


def test_pure_helpers() -> None:
    # an IPv4 netmask carries V6, so no IPv6 value matches an IPv4 network (0.0.0.0/0 too)
    assert parse_network("10.0.0.77/24") == (parse_ip("10.0.0.0"), parse_ip("255.255.255.0") | V6)
    assert network_text(parse_network("10.0.0.77/24")) == "10.0.0.0/24"
    assert network_text(parse_network("FD00:0:0:0::5/64")) == "fd00::/64"
    assert parse_mac_prefix("0:1B:21") == "00:1b:21"
    for bad in ("10.0.0", "1.2.3.4/33", "fd00::/129", "fd00:::1"):
        with pytest.raises(ValueError, match="not an IPv4"):
            parse_network(bad)
    for bad in ("00:1c:7f:00:00:00:01", "xyz", "001"):
        with pytest.raises(ValueError, match="not a MAC"):
            parse_mac_prefix(bad)
    assert inventory.with_vendor('{"mac": "00:1c:7f:00:00:01"}', lambda m: "V") == \
        {"mac": "00:1c:7f:00:00:01", "vendor": "V"}
