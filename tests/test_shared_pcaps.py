"""Replays the real captures of ../shared/pcaps (made by other people) and checks their README.

Why: synthetic captures only hold what their author thought of. These files come from
Wireshark, tcpdump, Zeek, Suricata and a textbook: Linux cooked headers, QinQ, PRP
duplicates, fuzzed frames, real DHCP clients and a real poisoning. Each test states what
../shared/pcaps/README.md (and DESIGN.md) says the sensor must report for one file: no crash,
the right link-layer decoding, and no conflict where there is none.

The folder is outside this repository; the tests skip with a clear reason when it is absent.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from arpbuild import read_arp_frames, replay_quietly

from arpwatchd.addresses import ip_text, mac_text
from arpwatchd.config import Config, parse_config
from arpwatchd.decode import ArpFrame, ArpKind
from arpwatchd.events import Event, format_ts
from arpwatchd.sensor import Sensor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared captures are not here ({SHARED} is absent)"
)

ARPPOISON_PROTECTED = """\
protected:
  - ip: 172.16.0.1
    mac: "00:26:0b:31:07:33"
"""



@dataclass
class Replayed:
    events: list[Event]
    sensor: Sensor

    def kinds(self) -> Counter[str]:
        return Counter(e.kind.value for e in self.events)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind.value == kind]

    def packets(self, kind: str) -> int:
        return sum(n for (_, k), n in self.sensor.stats.packets.items() if k == kind)


@functools.cache
def replayed(name: str, config_text: str | None = None) -> Replayed:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    config = parse_config(config_text, source="test") if config_text else Config()
    sensor = replay_quietly(path, config)
    assert sensor.emitted is not None
    return Replayed(sensor.emitted, sensor)


def _summary(events: list[Event]) -> list[tuple[str, str | None, str | None, int | None]]:
    return [(e.kind.value, e.ip, e.mac, e.vlan) for e in events]


def _arp_frames(name: str) -> list[tuple[float, ArpFrame]]:
    return read_arp_frames(SHARED / name)


def test_arp_storm_is_a_flood_from_one_router_not_a_conflict() -> None:
    run = replayed("arp-storm.pcap")
    router = "00:07:0d:af:f4:54"
    floods = run.of("arp_flood")
    assert [(e.mac, e.ip) for e in floods] == [(router, None)]  # one alarm per episode
    assert floods[0].count == 101
    assert run.kinds()["conflict"] == 0
    # One MAC holding the 9 sender IPs of its secondary subnets is normal for a router.
    stations = run.of("new_station")
    assert len(stations) == 9
    assert {e.mac for e in stations} == {router}
    assert set(run.kinds()) <= {"new_station", "arp_flood", "arp_scan"}
    assert run.packets("request") == 622


def test_icmp_dot1q_two_new_stations_in_vlan_123() -> None:
    run = replayed("icmp_dot1q.pcap")
    assert _summary(run.events) == [
        ("new_station", "192.168.123.1", "00:19:06:ea:b8:c1", 123),
        ("new_station", "192.168.123.2", "00:18:73:de:57:c1", 123),
    ]


def test_qinq_one_new_station_in_outer_vlan_200() -> None:
    run = replayed("QinQpacket.pcap")
    assert _summary(run.events) == [
        ("new_station", "172.17.0.20", "00:08:5d:23:0c:3f", 200),
    ]
    assert run.packets("request") == 105


def test_linux_cooked_sll_decoded_new_stations_only() -> None:
    run = replayed("linuxsll-arp.pcap")
    assert set(run.kinds()) == {"new_station"}
    assert ("new_station", "192.168.22.81", "00:50:56:8b:3f:0d", None) in _summary(run.events)
    assert run.packets("announcement") == 2
    assert sum(run.sensor.stats.packets.values()) == 12
    assert not run.sensor.stats.skipped


def test_linux_cooked_sll2_decoded_no_conflict() -> None:
    run = replayed("Sll2Packet.pcap")
    assert _summary(run.events) == [
        ("new_station", "7.249.151.114", "d2:cf:c2:50:15:ea", None),
        ("new_station", "7.249.150.1", "00:00:5e:00:01:05", None),  # VRRP virtual MAC
    ]
    assert sum(run.sensor.stats.packets.values()) == 4


def test_prp_duplicates_follow_the_arp_sender_mac() -> None:
    run = replayed("prp.pcap")
    assert run.kinds()["conflict"] == 0
    assert set(run.kinds()) <= {"new_station", "ethernet_mismatch"}
    assert _summary(run.of("new_station")) == [
        ("new_station", "192.168.0.10", "c6:81:06:cb:35:98", None),
    ]
    for mismatch in run.of("ethernet_mismatch"):  # the LAN B copy, reported at most once
        assert (mismatch.mac, mismatch.previous_mac) == ("c6:81:06:cb:35:98",
                                                         "b2:f0:66:9b:81:1c")
    bound = {ip_text(r.ip): mac_text(r.mac) for r in run.sensor.tracker.bindings()}
    assert bound == {"192.168.0.10": "c6:81:06:cb:35:98"}


def test_sr_ri_tlv_moves_are_changed_and_reused_macs_never_conflicts() -> None:
    """Worked out from the frames: at 21:05:47 1.0.0.1 and 1.0.0.2 swap MACs by an ordinary
    request and a solicited reply, 1.0.1.2 moves to ...:03 by a solicited reply; the old
    owners never claim those addresses within 30 s. Weeks later both swap back."""
    run = replayed("sr_ri_tlv.pcap")
    moves = [(e.kind.value, e.ip, e.mac, e.previous_mac, format_ts(e.ts))
             for e in run.events if e.kind.value != "new_station"]
    one, two, three = (f"02:02:00:0{n}:00:00" for n in (1, 2, 3))
    assert moves == [
        ("changed_mac", "1.0.0.1", two, one, "2022-11-02T21:06:17.040400Z"),
        ("changed_mac", "1.0.0.2", one, two, "2022-11-02T21:06:17.040555Z"),
        ("changed_mac", "1.0.1.2", three, two, "2022-11-02T21:06:17.960080Z"),
        ("reused_mac", "1.0.0.1", one, two, "2022-12-19T08:21:10.120434Z"),
        ("reused_mac", "1.0.0.2", two, one, "2022-12-19T08:21:10.120511Z"),
    ]
    assert len(run.of("new_station")) == 4


def test_fuzzed_arp_oobr_counts_malformed_frames_and_stays_bounded() -> None:
    run = replayed("arp-oobr.pcap")
    frames = _arp_frames("arp-oobr.pcap")
    invalid = [f for _, f in frames if f.kind is ArpKind.INVALID]
    assert invalid, "the fuzzed frames must be recognised as invalid ARP"
    assert run.packets("invalid") == len(invalid)
    assert sum(run.sensor.stats.packets.values()) == len(frames)
    problems = Counter(f.problem for f in invalid)
    assert {"not_ethernet_ipv4", "bad_opcode"} <= set(problems)
    assert len(run.of("invalid_arp")) <= len(invalid)
    # Invalid frames never bind, so the table holds at most one entry per valid sender IP.
    valid_ips = {(f.vlan, f.spa) for _, f in frames if f.is_claim}
    assert len(run.sensor.tracker) <= len(valid_ips)
    assert all(e.ip is None or not e.ip.startswith("0.") for e in run.of("new_station"))


def test_dhcp_probes_create_no_binding_and_no_conflict() -> None:
    run = replayed("dhcp-probes-home-lan.pcap")
    assert set(run.kinds()) == {"new_station"}
    assert run.packets("probe") == 33
    assert run.packets("announcement") == 11
    client, ip = "68:5d:43:8b:f9:de", "192.168.0.13"
    frames = _arp_frames("dhcp-probes-home-lan.pcap")
    first_probe = min(ts for ts, f in frames if f.kind is ArpKind.PROBE)
    first_claim = min(ts for ts, f in frames if f.is_claim and ip_text(f.spa) == ip)
    assert first_probe < first_claim  # three probes come first and must not bind
    station = next(e for e in run.events if e.ip == ip)
    assert (station.mac, station.ts) == (client, first_claim)
    bound = {ip_text(r.ip) for r in run.sensor.tracker.bindings()}
    assert "0.0.0.0" not in bound
    assert ("new_station", "192.168.0.1", "18:59:33:f4:49:1f", None) in _summary(run.events)


def test_arppoison_is_silent_without_config() -> None:
    run = replayed("arppoison.pcapng")
    assert run.kinds()["conflict"] == 0
    assert set(run.kinds()) == {"new_station"}


def test_arppoison_with_the_gateway_protected_is_a_conflict() -> None:
    run = replayed("arppoison.pcapng", ARPPOISON_PROTECTED)
    attacker, gateway = "00:25:b3:bf:91:ee", "00:26:0b:31:07:33"
    got = [(e.kind.value, e.ip, e.mac, e.previous_mac, e.reason, format_ts(e.ts))
           for e in run.events]
    assert got == [
        # The attacker's first request names it as 172.16.0.1: a conflict at once.
        ("conflict", "172.16.0.1", attacker, gateway, "owned_address_claimed",
         "2010-07-16T03:39:37.376536Z"),
        ("new_station", "172.16.0.107", "00:21:70:c0:56:f0", None, None,
         "2010-07-16T03:39:37.376589Z"),
        ("new_station", "172.16.0.105", attacker, None, None, "2010-07-16T03:39:47.122706Z"),
        # Its last claim of .1 is the reply at 37.376602; 30 s later the gateway keeps it.
        ("conflict_resolved", "172.16.0.1", gateway, attacker, "owned_address_claimed",
         "2010-07-16T03:40:07.376602Z"),
    ]
    assert run.events[0].suspect == attacker


def test_arp_gratuitous_one_new_station() -> None:
    run = replayed("arp_gratuitous.pcapng")
    assert _summary(run.events) == [("new_station", "24.6.125.19", "00:03:47:b7:f2:f5", None)]
