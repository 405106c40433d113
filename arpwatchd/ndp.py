"""Frame bytes to IPv6 Neighbor Discovery observations (RFC 4861): pure and total.

Phase 1 of issue 17: what one NDP frame says, as `decode.py` does for ARP. Nothing here is
wired into the tracker yet (docs/ipv6.md says what phase 2 wires). The link header and VLAN
tags are walked by `decode.walk_tags`, so an NDP frame and an ARP frame of one trunk land in
the same (interface, outer VLAN) domain.

The packet is read by dpkt, as the architecture says of every frame the kernel cannot prove:
`dpkt.ip6.IP6` reads the IPv6 header and walks the extension headers, `dpkt.icmp6.ICMP6`
the ICMPv6 type, code and checksum field. dpkt.icmp6 knows the ND type numbers only: it
models no ND body, so the reserved/flags word, the target and the options are read here
from the ICMPv6 payload bytes dpkt hands over. dpkt verifies no checksum either: this module
does (RFC 4443 2.3). Whatever dpkt raises on cut or hostile bytes (`dpkt.UnpackError` and its
`NeedData`, an `AttributeError` from its fragment check on some header chains, a
`RecursionError` on deeply nested packets: `_DPKT_ERRORS`) becomes a skip or a problem
below, never a traceback. tests/test_ndp.py checks the decoder against
independent struct reads of random headers and hand-built frames.

A new NA or NS costs ~18-19 us here (timeit on this loaded machine, load ~10), against
~10 us when the headers were read with `struct` (main at 4c74467, same run): `dpkt.ip6.IP6`
with the `ICMP6` inside it ~6 us (~2.7 the ICMP6, which raises and catches a KeyError for
every ND type, none being in its table), ~3 the frozen dataclass, ~1.5 the three
`IPv6Address` values. Phase 2 caches results by raw bytes as `Decoder.decode_cached` does,
and can turn `NdpFrame` into a NamedTuple with int addresses, like `ArpFrame`, if NDP floods
need it.

Three outcomes, as for ARP:

* `NdpSkip` / `decode.SkipReason`: not NDP (another IPv6 packet, IPv4, a link header cut
  short), counted and silent;
* `NdpInvalid`: an NS, NA, RS or RA that fails RFC 4861's validation (sections 6.1.1, 6.1.2,
  7.1.1, 7.1.2), with the `NdpProblem`; a receiving host silently discards these, so the
  sensor must never bind from them, but counts and may report them (an attack tool's bug is
  a clue);
* `NdpFrame`: a valid message, with its `NdpKind` and the claim it makes, if any.

Extension headers. RFC 4861 does not forbid them before an NS or NA, and a host processes
the ND message behind a Hop-by-Hop, Destination Options, Routing (no segments left) or AH
header (Linux's `ndisc_rcv` runs once the extension headers are done), so this decoder
decodes and validates it like any other ND message: dpkt walks the chain, and the message's
length is the payload length less the extension headers. The checksum's pseudo-header takes
the fixed header's destination, so a routed message (segments left) normally fails as
`bad_checksum`. Two exceptions, skipped as `not_ndp`: a packet with a Fragment header, since
RFC 6980 makes hosts ignore fragmented ND (and a later fragment has no ICMPv6 header), and a
packet whose payload is not ICMPv6 once the chain is walked (ESP, another protocol, a chain
dpkt cannot walk). The live capture filter reads the ICMPv6 type at `ip6[40]`, right after
the fixed header, so it passes no ND message behind extension headers: only offline captures
bring them (an RA-guard evasion, RFC 7113, would be invisible live; see docs/ipv6.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv6Address

import dpkt

from arpwatchd.addresses import sender_mac_problem

# the capture filter lives in `bpf` (the capture sets it without importing this module: a
# sensor that never sees IPv6 never pays for it); re-exported here, it is part of NDP's story
from arpwatchd.bpf import NDP_EXPRESSION, arp_and_ndp_filter, ndp_filter, tagged_filter  # noqa: F401
from arpwatchd.decode import DLT_EN10MB, SkipReason, walk_tags

ETH_TYPE_IPV6 = 0x86DD
NEXT_HEADER_ICMPV6 = 58
ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
_MIN_LENGTH = {ROUTER_SOLICITATION: 8, ROUTER_ADVERTISEMENT: 16,
               NEIGHBOR_SOLICITATION: 24, NEIGHBOR_ADVERTISEMENT: 24}
"""ICMPv6 length (from the IPv6 payload length) each message needs: RFC 4861 6.1.1, 6.1.2,
7.1.1, 7.1.2 ("ICMP length ... is N or more octets")."""
_OPTIONS_AT = {ROUTER_SOLICITATION: 4, ROUTER_ADVERTISEMENT: 12,
               NEIGHBOR_SOLICITATION: 20, NEIGHBOR_ADVERTISEMENT: 20}
"""Where the options start in the ND body (the ICMPv6 message after its 4-byte header)."""
_OPT_SOURCE_LLA = 1
_OPT_TARGET_LLA = 2
_ICMP6_HEADER = struct.Struct("!BBH")
"""Type, code, checksum: dpkt's fields packed again, for the checksum over the message."""
_NEXT_HEADER_FRAGMENT = 44
_DPKT_ERRORS = (dpkt.UnpackError, AttributeError, RecursionError)
"""What `dpkt.ip6.IP6` raises on cut or hostile bytes: `UnpackError` (and `NeedData`, its
subclass) for a header cut short, `AttributeError` from its fragment check when a Fragment
header is followed by another extension header (dpkt reads `frag_off` off the last one), and
`RecursionError` on deep nesting: dpkt parses the packet inside an ICMPv6 error, or inside
IPv6-in-IPv6, recursively, so a 9 KB jumbo frame of nested errors (48 bytes a level) or
16 KB of nested IPv6 pass the interpreter's limit (tests/test_ndp.py builds both)."""
_SOLICITED_NODE_PREFIX = b"\xff\x02" + bytes(9) + b"\x01\xff"
"""ff02::1:ff00:0/104 (RFC 4291 2.7.1); addresses are checked as raw bytes, and become
`IPv6Address` values only in the result (each costs ~0.5 us)."""
_LINK_LOCAL_PREFIX = b"\xfe\x80" + bytes(6)
"""fe80::/64, the link-local prefix in use (RFC 4291 2.5.6)."""
_UNSPECIFIED = bytes(16)
UNSPECIFIED = IPv6Address("::")


