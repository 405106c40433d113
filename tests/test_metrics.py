"""The metrics collector, read through a private registry as Prometheus would see it.

Why these tests: the metric names and labels are a contract with dashboards and alert rules,
series known in advance must exist at 0 (or `increase()` misses the first event), IP labels
must stay on the one capped gauge, and a scrape runs on another thread than the loop.
"""

from __future__ import annotations

import json
import platform
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from arpwatchd import __version__
from arpwatchd.cli import main
from arpwatchd.config import Config, MetricsConfig, parse_config
from arpwatchd.daemon import replay
from arpwatchd.decode import ArpKind, SkipReason
from arpwatchd.events import EventKind
from arpwatchd.frames import announcement, write_pcap
from arpwatchd.kernel import FASTPATH
from arpwatchd.metrics import (
    ArpwatchCollector,
    MetricsError,
    build_registry,
    parse_metrics_address,
    start_metrics,
)
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.sinks import open_sinks
from arpwatchd.stats import SensorStats
from arpwatchd.tracker import ActiveConflict, TrackerStats

A, B, C, D = (f"02:00:00:00:00:0{n}" for n in "abcd")


def _registry(stats: SensorStats, cap: int = 200, started: float = 1000.0) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArpwatchCollector(stats, max_conflict_series=cap, started=started))
    return registry


