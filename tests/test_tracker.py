"""The failover-versus-conflict rules of DESIGN.md section 3, with explicit packet times."""

from __future__ import annotations

import ast
from pathlib import Path

from arpbuild import BCAST, brief, feed, garp, probe, reply, request

from arpwatchd.addresses import parse_ip, parse_mac
from arpwatchd.decode import Decoder
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import REPLY, arp_frame
from arpwatchd.policy import FailoverGroup, NetworkRule, Protected, TrackerPolicy
from arpwatchd.tracker import BindingRecord, Tracker

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"
C = "02:00:00:00:00:0c"
GW = "02:00:00:00:00:01"
IP = "10.0.0.5"
T0 = 1_700_000_000.0


def tracker(**kw: object) -> Tracker:
    return Tracker(TrackerPolicy(**kw))  # type: ignore[arg-type]


def test_new_station_once_and_repeats_are_silent() -> None:
    t = tracker()
    events = feed(t, (T0, request(A, IP, "10.0.0.1")), (T0 + 1, request(A, IP, "10.0.0.1")),
                  (T0 + 2, request(A, IP, "10.0.0.2")))
    assert brief(events) == [("new_station", IP, A, None, None)]
    assert events[0].ts == T0 and events[0].vlan is None and events[0].interface == "eth0"


def test_announced_takeover_with_old_owner_silent_is_failover_after_hold() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    events = feed(t, (T0 + 100, garp(B, IP)), (T0 + 101, garp(B, IP)), (T0 + 102, garp(B, IP)))
    assert events == []
    assert t.next_deadline() == T0 + 130
    assert t.tick(T0 + 129.9) == []
    events = t.tick(T0 + 131)
    assert brief(events) == [("failover", IP, B, A, "announced")]
    assert events[0].ts == T0 + 130 and events[0].since == T0 + 100


def test_failover_then_failback_are_two_failovers() -> None:
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 60, garp(B, IP)), (T0 + 200, garp(A, IP)))
    events += t.tick(T0 + 1000)
    assert brief(events) == [("failover", IP, B, A, "announced"),
                             ("failover", IP, A, B, "announced")]


def test_plain_takeover_is_changed_mac_and_return_is_reused_mac() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    events = feed(t, (T0 + 3600, request(B, IP, "10.0.0.1")))
    events += feed(t, (T0 + 7200, request(A, IP, "10.0.0.1")))
    events += t.tick(T0 + 9000)
    assert brief(events) == [("changed_mac", IP, B, A, None), ("reused_mac", IP, A, B, None)]


def test_old_owner_claiming_during_hold_is_conflict_both_active() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    events = feed(t, (T0 + 10, request(B, IP, "10.0.0.1")), (T0 + 20, request(A, IP, "10.0.0.1")))
    assert brief(events) == [("conflict", IP, A, B, "both_active")]
    assert t.snapshot().conflicts_active_total == 1


def test_old_owner_announcing_during_hold_is_a_failback_not_a_conflict() -> None:
    """keepalived's master restarted: the backup announces (5 at once, 5 more 5 s later), the
    master is back 8 s later and preempts with the same bursts, the backup falls silent."""
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, *[(T0 + 10 + i * 0.001, garp(B, IP)) for i in range(5)])
    events += feed(t, *[(T0 + 15 + i * 0.001, garp(B, IP)) for i in range(5)])
    events += feed(t, *[(T0 + 18 + i * 0.001, garp(A, IP)) for i in range(5)])
    events += feed(t, *[(T0 + 23 + i * 0.001, garp(A, IP)) for i in range(5)])
    assert events == []
    assert [r.mac for r in t.bindings() if r.ip == parse_ip(IP)] == [parse_mac(A)]
    events = t.tick(T0 + 1000)
    assert brief(events) == [("failover", IP, A, B, "announced")]
    assert events[0].ts == T0 + 48 and events[0].since == T0 + 18
    assert t.snapshot().conflicts_active_total == 0


