"""Captures of real failover software (tests/captures/, recorded by the live tests), replayed
through the sensor without root: what ucarp really puts on the wire around a failback stays a
`failover`, and is the conflict it was before the demotion grace when the grace is off."""

from __future__ import annotations

from pathlib import Path

from arpbuild import brief
from arpwatch_compare import run_arpwatchd
from netlab import parse_arp, read_pcap

from arpwatchd.config import Config
from arpwatchd.policy import TrackerPolicy

UCARP = Path(__file__).parent / "captures" / "ucarp-failbacks.pcap"
VIP8, VIP40 = "192.0.2.112", "192.0.2.114"  # masters back after 8 s and after 40 s
MASTER8, BACKUP8 = "02:00:00:a0:00:0c", "02:00:00:b0:00:0c"
MASTER40, BACKUP40 = "02:00:00:a0:00:0e", "02:00:00:b0:00:0e"


def test_the_capture_holds_the_backups_answers_after_the_masters_announcement() -> None:
    """What the rule is about: after each master's return (its first gratuitous request of
    the episode), the backup's kernel still answers the client, for less than 2 s."""
    arps = [p for ts, f in read_pcap(UCARP) if (p := parse_arp(f, ts)) is not None]
    for vip, master, backup, after in ((VIP8, MASTER8, BACKUP8, 10.0),
                                       (VIP40, MASTER40, BACKUP40, 40.0)):
        back = min(p.ts for p in arps if p.sha == master and p.spa == p.tpa == vip
                   and p.ts > arps[0].ts + after)
        late = [p.ts - back for p in arps if p.sha == backup and p.spa == vip and p.ts > back]
        assert late and all(p.op == 2 for p in arps if p.sha == backup and p.ts > back)
        assert 0 < max(late) < 2.0, late


def test_ucarp_failbacks_are_failovers() -> None:
    events = run_arpwatchd(UCARP, Config(policy=TrackerPolicy()))
    assert brief(events) == [
        ("new_station", VIP8, MASTER8, None, None),
        ("new_station", VIP40, MASTER40, None, None),
        ("new_station", "192.0.2.212", "02:00:00:c0:00:0c", None, None),
        ("new_station", "192.0.2.214", "02:00:00:c0:00:0e", None, None),
        ("failover", VIP40, BACKUP40, MASTER40, "announced"),
        ("failover", VIP8, MASTER8, BACKUP8, "announced"),
        ("failover", VIP40, MASTER40, BACKUP40, "announced"),
    ]


def test_without_the_demotion_grace_the_backups_answers_are_conflicts() -> None:
    events = run_arpwatchd(UCARP, Config(policy=TrackerPolicy(demotion_grace=0.0)))
    conflicts = [e for e in brief(events) if e[0] == "conflict"]
    assert conflicts == [("conflict", VIP8, BACKUP8, MASTER8, "owner_defended"),
                         ("conflict", VIP40, BACKUP40, MASTER40, "announcement_answered")]
