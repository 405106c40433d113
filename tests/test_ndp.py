"""NDP decoding (arpwatchd/ndp.py): kinds, RFC 4861 validation, tags, the BPF filter, and
hostile bytes that must not raise."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import dpkt
import pcapy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpwatchd.addresses import parse_mac
from arpwatchd.decode import MAX_TAGS, SkipReason
from arpwatchd.frames import REQUEST, arp_frame
from arpwatchd.ndp import (
    NEIGHBOR_ADVERTISEMENT,
    NEIGHBOR_SOLICITATION,
    ROUTER_SOLICITATION,
    NdpFrame,
    NdpInvalid,
    NdpKind,
    NdpProblem,
    NdpSkip,
    arp_and_ndp_filter,
    decode_ndp,
    ndp_filter,
)
from arpwatchd.ndpframes import (
    lla_option,
    ndp_frame,
    neighbor_advertisement,
    neighbor_solicitation,
    router_advertisement,
    solicited_node,
)

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"


def frame_of(raw: bytes) -> NdpFrame:
    out = decode_ndp(raw, "eth0")
    assert isinstance(out, NdpFrame), out
    return out


def problem_of(raw: bytes) -> NdpProblem:
    out = decode_ndp(raw, "eth0")
    assert isinstance(out, NdpInvalid), out
    return out.problem


def test_solicitation_from_a_real_source_claims_the_sender() -> None:
    ns = frame_of(neighbor_solicitation("fd00::a", "fd00::b", A))
    assert ns.kind is NdpKind.SOLICITATION and ns.target == IPv6Address("fd00::b")
    assert ns.claim == (IPv6Address("fd00::a"), parse_mac(A)) and not ns.ethernet_mismatch
    assert ns.dst == solicited_node("fd00::b") and ns.interface == "eth0" and ns.vlan is None


def test_solicitation_without_source_option_claims_nothing() -> None:
    """Linux's unicast NUD probes carry no source link-layer option."""
    raw = neighbor_solicitation("fd00::a", "fd00::b", A, dst="fd00::b")
    raw = raw[:-8]  # drop the option, then fix lengths and checksum by rebuilding
    body = b"\0" * 4 + IPv6Address("fd00::b").packed
    raw = ndp_frame(NEIGHBOR_SOLICITATION, "fd00::a", "fd00::b", body, eth_src=A)
    ns = frame_of(raw)
    assert ns.kind is NdpKind.SOLICITATION and ns.source_lla is None and ns.claim is None


def test_dad_probe_claims_nothing() -> None:
    probe = frame_of(neighbor_solicitation("::", "fd00::b", A))
    assert probe.kind is NdpKind.DAD_PROBE and probe.claim is None


def test_advertisements_claim_the_target() -> None:
    una = frame_of(neighbor_advertisement("fd00::b", B))
    assert una.kind is NdpKind.UNSOLICITED_ADVERTISEMENT and una.override and not una.solicited
    assert una.claim == (IPv6Address("fd00::b"), parse_mac(B))
    sna = frame_of(neighbor_advertisement("fd00::b", B, dst="fd00::a", solicited=True,
                                          override=False, router=True))
    assert sna.kind is NdpKind.SOLICITED_ADVERTISEMENT and sna.router and not sna.override


def test_advertisement_without_option_claims_at_the_ethernet_source() -> None:
    na = frame_of(neighbor_advertisement("fd00::b", B, dst="fd00::a", solicited=True,
                                         target_lla=False))
    assert na.target_lla is None and na.claim == (IPv6Address("fd00::b"), parse_mac(B))


def test_advertisement_naming_another_mac_is_an_ethernet_mismatch() -> None:
    na = frame_of(neighbor_advertisement("fd00::b", B, target_lla=A))
    assert na.claim == (IPv6Address("fd00::b"), parse_mac(A)) and na.ethernet_mismatch


def test_router_advertisement_claims_the_router_link_local_address() -> None:
    ra = frame_of(router_advertisement("fe80::1", A))
    assert ra.kind is NdpKind.ROUTER_ADVERTISEMENT and ra.target is None
    assert ra.claim == (IPv6Address("fe80::1"), parse_mac(A))
    assert problem_of(router_advertisement("fd00::1", A)) is NdpProblem.ROUTER_SOURCE_NOT_LINK_LOCAL


