"""Suppression rules: events an operator has accepted (a proxy-ARP router, a DHCP pool).

A rule matches on any combination of event type, IP or network, MAC or MAC prefix, and VLAN,
optionally until an expiry time. Suppressed events are still counted in metrics and still
change state; they are only not emitted. Pure: the event's own time decides expiry.
"""

from __future__ import annotations

from dataclasses import dataclass

from arpwatchd.addresses import parse_address
from arpwatchd.events import Event, EventKind


@dataclass(frozen=True, slots=True)
class SuppressRule:
    events: frozenset[EventKind] = frozenset()
    networks: tuple[tuple[int, int], ...] = ()
    macs: tuple[str, ...] = ()
    """Lower-case MAC texts or prefixes ("00:11:22" matches that OUI)."""
    vlans: frozenset[int] = frozenset()
    """VLAN ids; 0 matches untagged."""
    until: float | None = None
    comment: str = ""

    def matches(self, event: Event) -> bool:
        if self.until is not None and event.ts >= self.until:
            return False
        if self.events and event.kind not in self.events:
            return False
        if self.vlans and (event.vlan or 0) not in self.vlans:
            return False
        if self.networks:
            if event.ip is None:
                return False
            ip = parse_address(event.ip)
            if not any(ip & mask == net for net, mask in self.networks):
                return False
        if self.macs:
            candidates = [m for m in (event.mac, event.previous_mac) if m]
            if not any(m.startswith(prefix) for m in candidates for prefix in self.macs):
                return False
        return True


class Suppressor:
    def __init__(self, rules: tuple[SuppressRule, ...] = ()) -> None:
        self.rules = rules

    def split(self, events: list[Event]) -> tuple[list[Event], list[Event]]:
        """(events to emit, events suppressed)."""
        if not self.rules:
            return events, []
        kept: list[Event] = []
        dropped: list[Event] = []
        for event in events:
            if event.kind is not EventKind.EVENTS_SUPPRESSED and any(
                rule.matches(event) for rule in self.rules
            ):
                dropped.append(event)
            else:
                kept.append(event)
        return kept, dropped
