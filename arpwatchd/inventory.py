"""What the operator commands `bindings` and `history` print: filters, tables, JSON lines.

Pure: it formats `BindingRecord`s and stored event JSON handed to it, so the same output
comes from a live sensor's store, a copy of it, or a test. Tables are for people (UTC times
to the second, vendor names shortened); `--json` gives one object per line for scripts, with
RFC 3339 times like the events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arpwatchd.addresses import ip_text, mac_text
from arpwatchd.events import format_ts
from arpwatchd.tracker import BindingRecord

VendorOf = Callable[[str | None], str | None]

VENDOR_WIDTH = 24


@dataclass(frozen=True, slots=True)
class BindingFilter:
    """Every given condition must hold; None means any."""

    network: tuple[int, int] | None = None
    """(network address, netmask) as integers."""
    mac_prefix: str | None = None
    """Lower-case colon form: a whole MAC or leading octets ("00:1c:7f")."""
    vlan: int | None = None
    """0 for untagged."""
    interface: str | None = None

    def matches(self, b: BindingRecord) -> bool:
        if self.network is not None and b.ip & self.network[1] != self.network[0]:
            return False
        if self.mac_prefix is not None and not mac_text(b.mac).startswith(self.mac_prefix):
            return False
        if self.vlan is not None and (b.vlan or 0) != self.vlan:
            return False
        return self.interface is None or b.interface == self.interface


def select(bindings: Iterable[BindingRecord], where: BindingFilter) -> list[BindingRecord]:
    """The matching bindings sorted by interface, VLAN (untagged first) and address."""
    found = [b for b in bindings if where.matches(b)]
    found.sort(key=lambda b: (b.interface, b.vlan or 0, b.ip))
    return found


def binding_dict(b: BindingRecord, vendor_of: VendorOf) -> dict[str, Any]:
    mac = mac_text(b.mac)
    return {
        "ip": ip_text(b.ip),
        "mac": mac,
        "vendor": vendor_of(mac),
        "interface": b.interface,
        "vlan": b.vlan,
        "first_seen": format_ts(b.first_seen),
        "last_seen": format_ts(b.last_seen),
        "state": b.state,
        "previous": [mac_text(m) for m in b.previous],
    }


def binding_table(bindings: list[BindingRecord], vendor_of: VendorOf) -> list[str]:
    header = ["IP", "MAC", "VENDOR", "INTERFACE", "VLAN", "FIRST SEEN (UTC)",
              "LAST SEEN (UTC)", "STATE", "PREVIOUS MACS"]
    rows = [
        [ip_text(b.ip), mac_text(b.mac), _short(vendor_of(mac_text(b.mac))), b.interface,
         "-" if b.vlan is None else str(b.vlan), _when(b.first_seen), _when(b.last_seen),
         b.state, " ".join(mac_text(m) for m in b.previous) or "-"]
        for b in bindings
    ]
    return _table(header, rows)


def history_table(events: Iterable[dict[str, Any]]) -> list[str]:
    header = ["TIME (UTC)", "EVENT", "SEVERITY", "INTERFACE", "VLAN", "IP", "MAC", "OTHER MAC",
              "DETAILS"]
    rows = []
    for e in events:
        details = [f"{k}={e[k]}" for k in ("reason", "suspect", "count", "since", "duration",
                                            "vendor") if e.get(k) is not None]
        rows.append([
            str(e.get("ts", "")).replace("T", " ")[:19], str(e.get("event", "")),
            str(e.get("severity", "")), str(e.get("interface", "")),
            "-" if e.get("vlan") is None else str(e["vlan"]), str(e.get("ip") or "-"),
            str(e.get("mac") or "-"), str(e.get("previous_mac") or "-"),
            " ".join(details) or "-",
        ])
    return _table(header, rows)


def with_vendor(text: str, vendor_of: VendorOf) -> dict[str, Any]:
    """A stored event's JSON object, with the vendor of its MAC added when the store has none."""
    event: dict[str, Any] = json.loads(text)
    if "vendor" not in event:
        vendor = vendor_of(event.get("mac"))
        if vendor is not None:
            event["vendor"] = vendor
    return event


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(vendor: str | None) -> str:
    if not vendor:
        return "-"
    return vendor if len(vendor) <= VENDOR_WIDTH else vendor[:VENDOR_WIDTH - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]