class NdpSkip(StrEnum):
    """Frames the NDP decoder is not about (the link-level reasons are `SkipReason`'s)."""

    NOT_NDP = "not_ndp"


class NdpKind(StrEnum):
    """What a valid message is, in the terms of the ARP rules (docs/ipv6.md)."""

    #: NS from a unicast source: address resolution or unreachability detection. A claim by
    #: the sender (source address at its source link-layer address) when it carries that
    #: option; the Linux kernel leaves it out of unicast NUD probes.
    SOLICITATION = "solicitation"
    #: NS from `::` (RFC 4862 5.4.2): duplicate address detection, claims nothing (ARP probe).
    DAD_PROBE = "dad_probe"
    #: NA with S set: the answer to a solicitation (ARP reply).
    SOLICITED_ADVERTISEMENT = "solicited_advertisement"
    #: NA with S clear: an announcement (RFC 4861 7.2.6), also the answer to a DAD probe,
    #: which goes to all-nodes with S clear (7.2.4).
    UNSOLICITED_ADVERTISEMENT = "unsolicited_advertisement"
    ROUTER_SOLICITATION = "router_solicitation"
    ROUTER_ADVERTISEMENT = "router_advertisement"


class NdpProblem(StrEnum):
    """Why a host would discard the message (RFC 4861 validation); stable metric labels."""

    TRUNCATED = "truncated"
    HOP_LIMIT = "hop_limit_not_255"
    BAD_CODE = "icmpv6_code_not_0"
    BAD_CHECKSUM = "bad_checksum"
    BAD_OPTION_LENGTH = "bad_option_length"
    BAD_LINK_LAYER_ADDRESS = "bad_link_layer_address"
    SOURCE_MULTICAST = "source_multicast"
    TARGET_MULTICAST = "target_multicast"
    SOLICITED_TO_MULTICAST = "solicited_to_multicast"
    DAD_NOT_TO_SOLICITED_NODE = "dad_not_to_solicited_node"
    UNSPECIFIED_SOURCE_WITH_LLA = "unspecified_source_with_lla"
    ROUTER_SOURCE_NOT_LINK_LOCAL = "router_source_not_link_local"


