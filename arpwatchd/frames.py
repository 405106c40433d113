"""Building ARP frames (with dpkt): defense announcements, generated captures, test traffic.

The one place that turns addresses into wire bytes, so the defender, the capture generator
and the tests cannot disagree about what a gratuitous ARP looks like.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import dpkt

from arpwatchd.addresses import BROADCAST_MAC, ZERO_MAC, parse_ip, parse_mac

REQUEST = 1
REPLY = 2
_TPID_8021Q = 0x8100
_TPID_8021AD = 0x88A8


def as_mac(value: bytes | str) -> bytes:
    """A MAC given as 6 bytes or as text (any form `parse_mac` reads)."""
    return value if isinstance(value, bytes) else parse_mac(value)


def ethernet_header(
    dst: bytes, src: bytes, ethertype: int, vlan: int | None, outer_vlan: int | None
) -> bytes:
    """Destination, source, an 802.1ad service tag (`outer_vlan`) outside an 802.1Q tag
    (`vlan`) where given, and the ethertype: shared by the ARP and NDP builders."""
    tags = b""
    if outer_vlan is not None:
        tags += struct.pack("!HH", _TPID_8021AD, outer_vlan & 0x0FFF)
    if vlan is not None:
        tags += struct.pack("!HH", _TPID_8021Q, vlan & 0x0FFF)
    return dst + src + tags + struct.pack("!H", ethertype)


def _ip(value: int | str) -> bytes:
    return struct.pack("!I", value if isinstance(value, int) else parse_ip(value))


def arp_frame(
    op: int,
    sha: bytes | str,
    spa: int | str,
    tha: bytes | str,
    tpa: int | str,
    *,
    eth_src: bytes | str | None = None,
    eth_dst: bytes | str | None = None,
    vlan: int | None = None,
    outer_vlan: int | None = None,
    pad: bool = True,
) -> bytes:
    """An Ethernet ARP frame; Ethernet source defaults to sha, destination to broadcast.

    `vlan` adds an 802.1Q tag; `outer_vlan` adds an 802.1ad service tag outside it (QinQ).
    `pad` pads to the 60-byte Ethernet minimum as a NIC would on the wire.
    """
    sender = as_mac(sha)
    arp = dpkt.arp.ARP(
        op=op, sha=sender, spa=_ip(spa), tha=as_mac(tha), tpa=_ip(tpa)
    )
    src = as_mac(eth_src) if eth_src is not None else sender
    dst = as_mac(eth_dst) if eth_dst is not None else BROADCAST_MAC
    frame = ethernet_header(dst, src, dpkt.ethernet.ETH_TYPE_ARP, vlan, outer_vlan) + bytes(arp)
    if pad and len(frame) < 60:
        frame += b"\x00" * (60 - len(frame))
    return frame


def announcement(
    ip: int | str,
    mac: bytes | str,
    *,
    eth_src: bytes | str | None = None,
    vlan: int | None = None,
) -> bytes:
    """RFC 5227 ARP Announcement: broadcast request, sender IP = target IP, target MAC zero."""
    return arp_frame(REQUEST, mac, ip, ZERO_MAC, ip, eth_src=eth_src, vlan=vlan)


def probe(ip: int | str, mac: bytes | str, *, vlan: int | None = None) -> bytes:
    """RFC 5227 ARP Probe: broadcast request with sender IP 0.0.0.0."""
    return arp_frame(REQUEST, mac, 0, ZERO_MAC, ip, vlan=vlan)


def write_pcap(path: str | Path, frames: Iterable[tuple[float, bytes]], linktype: int = 1) -> int:
    """Writes (timestamp, frame) pairs to a classic pcap file; returns the frame count."""
    count = 0
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=linktype, nano=False)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
            count += 1
    return count