def test_displaced_side_claiming_after_a_failback_is_owner_defended() -> None:
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 15, garp(A, IP)),
                  (T0 + 30, request(B, IP, "10.0.0.1")))
    assert brief(events) == [("conflict", IP, B, A, "owner_defended")]
    assert events[0].ts == T0 + 30


def test_displaced_side_announcing_again_after_a_failback_is_owner_defended() -> None:
    """Two hosts taking an address from each other with announcements are both alive: one
    failback is routine, a second one inside its hold is the conflict."""
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 12, garp(A, IP)), (T0 + 14, garp(B, IP)))
    assert brief(events) == [("conflict", IP, B, A, "owner_defended")]


def ucarp_failback(t: Tracker, *late: tuple[float, object]) -> list[Event]:
    """ucarp, measured in the namespace lab: the backup B took the address (one gratuitous
    request, target MAC its own), the master A comes back, preempts and announces at +18; a
    client asks for the address every 0.15 s and B's stack answers beside A's until its down
    script has removed the address (+18.06 to +18.52). `late` frames follow."""
    feed(t, (T0, garp(A, IP, tha=A)), (T0 + 10, garp(B, IP, tha=B)))
    events = feed(t, (T0 + 18, garp(A, IP, tha=A)))
    for n in range(4):
        ask = T0 + 18.06 + n * 0.15
        events += feed(t, (ask, request(C, "10.0.0.7", IP)),
                       (ask + 0.0001, reply(B, IP, C, "10.0.0.7")),
                       (ask + 0.0002, reply(A, IP, C, "10.0.0.7")))
    steps = [(float(ts), frame) for ts, frame in late]
    return events + feed(t, *steps)  # type: ignore[arg-type]


def test_displaced_side_answering_during_its_demotion_is_not_a_conflict() -> None:
    """The displaced side's stack answering requests within `demotion_grace` (2 s) of the
    failback announcement is the routine demotion overlap: one failover back to A."""
    t = tracker()
    events = ucarp_failback(t)
    assert brief(events) == [("new_station", "10.0.0.7", C, None, None)]
    events = t.tick(T0 + 1000)
    assert brief(events) == [("failover", IP, A, B, "announced")]
    assert events[0].ts == T0 + 48 and events[0].since == T0 + 18


def test_displaced_side_answering_after_the_demotion_grace_is_owner_defended() -> None:
    t = tracker()
    events = ucarp_failback(t, (T0 + 20.1, request(C, "10.0.0.7", IP)),
                            (T0 + 20.1001, reply(B, IP, C, "10.0.0.7")))
    assert brief(events)[1:] == [("conflict", IP, B, A, "owner_defended")]
    assert events[1].ts == T0 + 20.1001


def test_displaced_side_asserting_the_address_in_the_demotion_grace_is_owner_defended() -> None:
    """Only answers to requests are excused: an unsolicited reply, an announcement or a
    request from the address by the displaced side is a host still asserting it."""
    unsolicited = reply(B, IP, GW, "10.0.0.1")
    for frame in (unsolicited, garp(B, IP, tha=B), request(B, IP, "10.0.0.1")):
        t = tracker()
        events = ucarp_failback(t, (T0 + 18.7, frame))
        assert brief(events)[1:] == [("conflict", IP, B, A, "owner_defended")], frame


def test_demotion_grace_is_configurable_and_zero_turns_it_off() -> None:
    t = tracker(demotion_grace=0.0)
    events = ucarp_failback(t)
    assert brief(events)[1:] == [("conflict", IP, B, A, "owner_defended")]
    assert events[1].ts == T0 + 18.06 + 0.0001  # B's first answer


