"""Frame bytes to ARP observations: pure, total (never raises on input), and cheap on repeats.

Link headers (Ethernet, 802.1Q/802.1ad tags, Linux cooked v1 and v2) are fixed offsets read
with slicing; the ARP body is parsed by dpkt. Anything that is not ARP is a `SkipReason`
(counted, silent); an ARP frame that no station could have meant (bad lengths, truncated,
broadcast or zero sender) is an `ArpFrame` of kind INVALID with the reason, so the tracker can
report it without ever binding it (DESIGN.md section 2).
"""

from __future__ import annotations

import struct
from enum import StrEnum
from typing import NamedTuple

import dpkt

from arpwatchd.addresses import BROADCAST_MAC, ZERO_MAC, sender_ip_problem, sender_mac_problem

DLT_EN10MB = 1
DLT_LINUX_SLL = 113
DLT_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = {
    DLT_EN10MB: "Ethernet",
    DLT_LINUX_SLL: "Linux cooked",
    DLT_LINUX_SLL2: "Linux cooked v2",
}

ETH_TYPE_ARP = 0x0806
_ARP_TYPE = ETH_TYPE_ARP.to_bytes(2, "big")
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
"""The tag types libpcap's `vlan` filter keyword knows (802.1Q, 802.1ad, pre-standard QinQ):
a tag the capture filter cannot see past never reaches the decoder (`capture.arp_filter`)."""
MAX_TAGS = 4
"""Tags read before the ARP body; the capture filter passes deeper stacks to be counted."""
_ARP_LEN = 28
CACHE_SIZE = 16384
CACHE_SAMPLE = 4096
CACHE_BYPASS = 65536
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class SkipReason(StrEnum):
    """Frames that are not ARP for this sensor; counted by reason, never reported one by one."""

    NOT_ARP = "not_arp"
    TRUNCATED_LINK_HEADER = "truncated_link_header"
    UNSUPPORTED_LINK = "unsupported_link"
    TOO_MANY_TAGS = "too_many_vlan_tags"


def walk_tags(
    frame: bytes, ethertype: int, at: int
) -> tuple[int, int, int | None] | SkipReason:
    """Steps over up to `MAX_TAGS` VLAN tags starting at `at`, where `ethertype` was read.

    Shared by the ARP decoder and `arpwatchd.ndp`, so both see the same domain for a frame.

    Returns:
        (the ethertype after the tags, the offset of the payload, the outer VLAN id or None;
        VID 0 is an 802.1p priority tag, not a VLAN), or the reason the frame is skipped.
    """
    vlan: int | None = None
    tags = 0
    while ethertype in VLAN_TPIDS:
        tags += 1
        if tags > MAX_TAGS:
            return SkipReason.TOO_MANY_TAGS
        if len(frame) < at + 4:
            return SkipReason.TRUNCATED_LINK_HEADER
        vid = _U16.unpack_from(frame, at)[0] & 0x0FFF
        if vlan is None and vid != 0:
            vlan = vid
        ethertype = _U16.unpack_from(frame, at + 2)[0]
        at += 4
    return ethertype, at, vlan


class ArpKind(StrEnum):
    REQUEST = "request"
    REPLY = "reply"
    ANNOUNCEMENT = "announcement"
    PROBE = "probe"
    INVALID = "invalid"


class ArpFrame(NamedTuple):
    """What one ARP frame says. MACs are 6-byte `bytes`, IPs are `int`.

    Immutable like a frozen dataclass, but one is built per new frame and a NamedTuple costs
    a third of what a frozen dataclass's `__init__` does.

    `eth_dst` is None on Linux cooked captures, which do not keep it; `eth_src` is None where
    the link header carries no 6-byte source. `problem` names why an INVALID frame is invalid.
    """

    interface: str
    vlan: int | None
    op: int
    kind: ArpKind
    eth_src: bytes | None
    eth_dst: bytes | None
    sha: bytes
    spa: int
    tha: bytes
    tpa: int
    problem: str | None = None

    @property
    def is_claim(self) -> bool:
        return self.kind in _CLAIMS

    @property
    def ethernet_mismatch(self) -> bool:
        return self.eth_src is not None and self.eth_src != self.sha


_CLAIMS = frozenset({ArpKind.REQUEST, ArpKind.REPLY, ArpKind.ANNOUNCEMENT})
_new = tuple.__new__
"""Builds an ArpFrame from a tuple of all its fields in C (its own __new__ is Python code)."""


