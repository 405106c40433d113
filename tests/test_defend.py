"""Defense decisions with explicit times, and the frames byte for byte (DESIGN.md section 5)."""

from __future__ import annotations

import dpkt
import pytest
from arpbuild import garp, reply, request

from arpwatchd.addresses import parse_ip, parse_mac
from arpwatchd.config import ConfigError, parse_config
from arpwatchd.defend import Defender, DefensePolicy, OwnedAddress
from arpwatchd.events import EventKind

OWNER = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:02"
EVIL = "02:00:00:00:00:66"
NIC = "02:00:00:00:00:99"
IP = "10.0.0.1"
T0 = 1_700_000_000.0


def defender(**kw: object) -> Defender:
    owned = OwnedAddress(parse_ip(IP), parse_mac(OWNER), "eth0", None,
                         frozenset({parse_mac(PEER)}))
    policy = DefensePolicy(addresses=(owned,), **kw)  # type: ignore[arg-type]
    return Defender(policy, {"eth0": parse_mac(NIC)})


def test_defense_goes_at_once_and_once_more_after_the_last_claim() -> None:
    d = defender()
    assert d.observe(garp(EVIL, IP), T0) == []
    assert [s.event.ts for s in d.due(T0)] == [T0]
    d.observe(garp(EVIL, IP), T0 + 3)
    assert d.due(T0 + 5) == [] and d.next_due() == T0 + 10
    assert [s.event.ts for s in d.due(T0 + 10)] == [T0 + 10]
    assert d.next_due() is None


def test_defense_can_wait_for_lock_time_after_the_intruders_claim() -> None:
    d = defender(delay=1.5)
    assert d.observe(garp(EVIL, IP), T0) == []
    assert d.due(T0 + 1.0) == []
    assert d.next_due() == T0 + 1.5
    sends = d.due(T0 + 1.5)
    assert len(sends) == 1
    assert sends[0].event.kind is EventKind.DEFENSE_SENT
    assert (sends[0].event.ip, sends[0].event.mac, sends[0].event.previous_mac) == (IP, OWNER, EVIL)


def test_announcement_frame_byte_for_byte() -> None:
    d = defender()
    d.observe(reply(EVIL, IP, "02:00:00:00:00:07", "10.0.0.7"), T0)
    frame = d.due(T0 + 2)[0].frame
    eth = dpkt.ethernet.Ethernet(frame)
    assert eth.dst == b"\xff" * 6 and eth.src == parse_mac(NIC)
    arp = eth.data
    assert isinstance(arp, dpkt.arp.ARP)
    assert arp.op == dpkt.arp.ARP_OP_REQUEST
    assert arp.sha == parse_mac(OWNER) and arp.tha == b"\x00" * 6
    assert arp.spa == arp.tpa == bytes([10, 0, 0, 1])
    assert len(frame) == 60


def test_tagged_domain_and_owner_source() -> None:
    owned = OwnedAddress(parse_ip(IP), parse_mac(OWNER), "eth0", 30)
    d = Defender(DefensePolicy(addresses=(owned,), use_owner_mac_as_source=True),
                 {"eth0": parse_mac(NIC)})
    d.observe(garp(EVIL, IP, vlan=30), T0)
    frame = d.due(T0 + 2)[0].frame
    assert frame[6:12] == parse_mac(OWNER)
    assert frame[12:16] == b"\x81\x00\x00\x1e"
    assert d.observe(garp(EVIL, IP, vlan=31), T0 + 3) == []  # another VLAN is not owned


def test_one_defense_per_interval_and_one_after_the_last_claim() -> None:
    d = defender(delay=1.5)
    sent_at = []
    for tenth in range(0, 400):  # intruder claims every second for 20 s, we look every 0.1 s
        now = T0 + tenth / 10
        if tenth % 10 == 0 and tenth <= 200:
            d.observe(reply(EVIL, IP, "02:00:00:00:00:07", "10.0.0.7"), now)
        sent_at += [round(s.event.ts - T0, 1) for s in d.due(now)]
    assert sent_at == [1.5, 11.5, 21.5]


def test_owner_group_and_other_addresses_are_never_defended() -> None:
    d = defender()
    assert d.observe(garp(OWNER, IP), T0) == []
    assert d.observe(garp(PEER, IP), T0) == []
    assert d.observe(garp(EVIL, "10.0.0.2"), T0) == []
    assert d.observe(request(EVIL, "10.0.0.3", IP), T0) == []
    assert d.due(T0 + 100) == [] and d.next_due() is None


def test_defense_failed_once_when_intruder_outlasts_defend_max() -> None:
    d = defender(max_defenses=2, delay=1.5)
    failed = []
    for second in range(0, 60):
        now = T0 + second
        failed += [e for e in d.observe(garp(EVIL, IP), now) if e.kind is EventKind.DEFENSE_FAILED]
        d.due(now + 0.5)
    assert len(failed) == 1 and failed[0].previous_mac == EVIL and failed[0].count == 2


def spoofed_all(count: int, rate: float) -> Defender:
    """A defender of 10.0.1.1..count capped at `rate` frames/s, every address just spoofed."""
    owned = tuple(OwnedAddress(parse_ip(f"10.0.1.{i}"), parse_mac(OWNER), "eth0")
                  for i in range(1, count + 1))
    d = Defender(DefensePolicy(addresses=owned, rate=rate), {})
    for i in range(1, count + 1):
        d.observe(garp(EVIL, f"10.0.1.{i}"), T0)
    return d


def test_global_rate_cap() -> None:
    d = spoofed_all(50, rate=5.0)
    assert len(d.due(T0 + 2)) == 5
    assert len(d.due(T0 + 2.2)) == 1


def test_announce_at_start_twice_two_seconds_apart() -> None:
    d = defender(announce_at_start=True)
    d.start(T0)
    times = [s.event.ts - T0 for t in (0.0, 1.0, 2.0, 3.0) for s in d.due(T0 + t)]
    assert times == [0.0, 2.0]


def test_config_rejects_bad_defense_entries() -> None:
    with pytest.raises(ConfigError, match="needs 'interface'"):
        parse_config(f"defend:\n  addresses:\n    - {{ip: {IP}, mac: {OWNER}}}\n")
    with pytest.raises(ConfigError, match="not a unicast MAC"):
        parse_config(f"defend:\n  addresses:\n    - {{ip: {IP}, mac: 01:00:5e:00:00:01, "
                     "interface: eth0}\n")
    config = parse_config(f"defend:\n  addresses:\n    - {{ip: {IP}, mac: {OWNER}, "
                          "interface: eth0}\n")
    assert config.policy.protection("eth0", None, parse_ip(IP)) is not None


def test_next_due_waits_for_a_token_when_the_rate_cap_holds_frames_back() -> None:
    d = spoofed_all(3, rate=1.0)
    assert len(d.due(T0)) == 1
    due = d.next_due()
    assert due is not None and due >= T0 + 1.0 - 1e-9