@dataclass(frozen=True, slots=True)
class NdpFrame:
    """One valid NDP message. MACs are 6-byte `bytes`; `str()` of an address is RFC 5952 text.

    `target` is None for router messages. `source_lla` / `target_lla` are the Source/Target
    Link-Layer Address options (RFC 4861 4.6.1), None where absent. `router`, `solicited`,
    `override` are the NA's R, S and O flags (False on other messages).
    """

    interface: str
    vlan: int | None
    kind: NdpKind
    eth_src: bytes
    eth_dst: bytes
    src: IPv6Address
    dst: IPv6Address
    target: IPv6Address | None
    router: bool
    solicited: bool
    override: bool
    source_lla: bytes | None
    target_lla: bytes | None

    @property
    def claim(self) -> tuple[IPv6Address, bytes] | None:
        """(address, MAC) this message asserts, or None.

        An NA claims its target at the target link-layer address, or at the Ethernet source
        where the option is absent (RFC 4861 7.2.5 lets a solicited NA to a unicast
        solicitation omit it: the link-layer source is then the answer). An NS, RS or RA
        claims its source address at its source link-layer address, and only with that option
        (without it, nothing on the wire says the sender's MAC is meant as a binding).
        """
        if self.kind in _ADVERTISEMENTS and self.target is not None:
            return self.target, self.target_lla or self.eth_src
        if self.source_lla is not None and self.src != UNSPECIFIED:
            return self.src, self.source_lla
        return None

    @property
    def ethernet_mismatch(self) -> bool:
        """The link-layer option names another MAC than the Ethernet source (a spoofing tool,
        or a proxy: RFC 4861 7.2.8 proxy NAs carry the proxy's own MAC, so they match)."""
        claim = self.claim
        return claim is not None and claim[1] != self.eth_src


_ADVERTISEMENTS = frozenset({NdpKind.SOLICITED_ADVERTISEMENT, NdpKind.UNSOLICITED_ADVERTISEMENT})


@dataclass(frozen=True, slots=True)
class NdpInvalid:
    """An ND message a host would discard; never bound, counted by `problem`."""

    interface: str
    vlan: int | None
    eth_src: bytes
    src: IPv6Address
    icmp_type: int
    problem: NdpProblem


NdpResult = NdpFrame | NdpInvalid | NdpSkip | SkipReason


def decode_ndp(frame: bytes, interface: str = "", linktype: int = DLT_EN10MB) -> NdpResult:
    """Decodes one Ethernet frame (untagged, 802.1Q, QinQ up to `MAX_TAGS`); never raises.

    Args:
        frame: the captured bytes from the destination MAC on.
        interface: copied into the result (the domain is interface and outer VLAN).
        linktype: only DLT_EN10MB for now; Linux cooked captures are `unsupported_link`.

    Returns:
        An `NdpFrame`, an `NdpInvalid`, or why the frame is skipped.
    """
    if linktype != DLT_EN10MB:
        return SkipReason.UNSUPPORTED_LINK
    if len(frame) < 14:
        return SkipReason.TRUNCATED_LINK_HEADER
    walked = walk_tags(frame, int.from_bytes(frame[12:14], "big"), 14)
    if isinstance(walked, SkipReason):
        return walked
    ethertype, at, vlan = walked
    if ethertype != ETH_TYPE_IPV6:
        return NdpSkip.NOT_NDP
    packet = _packet(frame[at:])
    if isinstance(packet, NdpSkip):
        return packet
    icmp_type, length, hop_limit, src_raw, dst_raw, message = packet
    problem = _problem(message, icmp_type, length, hop_limit, src_raw, dst_raw)
    if problem is None:
        result = _read(icmp_type, message[4:], src_raw, dst_raw)
        if isinstance(result, NdpProblem):
            problem = result
        else:
            kind, target, flags, source_lla, target_lla = result
            return NdpFrame(interface, vlan, kind, frame[6:12], frame[0:6],
                            IPv6Address(src_raw), IPv6Address(dst_raw),
                            None if target is None else IPv6Address(target), bool(flags & 0x80),
                            bool(flags & 0x40), bool(flags & 0x20), source_lla, target_lla)
    return NdpInvalid(interface, vlan, frame[6:12], IPv6Address(src_raw), icmp_type, problem)


