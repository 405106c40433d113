"""Events: the sensor's output vocabulary, and the rate limit that keeps a flood from flooding it.

Every consumer (JSON lines, SQLite history, metrics, syslog, defense) reads the same `Event`
value; the field names and event names are the contract in DESIGN.md section 3, which
dashboards and alert rules depend on. The limiter is pure like the tracker: its clock is the
events' own timestamps, so replay and live capture suppress the same events.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

INF = float("inf")


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class EventKind(StrEnum):
    """Closed list of event names; the value is the label used in logs, the store and metrics."""

    NEW_STATION = "new_station"
    NEW_ACTIVITY = "new_activity"
    CHANGED_MAC = "changed_mac"
    FAILOVER = "failover"
    CONFLICT = "conflict"
    CONFLICT_RESOLVED = "conflict_resolved"
    REUSED_MAC = "reused_mac"
    PROBE_IN_USE = "probe_in_use"
    ETHERNET_MISMATCH = "ethernet_mismatch"
    BOGON = "bogon"
    INVALID_ARP = "invalid_arp"
    INVALID_NDP = "invalid_ndp"
    ARP_FLOOD = "arp_flood"
    ARP_SCAN = "arp_scan"
    DEFENSE_SENT = "defense_sent"
    DEFENSE_FAILED = "defense_failed"
    EVENTS_SUPPRESSED = "events_suppressed"

    @property
    def severity(self) -> Severity:
        return _SEVERITY[self]


_SEVERITY = {
    EventKind.NEW_STATION: Severity.INFO,
    EventKind.NEW_ACTIVITY: Severity.INFO,
    EventKind.CHANGED_MAC: Severity.WARNING,
    EventKind.FAILOVER: Severity.INFO,
    EventKind.CONFLICT: Severity.CRITICAL,
    EventKind.CONFLICT_RESOLVED: Severity.INFO,
    EventKind.REUSED_MAC: Severity.WARNING,
    EventKind.PROBE_IN_USE: Severity.WARNING,
    EventKind.ETHERNET_MISMATCH: Severity.WARNING,
    EventKind.BOGON: Severity.WARNING,
    EventKind.INVALID_ARP: Severity.WARNING,
    EventKind.INVALID_NDP: Severity.WARNING,
    EventKind.ARP_FLOOD: Severity.WARNING,
    EventKind.ARP_SCAN: Severity.WARNING,
    EventKind.DEFENSE_SENT: Severity.WARNING,
    EventKind.DEFENSE_FAILED: Severity.CRITICAL,
    EventKind.EVENTS_SUPPRESSED: Severity.WARNING,
}


class ConflictReason(StrEnum):
    BOTH_ACTIVE = "both_active"
    ANNOUNCEMENT_ANSWERED = "announcement_answered"
    OWNER_DEFENDED = "owner_defended"
    UNSOLICITED_TAKEOVER = "unsolicited_takeover"
    REPLY_TARGET = "reply_target"
    SPLIT_BRAIN = "split_brain"
    OWNED_ADDRESS_CLAIMED = "owned_address_claimed"


class Event(NamedTuple):
    """One thing the sensor reports. Addresses are already in their printed form.

    Immutable; a NamedTuple rather than a frozen dataclass because a flood builds one per
    frame (most of them then rate limited) and this costs a third as much to build.

    `ts` is seconds since the epoch taken from packet time (or the tick that ended a hold),
    `mac` is the MAC the event is about (the new owner, the prober, the flooder),
    `previous_mac` the other side (old owner, the other conflicting MAC, the address owner for
    probe_in_use). `since` is when a change or conflict began, `duration` how long a resolved
    conflict lasted, `suspect` the MAC the evidence points at in a conflict. `family` is
    "ipv4" (ARP) or "ipv6" (neighbour discovery): the family of `ip`, or of the frames that
    raised an event without one (flood, scan).
    """

    ts: float
    kind: EventKind
    interface: str
    vlan: int | None
    ip: str | None
    mac: str | None
    previous_mac: str | None = None
    reason: str | None = None
    suspect: str | None = None
    count: int | None = None  # type: ignore[assignment]  # shadows tuple.count, by design
    since: float | None = None
    duration: float | None = None
    suppressed_event: EventKind | None = None
    family: str = "ipv4"

    @property
    def severity(self) -> Severity:
        return self.kind.severity

    def to_dict(self, vendor: str | None = None) -> dict[str, object]:
        """The JSON object of DESIGN.md section 3; optional fields appear only when set."""
        out: dict[str, object] = {
            "ts": format_ts(self.ts),
            "event": self.kind.value,
            "severity": self.kind.severity.value,
            "interface": self.interface,
            "vlan": self.vlan,
            "ip": self.ip,
            "mac": self.mac,
            "family": self.family,
        }
        if self.previous_mac is not None:
            out["previous_mac"] = self.previous_mac
        if self.reason is not None:
            out["reason"] = self.reason
        if self.suspect is not None:
            out["suspect"] = self.suspect
        if vendor is not None:
            out["vendor"] = vendor
        if self.count is not None:
            out["count"] = self.count
        if self.since is not None:
            out["since"] = format_ts(self.since)
        if self.duration is not None:
            out["duration"] = round(self.duration, 6)
        if self.suppressed_event is not None:
            out["suppressed_event"] = self.suppressed_event.value
        return out

    def to_json(self, vendor: str | None = None) -> str:
        return json.dumps(self.to_dict(vendor), separators=(",", ":"))


def format_ts(ts: float) -> str:
    """RFC 3339 in UTC with microseconds, e.g. 2026-11-26T12:52:21.000123Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventLimiter:
    """Lets at most `limit` events of each kind through per `window` seconds of event time.

    What it drops is summarised by one `events_suppressed` event per kind and window, so a
    flood of random addresses costs a few log lines, not millions. Events that end a state
    (conflict_resolved) and the summaries themselves are never dropped, so an operator never
    sees a conflict start without its end.
    """

    NEVER_DROPPED = frozenset({EventKind.CONFLICT_RESOLVED, EventKind.EVENTS_SUPPRESSED})

    def __init__(self, limit: int = 200, window: float = 10.0) -> None:
        self.limit = limit
        self.window = window
        self._window_start: dict[EventKind, float] = {}
        self._oldest = INF
        """The earliest of `_window_start` (no window ends before it has, see `filter`)."""
        self._passed: dict[EventKind, int] = {}
        self._dropped: dict[EventKind, Event] = {}
        self._dropped_count: dict[EventKind, int] = {}
        self.dropped_now: dict[EventKind, int] = {}
        """What the last `filter` call dropped, by kind (for metrics)."""

    def filter(self, events: list[Event]) -> list[Event]:
        """Returns the events to emit, with suppression summaries in time order."""
        dropped_now: dict[EventKind, int] = {}
        self.dropped_now = dropped_now
        limit = self.limit
        if limit <= 0:
            return events
        out: list[Event] = []
        window_start, passed, never = self._window_start, self._passed, self.NEVER_DROPPED
        for event in events:
            ts = event.ts
            # a window ends at the first event `window` after its start; float subtraction
            # is monotonic, so none ends while the oldest has not
            if ts - self._oldest >= self.window:
                self._close_windows(ts, out)
            kind = event.kind
            if kind in never:
                out.append(event)
                continue
            if kind not in window_start:
                window_start[kind] = ts
                passed[kind] = 0
                self._oldest = min(self._oldest, ts)
            if passed[kind] < limit:
                passed[kind] += 1
                out.append(event)
            else:
                self._dropped.setdefault(kind, event)
                self._dropped_count[kind] = self._dropped_count.get(kind, 0) + 1
                dropped_now[kind] = dropped_now.get(kind, 0) + 1
        return out

    def surely_drops(self, kind: EventKind, latest: float) -> bool:
        """Whether the next `filter` will drop an event of `kind`, given that neither it nor
        any event before it in that call is later than `latest`: its window is full and
        stays open until then. The tracker then builds a bare event (`Tracker.gate`): under
        a flood of new stations, formatting addresses nobody will read was most of an
        event's cost. Only valid while every event reaches `filter` (no suppression rules,
        which read the addresses and come first)."""
        start = self._window_start.get(kind)
        return (
            start is not None
            and latest - start < self.window
            and self._passed[kind] >= self.limit > 0
            and kind not in self.NEVER_DROPPED
        )

    def flush(self, now: float) -> list[Event]:
        """Closes windows that ended by `now` (a clock tick or the end of a replay)."""
        out: list[Event] = []
        self._close_windows(now, out)
        return out

    def _close_windows(self, now: float, out: list[Event]) -> None:
        if not self._window_start:
            return
        for kind, start in list(self._window_start.items()):
            if now - start < self.window:
                continue
            del self._window_start[kind]
            first = self._dropped.pop(kind, None)
            count = self._dropped_count.pop(kind, 0)
            if first is not None:
                out.append(
                    Event(
                        ts=start + self.window,
                        kind=EventKind.EVENTS_SUPPRESSED,
                        interface=first.interface,
                        vlan=first.vlan,
                        ip=None,
                        mac=None,
                        count=count,
                        since=start,
                        suppressed_event=kind,
                        family=first.family,
                    )
                )
        self._oldest = min(self._window_start.values(), default=INF)
