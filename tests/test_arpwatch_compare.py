"""Compared with the real thing: every report of Debian's arpwatch is accounted for by arpwatchd.

Why: operators switch from arpwatch only if nothing it told them goes missing. Each capture
(pcaps/ and, when present, ../shared/pcaps/) is replayed through `arpwatch -r` and through
arpwatchd; every "new station", "changed ethernet address", "flip flop" and "reused old
ethernet address" must be matched by an arpwatchd event for the same IP: new_station or bogon
for a new station, changed_mac, failover, conflict or reused_mac for the others. The
differences that are design decisions (docs/arpwatch.md, "Compared with arpwatch") are spelled
out below, each as narrowly as possible, so a new gap fails the test instead of hiding in a rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from arpwatch_compare import (
    Report,
    available,
    captures,
    run_arpwatch,
    run_arpwatchd,
    unaccounted,
)

from arpwatchd.addresses import (
    ZERO_MAC,
    VirtualRouter,
    parse_ip,
    parse_mac,
    sender_ip_problem,
    virtual_router,
)
from arpwatchd.config import Config
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import arp_frame, write_pcap

OK, WHY = available()
pytestmark = pytest.mark.skipif(not OK, reason=WHY)


def _documented(report: Report, events: list[Event]) -> str | None:
    """Which documented difference explains an unmatched report, or None."""
    mine = [e for e in events if e.ip == report.ip]
    if report.mac and virtual_router(parse_mac(report.mac)) is VirtualRouter.GLBP:
        # GLBP's virtual gateway answers with up to four virtual MACs at once (load
        # balancing): arpwatch sees flip flops, arpwatchd one station on a GLBP group.
        return "glbp"
    if report.kind == "new station" and sender_ip_problem(parse_ip(report.ip)) is not None \
            and any(e.kind is EventKind.INVALID_ARP for e in mine):
        # A multicast, broadcast, loopback or 0/8 sender IP is never a station's address:
        # arpwatch binds it, arpwatchd reports invalid_arp and binds nothing.
        return "invalid sender"
    if report.kind == "new station" and any(
            e.kind is EventKind.CONFLICT and e.reason == "owned_address_claimed" for e in mine):
        # A protected address claimed first by another MAC is a conflict from that claim.
        return "protected"
    return None


@pytest.mark.parametrize("capture", captures(), ids=lambda p: p.name)
def test_every_arpwatch_report_is_accounted_for(capture: Path, tmp_path: Path) -> None:
    reports, _, status = run_arpwatch(capture, tmp_path)
    events = run_arpwatchd(capture)
    if status != 0:
        # Linux cooked captures (the `any` device): arpwatch refuses the link type.
        assert not reports
        assert any(e.kind is EventKind.NEW_STATION for e in events)
        return
    missing = [r for r in unaccounted(reports, events) if _documented(r, events) is None]
    assert missing == []


def test_failover_is_not_an_alarm(tmp_path: Path) -> None:
    """The cluster's takeover is arpwatch's "changed ethernet address", arpwatchd's failover."""
    capture = Path(__file__).resolve().parents[1] / "pcaps" / "cluster-failover.pcap"
    reports, _, _ = run_arpwatch(capture, tmp_path)
    assert Report("changed ethernet address", "192.168.10.50", "02:00:00:00:50:02") in reports
    moved = [e for e in run_arpwatchd(capture) if e.ip == "192.168.10.50"
             and e.kind is not EventKind.NEW_STATION]
    assert [(e.kind, e.severity.value, e.reason) for e in moved] == \
        [(EventKind.FAILOVER, "info", "announced")]


def test_tagged_arp_is_invisible_to_arpwatch(tmp_path: Path) -> None:
    """arpwatch filters "(arp or rarp) and not vlan": a trunk shows it nothing."""
    capture = Path(__file__).resolve().parents[1] / "pcaps" / "vlan-trunk.pcap"
    reports, data, _ = run_arpwatch(capture, tmp_path)
    assert reports == []
    assert data.read_text() == ""
    stations = [e for e in run_arpwatchd(capture) if e.kind is EventKind.NEW_STATION]
    assert {(e.vlan, e.ip) for e in stations} >= {(10, "192.168.100.1"), (20, "192.168.100.1")}


def test_duplicate_address_is_one_conflict_not_a_flip_flop_storm(tmp_path: Path) -> None:
    capture = Path(__file__).resolve().parents[1] / "pcaps" / "duplicate-ip.pcap"
    reports, _, _ = run_arpwatch(capture, tmp_path)
    assert sum(1 for r in reports if r.kind == "flip flop" and r.ip == "192.168.10.70") > 5
    kinds = [e.kind for e in run_arpwatchd(capture) if e.ip == "192.168.10.70"]
    assert kinds == [EventKind.NEW_STATION, EventKind.CONFLICT, EventKind.CONFLICT_RESOLVED]


def test_reused_old_ethernet_address(tmp_path: Path) -> None:
    """Three owners, then the first again: arpwatch syslogs "reused old ethernet address"."""
    capture = tmp_path / "reuse.pcap"
    macs = ["02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:01"]
    write_pcap(capture, [(1000.0 + 100 * i, arp_frame(1, mac, "10.0.0.5", ZERO_MAC, "10.0.0.1"))
                         for i, mac in enumerate(macs)])
    reports, _, _ = run_arpwatch(capture, tmp_path / "arpwatch")
    assert [r.kind for r in reports] == ["new station", "changed ethernet address",
                                         "changed ethernet address",
                                         "reused old ethernet address"]
    events = run_arpwatchd(capture, Config())
    assert [(e.kind.value, e.mac) for e in events] == [
        ("new_station", macs[0]), ("changed_mac", macs[1]), ("changed_mac", macs[2]),
        ("reused_mac", macs[0])]
    assert unaccounted(reports, events) == []
