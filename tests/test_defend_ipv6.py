"""Defending IPv6 addresses (issue 17): the neighbour advertisement byte for byte, what
triggers it, and the rate rules, which are ARP's (DESIGN.md section 5, docs/defense.md).

Sans-IO like tests/test_defend.py: claims are NDP frames built by `ndpframes`, decoded by
`ndp.decode_ndp` as the sensor decodes them, fed with explicit times. The defense frame is
read back twice, by the project's own decoder and by dpkt, and its ICMPv6 checksum is
recomputed here over the RFC 8200 8.1 pseudo-header, independently of both.
"""

from __future__ import annotations

import os
from ipaddress import IPv6Address

import dpkt
import pytest
from arpbuild import garp
from netlab import read_pcap
from test_defend import attack
from test_ndp_events import ATTACKER, GATEWAY, NDP

from arpwatchd.addresses import parse_address, parse_ip, parse_mac
from arpwatchd.batch import META, Batch
from arpwatchd.config import parse_config
from arpwatchd.decode import DLT_EN10MB
from arpwatchd.defend import Defender, DefensePolicy, OwnedAddress, Send
from arpwatchd.events import EventKind
from arpwatchd.ndp import NdpFrame, NdpKind, decode_ndp
from arpwatchd.ndpframes import (
    neighbor_advertisement,
    neighbor_solicitation,
    router_advertisement,
)
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor

OWNER = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:02"
EVIL = "02:00:00:00:00:66"
NIC = "02:00:00:00:00:99"
VICTIM_IP = "fd00:17::b"
IP = "fd00:17::1"
T0 = 1_700_000_000.0


def owned(ip: str = IP, vlan: int | None = None, router: bool = False) -> OwnedAddress:
    return OwnedAddress(parse_address(ip), parse_mac(OWNER), "eth0", vlan,
                        frozenset({parse_mac(PEER)}), router=router)


def defender(*addresses: OwnedAddress, **kw: object) -> Defender:
    policy = DefensePolicy(addresses=addresses or (owned(),), **kw)
    return Defender(policy, {"eth0": parse_mac(NIC)})


def ndp(raw: bytes) -> NdpFrame:
    frame = decode_ndp(raw, "eth0")
    assert isinstance(frame, NdpFrame), frame
    return frame


SPOOF = ndp(neighbor_advertisement(IP, EVIL, dst=VICTIM_IP, eth_dst=OWNER))
"""What `atk6-fake_advertise6` sends: an NA unicast to the victim, O set, S and R clear,
target link-layer option = the attacker (pcaps/ndp/fake-advertise6.pcap)."""


def checksum_ok(packet: dpkt.ip6.IP6) -> bool:
    """RFC 4443 2.3: the one's complement sum over the pseudo-header (source, destination,
    upper-layer length, next header 58) and the ICMPv6 message is all ones."""
    message = bytes(packet.data)
    data = packet.src + packet.dst + len(message).to_bytes(4, "big") + b"\0\0\0\x3a" + message
    data += b"\0" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def defense_frame(d: Defender, claim: NdpFrame = SPOOF) -> Send:
    assert d.observe_ndp(claim, T0) == []
    [send] = d.due(T0)
    return send


def test_the_defense_is_an_unsolicited_override_na_to_all_nodes_from_the_owner() -> None:
    """RFC 4861 7.2.6: to ff02::1, source = the address, hop limit 255, O set, S and R clear,
    target = the address, TLLAO = Ethernet source = the owner; read by `decode_ndp`."""
    send = defense_frame(defender())
    assert send.interface == "eth0"
    frame = ndp(send.frame)
    assert (frame.kind, frame.src, frame.dst, frame.target) == (
        NdpKind.UNSOLICITED_ADVERTISEMENT, IPv6Address(IP), IPv6Address("ff02::1"),
        IPv6Address(IP))
    assert (frame.router, frame.solicited, frame.override) == (False, False, True)
    assert (frame.target_lla, frame.eth_src, frame.source_lla) == (
        parse_mac(OWNER), parse_mac(OWNER), None)
    assert (frame.eth_dst, frame.vlan) == (bytes.fromhex("333300000001"), None)
    assert frame.claim == (IPv6Address(IP), parse_mac(OWNER))
    assert not frame.ethernet_mismatch  # unlike an ARP defense from the NIC's MAC