def _packet(data: bytes) -> tuple[int, int, int, bytes, bytes, bytes] | NdpSkip:
    """dpkt's reading of the IPv6 packet (from the fixed header on) if it holds an RS, RA, NS
    or NA: ICMPv6 type, ICMPv6 length (the payload length less the extension headers), hop
    limit, source, destination, and the ICMPv6 message as far as the capture has it."""
    try:
        ip6 = dpkt.ip6.IP6(data)
    except _DPKT_ERRORS:
        # the fixed header, or an extension header, cut short or garbled: nothing says ND
        return NdpSkip.NOT_NDP
    if _NEXT_HEADER_FRAGMENT in ip6.extension_hdrs:  # RFC 6980: hosts ignore fragmented ND
        return NdpSkip.NOT_NDP
    icmp = ip6.data
    message: bytes
    if isinstance(icmp, dpkt.icmp6.ICMP6):
        icmp_type: int = icmp.type
        if icmp_type not in _MIN_LENGTH:  # (dpkt makes other types' bodies objects)
            return NdpSkip.NOT_NDP
        # dpkt reads type, code and checksum field; the checksum covers them, so they are
        # packed again in front of the ND body (which dpkt leaves as bytes: it models none)
        message = _ICMP6_HEADER.pack(icmp_type, icmp.code, icmp.sum) + icmp.data
    elif getattr(ip6, "p", None) == NEXT_HEADER_ICMPV6 and isinstance(icmp, bytes) and icmp:
        # dpkt hands over the bytes of an ICMPv6 header cut short (under 4 bytes): still an
        # ND message if its type says so, and `_problem` finds it truncated
        icmp_type = icmp[0]
        if icmp_type not in _MIN_LENGTH:
            return NdpSkip.NOT_NDP
        message = icmp
    else:
        return NdpSkip.NOT_NDP  # another protocol (or ESP) behind the extension headers
    length: int = ip6.plen
    if ip6.all_extension_headers:
        length -= sum(header.length for header in ip6.all_extension_headers)
    return icmp_type, length, ip6.hlim, ip6.src, ip6.dst, message


def _problem(
    message: bytes, icmp_type: int, length: int, hop_limit: int, src: bytes, dst: bytes
) -> NdpProblem | None:
    """The checks RFC 4861 makes of every ND message (6.1.1, 6.1.2, 7.1.1, 7.1.2)."""
    if len(message) < length or length < _MIN_LENGTH[icmp_type]:
        return NdpProblem.TRUNCATED  # cut by the snap length, or shorter than the message
    # "The IP Hop Limit field has a value of 255, i.e., the packet could not possibly have
    # been forwarded by a router." (7.1.1): the whole of NDP's on-link trust rests on this.
    if hop_limit != 255:
        return NdpProblem.HOP_LIMIT
    if message[1] != 0:  # "ICMP Code is 0." (dpkt's code field)
        return NdpProblem.BAD_CODE
    if not _checksum_ok(message, src, dst):  # "ICMP Checksum is valid." (dpkt checks none)
        return NdpProblem.BAD_CHECKSUM
    if src[0] == 0xFF:  # RFC 4291 2.7: a multicast address is never a source
        return NdpProblem.SOURCE_MULTICAST
    return None