def test_demotion_grace_applies_to_a_failover_group_too() -> None:
    """Configured as a failover group, the same overlap would otherwise be a split_brain."""
    group = FailoverGroup("vrrp", frozenset({parse_ip(IP)}),
                          frozenset({parse_mac(A), parse_mac(B)}))
    t = tracker(failover_groups=(group,))
    assert brief(ucarp_failback(t)) == [("new_station", "10.0.0.7", C, None, None)]
    t = tracker(failover_groups=(group,))
    events = ucarp_failback(t, (T0 + 21, request(C, "10.0.0.7", IP)),
                            (T0 + 21.0001, reply(B, IP, C, "10.0.0.7")))
    assert brief(events)[1:] == [("conflict", IP, B, A, "split_brain")]


def test_old_owner_answering_during_its_demotion_after_an_announced_takeover() -> None:
    """ucarp's master back after the backup's hold ended: an announced takeover, not a
    failback, and the backup's stack answers a client for a moment, as after a failback."""
    t = tracker()
    feed(t, (T0, garp(B, IP, tha=B)), (T0 + 50, request(C, "10.0.0.7", IP)),
          (T0 + 50.0001, reply(B, IP, C, "10.0.0.7")))
    events = feed(t, (T0 + 60, garp(A, IP, tha=A)), (T0 + 60.4, request(C, "10.0.0.7", IP)),
                  (T0 + 60.4001, reply(B, IP, C, "10.0.0.7")),
                  (T0 + 60.4002, reply(A, IP, C, "10.0.0.7")))
    events += t.tick(T0 + 1000)
    assert brief(events) == [("failover", IP, A, B, "announced")]


def test_old_owner_answering_the_announcer_is_announcement_answered_even_in_the_grace() -> None:
    """A reply to the announcer itself contests the announcement (an owner with accept_local
    answers a gratuitous request for its address): no grace for it."""
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 10.001, reply(A, IP, B, IP)))
    assert brief(events) == [("conflict", IP, A, B, "announcement_answered")]
    t = tracker()
    events = ucarp_failback(t, (T0 + 18.2, reply(B, IP, A, IP)))
    assert brief(events)[1:] == [("conflict", IP, B, A, "owner_defended")]


def test_node_answering_just_before_announcing_its_failback_is_a_failback() -> None:
    """Pacemaker IPaddr2 moving an address back: A adds it, its stack answers a client, and
    its `arping -U` goes out 0.2 s later. The answer waits `demotion_grace` for that
    announcement: a failback, then one failover back to A."""
    t = tracker()
    feed(t, (T0, garp(A, IP)), (T0 + 10, garp(B, IP)))
    events = feed(t, (T0 + 18, request(C, "10.0.0.7", IP)),
                  (T0 + 18.0001, reply(A, IP, C, "10.0.0.7")), (T0 + 18.2, garp(A, IP)))
    events += t.tick(T0 + 1000)
    assert brief(events) == [("new_station", "10.0.0.7", C, None, None),
                             ("failover", IP, A, B, "announced")]
    assert events[1].since == T0 + 18.2


def test_old_owner_answering_without_announcing_is_a_conflict_at_its_answer() -> None:
    """No announcement within the grace: the conflict it was, at the answer's time, reported
    when the grace ends (a tick, or the next frame)."""
    t = tracker()
    feed(t, (T0, garp(A, IP)), (T0 + 10, garp(B, IP)))
    events = feed(t, (T0 + 18, request(C, "10.0.0.7", IP)),
                  (T0 + 18.0001, reply(A, IP, C, "10.0.0.7")),
                  (T0 + 19, request(C, "10.0.0.7", IP)),
                  (T0 + 19.0001, reply(A, IP, C, "10.0.0.7")))
    assert brief(events) == [("new_station", "10.0.0.7", C, None, None)]
    assert t.next_deadline() == T0 + 18.0001 + 2.0
    events = t.tick(T0 + 20.1)
    assert brief(events) == [("conflict", IP, A, B, "both_active")]
    assert events[0].ts == T0 + 18.0001
    t = tracker()  # the hold ending first ends the wait too
    feed(t, (T0, garp(A, IP)), (T0 + 10, garp(B, IP)))
    feed(t, (T0 + 39, request(C, "10.0.0.7", IP)), (T0 + 39.0001, reply(A, IP, C, "10.0.0.7")))
    assert brief(t.tick(T0 + 40)) == [("conflict", IP, A, B, "both_active")]