def test_the_defense_na_read_by_dpkt_field_by_field_with_its_checksum() -> None:
    raw = defense_frame(defender()).frame
    eth = dpkt.ethernet.Ethernet(raw)
    assert (eth.dst, eth.src, eth.type) == (
        bytes.fromhex("333300000001"), parse_mac(OWNER), dpkt.ethernet.ETH_TYPE_IP6)
    ip6 = eth.data
    assert isinstance(ip6, dpkt.ip6.IP6)
    assert (ip6.v, ip6.nxt, ip6.hlim, ip6.plen) == (6, 58, 255, 32)
    assert (ip6.src, ip6.dst) == (IPv6Address(IP).packed, IPv6Address("ff02::1").packed)
    icmp = ip6.data
    assert isinstance(icmp, dpkt.icmp6.ICMP6)
    assert (icmp.type, icmp.code) == (dpkt.icmp6.ND_NEIGHBOR_ADVERT, 0)
    body = bytes(icmp)[4:]
    assert body[:4] == b"\x20\0\0\0"  # R=0 S=0 O=1, reserved zero
    assert body[4:20] == IPv6Address(IP).packed
    assert body[20:] == b"\x02\x01" + parse_mac(OWNER)  # the target link-layer option
    assert icmp.sum != 0 and checksum_ok(ip6)
    assert len(raw) == 14 + 40 + 32


def test_router_flag_only_when_configured_and_the_vlan_tag_of_the_domain() -> None:
    d = defender(owned(vlan=30, router=True))
    raw = defense_frame(d, ndp(neighbor_advertisement(IP, EVIL, dst=VICTIM_IP, vlan=30))).frame
    assert raw[12:16] == b"\x81\x00\x00\x1e"
    frame = ndp(raw)
    assert (frame.vlan, frame.router, frame.solicited, frame.override) == (30, True, False, True)
    ip6 = dpkt.ip6.IP6(raw[18:])
    assert checksum_ok(ip6)
    assert [s.event.reason for s in d.due(T0 + 1)] == ["last_word"]
    # VLAN 31 is another domain: its fd00:17::1 is not the defended one
    assert d.observe_ndp(ndp(neighbor_advertisement(IP, EVIL, vlan=31)), T0 + 5) == []
    assert d.due(T0 + 5) == [] and d.next_due() is None


def test_ethernet_source_owner_whatever_the_arp_setting() -> None:
    """`ethernet_source: nic` is for ARP: the NA's Ethernet source is the owner's MAC, the
    MAC its option names (docs/defense.md)."""
    for use_owner in (False, True):
        d = defender(use_owner_mac_as_source=use_owner)
        assert ndp(defense_frame(d).frame).eth_src == parse_mac(OWNER)


@pytest.mark.parametrize(("what", "raw"), [
    ("unsolicited NA unicast to a victim (fake_advertise6)",
     neighbor_advertisement(IP, EVIL, dst=VICTIM_IP)),
    ("unsolicited NA to all-nodes", neighbor_advertisement(IP, EVIL)),
    ("solicited NA with R, S, O (parasite6)",
     neighbor_advertisement(IP, EVIL, dst=VICTIM_IP, router=True, solicited=True)),
    ("NA without a target link-layer option: the Ethernet source",
     neighbor_advertisement(IP, EVIL, dst=VICTIM_IP, target_lla=False, solicited=True)),
    ("NS from the address with a source link-layer option",
     neighbor_solicitation(IP, VICTIM_IP, EVIL)),
])
def test_every_claim_by_another_mac_is_defended(what: str, raw: bytes) -> None:
    d = defender()
    assert d.observe_ndp(ndp(raw), T0) == [], what
    [send] = d.due(T0)
    event = send.event
    assert (event.kind, event.reason, event.ip, event.mac, event.previous_mac, event.family) == (
        EventKind.DEFENSE_SENT, "defended", IP, OWNER, EVIL, "ipv6"), what