def test_addresses_print_as_rfc_5952() -> None:
    na = frame_of(neighbor_advertisement("FD00:0:0:0:0:0:0:B", B))
    assert str(na.target) == "fd00::b"
    na = frame_of(neighbor_advertisement("fd00:0:0:1:0:0:0:b", B))
    assert str(na.target) == "fd00:0:0:1::b"


@pytest.mark.parametrize(("tags", "vlan"), [
    ({"vlan": 123}, 123), ({"vlan": 5, "outer_vlan": 200}, 200), ({"vlan": 0}, None),
])
def test_tags_give_the_outer_vlan_like_arp(tags: dict[str, int], vlan: int | None) -> None:
    assert frame_of(neighbor_advertisement("fd00::b", B, **tags)).vlan == vlan  # type: ignore[arg-type]


def test_too_many_tags_and_short_frames_are_skipped() -> None:
    raw = neighbor_advertisement("fd00::b", B)
    tag = struct.pack("!HH", 0x8100, 7)
    deep = raw[:12] + tag * (MAX_TAGS + 1) + raw[12:]
    assert decode_ndp(deep) is SkipReason.TOO_MANY_TAGS
    assert decode_ndp(raw[:13]) is SkipReason.TRUNCATED_LINK_HEADER
    assert decode_ndp(raw, linktype=113) is SkipReason.UNSUPPORTED_LINK


def test_other_traffic_is_not_ndp() -> None:
    assert decode_ndp(arp_frame(REQUEST, A, "10.0.0.1", B, "10.0.0.2")) is NdpSkip.NOT_NDP
    echo = ndp_frame(128, "fd00::a", "fd00::b", b"\0\1\0\1", eth_src=A)
    assert decode_ndp(echo) is NdpSkip.NOT_NDP
    raw = bytearray(neighbor_advertisement("fd00::b", B))
    raw[14 + 6] = 0  # next header: hop-by-hop options, as if an extension header came first
    assert decode_ndp(bytes(raw)) is NdpSkip.NOT_NDP


def _body(target: str, options: bytes = b"", flags: int = 0x20) -> bytes:
    return bytes([flags, 0, 0, 0]) + IPv6Address(target).packed + options


@pytest.mark.parametrize(("raw", "problem"), [
    (neighbor_advertisement("fd00::b", B, hop_limit=64), NdpProblem.HOP_LIMIT),
    (neighbor_solicitation("fd00::a", "fd00::b", A, hop_limit=254), NdpProblem.HOP_LIMIT),
    (neighbor_advertisement("fd00::b", B, code=1), NdpProblem.BAD_CODE),
    (neighbor_advertisement("fd00::b", B, checksum=0xBEEF), NdpProblem.BAD_CHECKSUM),
    (neighbor_advertisement("ff02::1", B, src="fd00::b"), NdpProblem.TARGET_MULTICAST),
    (neighbor_solicitation("fd00::a", "ff02::2", A), NdpProblem.TARGET_MULTICAST),
    # a "defense" of a DAD probe with S set: 7.1.2 forbids S on a multicast NA
    (neighbor_advertisement("fd00::b", B, solicited=True), NdpProblem.SOLICITED_TO_MULTICAST),
    (neighbor_solicitation("::", "fd00::b", A, dst="ff02::1"),
     NdpProblem.DAD_NOT_TO_SOLICITED_NODE),
    (neighbor_solicitation("::", "fd00::b", A, source_lla=A),
     NdpProblem.UNSPECIFIED_SOURCE_WITH_LLA),
    (ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1",
               _body("fd00::b", b"\x02\x00" + b"\0" * 6), eth_src=B),
     NdpProblem.BAD_OPTION_LENGTH),
    (ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1",
               _body("fd00::b", b"\x02\x02" + parse_mac(B)), eth_src=B),
     NdpProblem.BAD_OPTION_LENGTH),  # says 16 octets, 8 are there
    (ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1", _body("fd00::b", b"\x02"),
               eth_src=B), NdpProblem.BAD_OPTION_LENGTH),
    (ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1",
               _body("fd00::b", lla_option(2, "ff:ff:ff:ff:ff:ff")), eth_src=B),
     NdpProblem.BAD_LINK_LAYER_ADDRESS),
    (ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1", _body("fd00::b")[:19],
               eth_src=B), NdpProblem.TRUNCATED),
    (ndp_frame(NEIGHBOR_ADVERTISEMENT, "ff02::5", "ff02::1", _body("fd00::b"), eth_src=B),
     NdpProblem.SOURCE_MULTICAST),
], ids=lambda value: value.value if isinstance(value, NdpProblem) else "")
def test_rfc_4861_validation(raw: bytes, problem: NdpProblem) -> None:
    assert problem_of(raw) is problem