def test_node_answering_just_before_announcing_its_takeover_is_a_failover() -> None:
    """The first move of IPaddr2 with the same race: B answers, then announces 0.2 s later:
    an announced takeover (failover), not a changed_mac."""
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, request(C, "10.0.0.7", IP)),
                  (T0 + 10.0001, reply(B, IP, C, "10.0.0.7")), (T0 + 10.2, garp(B, IP)))
    events += t.tick(T0 + 1000)
    assert brief(events)[1:] == [("failover", IP, B, A, "announced")]
    t = tracker()  # an announcement long after the takeover does not make it announced
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, request(C, "10.0.0.7", IP)),
                  (T0 + 10.0001, reply(B, IP, C, "10.0.0.7")), (T0 + 15, garp(B, IP)))
    events += t.tick(T0 + 1000)
    assert brief(events)[1:] == [("changed_mac", IP, B, A, None)]


def test_old_owner_answering_after_a_plain_takeover_is_still_a_conflict() -> None:
    """The grace follows an announcement only: the old owner answering after a takeover by an
    ordinary claim is both_active as before."""
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, request(B, IP, "10.0.0.1")),
                  (T0 + 10.5, request(C, "10.0.0.7", IP)),
                  (T0 + 10.5001, reply(A, IP, C, "10.0.0.7")))
    assert brief(events)[1:] == [("conflict", IP, A, B, "both_active")]


def test_old_owner_plain_claim_after_a_failback_window_is_an_ordinary_takeover() -> None:
    """The failback's hold ends (failover back to A); B's claim a minute later starts over."""
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 15, garp(A, IP)))
    events += feed(t, (T0 + 100, garp(B, IP)))
    events += t.tick(T0 + 1000)
    assert brief(events) == [("failover", IP, A, B, "announced"),
                             ("failover", IP, B, A, "announced")]


def test_reply_soon_after_announcement_is_announcement_answered() -> None:
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 10.5, reply(A, IP, B, IP)))
    assert brief(events) == [("conflict", IP, A, B, "announcement_answered")]


def test_group_members_both_claiming_is_split_brain_and_group_takeover_is_failover() -> None:
    group = FailoverGroup("db", frozenset({parse_ip(IP)}), frozenset({parse_mac(A), parse_mac(B)}))
    t = tracker(failover_groups=(group,))
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    events = feed(t, (T0 + 50, request(B, IP, "10.0.0.1")))
    events += t.tick(T0 + 100)
    assert brief(events) == [("failover", IP, B, A, "group")]
    # A takes the address back by announcing, B announces it back (a failback of its own),
    # then A claims it again: both members alive
    events = feed(t, (T0 + 200, garp(A, IP)), (T0 + 201, garp(B, IP)))
    assert events == []
    events = feed(t, (T0 + 205, request(A, IP, "10.0.0.1")))
    assert brief(events) == [("conflict", IP, A, B, "split_brain")]


def test_unsolicited_reply_takeover_is_conflict_at_once_with_suspect() -> None:
    t = tracker()
    feed(t, (T0, request(GW, "10.0.0.1", "10.0.0.7")), (T0 + 1, request(C, "10.0.0.7", IP)))
    events = feed(t, (T0 + 5, reply(B, "10.0.0.1", C, "10.0.0.7")))
    assert brief(events) == [("conflict", "10.0.0.1", B, GW, "unsolicited_takeover")]
    assert events[0].suspect == B


def test_new_holders_unsolicited_reply_inside_an_announced_hold_is_conflict_at_once() -> None:
    """A spoofer that first announces the gateway's address (a hold begins: it could be a
    failover) and then poisons with unsolicited replies is caught at its first such reply,
    not when the hold ends (the real gateway may stay silent for all of it)."""
    t = tracker()
    feed(t, (T0, request(GW, "10.0.0.1", "10.0.0.7")), (T0 + 1, request(C, "10.0.0.7", IP)))
    assert feed(t, (T0 + 10, garp(B, "10.0.0.1"))) == []
    events = feed(t, (T0 + 12, reply(B, "10.0.0.1", C, "10.0.0.7")))
    assert brief(events) == [("conflict", "10.0.0.1", B, GW, "unsolicited_takeover")]
    assert events[0].suspect == B and events[0].ts == T0 + 12


