"""The BPF expressions the sensor gives libpcap for IPv6 neighbour discovery (docs/ipv6.md).

Apart from `arpwatchd.ndp` (which re-exports them) so that opening a capture costs no import
of the NDP decoder; pure strings, no libpcap here (`capture.py` sets them).
"""

from __future__ import annotations

from arpwatchd.decode import MAX_TAGS

NDP_EXPRESSION = "(icmp6 and ip6[40] >= 133 and ip6[40] <= 136)"
"""RS, RA, NS, NA. `ip6[40]` is the first byte after the fixed IPv6 header: the ICMPv6 type
only when no extension header comes first (libpcap's `icmp6` checks the fixed header's next
header, it does not walk extension headers). The module docstring says what that leaves out."""


def tagged_filter(expression: str, max_tags: int = MAX_TAGS) -> str:
    """`expression` untagged and behind up to `max_tags` VLAN tags, plus deeper stacks (the
    decoder counts those as `too_many_vlan_tags`): `capture.arp_filter`'s construction.

    libpcap's `vlan` shifts the offsets for the rest of the expression, even across `or`, so
    each deeper level nests inside the one before, and ARP and NDP must share one nest
    (`tagged_filter("arp or " + NDP_EXPRESSION)`): two nests joined by `or` would read the
    second one 4 bytes off.
    """
    expr = f"{expression} or vlan"
    for _ in range(max_tags + 1):
        expr = f"{expression} or (vlan and ({expr}))"
    return expr


def ndp_filter(max_tags: int = MAX_TAGS) -> str:
    """The BPF expression for NDP alone, untagged and behind up to `max_tags` tags."""
    return tagged_filter(NDP_EXPRESSION, max_tags)


def arp_and_ndp_filter(max_tags: int = MAX_TAGS) -> str:
    """The one expression a dual-stack sensor sets (phase 2: `capture.py`)."""
    return tagged_filter(f"arp or {NDP_EXPRESSION}", max_tags)