def test_unknown_options_are_ignored_and_the_first_lla_counts() -> None:
    nonce = bytes([14, 1]) + b"\x01" * 6  # RFC 3971 nonce option (sent with DAD by Linux)
    options = nonce + lla_option(2, B) + lla_option(2, A)
    na = frame_of(ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1",
                            _body("fd00::b", options), eth_src=B))
    assert na.target_lla == parse_mac(B)


def test_snap_length_cut_is_truncated() -> None:
    raw = neighbor_advertisement("fd00::b", B)
    assert problem_of(raw[:-4]) is NdpProblem.TRUNCATED


def test_ethernet_padding_after_the_payload_is_ignored() -> None:
    assert frame_of(neighbor_advertisement("fd00::b", B) + b"\0" * 10).target_lla == parse_mac(B)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=120), st.integers(0, 130), st.integers(0, 255))
def test_mutated_ndp_frames_never_raise(noise: bytes, position: int, value: int) -> None:
    raw = bytearray(neighbor_advertisement("fd00::b", B, vlan=9) + noise)
    raw[position % len(raw)] = value
    out = decode_ndp(bytes(raw))
    assert isinstance(out, NdpFrame | NdpInvalid | NdpSkip | SkipReason)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.booleans())
def test_the_ipv6_header_reads_as_dpkt_reads_it(header: bytes, keep_type: bool) -> None:
    """dpkt is the reference for the fixed-offset reads (as for the ARP body): random
    version/class/flow, payload length, next header and hop limit in a real NS."""
    raw = neighbor_solicitation("fd00::a", "fd00::b", A)
    if keep_type:  # half the cases keep ICMPv6 and hop limit 255, so some still decode
        header = header[:6] + b"\x3a\xff"
    mutated = raw[:14] + header + raw[22:]
    out = decode_ndp(mutated)
    try:
        ip6 = dpkt.ip6.IP6(mutated[14:])
    except (dpkt.UnpackError, dpkt.NeedData):
        ip6 = None  # dpkt refuses a payload length past the end: so must the decoder
        assert not isinstance(out, NdpFrame)
    if isinstance(out, NdpFrame | NdpInvalid) and ip6 is not None:
        assert ip6.nxt == 58 and out.src.packed == ip6.src
    if isinstance(out, NdpFrame):
        assert ip6 is not None and ip6.hlim == 255 and out.dst.packed == ip6.dst
        assert ip6.plen == 32 and isinstance(ip6.data, dpkt.icmp6.ICMP6)


def test_dpkt_parses_what_the_decoder_accepts() -> None:
    raw = neighbor_advertisement("fd00::b", B, solicited=True, dst="fd00::a")
    ip6 = dpkt.ip6.IP6(raw[14:])
    assert ip6.hlim == 255 and ip6.nxt == 58 and ip6.data.type == NEIGHBOR_ADVERTISEMENT
    assert IPv6Address(ip6.data.data[4:20]) == frame_of(raw).target


# ---------------------------------------------------------------------------------------------
# The capture filter, compiled by libpcap and run on frames


def _matches(expression: str, raw: bytes) -> bool:
    return bool(pcapy.compile(1, 65535, expression, 1, 0).filter(raw))


def _tagged(raw: bytes, depth: int) -> bytes:
    return raw[:12] + struct.pack("!HH", 0x8100, 10) * depth + raw[12:]


