"""MAC and IP helpers shared by the decoder, tracker, config and outputs.

Addresses travel through the core as raw values (6-byte `bytes` for MACs, `int` for IPs)
because they are hashed millions of times; they become text only when an event is printed.
An IPv4 address is its 32-bit number; an IPv6 address is its 128-bit number shifted left by
64 with bit 200 set (`V6`, see `ip6_value`), so the two families never share a value,
`ip > 0xFFFFFFFF` tells them apart, and bits 32-63 stay free for the tracker's domain id
(a key is `dom << 32 | ip` for both families: docs/ipv6.md).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from enum import StrEnum

ZERO_MAC = b"\x00" * 6
BROADCAST_MAC = b"\xff" * 6

_PACK_IP = struct.Struct("!I")


class VirtualRouter(StrEnum):
    """First-hop redundancy protocols whose virtual MAC follows the address on failover."""

    VRRP = "vrrp"
    HSRP = "hsrp"
    GLBP = "glbp"


def mac_text(mac: bytes) -> str:
    return mac.hex(":")


def parse_mac(text: str) -> bytes:
    """Accepts 00:11:22:33:44:55, 00-11-22-33-44-55, 0011.2233.4455 and arpwatch's 0:1:2:3:4:5.

    Raises:
        ValueError: the text is not a MAC address.
    """
    cleaned = text.strip().lower()
    for sep in (":", "-"):
        parts = cleaned.split(sep)
        if len(parts) == 6:
            if not all(1 <= len(p) <= 2 for p in parts):
                break
            try:
                return bytes(int(p, 16) for p in parts)
            except ValueError:
                break
    dotted = cleaned.split(".")
    if len(dotted) == 3 and all(len(p) == 4 for p in dotted):
        try:
            return bytes.fromhex("".join(dotted))
        except ValueError:
            pass
    if len(cleaned) == 12:
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            pass
    raise ValueError(f"not a MAC address: {text!r}")


V6 = 1 << 200
"""Marks an IPv6 address value: `V6 | int(IPv6Address) << 64`."""
_V6_MASK = (1 << 128) - 1


def ip6_value(address: ipaddress.IPv6Address) -> int:
    """The core's value for an IPv6 address."""
    return V6 | int(address) << 64


def ip6_from_number(number: int) -> int:
    """The core's value for an IPv6 address given as its 128-bit number."""
    return V6 | number << 64


def ip6_number(ip: int) -> int:
    """The 128-bit number of an IPv6 address value (`ip6_value`)."""
    return ip >> 64 & _V6_MASK


def is_ipv6(ip: int) -> bool:
    return ip > 0xFFFFFFFF


def family_of(ip: int) -> str:
    """"ipv4" or "ipv6": the `family` field of events and the metric label."""
    return "ipv6" if ip > 0xFFFFFFFF else "ipv4"


def ip_text(ip: int) -> str:
    """Dotted IPv4, or RFC 5952 text for an IPv6 value (`ip6_value`)."""
    if ip > 0xFFFFFFFF:
        return str(ipaddress.IPv6Address(ip >> 64 & _V6_MASK))
    return socket.inet_ntoa(_PACK_IP.pack(ip))


def parse_ip(text: str) -> int:
    """Raises ValueError for anything that is not a dotted IPv4 address."""
    return int(ipaddress.IPv4Address(text.strip()))


_NO_ZONE = "no zone index: the domain is 'interface' and 'vlan'"
"""fe80::1%eth0 parses in Python; a rule's interface is its own key, so the zone is refused."""