def test_new_holders_unsolicited_reply_after_a_solicited_one_is_conflict() -> None:
    """arpspoof starting 2-5 s after the victim asked for its gateway: the first spoofed reply
    passes for a late answer (a hold), the next one, past solicit_window, is unsolicited."""
    t = tracker()
    feed(t, (T0, request(GW, "10.0.0.1", "10.0.0.7")))
    events = feed(t, (T0 + 100, request(C, "10.0.0.7", "10.0.0.1")),
                  (T0 + 100.001, reply(GW, "10.0.0.1", C, "10.0.0.7")),
                  (T0 + 103, reply(B, "10.0.0.1", C, "10.0.0.7")))
    assert brief(events) == [("new_station", "10.0.0.7", C, None, None)]
    events = feed(t, (T0 + 105.5, reply(B, "10.0.0.1", C, "10.0.0.7")))
    assert brief(events) == [("conflict", "10.0.0.1", B, GW, "unsolicited_takeover")]
    assert events[0].suspect == B


def test_unsolicited_reply_inside_a_group_or_failback_hold_is_not_a_conflict() -> None:
    """A configured failover group member, or an owner back from a failback, answering
    unasked is left to the hold's own rules (failover at its end)."""
    group = FailoverGroup("db", frozenset({parse_ip(IP)}), frozenset({parse_mac(A), parse_mac(B)}))
    t = tracker(failover_groups=(group,))
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 12, reply(B, IP, C, "10.0.0.7")))
    events += t.tick(T0 + 100)
    assert [e[0] for e in brief(events)] == ["failover"], brief(events)
    t = tracker()
    feed(t, (T0, garp(A, IP)))
    events = feed(t, (T0 + 10, garp(B, IP)), (T0 + 18, garp(A, IP)),
                  (T0 + 20, reply(A, IP, C, "10.0.0.7")))
    events += t.tick(T0 + 100)
    assert [e[0] for e in brief(events)] == ["failover"], brief(events)


def test_solicited_reply_takeover_waits_for_hold() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    events = feed(t, (T0 + 600, request(C, "10.0.0.7", IP)),
                  (T0 + 600.01, reply(B, IP, C, "10.0.0.7")))
    events += t.tick(T0 + 700)
    assert brief(events) == [("new_station", "10.0.0.7", C, None, None),
                             ("changed_mac", IP, B, A, None)]


def test_two_replies_to_one_request_is_conflict() -> None:
    t = tracker()
    events = feed(t, (T0, request(C, "10.0.0.7", IP)), (T0 + 0.001, reply(A, IP, C, "10.0.0.7")),
                  (T0 + 0.002, reply(B, IP, C, "10.0.0.7")))
    assert brief(events)[-1] == ("conflict", IP, B, A, "both_active")


def test_conflict_is_one_event_then_resolved_when_one_side_goes_silent() -> None:
    t = tracker()
    steps = [(T0, request(A, IP, "10.0.0.1")), (T0 + 5, request(B, IP, "10.0.0.1"))]
    for i in range(10):
        steps.append((T0 + 10 + 10 * i, request(A, IP, "10.0.0.1")))
        steps.append((T0 + 15 + 10 * i, request(B, IP, "10.0.0.1")))
    events = feed(t, *steps)
    assert [e.kind for e in events] == [EventKind.NEW_STATION, EventKind.CONFLICT]
    feed(t, (T0 + 120, request(A, IP, "10.0.0.1")))  # B went silent at T0+105
    events = t.tick(T0 + 200)
    assert brief(events) == [("conflict_resolved", IP, A, B, "both_active")]
    assert events[0].ts == T0 + 105 + 30
    assert events[0].duration == 105 + 30 - 10
    assert t.snapshot().conflicts_active_total == 0
    assert next(b for b in t.bindings() if b.ip == parse_ip(IP)).mac == parse_mac(A)


