"""Defense decisions with explicit times, and the frames byte for byte (DESIGN.md section 5)."""

from __future__ import annotations

import dpkt
import pytest
from arpbuild import garp, reply, request

from arpwatchd.addresses import parse_ip, parse_mac
from arpwatchd.config import ConfigError, parse_config
from arpwatchd.decode import ArpFrame
from arpwatchd.defend import Defender, DefenseMode, DefensePolicy, OwnedAddress
from arpwatchd.events import Event, EventKind
from arpwatchd.ndp import NdpFrame

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


def test_defense_goes_at_once_and_the_last_word_a_locktime_after_the_last_claim() -> None:
    d = defender()
    assert d.observe(garp(EVIL, IP), T0) == []
    assert [(s.event.ts, s.event.reason) for s in d.due(T0)] == [(T0, "defended")]
    assert d.next_due() == T0 + 1.0
    assert [(s.event.ts, s.event.reason) for s in d.due(T0 + 1.0)] == [(T0 + 1.0, "last_word")]
    assert d.next_due() is None


SPOOF = reply(EVIL, IP, "02:00:00:00:00:07", "10.0.0.7")
"""An unsolicited reply to a victim: Linux ignores it within the lock time (LAB_NOTES)."""
GARP = garp(EVIL, IP)
"""A gratuitous request: overrides any lock."""


def attack(d: Defender, claims: list[float], until: float, frame: ArpFrame | NdpFrame = GARP
           ) -> list[tuple[float, str]]:
    """Claims at `claims` (seconds after T0), each followed at once by a look for due frames,
    as the daemon does after a batch, and a look at every `next_due`; returns (seconds after
    T0, reason) of each defense up to `until`. An NDP claim goes where the sensor sends it
    (`observe_ndp`, tests/test_defend_ipv6.py)."""
    sent: list[tuple[float, str]] = []
    pending = sorted(claims)
    while True:
        due = d.next_due()
        times = pending[:1] + ([round(due - T0, 6)] if due is not None else [])
        if not times or min(times) > until:
            return sent
        now = min(times)
        if pending and pending[0] == now:
            pending.pop(0)
            if isinstance(frame, NdpFrame):
                d.observe_ndp(frame, T0 + now)
            else:
                d.observe(frame, T0 + now)
        sent += [(round(s.event.ts - T0, 3), s.event.reason or "") for s in d.due(T0 + now)]


def test_each_claim_answered_no_sooner_than_locktime_after_the_previous_defense() -> None:
    """Claims every 0.4 s: answers 1 s apart (the lock time), one per address per second."""
    sent = attack(defender(), [0.4 * n for n in range(6)], until=5)  # claims up to 2.0
    assert sent == [(0.0, "defended"), (1.0, "defended"), (2.0, "defended"),
                    (3.0, "last_word")]


def test_last_word_exactly_locktime_after_the_last_claim_when_the_limit_held_one_back() -> None:
    """Claim at 0 (answered at once), claim at 0.5: its answer waits for 1.0, and the last
    word still comes at 1.5, the lock time after that claim."""
    sent = attack(defender(), [0.0, 0.5], until=4)
    assert sent == [(0.0, "defended"), (1.0, "defended"), (1.5, "last_word")]


def test_replies_within_the_lock_of_an_answer_are_left_to_the_last_word() -> None:
    """Victims ignore an ordinary reply within the lock time of the answer that put them back
    on the owner, so it draws no answer (which would not move their lock, and would hold back
    the answer to the next reply); the last word still follows the last one."""
    sent = attack(defender(), [0.9 * n for n in range(5)], until=9, frame=SPOOF)
    assert sent == [(0.0, "defended"), (1.8, "defended"), (3.6, "defended"),
                    (4.6, "last_word")]
    sent = attack(defender(), [0.0, 0.5], until=9, frame=SPOOF)
    assert sent == [(0.0, "defended"), (1.5, "last_word")]


def test_replies_once_a_second_answered_at_once_when_the_lock_is_over() -> None:
    """An intruder replying every second: every reply after a lock time is answered at once
    (never held back by a last word just before it); a second's answer and last word at most."""
    claims = [1.001 * n for n in range(10)]
    sent = attack(defender(), claims, until=15, frame=SPOOF)
    answers = [t for t, why in sent if why == "defended"]
    assert answers == [round(c, 3) for c in claims]  # each after the lock of the previous
    assert len(sent) == 2 * len(claims) and sent[-1] == (round(claims[-1] + 1.0, 3), "last_word")