def test_router_advertisement_claim_of_a_defended_link_local_is_defended() -> None:
    d = defender(owned("fe80::1", router=True))
    d.observe_ndp(ndp(router_advertisement("fe80::1", EVIL)), T0)
    [send] = d.due(T0)
    assert (send.event.ip, ndp(send.frame).router) == ("fe80::1", True)


@pytest.mark.parametrize(("what", "raw"), [
    ("the owner's own NA", neighbor_advertisement(IP, OWNER)),
    ("a group member's NA (failover)", neighbor_advertisement(IP, PEER)),
    ("another address", neighbor_advertisement("fd00:17::2", EVIL)),
    ("an NS asking for the address (claims its own source)",
     neighbor_solicitation(VICTIM_IP, IP, EVIL)),
    ("a DAD probe of the address (claims nothing)", neighbor_solicitation("::", IP, EVIL)),
])
def test_no_defense_without_a_claim_by_an_outsider(what: str, raw: bytes) -> None:
    d = defender()
    assert d.observe_ndp(ndp(raw), T0) == [], what
    assert d.due(T0 + 100) == [] and d.next_due() is None, what


def test_an_ipv4_claim_never_triggers_the_ipv6_defense_nor_the_reverse() -> None:
    """10.0.0.1 and fd00:17::1 are two keys: each family's claim opens its own episode."""
    d = defender(owned(), OwnedAddress(parse_ip("10.0.0.1"), parse_mac(OWNER), "eth0"))
    d.observe(garp(EVIL, "10.0.0.1"), T0)
    [send] = d.due(T0)
    assert (send.event.family, send.event.ip) == ("ipv4", "10.0.0.1")
    assert len(send.frame) == 60  # the ARP announcement
    d.observe_ndp(SPOOF, T0 + 0.1)
    [send] = d.due(T0 + 0.1)
    assert (send.event.family, send.event.ip) == ("ipv6", IP)


def test_rate_rules_are_arps_answers_a_second_apart_and_the_last_word() -> None:
    """Claims every 0.4 s: the schedule of tests/test_defend.py's GARP attack, to the ms."""
    sent = attack(defender(), [0.4 * n for n in range(6)], until=5, frame=SPOOF)
    assert sent == [(0.0, "defended"), (1.0, "defended"), (2.0, "defended"),
                    (3.0, "last_word")]


def test_no_lock_time_for_ipv6_every_lie_is_answered_within_the_spacing() -> None:
    """An ARP reply within the lock time of an answer draws none (Linux ignores it); an
    IPv6 neighbour has no lock (docs/ipv6.md), so the same NAs are each answered once the
    spacing allows: compare test_replies_within_the_lock_of_an_answer_are_left_to_the_last_word."""
    sent = attack(defender(), [0.9 * n for n in range(5)], until=9, frame=SPOOF)
    assert sent == [(0.0, "defended"), (1.0, "defended"), (2.0, "defended"),
                    (3.0, "defended"), (4.0, "defended"), (4.6, "last_word")]


def test_budget_then_defense_failed_with_the_family() -> None:
    d = defender(max_defenses=2)
    failed = []
    for second in range(10):
        failed += d.observe_ndp(SPOOF, T0 + second)
        d.due(T0 + second)
    [event] = failed
    assert (event.kind, event.family, event.ip, event.previous_mac, event.count) == (
        EventKind.DEFENSE_FAILED, "ipv6", IP, EVIL, 2)