class Decoder:
    """Decodes frames of one capture handle (one interface, one link type)."""

    def __init__(self, interface: str, linktype: int) -> None:
        self.interface = interface
        self.linktype = linktype
        self._link = {
            DLT_EN10MB: self._ethernet,
            DLT_LINUX_SLL: self._sll,
            DLT_LINUX_SLL2: self._sll2,
        }.get(linktype)

        self._cache: dict[bytes, ArpFrame | SkipReason] = {}
        self._lookups = 0
        self._hits = 0
        self._bypass_left = 0

    @property
    def supported(self) -> bool:
        return self._link is not None

    def decode(self, frame: bytes) -> ArpFrame | SkipReason:
        """Decodes one frame; never raises on any input."""
        if self._link is None:
            return SkipReason.UNSUPPORTED_LINK
        return self._link(frame)

    def decode_cached(self, frame: bytes) -> ArpFrame | SkipReason:
        """Like `decode`, but an identical frame seen recently costs one dict lookup.

        Results are immutable, so sharing them is safe. Under a flood of frames that never
        repeat the cache only costs, so when fewer than 1 in 8 lookups hit it is bypassed
        for the next `CACHE_BYPASS` frames, then tried again.
        """
        if self._bypass_left:
            self._bypass_left -= 1
            return self.decode(frame)
        cached = self._cache.get(frame)
        self._lookups += 1
        if cached is not None:
            self._hits += 1
            return cached
        if self._lookups >= CACHE_SAMPLE:
            if self._hits * 8 < self._lookups:
                self._bypass_left = CACHE_BYPASS
                self._cache.clear()
            self._lookups = self._hits = 0
        result = self.decode(frame)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[frame] = result
        return result

    def _ethernet(self, frame: bytes) -> ArpFrame | SkipReason:
        if len(frame) < 14:
            return SkipReason.TRUNCATED_LINK_HEADER
        if frame[12:14] == _ARP_TYPE:  # untagged: what `_tags` would do, two calls sooner
            return self._arp(frame[14:], None, frame[6:12], frame[0:6])
        return self._after_type(frame, 12, frame[6:12], frame[0:6])

    def _sll(self, frame: bytes) -> ArpFrame | SkipReason:
        # pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
        if len(frame) < 16:
            return SkipReason.TRUNCATED_LINK_HEADER
        halen = _U16.unpack_from(frame, 4)[0]
        src = frame[6:12] if halen == 6 else None
        dst = BROADCAST_MAC if _U16.unpack_from(frame, 0)[0] == 1 else None
        return self._after_type(frame, 14, src, dst)

    def _sll2(self, frame: bytes) -> ArpFrame | SkipReason:
        # protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
        if len(frame) < 20:
            return SkipReason.TRUNCATED_LINK_HEADER
        src = frame[12:18] if frame[11] == 6 else None
        dst = BROADCAST_MAC if frame[10] == 1 else None
        ethertype = _U16.unpack_from(frame, 0)[0]
        return self._tags(frame, ethertype, 20, src, dst)

    def _after_type(
        self, frame: bytes, type_at: int, src: bytes | None, dst: bytes | None
    ) -> ArpFrame | SkipReason:
        ethertype = _U16.unpack_from(frame, type_at)[0]
        return self._tags(frame, ethertype, type_at + 2, src, dst)

    def _tags(
        self, frame: bytes, ethertype: int, at: int, src: bytes | None, dst: bytes | None
    ) -> ArpFrame | SkipReason:
        if ethertype == ETH_TYPE_ARP:  # untagged: the common case costs no call
            return self._arp(frame[at:], None, src, dst)
        walked = walk_tags(frame, ethertype, at)
        if isinstance(walked, SkipReason):
            return walked
        ethertype, at, vlan = walked
        if ethertype != ETH_TYPE_ARP:
            return SkipReason.NOT_ARP
        return self._arp(frame[at:], vlan, src, dst)

    def _arp(
        self, body: bytes, vlan: int | None, src: bytes | None, dst: bytes | None
    ) -> ArpFrame:
        if len(body) < _ARP_LEN:
            return self._invalid(vlan, src, dst, "truncated", body)
        arp = dpkt.arp.ARP(body)
        if arp.hrd not in (1, 6) or arp.pro != 0x0800 or arp.hln != 6 or arp.pln != 4:
            return self._invalid(vlan, src, dst, "not_ethernet_ipv4", body)
        op: int = arp.op
        sha: bytes = arp.sha
        tha: bytes = arp.tha
        spa: int = _U32.unpack(arp.spa)[0]
        tpa: int = _U32.unpack(arp.tpa)[0]
        problem = sender_mac_problem(sha)
        kind: ArpKind
        if op not in (1, 2):
            problem = problem or "bad_opcode"
            kind = ArpKind.INVALID
        elif spa == 0:
            if op == 2:
                problem = problem or "reply_without_sender_ip"
            kind = ArpKind.PROBE
        else:
            problem = problem or sender_ip_problem(spa)
            if spa == tpa and tha in (ZERO_MAC, BROADCAST_MAC, sha):
                kind = ArpKind.ANNOUNCEMENT
            else:
                kind = ArpKind.REQUEST if op == 1 else ArpKind.REPLY
        if problem is not None:
            kind = ArpKind.INVALID
        return _new(ArpFrame, (self.interface, vlan, op, kind, src, dst, sha, spa, tha, tpa,
                               problem))

    def _invalid(
        self, vlan: int | None, src: bytes | None, dst: bytes | None, problem: str, body: bytes
    ) -> ArpFrame:
        padded = body[:_ARP_LEN].ljust(_ARP_LEN, b"\x00")
        op = _U16.unpack_from(padded, 6)[0]
        sha = padded[8:14] if len(body) >= 14 else ZERO_MAC
        spa = _U32.unpack_from(padded, 14)[0] if len(body) >= 18 else 0
        return ArpFrame(
            self.interface, vlan, op, ArpKind.INVALID, src, dst, sha, spa, ZERO_MAC, 0, problem
        )
