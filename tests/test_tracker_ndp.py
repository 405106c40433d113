"""The tracker's IPv6 rules (docs/ipv6.md): neighbour discovery read as the ARP frame that
says the same, judged by the ARP rules, with what only NDP can say decided in
`Tracker.observe_ndp`. Frames are built with `ndpframes` and decoded, as the sensor would."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from arpwatchd.addresses import ip6_value, ip_text, parse_mac
from arpwatchd.decode import ArpFrame, ArpKind
from arpwatchd.events import Event, EventKind
from arpwatchd.ndp import NdpFrame, NdpInvalid, decode_ndp
from arpwatchd.ndpframes import (
    ndp_frame,
    neighbor_advertisement,
    neighbor_solicitation,
    router_advertisement,
)
from arpwatchd.policy import TrackerPolicy
from arpwatchd.tracker import Tracker, split_key

GW = "02:00:00:17:00:01"
VICTIM = "02:00:00:17:00:0b"
ATTACKER = "02:00:00:17:00:66"
BACKUP = "02:00:00:17:b0:01"


def ndp(raw: bytes) -> NdpFrame | NdpInvalid:
    got = decode_ndp(raw, "eth0")
    assert isinstance(got, (NdpFrame, NdpInvalid)), got
    return got


def feed(tracker: Tracker, *timed: tuple[float, bytes]) -> list[Event]:
    events: list[Event] = []
    for ts, raw in timed:
        events += tracker.observe_ndp(ndp(raw), ts)
    return events


def kinds(events: list[Event]) -> list[tuple[str, str | None, str | None]]:
    return [(e.kind.value, e.ip, e.mac) for e in events]


def resolve(asker_ip: str, asker: str, target: str, owner: str) -> list[bytes]:
    """A kernel resolving `target`: multicast NS with SLLAO, answer S+O with TLLAO."""
    return [neighbor_solicitation(asker_ip, target, asker),
            neighbor_advertisement(target, owner, dst=asker_ip, solicited=True,
                                   eth_dst=parse_mac(asker))]


def test_resolution_binds_both_sides_in_rfc_5952_text_with_family() -> None:
    t = Tracker(TrackerPolicy())
    ns, na = resolve("fd00:17::b", VICTIM, "fd00:17:0:0::1", GW)
    events = feed(t, (1.0, ns), (1.0, na))
    assert kinds(events) == [("new_station", "fd00:17::b", VICTIM),
                             ("new_station", "fd00:17::1", GW)]
    assert {e.family for e in events} == {"ipv6"}
    assert events[0].to_dict()["family"] == "ipv6"
    assert [(r.ip, r.mac) for r in t.bindings()] == [
        (ip6_value(ndp(ns).src), parse_mac(VICTIM)), (ip6_value(ndp(na).src), parse_mac(GW))]


def test_the_families_never_meet() -> None:
    """10.0.0.1 and ::a00:1 (the same 32 low bits) are two addresses; ARP keys unchanged."""
    t = Tracker(TrackerPolicy())
    arp = ArpFrame("eth0", None, 1, ArpKind.REQUEST, parse_mac(GW), b"\xff" * 6,
                   parse_mac(GW), 0x0A000001, b"\0" * 6, 0x0A000002)
    events = t.observe(arp, 1.0)
    events += feed(t, (2.0, neighbor_advertisement("::a00:1", ATTACKER)))
    assert kinds(events) == [("new_station", "10.0.0.1", GW),
                             ("new_station", "::a00:1", ATTACKER)]
    assert [e.family for e in events] == ["ipv4", "ipv6"]
    assert t.key_of("eth0", None, 0x0A000001) == 0x0A000001  # dom 0: the ARP key as before
    assert split_key(t.key_of("eth0", None, ip6_value(ndp(
        neighbor_advertisement("::a00:1", ATTACKER)).src))) == (0, ip6_value(ndp(
            neighbor_advertisement("::a00:1", ATTACKER)).src))


def test_link_local_addresses_are_per_vlan() -> None:
    t = Tracker(TrackerPolicy())
    events = feed(t, (1.0, router_advertisement("fe80::1", GW, vlan=10)),
                  (2.0, router_advertisement("fe80::1", ATTACKER, vlan=20)))
    assert [(e.kind.value, e.vlan) for e in events] == [("new_station", 10), ("new_station", 20)]


def test_unicast_unsolicited_na_is_an_unsolicited_takeover_even_after_a_solicitation() -> None:
    """fake_advertise6: O set, S and R clear, unicast to the victim, who solicited the
    address 0.25 s before (inside solicit_window): the NA says itself it answers nothing."""
    t = Tracker(TrackerPolicy())
    feed(t, *((1.0, raw) for raw in resolve("fd00:17::b", VICTIM, "fd00:17::1", GW)))
    lie = neighbor_advertisement("fd00:17::1", ATTACKER, dst="fd00:17::b",
                                 eth_dst=parse_mac(VICTIM))
    events = feed(t, (1.25, lie))
    assert kinds(events) == [("conflict", "fd00:17::1", ATTACKER)]
    assert events[0].reason == "unsolicited_takeover"
    assert events[0].suspect == ATTACKER
    assert events[0].previous_mac == GW


def test_multicast_unsolicited_na_is_an_announcement_failover_after_the_hold() -> None:
    """keepalived VRRPv3: 5 NAs to ff02::1, O set; the old master silent -> failover."""
    t = Tracker(TrackerPolicy(hold=30.0))
    feed(t, (1.0, neighbor_advertisement("fd00:17::100", GW)))
    events = feed(t, *((10.0, neighbor_advertisement("fd00:17::100", BACKUP)),) * 5)
    assert events == []
    events = t.tick(100.0)
    assert kinds(events) == [("failover", "fd00:17::100", BACKUP)]
    assert events[0].reason == "announced"
    assert events[0].ts == 40.0


def test_two_macs_answering_one_solicitation_is_a_conflict() -> None:
    """parasite6 answers 3 ms after the owner: a conflict at once, not changed_mac later."""
    t = Tracker(TrackerPolicy())
    ns, na = resolve("fd00:17::b", VICTIM, "fd00:17::1", GW)
    second = neighbor_advertisement("fd00:17::1", ATTACKER, dst="fd00:17::b", solicited=True,
                                    router=True, eth_dst=parse_mac(VICTIM))
    events = feed(t, (1.0, ns), (1.0, na), (1.003, second))
    assert kinds(events)[-1] == ("conflict", "fd00:17::1", ATTACKER)
    assert events[-1].reason == "both_active"
    assert events[-1].previous_mac == GW


def test_a_solicited_na_nobody_asked_for_is_unsolicited() -> None:
    t = Tracker(TrackerPolicy())
    feed(t, (1.0, neighbor_advertisement("fd00:17::1", GW)))
    lie = neighbor_advertisement("fd00:17::1", ATTACKER, dst="fd00:17::b", solicited=True,
                                 eth_dst=parse_mac(VICTIM))
    events = feed(t, (5.0, lie))
    assert [(e.kind.value, e.reason) for e in events] == [("conflict", "unsolicited_takeover")]


def test_unicast_reachability_answer_without_option_claims_the_ethernet_source() -> None:
    t = Tracker(TrackerPolicy())
    ns = neighbor_solicitation("fe80::b", "fd00:17::a", VICTIM, dst="fd00:17::a",
                               eth_dst=parse_mac(GW))
    na = neighbor_advertisement("fd00:17::a", GW, dst="fe80::b", solicited=True,
                                override=False, target_lla=False, eth_dst=parse_mac(VICTIM))
    events = feed(t, (1.0, ns), (1.0, na))
    assert kinds(events) == [("new_station", "fe80::b", VICTIM),
                             ("new_station", "fd00:17::a", GW)]


def test_dad_probe_answered_by_a_stranger_is_probe_in_use_and_binds_nothing() -> None:
    """dos-new-ip6: the answer comes from a random MAC, to ff02::1, S clear, O set."""
    t = Tracker(TrackerPolicy())
    probe = neighbor_solicitation("::", "fd00:17::c", "02:00:00:17:00:0c")
    answer = neighbor_advertisement("fd00:17::c", "02:00:f6:fc:70:27")
    events = feed(t, (1.0, probe), (1.004, answer), (1.008, answer))
    assert kinds(events) == [("probe_in_use", "fd00:17::c", "02:00:00:17:00:0c")]
    assert events[0].previous_mac == "02:00:f6:fc:70:27"
    assert len(t) == 0


def test_dad_probe_for_a_live_address_is_probe_in_use_and_the_owners_defense_is_normal() -> None:
    t = Tracker(TrackerPolicy())
    feed(t, (1.0, neighbor_advertisement("fd00:17::c", GW)))
    events = feed(t, (2.0, neighbor_solicitation("::", "fd00:17::c", VICTIM)),
                  (2.001, neighbor_advertisement("fd00:17::c", GW)))
    assert kinds(events) == [("probe_in_use", "fd00:17::c", VICTIM)]
    assert [(r.mac, r.last_seen) for r in t.bindings()] == [(parse_mac(GW), 2.001)]


def test_dad_probe_nobody_answers_binds_nothing() -> None:
    t = Tracker(TrackerPolicy())
    assert feed(t, (1.0, neighbor_solicitation("::", "fd00:17::c", VICTIM))) == []
    assert len(t) == 0


def test_new_station_once_per_mac_and_prefix() -> None:
    """Privacy addresses: a host's later addresses in a /64 it is known in are bound
    silently; a new /64 (or link-local) is news once; every address keeps its rules."""
    t = Tracker(TrackerPolicy())
    events = feed(t, *((float(day), neighbor_advertisement(f"2001:db8::{day:x}:1", VICTIM))
                       for day in range(1, 8)))
    events += feed(t, (9.0, router_advertisement("fe80::b", VICTIM)),
                   (10.0, neighbor_advertisement("2001:db8:1::1", VICTIM)))
    assert kinds(events) == [("new_station", "2001:db8::1:1", VICTIM),
                             ("new_station", "fe80::b", VICTIM),
                             ("new_station", "2001:db8:1::1", VICTIM)]
    assert len(t) == 9
    # a second MAC on a silently bound address is still a conflict
    lie = neighbor_advertisement("2001:db8::7:1", ATTACKER, dst="2001:db8::99",
                                 eth_dst=parse_mac(GW))
    assert [e.reason for e in feed(t, (10.5, lie))] == ["unsolicited_takeover"]


def test_restore_keeps_ipv6_stations_known() -> None:
    t = Tracker(TrackerPolicy())
    feed(t, (1.0, neighbor_advertisement("2001:db8::1", VICTIM)))
    again = Tracker(TrackerPolicy())
    again.restore(t.bindings())
    assert feed(again, (2.0, neighbor_advertisement("2001:db8::2", VICTIM))) == []
    assert sorted(ip_text(r.ip) for r in again.bindings()) == ["2001:db8::1", "2001:db8::2"]


def test_ethernet_mismatch_when_the_option_names_another_mac() -> None:
    t = Tracker(TrackerPolicy())
    raw = neighbor_advertisement("fd00:17::1", ATTACKER, target_lla=GW)
    events = feed(t, (1.0, raw))
    assert [e.kind for e in events] == [EventKind.ETHERNET_MISMATCH, EventKind.NEW_STATION]
    assert events[0].family == "ipv6"


def test_invalid_ndp_is_reported_with_its_reason_and_binds_nothing() -> None:
    t = Tracker(TrackerPolicy())
    raw = neighbor_advertisement("fd00:17::1", ATTACKER, hop_limit=64)
    events = feed(t, (1.0, raw), (1.5, raw))
    assert [(e.kind.value, e.reason, e.family) for e in events] == [
        ("invalid_ndp", "hop_limit_not_255", "ipv6")]
    assert len(t) == 0


def test_solicitation_without_option_asks_but_claims_nothing() -> None:
    t = Tracker(TrackerPolicy())
    feed(t, (0.5, neighbor_advertisement("fd00:17::a", GW)))
    ns = ndp_frame(135, "fe80::b", "fd00:17::a", b"\0" * 4 + ndp(neighbor_solicitation(
        "fe80::b", "fd00:17::a", VICTIM)).target.packed,  # type: ignore[union-attr]
        eth_src=VICTIM, eth_dst=GW)
    assert ndp(ns).claim is None
    # the owner's S+O answer refreshes; a second MAC answering it is a conflict, not an
    # unsolicited reply: the NS without option was on record as a question
    na = neighbor_advertisement("fd00:17::a", GW, dst="fe80::b", solicited=True,
                                eth_dst=parse_mac(VICTIM))
    other = neighbor_advertisement("fd00:17::a", ATTACKER, dst="fe80::b", solicited=True,
                                   eth_dst=parse_mac(VICTIM))
    events = feed(t, (1.0, ns), (1.0, na), (1.001, other))
    assert [(e.kind.value, e.reason) for e in events] == [("conflict", "both_active")]


@pytest.mark.parametrize("hosts", [300])
def test_flood_counts_ndp_frames_with_the_family(hosts: int) -> None:
    t = Tracker(TrackerPolicy(flood_frames=100, flood_window=10.0))
    events = feed(t, *((1.0 + i / 1000, neighbor_solicitation(
        "fd00:17::66", f"fd00:17::{i + 1:x}", ATTACKER)) for i in range(hosts)))
    floods = [e for e in events if e.kind in (EventKind.ARP_FLOOD, EventKind.ARP_SCAN)]
    assert floods
    assert {e.family for e in floods} == {"ipv6"}


def test_only_a_solicitation_and_its_answer_make_a_steady_frame_for_the_fast_path() -> None:
    """A repeated NS or solicited NA does only what the ARP request or reply it stands for
    does, so the fast path may take its repeats (the same `Steady`); every other NDP message
    does more than its ARP frame, and leaves no verdict, not even the last ARP frame's."""
    t = Tracker(TrackerPolicy())
    ns, na = resolve("fd00:17::b", VICTIM, "fd00:17::1", GW)
    feed(t, (1.0, ns), (1.0, na), (2.0, ns), (2.0, na))
    def key(ip: str) -> int:
        return t.key_of("eth0", None, ip6_value(IPv6Address(ip)))

    assert t.steady is not None and t.steady.key == key("fd00:17::1")
    feed(t, (3.0, ns))
    assert t.steady is not None and t.steady.key == key("fd00:17::b")
    for other in (neighbor_advertisement("fd00:17::1", GW),  # unsolicited, to all-nodes
                  neighbor_solicitation("::", "fd00:17::9", VICTIM),  # DAD probe
                  router_advertisement("fe80::1", GW)):
        feed(t, (4.0, ns))
        assert t.steady is not None
        feed(t, (4.0, other))
        assert t.steady is None


def test_router_solicitation_from_unspecified_claims_nothing() -> None:
    t = Tracker(TrackerPolicy())
    raw = ndp_frame(133, "::", "ff02::2", b"\0" * 4, eth_src=VICTIM)
    assert feed(t, (1.0, raw)) == []
    assert len(t) == 0