def parse_network(text: str) -> tuple[int, int]:
    """An address or a network of either family (10.0.0.5, 10.0.0.0/24, fd00::/64, fd00::5)
    as (network, netmask) values: an address matches when `ip & netmask == network`.

    An IPv6 network and netmask are core values (`ip6_value`, so both carry `V6`); an IPv4
    netmask carries `V6` too, so no IPv6 value matches an IPv4 network, 0.0.0.0/0 included,
    and no IPv4 value an IPv6 one (an IPv4 value has no `V6` bit). `network_text` prints one.

    Raises:
        ValueError: neither an IPv4 nor an IPv6 address or network.
    """
    cleaned = text.strip()
    if "%" in cleaned:
        raise ValueError(f"not an IPv4 or IPv6 network: {text!r} ({_NO_ZONE})")
    try:
        net = ipaddress.ip_network(cleaned, strict=False)
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 network: {text!r}") from None
    if net.version == 6:
        return ip6_from_number(int(net.network_address)), ip6_from_number(int(net.netmask))
    return int(net.network_address), int(net.netmask) | V6


def network_text(prefix: tuple[int, int]) -> str:
    """A `parse_network` value as 10.0.0.0/24 or, RFC 5952, fd00::/64."""
    net, mask = prefix
    bits = ip6_number(mask) if net > 0xFFFFFFFF else mask & 0xFFFFFFFF
    return f"{ip_text(net)}/{bits.bit_count()}"


def parse_address(text: str) -> int:
    """An IPv4 or IPv6 address (any spelling) as its core value.

    Raises:
        ValueError: neither.
    """
    if "%" in text:
        raise ValueError(f"not an IPv4 or IPv6 address: {text!r} ({_NO_ZONE})")
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 address: {text!r}") from None
    if address.version == 6:
        return ip6_from_number(int(address))
    return int(address)


def parse_mac_prefix(text: str) -> str:
    """A MAC or its leading octets, any usual spelling, to lower-case colon form.

    Raises:
        ValueError: not a MAC or a prefix of whole octets.
    """
    cleaned = text.strip().lower()
    if re.fullmatch(r"[0-9a-f]{4}(\.[0-9a-f]{4}){0,2}", cleaned):  # Cisco 0011.2233.4455
        cleaned = cleaned.replace(".", "")
        parts = [cleaned[i:i + 2] for i in range(0, len(cleaned), 2)]
    else:
        parts = re.split(r"[:-]", cleaned)
    if not 1 <= len(parts) <= 6 or not all(re.fullmatch(r"[0-9a-f]{1,2}", p) for p in parts):
        raise ValueError(f"not a MAC address or prefix: {text!r}")
    return ":".join(p.zfill(2) for p in parts)


def is_multicast_mac(mac: bytes) -> bool:
    return bool(mac[0] & 1)


def virtual_router(mac: bytes) -> VirtualRouter | None:
    """VRRP 00:00:5e:00:01:xx, HSRP 00:00:0c:07:ac:xx and 00:00:0c:9f:fx:xx (v2),
    GLBP 00:07:b4:00:xx:xx."""
    if mac[:5] == b"\x00\x00\x5e\x00\x01":
        return VirtualRouter.VRRP
    hsrp_v2 = mac[:4] == b"\x00\x00\x0c\x9f" and mac[4] >> 4 == 0xF
    if mac[:5] == b"\x00\x00\x0c\x07\xac" or hsrp_v2:
        return VirtualRouter.HSRP
    if mac[:4] == b"\x00\x07\xb4\x00":
        return VirtualRouter.GLBP
    return None


def sender_ip_problem(ip: int) -> str | None:
    """Why `ip` can never be a station's own address, or None. 0.0.0.0 (probe) is handled apart."""
    if ip == 0xFFFFFFFF:
        return "sender_ip_broadcast"
    top = ip >> 24
    if 224 <= top <= 239:
        return "sender_ip_multicast"
    if top == 127:
        return "sender_ip_loopback"
    if top == 0:
        return "sender_ip_this_network"
    return None


def sender_mac_problem(mac: bytes) -> str | None:
    if mac == ZERO_MAC:
        return "sender_mac_zero"
    if mac == BROADCAST_MAC:
        return "sender_mac_broadcast"
    if mac[0] & 1:
        return "sender_mac_multicast"
    return None
