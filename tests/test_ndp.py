"""NDP decoding (arpwatchd/ndp.py): kinds, RFC 4861 validation, tags, the BPF filter, and
hostile bytes that must not raise."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

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
    raw[14 + 6] = 0  # next header: hop-by-hop options; dpkt reads the NA's first 8 bytes as
    assert decode_ndp(bytes(raw)) is NdpSkip.NOT_NDP  # that header: then comes protocol 136


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


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1),
       st.one_of(st.just(32), st.integers(0, 40), st.integers(0, 2**16 - 1)),
       st.one_of(st.just(58), st.integers(0, 255)), st.one_of(st.just(255), st.integers(0, 255)))
def test_the_ipv6_header_reads_as_struct_reads_it(
    first_word: int, plen: int, next_header: int, hop_limit: int
) -> None:
    """Random version/class/flow, payload length, next header and hop limit in a real NS
    (each drawn often at the value that decodes): the outcome follows from these fields and
    RFC 1071's word sum, computed here, not from dpkt (the decoder's reader)."""
    raw = neighbor_solicitation("fd00::a", "fd00::b", A)  # 32 bytes of ICMPv6
    header = struct.pack("!IHBB", first_word, plen, next_header, hop_limit)
    mutated = raw[:14] + header + raw[22:]
    src, dst = mutated[22:38], mutated[38:54]
    out = decode_ndp(mutated)
    if next_header != 58:  # another protocol, or an extension header made of the NS's bytes
        assert out is NdpSkip.NOT_NDP
        return
    assert isinstance(out, NdpFrame | NdpInvalid) and out.src.packed == src
    pseudo = src + dst + plen.to_bytes(4, "big") + b"\0\0\0\x3a"
    if not 24 <= plen <= 32:
        assert isinstance(out, NdpInvalid) and out.problem is NdpProblem.TRUNCATED
    elif hop_limit != 255:
        assert isinstance(out, NdpInvalid) and out.problem is NdpProblem.HOP_LIMIT
    elif _ones_complement_sum(pseudo + mutated[54 : 54 + plen]) != 0xFFFF:
        assert isinstance(out, NdpInvalid) and out.problem is NdpProblem.BAD_CHECKSUM
    else:
        assert isinstance(out, NdpFrame) and out.dst.packed == dst
        assert out.target == IPv6Address("fd00::b")


def test_a_frame_packed_by_hand_decodes() -> None:
    """An NA packed here with `struct` and the word-sum checksum, no dpkt on either side."""
    src, dst, target = (IPv6Address(a).packed for a in ("fe80::b", "fd00::a", "fd00::b"))
    message = struct.pack("!BBHB3x16s", 136, 0, 0, 0xE0, target) + lla_option(2, B)
    pseudo = src + dst + len(message).to_bytes(4, "big") + b"\0\0\0\x3a"
    checksum = 0xFFFF - _ones_complement_sum(pseudo + message)
    message = message[:2] + checksum.to_bytes(2, "big") + message[4:]
    ip6 = struct.pack("!IHBB16s16s", 0x6000_0000, len(message), 58, 255, src, dst)
    raw = parse_mac(A) + parse_mac(B) + b"\x86\xdd" + ip6 + message
    na = frame_of(raw)
    assert na.kind is NdpKind.SOLICITED_ADVERTISEMENT and na.router and na.override
    assert (na.src, na.dst, na.target) == (IPv6Address("fe80::b"), IPv6Address("fd00::a"),
                                           IPv6Address("fd00::b"))
    assert na.target_lla == parse_mac(B) and na.eth_dst == parse_mac(A)


# ---------------------------------------------------------------------------------------------
# Extension headers (dpkt walks them; see the module docstring for the decision)

HOP_BY_HOP, ROUTING, FRAGMENT, ESP, AH, DESTINATION = 0, 43, 44, 50, 51, 60


def _behind(raw: bytes, *headers: tuple[int, bytes]) -> bytes:
    """`raw` (an untagged NDP frame) with extension headers (number, bytes after the
    next-header byte) put between the fixed header and the ICMPv6 message; each header's
    next-header byte is filled in, the payload length fixed. The checksum stays right: the
    pseudo-header holds the ICMPv6 length, not the payload length (RFC 8200 8.1)."""
    chain = b""
    numbers = [number for number, _ in headers] + [raw[14 + 6]]
    for i, (_, rest) in enumerate(headers):
        chain += bytes([numbers[i + 1]]) + rest
    plen = int.from_bytes(raw[18:20], "big") + len(chain)
    return (raw[:18] + plen.to_bytes(2, "big") + bytes([numbers[0]]) + raw[21:54] + chain
            + raw[54:])


PAD = b"\x00\x01\x04\x00\x00\x00\x00"
"""Length 0 (8 octets) and a PadN option: a hop-by-hop or destination options header."""


@pytest.mark.parametrize("headers", [
    [(HOP_BY_HOP, PAD)], [(DESTINATION, PAD)], [(HOP_BY_HOP, PAD), (DESTINATION, PAD)],
    [(ROUTING, b"\x00\x00\x00" + bytes(4))],  # no segments left: processed here
])
def test_nd_behind_extension_headers_is_decoded_as_a_host_would(
    headers: list[tuple[int, bytes]]
) -> None:
    raw = neighbor_advertisement("fd00::b", B)
    assert frame_of(_behind(raw, *headers)) == frame_of(raw)
    cut = _behind(raw, *headers)[:-4]
    assert problem_of(cut) is NdpProblem.TRUNCATED
    low = _behind(neighbor_advertisement("fd00::b", B, hop_limit=1), *headers)
    assert problem_of(low) is NdpProblem.HOP_LIMIT


def test_fragmented_nd_and_other_payloads_are_not_ndp() -> None:
    raw = neighbor_advertisement("fd00::b", B)
    atomic = b"\x00\x00\x00\x00\x00\x00\x01"  # offset 0, no more fragments
    assert decode_ndp(_behind(raw, (FRAGMENT, atomic))) is NdpSkip.NOT_NDP  # RFC 6980
    later = b"\x00\x00\x08\x00\x00\x00\x01"  # offset 1: no ICMPv6 header in this one
    assert decode_ndp(_behind(raw, (FRAGMENT, later))) is NdpSkip.NOT_NDP
    # dpkt raises AttributeError here (it reads frag_off off the hop-by-hop header)
    assert decode_ndp(_behind(raw, (FRAGMENT, later), (HOP_BY_HOP, PAD))) is NdpSkip.NOT_NDP
    esp = raw[:20] + bytes([ESP]) + raw[21:]
    assert decode_ndp(esp) is NdpSkip.NOT_NDP
    udp = _behind(ndp_frame(NEIGHBOR_ADVERTISEMENT, "fd00::b", "ff02::1", _body("fd00::b"),
                            eth_src=B), (HOP_BY_HOP, PAD))
    udp = udp[:54] + b"\x11" + udp[55:]  # the hop-by-hop header says UDP comes next
    assert decode_ndp(udp) is NdpSkip.NOT_NDP
    long_header = _behind(raw, (HOP_BY_HOP, b"\x09" + PAD[1:]))  # says 80 octets: cut short
    assert decode_ndp(long_header) is NdpSkip.NOT_NDP


def test_an_icmpv6_header_cut_short_is_truncated() -> None:
    """dpkt gives up on an ICMPv6 header under 4 bytes and hands the bytes over."""
    raw = neighbor_advertisement("fd00::b", B)
    for plen in (1, 2, 3):
        short = raw[:18] + plen.to_bytes(2, "big") + raw[20:]
        assert problem_of(short) is NdpProblem.TRUNCATED
        assert problem_of(short[: 54 + plen]) is NdpProblem.TRUNCATED
    assert problem_of(raw[:18] + b"\0\0" + raw[20:]) is NdpProblem.TRUNCATED  # jumbo / TSO


def _nested(levels: int, next_header: int) -> bytes:
    """An IPv6 packet in an ICMPv6 error (58) or in IPv6 (41), `levels` deep, on Ethernet."""
    inner = b""
    for _ in range(levels):
        if next_header == 58:  # destination unreachable: 4-byte header, unused word, packet
            inner = bytes([1, 0, 0, 0]) + bytes(4) + inner
        inner = (struct.pack("!IHBB", 0x6000_0000, len(inner), next_header, 255) + bytes(32)
                 + inner)
    return parse_mac(B) + parse_mac(A) + b"\x86\xdd" + inner


@pytest.mark.parametrize("next_header", [58, 41])
def test_deeply_nested_packets_are_not_ndp(next_header: int) -> None:
    """dpkt parses nested packets recursively: 200 levels of ICMPv6 errors (9.6 KB, a jumbo
    frame) or 400 of IPv6-in-IPv6 (16 KB, as a GRO-merged capture can be) pass Python's
    recursion limit inside dpkt."""
    assert decode_ndp(_nested(200 if next_header == 58 else 400, next_header)) is NdpSkip.NOT_NDP
    assert decode_ndp(_nested(10, next_header)) is NdpSkip.NOT_NDP


EXTENSION = st.sampled_from([HOP_BY_HOP, ROUTING, FRAGMENT, ESP, AH, DESTINATION, 58, 17])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(EXTENSION, st.binary(min_size=0, max_size=24)), max_size=4),
       st.integers(0, 200), st.integers(0, 255), st.booleans())
def test_hostile_extension_header_chains_never_raise(
    headers: list[tuple[int, bytes]], position: int, value: int, mutate: bool
) -> None:
    """Random chains, with lengths that lie, for dpkt's walk; then one byte changed."""
    raw = bytearray(_behind(neighbor_advertisement("fd00::b", B), *headers))
    if mutate:
        raw[position % len(raw)] = value
    out = decode_ndp(bytes(raw))
    assert isinstance(out, NdpFrame | NdpInvalid | NdpSkip | SkipReason)


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