def test_protected_address_claimed_is_conflict_even_with_owner_silent() -> None:
    rule = Protected(parse_ip("10.0.0.1"), parse_mac(GW))
    t = tracker(protected=(rule,))
    events = feed(t, (T0, reply(B, "10.0.0.1", C, "10.0.0.7")))
    assert brief(events) == [("conflict", "10.0.0.1", B, GW, "owned_address_claimed")]
    assert events[0].suspect == B
    more = feed(t, *[(T0 + i, reply(B, "10.0.0.1", C, "10.0.0.7")) for i in range(1, 60, 2)])
    assert more == []
    events = t.tick(T0 + 200)
    assert brief(events) == [("conflict_resolved", "10.0.0.1", GW, B, "owned_address_claimed")]


def test_probe_for_live_address_is_probe_in_use_but_own_probe_is_not() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    assert feed(t, (T0 + 1, probe(A, IP))) == []
    events = feed(t, (T0 + 2, probe(B, IP)))
    assert brief(events) == [("probe_in_use", IP, B, A, None)]
    assert t.bindings()[0].mac == parse_mac(A)


def test_probe_answered_by_quiet_owner_is_probe_in_use() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    assert feed(t, (T0 + 600, probe(B, IP))) == []
    events = feed(t, (T0 + 600.2, reply(A, IP, B, "0.0.0.0")))
    assert brief(events) == [("probe_in_use", IP, B, A, None)]


def test_invalid_sender_is_reported_and_never_bound() -> None:
    t = tracker()
    events = feed(t, (T0, request(BCAST, IP, "10.0.0.1", eth_src=A)))
    assert [(e.kind.value, e.reason) for e in events] == [("invalid_arp", "sender_mac_broadcast")]
    assert len(t) == 0
    events = feed(t, (T0 + 1, request(A, IP, "10.0.0.1")))
    assert brief(events) == [("new_station", IP, A, None, None)]


def test_ethernet_mismatch_reported_once_and_binding_follows_sender_mac() -> None:
    t = tracker()
    events = feed(t, (T0, request(A, IP, "10.0.0.1", eth_src=B)),
                  (T0 + 1, request(A, IP, "10.0.0.1", eth_src=B)))
    assert brief(events) == [("ethernet_mismatch", IP, A, B, "ethernet_source_differs"),
                             ("new_station", IP, A, None, None)]


def test_own_nic_mac_is_not_a_mismatch() -> None:
    t = tracker(own_macs=frozenset({parse_mac(C)}))
    events = feed(t, (T0, garp(A, IP)))
    events += t.observe(Decoder("eth0", 1).decode(  # type: ignore[arg-type]
        arp_frame(1, A, IP, "00:00:00:00:00:00", IP, eth_src=C)), T0 + 1)
    assert [e.kind for e in events] == [EventKind.NEW_STATION]


def test_bogon_outside_configured_networks() -> None:
    rule = NetworkRule(
        __import__("arpwatchd.policy").policy.DomainMatch(),
        ((parse_ip("10.0.0.0"), parse_ip("255.255.255.0")),),
    )
    t = tracker(networks=(rule,))
    events = feed(t, (T0, request(A, IP, "10.0.0.1")), (T0 + 1, request(B, "192.168.9.9", IP)))
    assert brief(events) == [("new_station", IP, A, None, None),
                             ("bogon", "192.168.9.9", B, None, None)]


def test_same_ip_in_two_vlans_is_two_addresses() -> None:
    t = tracker()
    events = feed(t, (T0, garp(A, IP, vlan=10)), (T0 + 1, garp(B, IP, vlan=20)),
                  (T0 + 2, garp(A, IP, vlan=10)), (T0 + 3, garp(B, IP, vlan=20)))
    assert [(e.kind.value, e.vlan, e.mac) for e in events] == [
        ("new_station", 10, A), ("new_station", 20, B)]
    assert t.tick(T0 + 1000) == []