def _read(
    icmp_type: int, body: bytes, src: bytes, dst: bytes
) -> tuple[NdpKind, bytes | None, int, bytes | None, bytes | None] | NdpProblem:
    """The ND body (the ICMPv6 payload dpkt gives, read here: dpkt models no ND body) and
    options of a message that passed `_problem`: kind, target, NA flags, source and target
    link-layer addresses, or the message-specific problem."""
    options = _options(body, _OPTIONS_AT[icmp_type])
    if isinstance(options, NdpProblem):
        return options
    source_lla, target_lla = options
    if icmp_type in (ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT):
        # 6.1.2: "IP Source Address is a link-local address." (RAs; RSs may come from ::)
        if icmp_type == ROUTER_ADVERTISEMENT and src[:8] != _LINK_LOCAL_PREFIX:
            return NdpProblem.ROUTER_SOURCE_NOT_LINK_LOCAL
        if src == _UNSPECIFIED and source_lla is not None:  # 6.1.1
            return NdpProblem.UNSPECIFIED_SOURCE_WITH_LLA
        kind = (NdpKind.ROUTER_ADVERTISEMENT if icmp_type == ROUTER_ADVERTISEMENT
                else NdpKind.ROUTER_SOLICITATION)
        return kind, None, 0, source_lla, None
    target = body[4:20]  # after the flags/reserved word
    if target[0] == 0xFF:  # 7.1.1 and 7.1.2: "Target Address is not a multicast address."
        return NdpProblem.TARGET_MULTICAST
    flags = body[0]
    if icmp_type == NEIGHBOR_ADVERTISEMENT:
        # 7.1.2: "If the IP Destination Address is a multicast address the Solicited flag is
        # zero." A DAD defense goes to all-nodes with S clear (7.2.4), so an NA "answering" a
        # DAD probe with S set is malformed.
        if flags & 0x40:
            if dst[0] == 0xFF:
                return NdpProblem.SOLICITED_TO_MULTICAST
            return NdpKind.SOLICITED_ADVERTISEMENT, target, flags, source_lla, target_lla
        return NdpKind.UNSOLICITED_ADVERTISEMENT, target, flags, source_lla, target_lla
    if src != _UNSPECIFIED:
        return NdpKind.SOLICITATION, target, 0, source_lla, target_lla
    # 7.1.1, when the source is the unspecified address: "the IP destination address is a
    # solicited-node multicast address" and "there is no source link-layer address option".
    if dst[:13] != _SOLICITED_NODE_PREFIX:
        return NdpProblem.DAD_NOT_TO_SOLICITED_NODE
    if source_lla is not None:
        return NdpProblem.UNSPECIFIED_SOURCE_WITH_LLA
    return NdpKind.DAD_PROBE, target, 0, None, target_lla


def _options(body: bytes, at: int) -> tuple[bytes | None, bytes | None] | NdpProblem:
    """The first source and target link-layer address options (RFC 4861 4.6.1); others are
    skipped ("Receivers MUST silently ignore any options they do not recognize", 4.6)."""
    source_lla = target_lla = None
    while at < len(body):
        if at + 2 > len(body):
            return NdpProblem.BAD_OPTION_LENGTH
        kind, units = body[at], body[at + 1]
        end = at + 8 * units
        # "All included options have a length that is greater than zero." (7.1.1) and an
        # option must end inside the body (4.6: length in units of 8 octets)
        if units == 0 or end > len(body):
            return NdpProblem.BAD_OPTION_LENGTH
        if kind in (_OPT_SOURCE_LLA, _OPT_TARGET_LLA):
            mac = body[at + 2 : at + 8]
            # on Ethernet the option is 8 octets (RFC 2464 section 8); a zero, broadcast or
            # multicast MAC is never a station's (as for an ARP sender MAC)
            if units != 1 or sender_mac_problem(mac) is not None:
                return NdpProblem.BAD_LINK_LAYER_ADDRESS
            if kind == _OPT_SOURCE_LLA and source_lla is None:
                source_lla = mac
            elif kind == _OPT_TARGET_LLA and target_lla is None:
                target_lla = mac
        at = end
    return source_lla, target_lla


def _checksum_ok(message: bytes, src: bytes, dst: bytes) -> bool:
    """RFC 4443 2.3: the one's complement sum over the pseudo-header (RFC 8200 8.1: source,
    destination, upper-layer length, next header 58) and the message, checksum included,
    is 0xffff."""
    data = src + dst + len(message).to_bytes(4, "big") + b"\x00\x00\x00\x3a" + message
    if len(data) % 2:
        data += b"\x00"
    # The words summed with end-around carry give 0xffff exactly when their plain sum is a
    # multiple of 0xffff (2**16 is 1 modulo 0xffff, and the sum is never 0: next header 58 is
    # in it), and the bytes read as one big number are that sum modulo 0xffff: one C call
    # instead of unpacking and adding 40-odd words (0.2 us instead of 1.5).
    return int.from_bytes(data, "big") % 0xFFFF == 0
