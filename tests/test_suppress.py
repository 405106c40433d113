"""Suppression rules: parsed from the config, matched against events, and applied by the sensor
(counted in metrics, not emitted, state still changed); the README's examples parse.

Why: accepted behaviour (a proxy-ARP router, a DHCP pool where addresses change hands, MS
NLB's mismatched Ethernet source) must stop paging people without blinding the sensor: the
events still count in `arpwatchd_events_suppressed_total{cause="rule"}` and the bindings
still follow the network, so a rule that expires or is removed leaves an accurate table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from arpwatchd.addresses import parse_ip, parse_network
from arpwatchd.config import Config, ConfigError, load_config, parse_config
from arpwatchd.daemon import replay
from arpwatchd.events import Event, EventKind
from arpwatchd.metrics import ArpwatchCollector
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.suppress import Suppressor, SuppressRule

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
NLB_SENDER = "02:bf:c0:a8:0a:78"


def test_rule_parsing() -> None:
    config = parse_config(
        "suppress:\n"
        "  - {events: [changed_mac, reused_mac], networks: [10.0.20.0/24, 10.0.21.7],\n"
        "     comment: DHCP pool}\n"
        "  - {macs: ['02-BF', 00:26:0b:31:07:33], vlans: [10, untagged],"
        " until: 2027-06-30}\n")
    dhcp, nlb = config.suppress
    assert dhcp == SuppressRule(
        events=frozenset({EventKind.CHANGED_MAC, EventKind.REUSED_MAC}),
        networks=(parse_network("10.0.20.0/24"), parse_network("10.0.21.7/32")),
        comment="DHCP pool")
    assert nlb.macs == ("02:bf", "00:26:0b:31:07:33")
    assert nlb.vlans == frozenset({10, 0})
    assert nlb.until == 1_814_313_600.0  # 2027-06-30T00:00:00Z


@pytest.mark.parametrize(("text", "message"), [
    ("suppress: [{comment: everything}]", "needs at least one of events, networks, macs, vlans"),
    ("suppress: [{until: 2027-01-01}]", "needs at least one of"),
    ("suppress: [{events: [changed_ip]}]", "suppress[0].events[0] (line 1): unknown event"),
    ("suppress: [{macs: ['02:bf:g']}]", "not a MAC address or prefix"),
    ("suppress: [{macs: ['00:11:22:33:44:55:66']}]", "not a MAC address or prefix"),
    ("suppress: [{networks: [10.0.300.0/24]}]", "not an IPv4 or IPv6 network"),
    ("suppress: [{vlans: [5000]}]", "not a VLAN id"),
    ("suppress: [{events: [bogon], until: next week}]", "not a date or time"),
    ("suppress: [{events: [bogon], ip: 10.0.0.1}]", "unknown key 'ip'"),
])
def test_rule_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, source="site.yml")


def _event(kind: EventKind, ip: str | None = "10.0.20.5", mac: str | None = "00:11:22:33:44:55",
           previous: str | None = None, vlan: int | None = None, ts: float = 1000.0) -> Event:
    return Event(ts, kind, "eth0", vlan, ip, mac, previous_mac=previous)


def test_matching() -> None:
    net = (parse_ip("10.0.20.0"), parse_ip("255.255.255.0"))
    rule = SuppressRule(events=frozenset({EventKind.CHANGED_MAC}), networks=(net,))
    assert rule.matches(_event(EventKind.CHANGED_MAC))
    assert not rule.matches(_event(EventKind.CONFLICT))
    assert not rule.matches(_event(EventKind.CHANGED_MAC, ip="10.0.21.5"))
    assert not rule.matches(_event(EventKind.ARP_SCAN, ip=None))
    by_mac = SuppressRule(macs=("02:bf",))
    assert by_mac.matches(_event(EventKind.ETHERNET_MISMATCH, mac=NLB_SENDER))
    assert by_mac.matches(_event(EventKind.CONFLICT, previous=NLB_SENDER))  # either side
    assert not by_mac.matches(_event(EventKind.CONFLICT))
    by_vlan = SuppressRule(vlans=frozenset({0}))
    assert by_vlan.matches(_event(EventKind.BOGON))
    assert not by_vlan.matches(_event(EventKind.BOGON, vlan=10))
    expiring = SuppressRule(events=frozenset({EventKind.BOGON}), until=2000.0)
    assert expiring.matches(_event(EventKind.BOGON, ts=1999.0))
    assert not expiring.matches(_event(EventKind.BOGON, ts=2000.0))  # the event's own time


def test_summaries_are_never_suppressed() -> None:
    summary = Event(1.0, EventKind.EVENTS_SUPPRESSED, "eth0", None, None, None, count=5,
                    suppressed_event=EventKind.BOGON)
    kept, dropped = Suppressor((SuppressRule(vlans=frozenset({0})),)).split([summary])
    assert (kept, dropped) == ([summary], [])


def _replay(capture: Path, config: Config) -> Sensor:
    sensor = Sensor(config, EventWriter(os.devnull))
    sensor.emitted = []
    replay(sensor, [str(capture)])
    return sensor


def _suppressed_metric(sensor: Sensor, event: str) -> float | None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArpwatchCollector(sensor.stats, max_conflict_series=200, started=0.0))
    return registry.get_sample_value("arpwatchd_events_suppressed_total",
                                     {"event": event, "cause": "rule"})


def test_ms_nlb_mismatch_is_counted_not_emitted() -> None:
    rule = "suppress: [{events: [ethernet_mismatch], macs: ['02:bf'], comment: MS NLB}]\n"
    plain = _replay(PCAPS / "nlb-unicast.pcap", Config())
    quiet = _replay(PCAPS / "nlb-unicast.pcap", parse_config(rule))
    assert plain.emitted is not None
    assert quiet.emitted is not None
    mismatches = [e for e in plain.emitted if e.kind is EventKind.ETHERNET_MISMATCH]
    assert len(mismatches) == 2
    assert [e for e in quiet.emitted if e.kind is EventKind.ETHERNET_MISMATCH] == []
    assert [e for e in quiet.emitted if e.kind is not EventKind.ETHERNET_MISMATCH] == \
        [e for e in plain.emitted if e.kind is not EventKind.ETHERNET_MISMATCH]
    assert quiet.stats.suppressed[("ethernet_mismatch", "rule")] == 2
    assert quiet.stats.events[("ethernet_mismatch", "warning", "ipv4")] == 2  # still detected
    assert _suppressed_metric(quiet, "ethernet_mismatch") == 2.0


def test_dhcp_pool_changes_are_silent_but_bindings_follow() -> None:
    rule = ("suppress:\n  - {events: [changed_mac, reused_mac], networks: [192.168.10.0/27],"
            " comment: DHCP pool}\n")
    sensor = _replay(PCAPS / "reassignment.pcap", parse_config(rule))
    assert sensor.emitted is not None
    assert {e.kind for e in sensor.emitted} == {EventKind.NEW_STATION}
    assert sensor.stats.suppressed[("changed_mac", "rule")] == 1
    assert sensor.stats.suppressed[("reused_mac", "rule")] == 1
    binding = next(b for b in sensor.tracker.bindings() if b.ip == parse_ip("192.168.10.30"))
    assert binding.mac.hex(":") == "02:00:00:00:30:01"  # the old PC is back: state followed


def test_an_expired_rule_suppresses_nothing() -> None:
    # The captures are from 2024-03-04; a rule that ended the day before does not apply.
    rule = "suppress: [{events: [ethernet_mismatch], until: 2024-03-03}]\n"
    sensor = _replay(PCAPS / "nlb-unicast.pcap", parse_config(rule))
    assert sensor.emitted is not None
    assert sum(e.kind is EventKind.ETHERNET_MISMATCH for e in sensor.emitted) == 2
    assert sensor.stats.suppressed[("ethernet_mismatch", "rule")] == 0


def _yaml_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def test_readme_configuration_example_parses() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    section = reference[reference.index("## Configuration"):]
    [block] = _yaml_blocks(section)[:1]
    config = parse_config(block, source="docs/configuration.md")
    assert [r.comment for r in config.suppress] == ["DHCP pool", "core router", "MS NLB"]
    assert config.suppress[2].macs == ("02:bf",)


def test_every_yaml_example_in_the_readme_parses(tmp_path: Path) -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [block for page in pages for block in _yaml_blocks(page.read_text())]
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.yml"
        path.write_text(block)
        load_config(str(path))