def test_new_activity_after_long_silence() -> None:
    t = tracker(inactive_after=3600.0)
    events = feed(t, (T0, request(A, IP, "10.0.0.1")), (T0 + 3599, request(A, IP, "10.0.0.1")),
                  (T0 + 3599 + 3600, request(A, IP, "10.0.0.1")))
    assert brief(events) == [("new_station", IP, A, None, None),
                             ("new_activity", IP, A, None, None)]


def test_a_frame_stepping_back_in_time_does_not_move_last_seen_back() -> None:
    """Captures merged from two taps (or multi-queue NICs) are not always in time order."""
    t = tracker()
    feed(t, (T0 + 1.0, request(A, IP, "10.0.0.1")), (T0 + 0.5, request(A, IP, "10.0.0.2")))
    (binding,) = t.bindings()
    assert (binding.first_seen, binding.last_seen) == (T0 + 1.0, T0 + 1.0)


def test_flood_is_one_alarm_per_episode() -> None:
    t = tracker()
    steps = [(T0 + i * 0.05, request(A, IP, "10.0.0.1")) for i in range(150)]
    events = [e for e in feed(t, *steps) if e.kind is EventKind.ARP_FLOOD]
    assert [(e.mac, e.count) for e in events] == [(A, 101)]


def test_scan_of_many_targets() -> None:
    t = tracker()
    steps = [(T0 + i * 0.01, request(A, IP, f"10.0.1.{i}")) for i in range(1, 200)]
    events = [e for e in feed(t, *steps) if e.kind is EventKind.ARP_SCAN]
    assert [(e.mac, e.count) for e in events] == [(A, 101)]


def test_bindings_are_capped_with_least_recently_seen_evicted() -> None:
    t = tracker(max_bindings=3)
    feed(t, *[(T0 + i, request(A, f"10.0.0.{i}", "10.0.0.254")) for i in range(1, 4)])
    feed(t, (T0 + 10, request(A, "10.0.0.1", "10.0.0.254")))  # .1 now most recent
    feed(t, (T0 + 11, request(B, "10.0.0.9", "10.0.0.254")))
    assert sorted(b.ip & 0xFF for b in t.bindings()) == [1, 3, 9]
    assert t.snapshot().bindings_evicted == 1
    removed = t.changes().removed
    assert ("eth0", None, parse_ip("10.0.0.2")) in removed


def test_glbp_forwarders_share_an_address() -> None:
    t = tracker()
    g1, g2 = "00:07:b4:00:01:01", "00:07:b4:00:01:02"
    events = feed(t, *[(T0 + i, reply(g1 if i % 2 else g2, "10.0.0.1", A, IP))
                       for i in range(10)])
    assert [e.kind for e in events] == [EventKind.NEW_STATION]


def test_virtual_router_address_claimed_by_plain_mac_is_conflict() -> None:
    t = tracker()
    vrrp = "00:00:5e:00:01:05"
    feed(t, (T0, request(A, IP, "10.0.0.1")), (T0 + 0.1, reply(vrrp, "10.0.0.1", A, IP)))
    events = feed(t, (T0 + 5, garp(B, "10.0.0.1")))
    assert brief(events) == [("conflict", "10.0.0.1", B, vrrp, "both_active")]
    assert events[0].suspect == B


def test_reply_target_contradicting_a_live_binding_is_conflict() -> None:
    t = tracker()
    # B claims the victim's address; the gateway's reply to the real victim says otherwise.
    feed(t, (T0, request(B, IP, "10.0.0.1")))
    feed(t, (T0 + 1, request(A, "10.0.0.9", "10.0.0.1")))
    events = t.observe(
        Decoder("eth0", 1).decode(arp_frame(REPLY, GW, "10.0.0.1", A, IP)),  # type: ignore[arg-type]
        T0 + 2,
    )
    assert brief(events)[-1] == ("conflict", IP, B, A, "reply_target")


