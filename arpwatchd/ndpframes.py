"""Building NDP frames (with dpkt): test traffic now, the IPv6 defense NA in phase 2.

The counterpart of `frames.py` for RFC 4861 messages. dpkt packs the IPv6 header and computes
the ICMPv6 checksum (over its pseudo-header), independently of `ndp._checksum_ok`, so the
tests of the decoder do not check a checksum against the same code that made it.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address
from typing import Any

import dpkt

from arpwatchd.frames import as_mac, ethernet_header
from arpwatchd.ndp import (
    NEIGHBOR_ADVERTISEMENT,
    NEIGHBOR_SOLICITATION,
    ROUTER_ADVERTISEMENT,
    UNSPECIFIED,
)

ALL_NODES = IPv6Address("ff02::1")
_ETH_TYPE_IPV6 = 0x86DD


def solicited_node(address: IPv6Address | str) -> IPv6Address:
    """ff02::1:ffXX:XXXX, the group an NS for `address` is sent to (RFC 4291 2.7.1)."""
    low = int(IPv6Address(address)) & 0xFFFFFF
    return IPv6Address(int(IPv6Address("ff02::1:ff00:0")) | low)


def multicast_mac(group: IPv6Address | str) -> bytes:
    """33:33 and the group's last 32 bits (RFC 2464 section 7)."""
    return b"\x33\x33" + IPv6Address(group).packed[12:]


def lla_option(kind: int, mac: bytes | str) -> bytes:
    """A source (1) or target (2) link-layer address option for Ethernet (RFC 4861 4.6.1)."""
    return bytes([kind, 1]) + as_mac(mac)


def ndp_frame(
    icmp_type: int,
    src: IPv6Address | str,
    dst: IPv6Address | str,
    body: bytes,
    *,
    eth_src: bytes | str,
    eth_dst: bytes | str | None = None,
    hop_limit: int = 255,
    code: int = 0,
    checksum: int | None = None,
    vlan: int | None = None,
    outer_vlan: int | None = None,
) -> bytes:
    """An Ethernet frame with an IPv6 packet with one ICMPv6 message of `icmp_type`.

    `body` is what follows the 4-byte ICMPv6 header (flags, target, options). Every field
    is explicit so tests can build malformed messages; `checksum` overrides the computed one.
    `eth_dst` defaults to the destination address's multicast MAC.
    """
    icmp = dpkt.icmp6.ICMP6(type=icmp_type, code=code, sum=checksum or 0, data=body)
    ip6 = dpkt.ip6.IP6(
        v=6, nxt=58, hlim=hop_limit, src=IPv6Address(src).packed, dst=IPv6Address(dst).packed,
        data=icmp, plen=len(bytes(icmp)),
    )
    packet = bytes(ip6)
    destination = IPv6Address(dst)
    if eth_dst is None:
        eth_dst = multicast_mac(destination) if destination.is_multicast else b"\x02" + b"\0" * 5
    header = ethernet_header(as_mac(eth_dst), as_mac(eth_src), _ETH_TYPE_IPV6, vlan,
                             outer_vlan)
    return header + packet


def neighbor_solicitation(
    src: IPv6Address | str,
    target: IPv6Address | str,
    mac: bytes | str,
    *,
    dst: IPv6Address | str | None = None,
    source_lla: bytes | str | None = None,
    **frame: Any,
) -> bytes:
    """An NS for `target` from `src` (`::` makes a DAD probe) sent by `mac`.

    The source link-layer option carries `source_lla`, by default `mac` unless `src` is `::`
    (RFC 4861 4.3: it must not be there then). `dst` defaults to the target's solicited-node
    group. `frame` goes to `ndp_frame` (hop_limit, vlan, eth_dst, ...).
    """
    options = b""
    lla = source_lla if source_lla is not None else (
        None if IPv6Address(src) == UNSPECIFIED else mac)
    if lla is not None:
        options = lla_option(1, lla)
    body = b"\0" * 4 + IPv6Address(target).packed + options
    return ndp_frame(NEIGHBOR_SOLICITATION, src, dst or solicited_node(target), body,
                     eth_src=mac, **frame)


def neighbor_advertisement(
    target: IPv6Address | str,
    mac: bytes | str,
    *,
    src: IPv6Address | str | None = None,
    dst: IPv6Address | str = ALL_NODES,
    router: bool = False,
    solicited: bool = False,
    override: bool = True,
    target_lla: bytes | str | bool | None = True,
    **frame: Any,
) -> bytes:
    """An NA "target is at mac" from `src` (default: the target itself) sent by `mac`.

    Defaults make an unsolicited announcement (RFC 4861 7.2.6: all-nodes, O set, target
    link-layer option). `target_lla=False` leaves the option out; a MAC puts that one in.
    """
    flags = (0x80 if router else 0) | (0x40 if solicited else 0) | (0x20 if override else 0)
    options = b""
    if target_lla is True:
        options = lla_option(2, mac)
    elif target_lla:
        options = lla_option(2, target_lla)
    body = bytes([flags, 0, 0, 0]) + IPv6Address(target).packed + options
    return ndp_frame(NEIGHBOR_ADVERTISEMENT, src or target, dst, body, eth_src=mac,
                     **frame)


def router_advertisement(src: IPv6Address | str, mac: bytes | str, **frame: Any) -> bytes:
    """A minimal RA from `src` (a link-local address) to all-nodes with a source LLA option:
    hop limit 64, no flags, router lifetime 1800 s, no prefix."""
    body = struct.pack("!BBHII", 64, 0, 1800, 0, 0) + lla_option(1, mac)
    return ndp_frame(ROUTER_ADVERTISEMENT, src, ALL_NODES, body, eth_src=mac,
                     **frame)