def _tracker(conflicts: int = 1) -> TrackerStats:
    return TrackerStats(
        bindings={("eth0", None): 7, ("eth0", 20): 3},
        active_conflicts=tuple(ActiveConflict("eth0", 20, f"10.0.20.{n}", "02:00:00:00:00:0b",
                                              "02:00:00:00:00:0a")
                               for n in range(1, conflicts + 1)),
        conflicts_active_total=conflicts,
        holds_active=2,
        bindings_evicted=4,
        senders_tracked=9,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collector_reads_every_counter() -> None:
    stats = SensorStats()
    stats.capture("eth0")
    stats.packets[("eth0", "request")] = 11
    stats.skipped[("eth0", "not_arp")] = 5
    stats.events[("conflict", "critical", "ipv4")] = 1
    stats.suppressed[("new_station", "rate_limit")] = 6
    stats.failovers[("eth0", "")] = 2
    state = stats.capture("eth0")
    state.received, state.dropped, state.interface_dropped = 100, 3, 1
    state.restarts, state.last_arp = 1, 1234.5
    stats.store_writes, stats.store_write_errors, stats.frame_errors = 8, 2, 1
    stats.store_events_dropped = 5
    stats.defense_sent[("eth0", "ipv4")] = 4
    stats.defense_sent[("eth0", "ipv6")] = 7
    stats.defense_last_word[("eth0", "ipv4")] = 2
    stats.defense_failures[("eth0", "ipv4")] = 1
    stats.defense_send_errors[("eth0", "ipv6")] = 3
    stats.tracker = _tracker()
    get = _registry(stats).get_sample_value

    assert get("arpwatchd_start_time_seconds") == 1000.0
    assert get("arpwatchd_arp_packets_total", {"interface": "eth0", "kind": "request"}) == 11
    assert get("arpwatchd_frames_skipped_total", {"interface": "eth0", "reason": "not_arp"}) == 5
    assert get("arpwatchd_events_total",
               {"event": "conflict", "severity": "critical", "family": "ipv4"}) == 1
    assert get("arpwatchd_events_suppressed_total",
               {"event": "new_station", "cause": "rate_limit"}) == 6
    assert get("arpwatchd_failovers_total", {"interface": "eth0", "vlan": ""}) == 2
    assert get("arpwatchd_bindings", {"interface": "eth0", "vlan": ""}) == 7
    assert get("arpwatchd_bindings", {"interface": "eth0", "vlan": "20"}) == 3
    assert get("arpwatchd_conflict_active",
               {"interface": "eth0", "vlan": "20", "ip": "10.0.20.1",
                "mac": "02:00:00:00:00:0b", "previous_mac": "02:00:00:00:00:0a"}) == 1
    assert get("arpwatchd_active_conflicts") == 1
    assert get("arpwatchd_holds_active") == 2
    assert get("arpwatchd_bindings_evicted_total") == 4
    assert get("arpwatchd_senders_tracked") == 9
    iface = {"interface": "eth0"}
    assert get("arpwatchd_capture_up", iface) == 1
    assert get("arpwatchd_capture_packets_received_total", iface) == 100
    assert get("arpwatchd_capture_packets_dropped_total", iface) == 3
    assert get("arpwatchd_capture_packets_interface_dropped_total", iface) == 1
    assert get("arpwatchd_capture_restarts_total", iface) == 1
    assert get("arpwatchd_last_arp_timestamp_seconds", iface) == 1234.5
    assert get("arpwatchd_store_writes_total") == 8
    assert get("arpwatchd_store_write_errors_total") == 2
    assert get("arpwatchd_store_events_dropped_total") == 5
    assert get("arpwatchd_frame_errors_total") == 1
    v4, v6 = {**iface, "family": "ipv4"}, {**iface, "family": "ipv6"}
    assert get("arpwatchd_defense_packets_sent_total", v4) == 4
    assert get("arpwatchd_defense_packets_sent_total", v6) == 7  # NAs: told apart by family
    assert get("arpwatchd_defense_last_word_packets_sent_total", v4) == 2
    assert get("arpwatchd_defense_last_word_packets_sent_total", v6) == 0
    assert get("arpwatchd_defense_failures_total", v4) == 1
    assert get("arpwatchd_defense_send_errors_total", v4) == 0
    assert get("arpwatchd_defense_send_errors_total", v6) == 3


def test_build_info_carries_the_version() -> None:
    registry = _registry(SensorStats())
    samples = [s for m in registry.collect() if m.name == "arpwatchd_build_info"
               for s in m.samples]
    assert len(samples) == 1
    assert samples[0].name == "arpwatchd_build_info"
    assert samples[0].labels["version"] == __version__
    assert samples[0].labels["mode"] == "live"
    assert samples[0].labels["fastpath"] == FASTPATH  # the C kernel or the Python rules
    assert samples[0].value == 1


def test_build_info_tells_a_replay_from_a_live_sensor() -> None:
    """The no-ARP alert skips replays (mode="replay"): their last ARP is in the past."""
    registry = build_registry(SensorStats(), Config(), started=0.0, mode="replay")
    assert registry.get_sample_value(
        "arpwatchd_build_info",
        {"version": __version__, "python_version": platform.python_version(),
         "mode": "replay", "fastpath": FASTPATH}) == 1
    with pytest.raises(ValueError, match="mode"):
        ArpwatchCollector(SensorStats(), mode="offline")


def test_known_series_are_exported_at_zero() -> None:
    stats = SensorStats()
    stats.capture("eth0")
    stats.tracker = _tracker(conflicts=0)
    get = _registry(stats).get_sample_value
    for kind in EventKind:
        for family in ("ipv4", "ipv6"):
            assert get("arpwatchd_events_total", {"event": kind.value, "family": family,
                                                  "severity": kind.severity.value}) == 0
        for cause in ("rate_limit", "rule"):
            assert get("arpwatchd_events_suppressed_total",
                       {"event": kind.value, "cause": cause}) == 0
    for arp in ArpKind:
        assert get("arpwatchd_arp_packets_total", {"interface": "eth0", "kind": arp.value}) == 0
    for reason in SkipReason:
        assert get("arpwatchd_frames_skipped_total",
                   {"interface": "eth0", "reason": reason.value}) == 0
    # A domain with bindings has a failover series before its first failover.
    assert get("arpwatchd_failovers_total", {"interface": "eth0", "vlan": "20"}) == 0
    for family in ("ipv4", "ipv6"):
        for name in ("defense_packets_sent", "defense_last_word_packets_sent",
                     "defense_send_errors", "defense_failures"):
            assert get(f"arpwatchd_{name}_total", {"interface": "eth0", "family": family}) == 0
    assert get("arpwatchd_last_arp_timestamp_seconds", {"interface": "eth0"}) == 0
    assert get("arpwatchd_active_conflicts") == 0


def test_before_the_first_snapshot_state_gauges_are_zero() -> None:
    get = _registry(SensorStats()).get_sample_value
    assert get("arpwatchd_active_conflicts") == 0
    assert get("arpwatchd_holds_active") == 0
    assert get("arpwatchd_bindings_evicted_total") == 0


def test_conflict_series_are_capped_but_the_count_is_not() -> None:
    stats = SensorStats()
    stats.tracker = _tracker(conflicts=5)
    registry = _registry(stats, cap=2)
    series = [s for m in registry.collect() if m.name == "arpwatchd_conflict_active"
              for s in m.samples]
    assert len(series) == 2
    assert registry.get_sample_value("arpwatchd_active_conflicts") == 5


def test_no_address_labels_except_on_the_conflict_gauge() -> None:
    stats = SensorStats()
    stats.capture("eth0")
    stats.tracker = _tracker(conflicts=3)
    for metric in _registry(stats).collect():
        for sample in metric.samples:
            allowed = {"interface", "vlan", "kind", "reason", "event", "severity", "cause",
                       "family", "version", "python_version", "mode", "fastpath"}
            if metric.name == "arpwatchd_conflict_active":
                allowed = {"interface", "vlan", "ip", "mac", "previous_mac"}
            assert set(sample.labels) <= allowed, (metric.name, sample.labels)
            assert sample.timestamp is None


def test_scrapes_run_while_the_loop_counts() -> None:
    stats = SensorStats()
    registry = _registry(stats)
    stop = threading.Event()

    def loop() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with stats.lock:
                stats.packets[(f"eth{n % 50}", "request")] += 1
                stats.events[(f"e{n % 300}", "info", "ipv4")] += 1
            stats.capture(f"eth{n % 50}")

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for _ in range(100):
            list(registry.collect())
    finally:
        stop.set()
        thread.join()


def test_replay_without_finish_keeps_the_conflict_active(tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    path = tmp_path / "c.pcap"
    write_pcap(path, [
        (t0, announcement("10.0.0.10", A)),
        (t0 + 5, announcement("10.0.0.10", B)),           # takeover by announcement
        (t0 + 40, announcement("10.0.20.5", C, vlan=20)),  # hold of .10 over: failover
        (t0 + 41, announcement("10.0.20.5", D, vlan=20)),
        (t0 + 42, announcement("10.0.20.5", C, vlan=20)),  # old owner announces: failback
        (t0 + 43, announcement("10.0.20.5", D, vlan=20)),  # D again, both alive: conflict
    ])
    sensor = Sensor(Config(), EventWriter(str(tmp_path / "events.jsonl")))
    registry = build_registry(sensor.stats, sensor.config, started=t0)
    get = registry.get_sample_value
    assert replay(sensor, [str(path)], "lab0", finish=False) == []
    (event,) = [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
                if e["event"] == "conflict"]
    conflict = {"interface": "lab0", "vlan": "20", "ip": "10.0.20.5", "mac": event["mac"],
                "previous_mac": event["previous_mac"]}  # the event's two MACs
    assert {event["mac"], event["previous_mac"]} == {C, D}
    assert get("arpwatchd_conflict_active", conflict) == 1
    assert get("arpwatchd_failovers_total", {"interface": "lab0", "vlan": ""}) == 1
    assert get("arpwatchd_events_total",
               {"event": "conflict", "severity": "critical", "family": "ipv4"}) == 1
    assert get("arpwatchd_last_arp_timestamp_seconds", {"interface": "lab0"}) == t0 + 43
    sensor.finish()  # what replay --serve does on SIGTERM
    assert get("arpwatchd_conflict_active", conflict) is None
    assert get("arpwatchd_active_conflicts") == 0
    assert get("arpwatchd_events_total",
               {"event": "conflict_resolved", "severity": "info", "family": "ipv4"}) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:20806", ("127.0.0.1", 20806)),
    ("0.0.0.0:9000", ("0.0.0.0", 9000)),
    ("[::]:9000", ("::", 9000)),
    ("[::1]:9000", ("::1", 9000)),
    ("localhost:1", ("localhost", 1)),
    ("0", None),
    ("127.0.0.1:0", None),
])
def test_metrics_address_parses(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize("text", ["9000", "host:", "host:99999", "host:x", "::1:9000"])
def test_metrics_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_metrics_address(text)


def test_default_port_is_the_chosen_one() -> None:
    assert MetricsConfig().port == 20806
    assert MetricsConfig().address == "127.0.0.1"


def test_start_metrics_serves_the_private_registry() -> None:
    stats = SensorStats()
    stats.capture("eth0")
    server = start_metrics(stats, Config(), "127.0.0.1", _free_port(), started=5.0)
    try:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            body = response.read().decode()
        assert "arpwatchd_build_info{" in body
        assert "arpwatchd_start_time_seconds 5.0" in body
        assert "python_gc_objects_collected_total" not in body  # not the default registry
    finally:
        server.close()


def test_a_busy_port_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsError) as info:
            start_metrics(SensorStats(), Config(), "127.0.0.1", port)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "in use" in message
    assert "\n" not in message