def test_restore_is_silent_and_known_stations_are_not_new() -> None:
    t = tracker()
    t.restore([BindingRecord("eth0", None, parse_ip(IP), parse_mac(A), T0 - 100, T0 - 50)])
    assert feed(t, (T0, request(A, IP, "10.0.0.1"))) == []
    assert len(t) == 1


def test_core_imports_no_io_modules() -> None:
    """DESIGN: decoding and tracking are pure; no clock, socket, file or database."""
    forbidden = {"time", "socket", "pcapy", "sqlite3", "prometheus_client", "select", "os"}
    package = Path(__file__).parents[1] / "arpwatchd"
    for name in ("decode.py", "tracker.py", "state.py", "senders.py", "policy.py", "events.py",
                 "fastpath.py", "batch.py", "defend.py", "suppress.py"):
        tree = ast.parse((package / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert not imported & forbidden, (name, imported & forbidden)


def test_reply_to_the_owners_own_announcement_is_announcement_answered() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")))
    events = feed(t, (T0 + 100, garp(A, IP)), (T0 + 100.001, reply(B, IP, A, IP)))
    assert brief(events) == [("conflict", IP, B, A, "announcement_answered")]


def test_reply_to_someone_elses_request_from_a_moved_address_is_not_a_conflict() -> None:
    t = tracker()
    feed(t, (T0, request(A, IP, "10.0.0.1")), (T0 + 1, request(B, "10.0.0.6", "10.0.0.1")))
    # Long after A went quiet, B asks for the address and its new holder C answers.
    events = feed(t, (T0 + 600, request(B, "10.0.0.6", IP)),
                  (T0 + 600.001, reply(C, IP, B, "10.0.0.6")))
    events += t.tick(T0 + 1000)
    assert brief(events) == [("changed_mac", IP, C, A, None)]


def test_a_gateway_answering_many_requests_is_not_a_flood() -> None:
    t = tracker()
    steps = []
    for i in range(300):
        asker = f"02:00:00:00:01:{i % 200:02x}"
        steps.append((T0 + i * 0.02, request(asker, f"10.0.1.{i % 200}", "10.0.0.1")))
        steps.append((T0 + i * 0.02 + 0.001, reply(GW, "10.0.0.1", asker, f"10.0.1.{i % 200}")))
    events = feed(t, *steps)
    assert [e for e in events if e.kind is EventKind.ARP_FLOOD] == []


def test_quiet_duplicates_are_one_long_conflict_not_an_alert_every_minute() -> None:
    t = tracker()
    steps = [(T0, request(A, IP, "10.0.0.1"))]
    for i in range(1, 20):  # each host claims every 40 s, 20 s apart, for 13 minutes
        steps.append((T0 + 40 * i - 20, request(B, IP, "10.0.0.1")))
        steps.append((T0 + 40 * i, request(A, IP, "10.0.0.1")))
    events = feed(t, *steps) + t.tick(T0 + 10_000)
    assert [e.kind.value for e in events] == ["new_station", "conflict", "conflict_resolved"]
    assert events[2].mac == A and events[2].ts == T0 + 740 + 60


def test_events_are_built_with_every_field_in_place() -> None:
    """`Tracker._event` builds an Event from its fields in order (a flood builds one per
    frame): a field added or moved in Event must not shift the others."""
    t = tracker()
    event = t._event(T0, EventKind.CONFLICT_RESOLVED, t._domain("eth0", 7), 0x0A000001,
                     parse_mac(A), previous_mac=B, reason="both_active", suspect=A, count=3,
                     since=T0 - 5, duration=5.0)
    assert event == Event(ts=T0, kind=EventKind.CONFLICT_RESOLVED, interface="eth0", vlan=7,
                          ip="10.0.0.1", mac=A, previous_mac=B, reason="both_active",
                          suspect=A, count=3, since=T0 - 5, duration=5.0)
