"""Packing a batch of binding changes into one journal entry, and reading it back; pure.

A row per binding costs SQLite a B-tree insert each and Python a tuple of text each (2.3-4.6 s
for a million new stations, DESIGN.md section 8). The store instead appends each batch as one
journal entry of packed columns (array and bytes, built and read in C: ~31 bytes a binding)
and folds entries into the bindings table later, off the hot path (`store.Store.compact`).
Previous owners and unsettled states are rare, so they ride in small side columns; so do
IPv6 addresses (`ipv6`: their `ips` slot holds 0 and the side column the address, since
neighbour discovery is a small share of the bindings and the packed column stays IPv4-sized).
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterable
from itertools import repeat
from typing import NamedTuple

from arpwatchd.addresses import mac_text, parse_mac
from arpwatchd.state import BindingRecord, new_tuple

_STATES = ("ok", "hold", "conflict")
_STATE_CODE = {s: i for i, s in enumerate(_STATES)}
_SWAP = sys.byteorder == "big"
"""Entries are little-endian, so a state file moves between machines."""

Key = tuple[str, int, int]
"""(interface, vlan or 0, ip): a binding's key in the store."""


class Entry(NamedTuple):
    """One journal entry: the columns of the `journal` table after `seq`."""

    records: int
    domains: str
    doms: bytes
    ips: bytes
    macs: bytes
    firsts: bytes
    lasts: bytes
    states: bytes
    previous: str
    removed_doms: bytes
    removed_ips: bytes
    ipv6: str = ""
    """JSON {"u": [[index, hex]], "r": [[index, hex]]}: the IPv6 address values
    (`addresses.ip6_value`) of upserts and removals by index; "" when there are none (schema 2
    entries)."""


def _packed(typecode: str, values: Iterable[float] | Iterable[int]) -> bytes:
    column = array(typecode, values)
    if _SWAP:
        column.byteswap()
    return column.tobytes()


def _unpacked(typecode: str, data: bytes) -> array:  # type: ignore[type-arg]
    column = array(typecode)
    column.frombytes(data)
    if _SWAP:
        column.byteswap()
    return column


def pack(upserts: list[BindingRecord], removed: list[tuple[str, int | None, int]]) -> Entry:
    """One entry for a batch: `upserts` (whole bindings) and `removed` (their keys)."""
    empty: tuple[()] = ()
    interfaces, vlans, ips, macs, firsts, lasts, previous, states = (
        zip(*upserts, strict=True) if upserts else (empty,) * 8)
    gone = [(interface, vlan or 0) for interface, vlan, _ in removed]
    domains = {d: i for i, d in enumerate(dict.fromkeys(
        [*zip(interfaces, (v or 0 for v in vlans), strict=True), *gone]))}
    with_previous = [(i, " ".join(map(mac_text, p))) for i, p in enumerate(previous) if p]
    removed_ips = [ip for _, _, ip in removed]
    v6_up = [(i, format(ip, "x")) for i, ip in enumerate(ips) if ip > 0xFFFFFFFF]
    v6_gone = [(i, format(ip, "x")) for i, ip in enumerate(removed_ips) if ip > 0xFFFFFFFF]
    if v6_up or v6_gone:
        ips = tuple(0 if ip > 0xFFFFFFFF else ip for ip in ips)
        removed_ips = [0 if ip > 0xFFFFFFFF else ip for ip in removed_ips]
    return Entry(
        records=len(upserts) + len(removed),
        domains=json.dumps(list(domains)),
        doms=_packed("H", map(domains.__getitem__,
                              zip(interfaces, (v or 0 for v in vlans), strict=True))),
        ips=_packed("I", ips),
        macs=b"".join(macs),
        firsts=_packed("d", firsts),
        lasts=_packed("d", lasts),
        states=bytes(map(_STATE_CODE.__getitem__, states)),
        previous=json.dumps(with_previous) if with_previous else "",
        removed_doms=_packed("H", map(domains.__getitem__, gone)),
        removed_ips=_packed("I", removed_ips),
        ipv6=json.dumps({"u": v6_up, "r": v6_gone}) if v6_up or v6_gone else "",
    )


def unpack(entry: Entry | tuple[object, ...]) -> tuple[list[BindingRecord], list[Key]]:
    """The bindings and removed keys of one entry, as `pack` got them (vlan 0 as None).

    Raises:
        ValueError: the entry is damaged (columns of different lengths, unknown codes).
    """
    e = Entry(*entry)
    domains = [(str(interface), int(vlan)) for interface, vlan in json.loads(e.domains)]
    doms = _unpacked("H", e.doms)
    ips: list[int] | array = _unpacked("I", e.ips)  # type: ignore[type-arg]
    removed_ips: list[int] | array = _unpacked("I", e.removed_ips)  # type: ignore[type-arg]
    if e.ipv6:
        v6 = json.loads(e.ipv6)
        ips, removed_ips = list(ips), list(removed_ips)
        for i, text in v6["u"]:
            ips[i] = int(text, 16)
        for i, text in v6["r"]:
            removed_ips[i] = int(text, 16)
    n = len(ips)
    if not (len(doms) == len(e.states) == n and len(e.macs) == 6 * n
            and len(e.firsts) == len(e.lasts) == 8 * n):
        raise ValueError("journal entry with columns of different lengths")
    previous: list[tuple[bytes, ...]] = [()] * n
    if e.previous:
        for i, text in json.loads(e.previous):
            previous[i] = tuple(parse_mac(m) for m in text.split())
    interfaces = [domains[d][0] for d in doms]
    vlans = [domains[d][1] or None for d in doms]
    macs = [e.macs[i:i + 6] for i in range(0, 6 * n, 6)]
    states = [_STATES[code] for code in e.states]
    records = list(map(new_tuple, repeat(BindingRecord), zip(
        interfaces, vlans, ips, macs, _unpacked("d", e.firsts), _unpacked("d", e.lasts),
        previous, states, strict=True)))
    removed = [(*domains[d], ip) for d, ip in zip(
        _unpacked("H", e.removed_doms), removed_ips, strict=True)]
    return records, removed


def fold(entries: Iterable[tuple[object, ...]]) -> dict[Key, BindingRecord | None]:
    """What `entries` leave, applied in order: each key's last binding, None if removed."""
    folded: dict[Key, BindingRecord | None] = {}
    for entry in entries:
        records, removed = unpack(entry)
        folded.update(zip([(r.interface, r.vlan or 0, r.ip) for r in records], records,
                          strict=True))
        folded.update(zip(removed, repeat(None)))
    return folded


def replay(base: Iterable[BindingRecord], entries: Iterable[tuple[object, ...]]
           ) -> list[BindingRecord]:
    """The bindings of `base` (the table) with `entries` applied: the table's order, then
    the journal's new keys as they came (least recently made first; readers that show
    bindings sort them, and sorting a million keys would cost seconds at every start)."""
    merged: dict[Key, BindingRecord | None] = {
        (r.interface, r.vlan or 0, r.ip): r for r in base}
    merged.update(fold(entries))
    return [r for r in merged.values() if r is not None]