def test_cli_busy_port_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.pcap"
    write_pcap(path, [(1.0, announcement("10.0.0.1", A))])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["replay", "-q", "--events", str(tmp_path / "e.jsonl"),
                     "--metrics-address", f"127.0.0.1:{port}", str(path)])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("arpwatchd: metrics: cannot listen on 127.0.0.1:")
    assert len(err.splitlines()) == 1


def test_cli_rejects_a_bad_metrics_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["replay", "--metrics-address", "nowhere", "x.pcap"])
    assert info.value.code == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_cli_serve_needs_an_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.pcap"
    write_pcap(path, [(1.0, announcement("10.0.0.1", A))])
    assert main(["replay", "--serve", "--metrics-address", "0", str(path)]) == 2
    assert "--serve needs a metrics endpoint" in capsys.readouterr().err


def test_syslog_and_hook_counters_are_exported_when_configured(tmp_path: Path) -> None:
    assert _registry(SensorStats()).get_sample_value("arpwatchd_hook_runs_total") is None
    config = parse_config("output:\n  hook: {command: [/bin/true], events: [new_station]}\n")
    writer = EventWriter(str(tmp_path / "e.jsonl"), sinks=open_sinks(config.output))
    sensor = Sensor(config, writer)
    get = _registry(sensor.stats).get_sample_value
    assert get("arpwatchd_hook_runs_total") == 0
    assert get("arpwatchd_hook_dropped_total") == 0
    writer.close()
