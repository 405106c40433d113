"""The real-tool NDP captures of pcaps/ndp/ (tests/make_ndp_captures.py) decode without error,
with the kinds, flags and claims pcaps/README.md describes. No root needed.

These pin what the tools and kernels sent (the facts phase 2's rules rest on); a re-recording
changes times and counts, so the assertions are about kinds, flags and who claims what.
"""

from __future__ import annotations

from collections import defaultdict
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from netlab import read_pcap

from arpwatchd.addresses import parse_mac
from arpwatchd.decode import DLT_EN10MB, ArpFrame, Decoder, SkipReason
from arpwatchd.ndp import NdpFrame, NdpInvalid, NdpKind, NdpSkip, decode_ndp

NDP = Path(__file__).resolve().parents[1] / "pcaps" / "ndp"
GATEWAY = parse_mac("02:00:00:17:00:01")
ATTACKER = parse_mac("02:00:00:17:00:66")
ADVERTISEMENTS = (NdpKind.SOLICITED_ADVERTISEMENT, NdpKind.UNSOLICITED_ADVERTISEMENT)


def frames(name: str) -> list[NdpFrame]:
    """Every frame of the capture decodes as valid NDP or as ARP: nothing invalid, nothing
    else (the capture filter is the sensor's)."""
    out: list[NdpFrame] = []
    arp = Decoder("lab", DLT_EN10MB)
    for _, raw in read_pcap(NDP / f"{name}.pcap"):
        got = decode_ndp(raw, "lab")
        if isinstance(got, NdpFrame):
            out.append(got)
        else:
            assert got is NdpSkip.NOT_NDP, got
            assert isinstance(arp.decode(raw), ArpFrame)
    return out


def claimants(found: list[NdpFrame]) -> dict[IPv6Address, list[bytes]]:
    """Address -> the MACs claiming it, in order of first claim."""
    seen: dict[IPv6Address, list[bytes]] = defaultdict(list)
    for frame in found:
        claim = frame.claim
        if claim is not None and claim[1] not in seen[claim[0]]:
            seen[claim[0]].append(claim[1])
    return seen


def test_every_capture_is_described_and_small() -> None:
    readme = (NDP.parent / "README.md").read_text(encoding="utf-8")
    captures = sorted(NDP.glob("*.pcap"))
    assert len(captures) == 6
    for path in captures:
        assert f"`ndp/{path.name}`" in readme
        assert path.stat().st_size < 16_384


def test_keepalived_announces_with_override_and_its_own_mac() -> None:
    """VRRPv3 failover and failback: bursts of 5 unsolicited NAs to all-nodes, O set, R clear,
    target link-layer option = the node's MAC; master, then backup, then master again."""
    found = frames("keepalived-ipv6-failover")
    vip = IPv6Address("fd00:17::100")
    bursts = [f for f in found if f.kind is NdpKind.UNSOLICITED_ADVERTISEMENT and f.target == vip]
    assert all(f.override and not f.router and f.dst == IPv6Address("ff02::1") for f in bursts)
    assert all(f.target_lla == f.eth_src for f in bursts)
    order = [f.target_lla for f in bursts]
    changes = [mac for i, mac in enumerate(order) if i == 0 or order[i - 1] != mac]
    master, backup = parse_mac("02:00:00:17:a0:01"), parse_mac("02:00:00:17:b0:01")
    assert changes == [master, backup, master]
    assert order.count(master) % 5 == 0 and order.count(backup) % 5 == 0


def test_fake_advertise6_claims_the_gateway_for_the_attacker() -> None:
    found = frames("fake-advertise6")
    gateway = IPv6Address("fd00:17::1")
    assert claimants(found)[gateway] == [GATEWAY, ATTACKER]
    spoofed = [f for f in found if f.claim == (gateway, ATTACKER)]
    assert len(spoofed) == 3
    for f in spoofed:  # unicast to the victim, S clear, O set, source = the spoofed address
        assert f.kind is NdpKind.UNSOLICITED_ADVERTISEMENT and f.override and not f.router
        assert f.dst == IPv6Address("fd00:17::b") and f.src == gateway


def test_parasite6_answers_after_the_owner_with_router_and_override() -> None:
    found = frames("parasite6")
    gateway = IPv6Address("fd00:17::1")
    assert claimants(found)[gateway] == [GATEWAY, ATTACKER]
    fake = [f for f in found if f.claim == (gateway, ATTACKER)]
    assert fake[0].kind is NdpKind.SOLICITED_ADVERTISEMENT
    assert all(f.router and f.override for f in fake)


def test_dos_new_ip6_answers_dad_from_a_mac_seen_nowhere_else() -> None:
    found = frames("dos-new-ip6")
    target = IPv6Address("fd00:17::c")
    probe = next(i for i, f in enumerate(found) if f.kind is NdpKind.DAD_PROBE)
    assert found[probe].target == target and found[probe].claim is None
    answers = [f for f in found[probe:] if f.kind in ADVERTISEMENTS and f.target == target]
    assert answers and all(f.override and not f.solicited for f in answers)
    liar = answers[0].eth_src
    assert liar not in (ATTACKER, found[probe].eth_src)
    assert all(f.eth_src == liar for f in found if f.claim and f.claim[1] == liar)


@pytest.mark.parametrize("name", ["ndisc6-ping6", "dual-stack"])
def test_ordinary_traffic_gives_one_mac_per_address(name: str) -> None:
    found = frames(name)
    assert {f.kind for f in found} <= {
        NdpKind.SOLICITATION, NdpKind.SOLICITED_ADVERTISEMENT, NdpKind.DAD_PROBE,
        NdpKind.ROUTER_SOLICITATION}
    assert all(len(macs) == 1 for macs in claimants(found).values())
    assert not any(f.ethernet_mismatch for f in found)


def test_unicast_reachability_probes_are_answered_without_override_or_option() -> None:
    """Linux answers a unicast NS with S only and no target link-layer option (the claim is
    the Ethernet source), a multicast one with S and O and the option."""
    found = frames("ndisc6-ping6")
    unicast = [f for f in found if f.kind is NdpKind.SOLICITED_ADVERTISEMENT
               and f.target_lla is None]
    assert unicast and all(not f.override for f in unicast)
    assert all(f.claim == (f.target, f.eth_src) for f in unicast)


def test_dual_stack_has_tagged_ndp_and_arp() -> None:
    found = frames("dual-stack")
    assert {f.vlan for f in found} == {None, 10}
    arp = Decoder("lab", DLT_EN10MB)
    decoded = [arp.decode(raw) for _, raw in read_pcap(NDP / "dual-stack.pcap")]
    assert sum(isinstance(d, ArpFrame) for d in decoded) >= 4
    assert all(isinstance(d, ArpFrame) or d is SkipReason.NOT_ARP for d in decoded)


@pytest.mark.parametrize("path", sorted(NDP.glob("*.pcap")), ids=lambda p: p.stem)
def test_replaying_gives_the_same_observations(path: Path) -> None:
    """Decoding is a pure function of the bytes: two passes agree frame for frame."""
    first = [decode_ndp(raw) for _, raw in read_pcap(path)]
    assert first == [decode_ndp(raw) for _, raw in read_pcap(path)]
    assert not any(isinstance(f, NdpInvalid) for f in first)
