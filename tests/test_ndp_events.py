"""Replaying each real-tool capture of pcaps/ndp/ gives the events pcaps/README.md promises
(the tracker's IPv6 rules, docs/ipv6.md). Times are from each file's first frame; the
link-local `new_station` rows (router solicitations) are checked apart, as the README says.
No root needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from arpbuild import replay_quietly
from netlab import read_pcap

from arpwatchd.batch import META, Batch
from arpwatchd.config import Config
from arpwatchd.decode import DLT_EN10MB, ArpFrame, Decoder
from arpwatchd.events import Event
from arpwatchd.frames import arp_frame
from arpwatchd.ndp import NEIGHBOR_SOLICITATION, NdpFrame, NdpInvalid, decode_ndp
from arpwatchd.ndpframes import ndp_frame, neighbor_advertisement, neighbor_solicitation
from arpwatchd.output import EventWriter
from arpwatchd.policy import TrackerPolicy
from arpwatchd.sensor import Sensor
from arpwatchd.tracker import Tracker

NDP = Path(__file__).resolve().parents[1] / "pcaps" / "ndp"
GATEWAY = "02:00:00:17:00:01"
VICTIM = "02:00:00:17:00:0b"
ATTACKER = "02:00:00:17:00:66"
MASTER = "02:00:00:17:a0:01"
BACKUP = "02:00:00:17:b0:01"
CLIENT = "02:00:00:17:c0:01"


def replay(name: str) -> tuple[list[Event], float]:
    """Every event of the capture, the end of file counting as silence; and its start."""
    tracker = Tracker(TrackerPolicy())
    arp = Decoder("lab", DLT_EN10MB)
    events: list[Event] = []
    start = None
    for ts, raw in read_pcap(NDP / f"{name}.pcap"):
        start = ts if start is None else start
        got = decode_ndp(raw, "lab")
        if isinstance(got, NdpFrame | NdpInvalid):
            events += tracker.observe_ndp(got, ts)
        else:
            frame = arp.decode(raw)
            assert isinstance(frame, ArpFrame)
            events += tracker.observe(frame, ts)
    events += tracker.tick(float("inf"))
    assert start is not None
    return events, start


def rows(events: list[Event], start: float) -> list[tuple[object, ...]]:
    """(event, ip, mac, previous_mac, reason, ms since start) of the events that are not
    link-local new_station rows."""
    return [(e.kind.value, e.ip, e.mac, e.previous_mac, e.reason, round((e.ts - start) * 1000))
            for e in events if not (e.kind.value == "new_station" and e.ip
                                    and e.ip.startswith("fe80:"))]


def link_local(events: list[Event]) -> set[tuple[str | None, str | None]]:
    return {(e.ip, e.mac) for e in events
            if e.kind.value == "new_station" and e.ip and e.ip.startswith("fe80:")}


def test_every_event_says_ipv6_except_arps() -> None:
    for path in NDP.glob("*.pcap"):
        events, _ = replay(path.stem)
        for e in events:
            assert e.family == ("ipv4" if e.ip and "." in e.ip else "ipv6"), e


def test_keepalived_failover_and_failback_is_one_failover_never_a_conflict() -> None:
    events, start = replay("keepalived-ipv6-failover")
    assert rows(events, start) == [
        ("new_station", "fd00:17::100", MASTER, None, None, 3432),
        ("new_station", "fd00:17::c", CLIENT, None, None, 5524),
        # the backup's takeover (+9.11) is failed back by the master (+19.04) inside the
        # hold; the backup silent for the hold after that: one failover, back to the master
        ("failover", "fd00:17::100", MASTER, BACKUP, "announced", 49040),
    ]
    assert link_local(events) == {("fe80::ff:fe17:a001", MASTER), ("fe80::ff:fe17:b001", BACKUP),
                                  ("fe80::ff:fe17:c001", CLIENT)}


def test_fake_advertise6_is_an_unsolicited_takeover_naming_the_attacker() -> None:
    events, start = replay("fake-advertise6")
    assert rows(events, start) == [
        ("new_station", "fd00:17::b", VICTIM, None, None, 0),
        ("new_station", "fd00:17::1", GATEWAY, None, None, 0),
        ("new_station", "fd00:17::66", ATTACKER, None, None, 250),
        ("conflict", "fd00:17::1", ATTACKER, GATEWAY, "unsolicited_takeover", 274),
        ("conflict_resolved", "fd00:17::1", ATTACKER, GATEWAY, "unsolicited_takeover", 30274),
    ]
    conflict = next(e for e in events if e.kind.value == "conflict")
    assert conflict.suspect == ATTACKER
    assert link_local(events) == {("fe80::ff:fe17:1", GATEWAY), ("fe80::ff:fe17:b", VICTIM)}


def test_parasite6_second_answer_to_one_solicitation_is_a_conflict() -> None:
    events, start = replay("parasite6")
    assert rows(events, start) == [
        ("new_station", "fd00:17::b", VICTIM, None, None, 0),
        ("new_station", "fd00:17::1", GATEWAY, None, None, 0),
        ("conflict", "fd00:17::1", ATTACKER, GATEWAY, "both_active", 3),
        # both silent after the attack: it ends `hold` after the owner's answer
        ("conflict_resolved", "fd00:17::1", ATTACKER, GATEWAY, "both_active", 30000),
    ]


def test_dos_new_ip6_is_probe_in_use_and_its_random_mac_no_station() -> None:
    events, start = replay("dos-new-ip6")
    assert rows(events, start) == [
        ("probe_in_use", "fd00:17::c", "02:00:00:17:00:0c", "02:00:f6:fc:70:27", None, 4)]


def test_ndisc6_and_ping6_give_stations_only() -> None:
    events, start = replay("ndisc6-ping6")
    assert rows(events, start) == [
        ("new_station", "fd00:17::b", "02:00:00:17:00:0b", None, None, 0),
        ("new_station", "fd00:17::a", "02:00:00:17:00:0a", None, None, 13),
    ]
    assert link_local(events) == {("fe80::ff:fe17:a", "02:00:00:17:00:0a"),
                                  ("fe80::ff:fe17:b", "02:00:00:17:00:0b")}


@pytest.mark.parametrize("vlan", [None, 10])
def test_dual_stack_gives_both_families_per_domain(vlan: int | None) -> None:
    events, _ = replay("dual-stack")
    got = sorted((e.family, e.ip) for e in events
                 if e.vlan == vlan and not (e.ip or "").startswith("fe80:"))
    assert {e.kind.value for e in events} == {"new_station"}  # no probe_in_use: nobody answers
    if vlan is None:
        assert got == [("ipv4", "192.0.2.10"), ("ipv4", "192.0.2.11"),
                       ("ipv6", "fd00:17::a"), ("ipv6", "fd00:17::b")]
    else:
        assert got == [("ipv4", "192.0.2.12"), ("ipv4", "192.0.2.13"),
                       ("ipv6", "fd00:17::1c"), ("ipv6", "fd00:17::1d")]



def batch_of(path: Path) -> Batch:
    """The capture as one batch, as libpcap would give it without a filter."""
    data, meta = bytearray(), bytearray()
    for ts, raw in read_pcap(path):
        sec = int(ts)
        meta += META.pack(sec, round((ts - sec) * 1e6), len(data), len(raw))
        data += raw
    return Batch(bytes(data), bytes(meta))


@pytest.mark.parametrize("path", sorted(NDP.glob("*.pcap")), ids=lambda p: p.stem)
def test_the_sensor_routes_ipv6_frames_to_the_same_events(path: Path) -> None:
    """A real Sensor (fast path on) gives what the tracker does: frames of EtherType 0x86DD
    after the VLAN walk go to `decode_ndp`, counted by kind."""
    sensor = Sensor(Config(), EventWriter(os.devnull))
    sensor.emitted = []
    sensor.feed(sensor.decoder("lab", DLT_EN10MB), batch_of(path))
    sensor.finish()
    expected, _ = replay(path.stem)
    assert sensor.emitted == expected
    ndp = sum(sensor.stats.ndp_packets.values())
    assert ndp == sum(1 for _, raw in read_pcap(path)
                      if isinstance(decode_ndp(raw), NdpFrame | NdpInvalid))
    assert ndp > 0
    assert not any(reason == "not_arp" for _, reason in sensor.stats.skipped)


def test_replay_command_prints_ipv6_events_with_the_family(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "arpwatchd", "replay", str(NDP / "fake-advertise6.pcap"),
         "--state", str(state), "-q"],
        capture_output=True, text=True, check=True, timeout=120)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    conflict = next(d for d in lines if d["event"] == "conflict")
    assert (conflict["ip"], conflict["mac"], conflict["family"], conflict["suspect"]) == (
        "fd00:17::1", ATTACKER, "ipv6", ATTACKER)
    assert {d["family"] for d in lines} == {"ipv6"}
    # the store keeps the IPv6 bindings: a second replay reports no new station
    again = subprocess.run(
        [sys.executable, "-m", "arpwatchd", "replay", str(NDP / "fake-advertise6.pcap"),
         "--state", str(state), "-q"],
        capture_output=True, text=True, check=True, timeout=120)
    assert "new_station" not in again.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "arpwatchd", "bindings", "--state", str(state)],
        capture_output=True, text=True, check=True, timeout=120).stdout
    assert "fd00:17::1" in shown and "fe80::ff:fe17:b" in shown
    history = subprocess.run(
        [sys.executable, "-m", "arpwatchd", "history", "--state", str(state), "fd00:17::1"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    assert "unsolicited_takeover" in history


@pytest.mark.parametrize("path", sorted(NDP.glob("*.pcap")), ids=lambda p: p.stem)
def test_replay_reads_ndp_through_the_capture_filter(path: Path) -> None:
    """`arpwatchd replay` (libpcap with the sensor's filter) gives the tracker's events."""
    sensor = replay_quietly(path, Config())
    expected, _ = replay(path.stem)
    assert sensor.emitted is not None
    assert [e._replace(interface="lab") for e in sensor.emitted] == expected



def test_an_ndp_frame_is_never_remembered_as_a_repeat_of_the_arp_frame_before_it() -> None:
    """The fast path remembers a frame the tracker found steady; an NDP message that binds
    nothing (an NS without a source link-layer option: it only asks) after a steady ARP frame
    once left the ARP frame's verdict standing, so its repeats were taken for that ARP frame's
    repeats: never decoded, never counted, and their asks lost."""
    host, peer = "02:00:00:17:00:0b", "02:00:00:17:00:0c"
    ask = arp_frame(1, host, "192.0.2.11", "00:00:00:00:00:00", "192.0.2.12")
    answer = arp_frame(2, peer, "192.0.2.12", host, "192.0.2.11", eth_dst=host)
    ns = ndp_frame(NEIGHBOR_SOLICITATION, "fe80::b", "fe80::c",
                   b"\0" * 4 + IPv6Address("fe80::c").packed, eth_src=host, eth_dst=peer)
    decoded = decode_ndp(ns)
    assert isinstance(decoded, NdpFrame) and decoded.claim is None
    data, meta = bytearray(), bytearray()
    for n, raw in enumerate([ask, answer, ask, answer, ns] * 4):
        meta += META.pack(1_700_000_000 + n, 0, len(data), len(raw))
        data += raw
    sensor = Sensor(Config(), EventWriter(os.devnull))
    sensor.emitted = []
    sensor.feed(sensor.decoder("lab", DLT_EN10MB), Batch(bytes(data), bytes(meta)))
    assert sensor.stats.ndp_packets[("lab", "solicitation")] == 4
    assert not any(raw[12:14] == b"\x86\xdd" for memo in sensor.fastpath._memos.values()
                   for raw, _ in memo.items())


def test_ndp_repeats_go_through_the_kernel_and_are_counted_as_ndp() -> None:
    """A host re-resolving a neighbour: after the first exchange each repeated NS and
    solicited NA is proven by the kernel (the ARP request and reply it stands for), counted
    under its NDP kind, never as ARP; the events are the slow path's."""
    host, peer = "02:00:00:17:00:0b", "02:00:00:17:00:0c"
    ns = neighbor_solicitation("fd00:17::b", "fd00:17::c", host)
    na = neighbor_advertisement("fd00:17::c", peer, solicited=True, dst="fd00:17::b",
                                eth_dst=host)
    data, meta = bytearray(), bytearray()
    for n, raw in enumerate([ns, na] * 50):
        meta += META.pack(1_700_000_000 + n, 0, len(data), len(raw))
        data += raw
    batch = Batch(bytes(data), bytes(meta))
    runs = []
    for fast in (True, False):
        sensor = Sensor(Config(), EventWriter(os.devnull))
        sensor.emitted = []
        sensor.fastpath.enabled = fast
        sensor.feed(sensor.decoder("lab", DLT_EN10MB), batch)
        sensor.finish()
        runs.append(sensor)
    kernel, slow = runs
    assert kernel.emitted == slow.emitted
    assert kernel.stats.ndp_packets == slow.stats.ndp_packets
    assert kernel.stats.ndp_packets[("lab", "solicitation")] == 50
    assert kernel.stats.ndp_packets[("lab", "solicited_advertisement")] == 50
    assert not kernel.stats.packets  # no ARP counted
    if kernel.fastpath.kernel is not None:
        assert kernel.fastpath.solicitation_hits >= 45
        assert kernel.fastpath.advertisement_hits >= 45
