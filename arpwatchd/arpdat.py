"""LBL arpwatch's arp.dat format, both ways, so operators keep their history when they switch.

One station per line, tab separated: MAC, IP, epoch seconds, then optionally the hostname and
(Debian's arpwatch) the interface. arpwatch prints MACs without zero padding (0:1b:21:a:b:c).
Parsing is total: a bad line becomes an `ArpDatError` naming its line number; the rest of the
file is still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from arpwatchd.addresses import ip_text, parse_ip, parse_mac
from arpwatchd.tracker import BindingRecord


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


def parse(lines: Iterable[str]) -> Iterator[ArpDatEntry | ArpDatError]:
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
        try:
            ip = parse_ip(fields[1])
        except ValueError:
            yield ArpDatError(number, line, "bad IPv4 address")
            continue
        try:
            seen = float(fields[2])
        except ValueError:
            yield ArpDatError(number, line, "bad time")
            continue
        hostname = fields[3].strip() if len(fields) > 3 else ""
        interface = fields[4].strip() if len(fields) > 4 else ""
        yield ArpDatEntry(mac, ip, seen, hostname, interface)


def arpwatch_mac(mac: bytes) -> str:
    """arpwatch's own spelling: hex without zero padding."""
    return ":".join(f"{b:x}" for b in mac)


def format_line(record: BindingRecord, hostname: str = "") -> str:
    fields = [arpwatch_mac(record.mac), ip_text(record.ip), str(int(record.last_seen))]
    if hostname or record.interface:
        fields.append(hostname)
    if record.interface:
        fields.append(record.interface)
    return "\t".join(fields)


def to_record(entry: ArpDatEntry, interface: str, vlan: int | None = None) -> BindingRecord:
    return BindingRecord(
        interface=entry.interface or interface,
        vlan=vlan,
        ip=entry.ip,
        mac=entry.mac,
        first_seen=entry.seen,
        last_seen=entry.seen,
    )
