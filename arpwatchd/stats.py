"""Plain counters the sensor loop keeps, read by the metrics collector on its own thread.

The hot path only adds to dicts of ints once per batch; Prometheus objects are built at
scrape time from a copy (the collector pattern), so scrapes never slow capture and no
metric library is imported here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from arpwatchd.tracker import TrackerStats


@dataclass
class CaptureState:
    received: int = 0
    dropped: int = 0
    interface_dropped: int = 0
    up: bool = True
    last_arp: float | None = None
    restarts: int = 0


@dataclass
class SensorStats:
    """Everything the metrics endpoint shows. Updated by the loop, copied by scrapes."""

    packets: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(interface, kind) -> ARP frames: request, reply, announcement, probe, invalid."""
    ndp_packets: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(interface, kind) -> IPv6 neighbour discovery messages: `NdpKind` values, invalid."""
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(interface, reason) -> frames that were not usable ARP or NDP (not_ndp: IPv6 but no
    neighbour discovery; invalid NDP also by its `NdpProblem`)."""
    events: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(event, severity, family) -> events generated, including those later suppressed."""
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(event, cause) -> events not emitted; cause is rate_limit or rule."""
    failovers: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(interface, vlan) -> failover events."""
    captures: dict[str, CaptureState] = field(default_factory=dict)
    store_write_errors: int = 0
    store_writes: int = 0
    store_events_dropped: int = 0
    """Events the history lost because the store could not be written for too long."""
    frame_errors: int = 0
    defense_sent: Counter[str] = field(default_factory=Counter)
    defense_last_word: Counter[str] = field(default_factory=Counter)
    """interface -> defense frames sent as the last word after an intruder's last claim."""
    defense_failures: Counter[str] = field(default_factory=Counter)
    """interface -> defense_failed events (the intruder kept claiming after defend_max)."""
    defense_send_errors: Counter[str] = field(default_factory=Counter)
    """interface -> defense frames libpcap could not send."""
    tracker: TrackerStats | None = None
    outputs: Callable[[], dict[str, int]] | None = None
    """Counters of the optional outputs (syslog, hook), read at scrape time."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def capture(self, name: str) -> CaptureState:
        state = self.captures.get(name)
        if state is None:
            state = self.captures[name] = CaptureState()
        return state