def test_one_global_token_bucket_for_both_families() -> None:
    v4 = [OwnedAddress(parse_ip(f"10.0.1.{i}"), parse_mac(OWNER), "eth0") for i in range(1, 4)]
    v6 = [owned(f"fd00:17::{i}") for i in range(1, 4)]
    d = defender(*v4, *v6, rate=4.0)
    for i in range(1, 4):
        d.observe(garp(EVIL, f"10.0.1.{i}"), T0)
        d.observe_ndp(ndp(neighbor_advertisement(f"fd00:17::{i}", EVIL)), T0)
    assert len(d.due(T0)) == 4
    assert len(d.due(T0 + 0.25)) == 1


def test_announce_at_start_announces_an_ipv6_address_with_the_na() -> None:
    d = defender(announce_at_start=True)
    d.start(T0)
    sends = [s for t in (0.0, 2.0) for s in d.due(T0 + t)]
    assert [(s.event.reason, s.event.family, s.event.previous_mac) for s in sends] == [
        ("announce_at_start", "ipv6", None)] * 2
    assert all(ndp(s.frame).claim == (IPv6Address(IP), parse_mac(OWNER)) for s in sends)


def _batch(ts: float, raw: bytes) -> Batch:
    sec = int(ts)
    return Batch(raw, META.pack(sec, round((ts - sec) * 1e6), 0, len(raw)))


def test_the_sensor_defends_the_gateway_against_fake_advertise6_from_the_capture() -> None:
    """The real capture of atk6-fake_advertise6 (pcaps/ndp/fake-advertise6.pcap), frame by
    frame through a Sensor whose config defends the gateway, with the daemon's look at due
    defenses after each frame: a conflict, one NA per lie (they come 1 s apart), the last
    word, and the counters labelled ipv6."""
    config = parse_config(f"defend:\n  addresses:\n    - {{ip: 'FD00:17::1', mac: '{GATEWAY}', "
                          "interface: lab}\n")
    sensor = Sensor(config, EventWriter(os.devnull))
    sensor.defender = Defender(config.defense, {})
    sensor.emitted = []
    decoder = sensor.decoder("lab", DLT_EN10MB)
    frames = read_pcap(NDP / "fake-advertise6.pcap")
    sent: list[Send] = []
    for ts, raw in frames:
        sensor.feed(decoder, _batch(ts, raw))
        sends = sensor.defense_due(ts)
        sensor.defense_done(sends, [])
        sent += sends
    end = frames[-1][0] + 5
    while (due := sensor.defender.next_due()) is not None and due <= end:
        sends = sensor.defense_due(due)
        sensor.defense_done(sends, [])
        sent += sends
    lies = [ts for ts, raw in frames
            if (f := decode_ndp(raw)) and isinstance(f, NdpFrame)
            and f.claim == (IPv6Address(IP), parse_mac(ATTACKER))]
    assert len(lies) == 3
    assert [(s.event.ts, s.event.reason) for s in sent] == [
        *((ts, "defended") for ts in lies), (lies[-1] + 1.0, "last_word")]
    assert all(ndp(s.frame).claim == (IPv6Address(IP), parse_mac(GATEWAY)) for s in sent)
    conflicts = [e for e in sensor.emitted if e.kind is EventKind.CONFLICT]
    assert [(e.ip, e.family, e.reason) for e in conflicts][:1] == [
        (IP, "ipv6", "owned_address_claimed")]
    assert sensor.stats.defense_sent == {("lab", "ipv6"): 4}
    assert sensor.stats.defense_last_word == {("lab", "ipv6"): 1}
    assert len([e for e in sensor.emitted if e.kind is EventKind.DEFENSE_SENT]) == 4
    # the sensor's own NA coming back in its capture is skipped, not a claim
    skipped = sensor.stats.skipped[("lab", "own_frame")]
    sensor.feed(decoder, _batch(end, sent[0].frame))
    assert sensor.stats.skipped[("lab", "own_frame")] == skipped + 1