def test_strict_mode_defends_at_most_once_per_defend_interval() -> None:
    d = defender(mode=DefenseMode.RFC5227)
    assert d.policy.spacing == 10.0 and d.policy.budget == 3
    sent = attack(d, [1.0 * n for n in range(21)], until=40)  # a claim a second for 20 s
    assert sent == [(0.0, "defended"), (10.0, "defended"), (20.0, "defended")]
    assert attack(defender(mode=DefenseMode.RFC5227), [0.0, 3.0], until=20) == [
        (0.0, "defended"), (10.0, "defended")]  # the last claim answered when the interval allows


def test_budget_then_defense_failed_and_defenses_slow_to_defend_interval() -> None:
    d = defender(max_defenses=3)
    failed: list[Event] = []
    sent: list[float] = []
    for tenth in range(0, 400):  # a claim a second for 30 s, looked at every 0.1 s
        now = T0 + tenth / 10
        if tenth % 10 == 0 and tenth <= 300:
            failed += d.observe(garp(EVIL, IP), now)
        sent += [round(s.event.ts - T0, 1) for s in d.due(now)]
    assert [(e.kind, e.count) for e in failed] == [(EventKind.DEFENSE_FAILED, 3)]
    assert event_second(failed[0]) == 3.0
    # 3 answers, then DEFEND_INTERVAL; the last word too waits for it
    assert sent == [0.0, 1.0, 2.0, 12.0, 22.0, 32.0]


def test_default_budget_outlasts_a_spoofer_of_several_minutes() -> None:
    """arpspoof's one unsolicited reply a second for 3 minutes: every claim is answered at
    once and the last word follows the last one; no slow-down to DEFEND_INTERVAL (the budget
    is for fights between defenders, not for giving up on an attacker after half a minute)."""
    d = defender()
    sent = attack(d, [1.0 * n for n in range(180)], until=200, frame=SPOOF)
    assert sent == [(float(n), "defended") for n in range(180)] + [(180.0, "last_word")]


def event_second(event: Event) -> float:
    return round(event.ts - T0, 3)


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


def test_strict_mode_one_defense_per_interval_and_one_after_the_last_claim() -> None:
    d = defender(delay=1.5, mode=DefenseMode.RFC5227)
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


DEFEND_IP = f"defend:\n  addresses:\n    - {{ip: {IP}, mac: {OWNER}, interface: eth0}}\n"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("  mode: strict\n",
         "defend.mode (line 4): expected 'last-word' or 'rfc5227', not 'strict'"),
        ("  mode: rfc5227\n  interval: 2s\n", "defend.interval (line 5): mode 'rfc5227' defends "
         "at most once per 10 s"),
        ("  interval: 0.5s\n", "defend.interval (line 4): mode 'last-word' answers no sooner "
         "than locktime (1 s)"),
        ("  locktime: 0s\n", "defend.locktime (line 4): expected more than 0 s"),
    ],
)
def test_config_rejects_defense_timing_a_mode_cannot_keep(extra: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_config(DEFEND_IP + extra)
    assert "\n" not in str(info.value)


def test_config_modes_and_their_defaults() -> None:
    default = parse_config(DEFEND_IP).defense
    assert (default.mode, default.spacing, default.locktime, default.budget) == (
        DefenseMode.LAST_WORD, 1.0, 1.0, 300)
    strict = parse_config(DEFEND_IP + "  mode: rfc5227\n").defense
    assert (strict.mode, strict.spacing, strict.budget) == (DefenseMode.RFC5227, 10.0, 3)
    slower = parse_config(DEFEND_IP + "  interval: 2s\n  locktime: 1.5s\n  max: 5\n").defense
    assert (slower.spacing, slower.locktime, slower.budget) == (2.0, 1.5, 5)
    summary = parse_config(DEFEND_IP).summary()["defend"]
    assert (summary["mode"], summary["interval"], summary["max"]) == ("last-word", 1.0, 300)


def test_global_cap_delays_last_words_too() -> None:
    """Five addresses spoofed once with `rate: 2`: never more frames than the bucket allows,
    and every address still gets a frame at least the lock time after its claim (a late
    answer is the last word, so it needs no other)."""
    d = spoofed_all(5, rate=2.0)
    sent: list[tuple[float, str, str]] = []
    now = T0
    while (due := d.next_due()) is not None:
        now = max(now, due)
        sent += [(s.event.ts - T0, s.event.ip, s.event.reason or "") for s in d.due(now)]
    times = [t for t, _, _ in sent]
    assert times == pytest.approx([0.0, 0.0] + [0.5 * n for n in range(1, 7)])
    assert [r for _, _, r in sent].count("last_word") == 3
    assert {ip for t, ip, _ in sent if t >= 1.0} == {f"10.0.1.{i}" for i in range(1, 6)}