NDP = [
    neighbor_solicitation("fd00::a", "fd00::b", A),
    neighbor_solicitation("::", "fd00::b", A),
    neighbor_advertisement("fd00::b", B),
    router_advertisement("fe80::1", A),
]


@pytest.mark.parametrize("depth", range(MAX_TAGS + 2))
def test_filter_passes_ndp_at_every_tag_depth(depth: int) -> None:
    for raw in NDP:
        assert _matches(ndp_filter(), _tagged(raw, depth))
        assert _matches(arp_and_ndp_filter(), _tagged(raw, depth))
    arp = arp_frame(REQUEST, A, "10.0.0.1", B, "10.0.0.2")
    assert _matches(arp_and_ndp_filter(), _tagged(arp, depth))
    assert not _matches(ndp_filter(), _tagged(arp, depth))


@pytest.mark.parametrize("depth", range(MAX_TAGS + 1))
def test_filter_drops_other_icmpv6_and_ipv6(depth: int) -> None:
    echo = ndp_frame(128, "fd00::a", "fd00::b", b"\0\1\0\1", eth_src=A)
    mld = ndp_frame(143, "fe80::a", "ff02::16", b"\0" * 4, eth_src=A)
    for raw in (echo, mld):
        assert not _matches(arp_and_ndp_filter(), _tagged(raw, depth))


def test_two_nests_joined_by_or_would_miss_tagged_ndp() -> None:
    """Why ARP and NDP share one nest: libpcap's `vlan` shifts what follows it."""
    from arpwatchd.capture import ARP_FILTER  # noqa: PLC0415

    joined = f"({ARP_FILTER}) or ({ndp_filter()})"
    tagged_na = _tagged(neighbor_advertisement("fd00::b", B), 1)
    assert not _matches(joined, tagged_na)
    assert _matches(arp_and_ndp_filter(), tagged_na)


def test_router_solicitation_from_unspecified_claims_nothing() -> None:
    plain = ndp_frame(ROUTER_SOLICITATION, "::", "ff02::2", b"\0" * 4, eth_src=A)
    rs = frame_of(plain)
    assert rs.kind is NdpKind.ROUTER_SOLICITATION and rs.claim is None
    with_option = ndp_frame(ROUTER_SOLICITATION, "::", "ff02::2", b"\0" * 4 + lla_option(1, A),
                            eth_src=A)
    assert problem_of(with_option) is NdpProblem.UNSPECIFIED_SOURCE_WITH_LLA
    from_host = ndp_frame(ROUTER_SOLICITATION, "fe80::a", "ff02::2",
                          b"\0" * 4 + lla_option(1, A), eth_src=A)
    assert frame_of(from_host).claim == (IPv6Address("fe80::a"), parse_mac(A))


def test_observations_are_immutable_values() -> None:
    na = frame_of(neighbor_advertisement("fd00::b", B))
    with pytest.raises(AttributeError):
        na.target = IPv6Address("fd00::c")  # type: ignore[misc]
    assert na == frame_of(neighbor_advertisement("fd00::b", B)) and hash(na)


def _ones_complement_sum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.binary(min_size=0, max_size=80))
def test_checksum_shortcut_agrees_with_the_word_sum(src: bytes, dst: bytes, message: bytes
                                                     ) -> None:
    """`_checksum_ok` reads the bytes as one number modulo 0xffff; RFC 1071 adds words."""
    from arpwatchd.ndp import _checksum_ok  # noqa: PLC0415  (the shortcut itself)

    pseudo = src + dst + len(message).to_bytes(4, "big") + b"\0\0\0\x3a"
    assert _checksum_ok(message, src, dst) == (_ones_complement_sum(pseudo + message) == 0xFFFF)
    if len(message) >= 4:  # put the right checksum in: then it must pass
        fixed = message[:2] + b"\0\0" + message[4:]
        value = 0xFFFF - _ones_complement_sum(pseudo + fixed)
        assert _checksum_ok(fixed[:2] + value.to_bytes(2, "big") + fixed[4:], src, dst)
