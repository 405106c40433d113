"""LBL arpwatch's arp.dat format, both ways, so operators keep their history when they switch.

One line per (IP, MAC) pair arpwatch has seen, tab separated: MAC, IP, the last time that MAC
was seen with that IP (epoch seconds), then optionally the hostname and (Debian's arpwatch)
the interface, which is "(from file)" when arpwatch read a capture. An address that changed
hands has several lines; arpwatch sorts them by time, newest first, and the newest is the
current owner. LBL 2.1a15 prints MACs without zero padding (0:1b:21:a:b:c), Debian pads them.

Parsing is total: a bad line becomes an `ArpDatError` naming its line number and the rest of
the file is still read. Merging is pure: `merge` decides what an import does to a binding
already in the store (a newer stored binding keeps its owner and times; only history MACs it
did not know are added), so the store only has to run it inside one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from arpwatchd.addresses import ip_text, mac_text, parse_ip, parse_mac
from arpwatchd.state import MAX_PREVIOUS, BindingRecord

FROM_FILE = "(from file)"
"""Debian arpwatch's interface field for stations learned from a capture file (-r)."""

Key = tuple[str, int | None, int]
"""(interface, vlan, ip): one address in one domain."""

SeenKey = tuple[str, int | None, int, bytes]
"""(interface, vlan, ip, mac): one line of arp.dat."""


@dataclass(frozen=True, slots=True)
class ArpDatEntry:
    mac: bytes
    ip: int
    seen: float
    hostname: str = ""
    interface: str = ""


@dataclass(frozen=True, slots=True)
class ArpDatError:
    line: int
    text: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}: {self.text!r}"


@dataclass(frozen=True, slots=True)
class Station:
    """One (address, MAC) pair with the last time it was seen: one line of arp.dat."""

    interface: str
    vlan: int | None
    ip: int
    mac: bytes
    seen: float
    hostname: str = ""

    @property
    def key(self) -> Key:
        return (self.interface, self.vlan, self.ip)


def parse(lines: Iterable[str]) -> Iterator[ArpDatEntry | ArpDatError]:
    """Entries and errors in file order; blank lines and # comments are skipped."""
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            fields = line.split()
        if len(fields) < 3:
            yield ArpDatError(number, line, "expected MAC, IP and time")
            continue
        try:
            mac = parse_mac(fields[0])
        except ValueError:
            yield ArpDatError(number, line, "bad MAC address")
            continue
        if mac[0] & 1 or mac == b"\x00" * 6:
            yield ArpDatError(number, line, "not a unicast MAC address")
            continue
        try:
            ip = parse_ip(fields[1])
        except ValueError:
            yield ArpDatError(number, line, "bad IPv4 address")
            continue
        seen = _epoch(fields[2])
        if seen is None:
            yield ArpDatError(number, line, "bad time (expected epoch seconds)")
            continue
        hostname = fields[3].strip() if len(fields) > 3 else ""
        interface = fields[4].strip() if len(fields) > 4 else ""
        yield ArpDatEntry(mac, ip, seen, hostname, interface)


def _epoch(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def arpwatch_mac(mac: bytes) -> str:
    """LBL arpwatch's spelling: hex without zero padding (0:1b:21:a:b:c)."""
    return ":".join(f"{b:x}" for b in mac)


def format_line(mac: bytes, ip: int, seen: float, hostname: str = "", interface: str = "") -> str:
    """One line as Debian's arpwatch writes it (padded MAC; hostname, interface when known)."""
    fields = [mac_text(mac), ip_text(ip), str(int(seen))]
    if hostname or interface:
        fields.append(hostname)
    if interface:
        fields.append(interface)
    return "\t".join(fields)


def stations(
    entries: Iterable[ArpDatEntry], interface: str, vlan: int | None = None
) -> dict[Key, list[Station]]:
    """Groups lines by address, newest first, one per MAC (its latest time).

    Args:
        entries: parsed lines.
        interface: the interface of lines that name none or "(from file)".
        vlan: the VLAN of every line (arp.dat has none); None for untagged.
    """
    latest: dict[SeenKey, Station] = {}
    for entry in entries:
        name = entry.interface if entry.interface and entry.interface != FROM_FILE \
            else interface
        station = Station(name, vlan, entry.ip, entry.mac, entry.seen, entry.hostname)
        key = (name, vlan, entry.ip, entry.mac)
        known = latest.get(key)
        if known is None or station.seen > known.seen:
            latest[key] = station
    grouped: dict[Key, list[Station]] = {}
    for station in latest.values():
        grouped.setdefault(station.key, []).append(station)
    for found in grouped.values():
        found.sort(key=lambda s: s.seen, reverse=True)
    return grouped


def merge(stored: BindingRecord | None, found: list[Station]) -> BindingRecord | None:
    """The binding an import leaves for one address, or None to keep the stored one as it is.

    All MACs go on one timeline, newest first: the stored owner at its last time (it wins
    ties), the imported lines at theirs, the stored previous owners at the stored owner's
    first time (they held the address before it). The newest is the owner, the next four
    distinct MACs are `previous`. So a stored binding that is newer than the file keeps its
    owner and times, and the file only adds history MACs it did not know.
    """
    first = found[0]
    timeline: list[tuple[float, int, bytes]] = [(s.seen, 1, s.mac) for s in found]
    if stored is not None:
        timeline.append((stored.last_seen, 0, stored.mac))
        timeline.extend((stored.first_seen, 2 + i, m) for i, m in enumerate(stored.previous))
    timeline.sort(key=lambda t: (-t[0], t[1]))
    order: list[bytes] = []
    for _, _, mac in timeline:
        if mac not in order:
            order.append(mac)
    owner = order[0]
    previous = tuple(order[1:1 + MAX_PREVIOUS])
    last_seen = max(t for t, _, m in timeline if m == owner)
    if stored is not None and owner == stored.mac:
        record = stored._replace(last_seen=last_seen, previous=previous)
        return None if record == stored else record
    return BindingRecord(interface=first.interface, vlan=first.vlan, ip=first.ip, mac=owner,
                         first_seen=last_seen, last_seen=last_seen, previous=previous)


def export_lines(
    bindings: Iterable[BindingRecord], seen: Mapping[SeenKey, tuple[float, str]]
) -> Iterator[str]:
    """arp.dat lines for the bindings, sorted by interface, VLAN and address.

    A VLAN domain is written as interface.VLAN (what arpwatch calls it when it runs on a
    VLAN sub-interface). Times and hostnames of imported lines come from `seen`; a previous
    owner arpwatchd learned itself has no time of its own, so it is written one second before
    the current owner's first time (one more second for each older one), which keeps
    arpwatch's newest-first order.
    """
    for b in sorted(bindings, key=lambda r: (r.interface, r.vlan or 0, r.ip)):
        name = b.interface if b.vlan is None else f"{b.interface}.{b.vlan}"
        known = seen.get((b.interface, b.vlan, b.ip, b.mac))
        yield format_line(b.mac, b.ip, b.last_seen, known[1] if known else "", name)
        before = int(b.first_seen)
        for mac in b.previous:
            known = seen.get((b.interface, b.vlan, b.ip, mac))
            when = int(known[0]) if known else before - 1
            before = min(before, when)
            yield format_line(mac, b.ip, when, known[1] if known else "", name)
