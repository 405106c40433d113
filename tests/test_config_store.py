"""Config validation (errors name key and line) and the SQLite store (real files, restarts)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from arpwatchd.addresses import parse_ip, parse_mac
from arpwatchd.config import ConfigError, load_config, parse_config, reloaded_config
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import announcement, write_pcap
from arpwatchd.store import Store, StoreError
from arpwatchd.tracker import BindingRecord

FULL = """
hold: 45s
inactive_after: 90d
flood: {frames: 50, window: 5}
networks:
  - interface: eth0
    vlan: 10
    prefixes: [10.0.10.0/24]
failover_groups:
  - name: sql
    ips: [10.0.10.50]
    macs: [00:11:22:33:44:55, 00-11-22-33-44-66]
protected:
  - {ip: 10.0.10.1, mac: 0011.2233.4401}
output: {events: /tmp/x.jsonl}
state: {path: /tmp/state.sqlite}
"""


def test_full_config_parses() -> None:
    config = parse_config(FULL)
    policy = config.policy
    assert policy.hold == 45 and policy.inactive_after == 90 * 86400
    assert policy.flood_frames == 50 and policy.flood_window == 5
    assert policy.networks_for("eth0", 10) and not policy.networks_for("eth0", 11)
    assert policy.same_group("eth0", 10, parse_ip("10.0.10.50"), parse_mac("00:11:22:33:44:55"),
                             parse_mac("00:11:22:33:44:66"))
    assert policy.protection("any", None, parse_ip("10.0.10.1")) is not None
    assert config.state_path == "/tmp/state.sqlite"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hodl: 5\n", "hodl (line 1): unknown key 'hodl'"),
        ("hold: soon\n", "hold (line 1): not a duration"),
        ("networks:\n  - prefixes: [10.0.0.0/33]\n", "networks[0].prefixes[0] (line 2)"),
        ("protected:\n  - {ip: 10.0.0.1, mac: ff:ff:ff:ff:ff:ff}\n",
         "protected[0].mac (line 2): not a unicast MAC"),
        ("failover_groups:\n  - {ips: [10.0.0.1], macs: [00:11:22:33:44:55]}\n",
         "at least two MACs"),
        ("networks:\n  - vlan: 5000\n    prefixes: []\n", "networks[0].vlan (line 2)"),
        ("hold: [1\n", "not valid YAML"),
    ],
)
def test_bad_config_names_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="site.yml")
    assert str(caught.value).startswith("site.yml")
    assert message in str(caught.value)


def test_a_reload_applies_policy_and_sinks_and_names_what_waits_for_a_restart() -> None:
    running = parse_config(FULL)
    edited = parse_config(FULL.replace("hold: 45s", "hold: 20s").replace(
        "output: {events: /tmp/x.jsonl}",
        "output: {events: /tmp/y.jsonl, syslog: {address: '127.0.0.1:514'}, events_per_window: 9}",
    ) + "capture: {buffer_mib: 64}\n")
    applied, later = reloaded_config(running, edited)
    assert applied.policy.hold == 20 and applied.output.events_per_window == 9
    assert applied.output.events == "/tmp/x.jsonl" and applied.output.syslog is not None
    assert applied.capture == running.capture
    assert later == ["output.events", "capture"]
    assert reloaded_config(running, parse_config(FULL))[1] == []


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(FULL)
    out = subprocess.run([sys.executable, "-m", "arpwatchd", "check-config", str(good)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and json.loads(out.stdout)["hold"] == 45
    bad = tmp_path / "bad.yml"
    bad.write_text("hold: 5\nnetworks: 3\n")
    out = subprocess.run([sys.executable, "-m", "arpwatchd", "check-config", str(bad)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"arpwatchd: {bad}: networks (line 2): expected a list"]
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "missing.yml"))


def test_store_round_trip_and_event_history(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.sqlite"
    store = Store(str(path))
    record = BindingRecord("eth0", 10, parse_ip("10.0.0.5"), parse_mac("02:00:00:00:00:0a"),
                           1.5, 2.5, (parse_mac("02:00:00:00:00:0b"),), "hold")
    event = Event(2.5, EventKind.NEW_STATION, "eth0", 10, "10.0.0.5", "02:00:00:00:00:0a")
    store.write([record], [], [event])
    store.close()
    again = Store(str(path))
    assert again.load_bindings() == [record]
    assert json.loads(again.events_for(ip="10.0.0.5")[0])["event"] == "new_station"
    again.write([], [("eth0", 10, parse_ip("10.0.0.5"))], [])
    assert again.load_bindings() == []
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_store_errors_are_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open state store"):
        Store(str(blocker / "state.sqlite"))
    newer = tmp_path / "newer.sqlite"
    sqlite3.connect(newer).execute("PRAGMA user_version=99").connection.commit()
    with pytest.raises(StoreError, match="newer than this arpwatchd"):
        Store(str(newer))


def test_restart_does_not_report_known_stations_again(tmp_path: Path) -> None:
    capture = tmp_path / "a.pcap"
    write_pcap(capture, [(1000.0 + i, announcement(f"10.0.0.{i}", f"02:00:00:00:00:{i:02x}"))
                         for i in range(1, 6)])
    state = tmp_path / "state.sqlite"
    argv = [sys.executable, "-m", "arpwatchd", "replay", "--state", str(state), str(capture)]
    first = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert [json.loads(line)["event"] for line in first.stdout.splitlines()] == ["new_station"] * 5
    second = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert second.stdout == ""


def test_event_history_is_capped(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.sqlite"), max_events=50)
    store.PRUNE_EVERY = 1
    for i in range(30):
        batch = [Event(float(i * 10 + j), EventKind.ARP_FLOOD, "eth0", None, None,
                       "02:00:00:00:00:0a") for j in range(10)]
        store.write([], [], batch)
    events = list(store.all_events())
    assert 50 <= len(events) <= 60
    assert json.loads(events[-1])["ts"].startswith("1970-01-01T00:04:59")
