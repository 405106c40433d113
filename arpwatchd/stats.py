"""Plain counters the sensor loop keeps, read by the metrics collector on its own thread.

The hot path only adds to dicts of ints once per batch; Prometheus objects are built at
scrape time from a copy (the collector pattern), so scrapes never slow capture and no
metric library is imported here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arpwatchd.tracker import TrackerStats

# Plain classes, not dataclasses: every command that runs the sensor builds these once, and
# defining a dataclass compiles its generated methods at import (start-up, issue 12).


class CaptureState:
    """One interface's (or capture file's) counters and state."""

    def __init__(self) -> None:
        self.received = 0
        self.dropped = 0
        self.interface_dropped = 0
        self.up = True
        self.last_arp: float | None = None
        self.restarts = 0


class SensorStats:
    """Everything the metrics endpoint shows. Updated by the loop, copied by scrapes."""

    def __init__(self) -> None:
        self.packets: Counter[tuple[str, str]] = Counter()
        """(interface, kind) -> ARP frames: request, reply, announcement, probe, invalid."""
        self.ndp_packets: Counter[tuple[str, str]] = Counter()
        """(interface, kind) -> IPv6 neighbour discovery messages: `NdpKind` values, invalid."""
        self.skipped: Counter[tuple[str, str]] = Counter()
        """(interface, reason) -> frames that were not usable ARP or NDP (not_ndp: IPv6 but no
        neighbour discovery; invalid NDP also by its `NdpProblem`)."""
        self.events: Counter[tuple[str, str, str]] = Counter()
        """(event, severity, family) -> events generated, including those later suppressed."""
        self.suppressed: Counter[tuple[str, str]] = Counter()
        """(event, cause) -> events not emitted; cause is rate_limit or rule."""
        self.failovers: Counter[tuple[str, str]] = Counter()
        """(interface, vlan) -> failover events."""
        self.captures: dict[str, CaptureState] = {}
        self.store_write_errors = 0
        self.store_writes = 0
        self.store_events_dropped = 0
        """Events the history lost because the store could not be written for too long."""
        self.frame_errors = 0
        self.defense_sent: Counter[tuple[str, str]] = Counter()
        """(interface, family) -> defense frames sent: ARP announcements (ipv4), neighbour
        advertisements (ipv6)."""
        self.defense_last_word: Counter[tuple[str, str]] = Counter()
        """(interface, family) -> defense frames sent as the last word after an intruder's
        last claim."""
        self.defense_failures: Counter[tuple[str, str]] = Counter()
        """(interface, family) -> defense_failed events (the intruder kept claiming after
        defend_max)."""
        self.defense_send_errors: Counter[tuple[str, str]] = Counter()
        """(interface, family) -> defense frames libpcap could not send."""
        self.tracker: TrackerStats | None = None
        self.outputs: Callable[[], dict[str, int]] | None = None
        """Counters of the optional outputs (syslog, hook), read at scrape time."""
        self.lock = threading.Lock()

    def capture(self, name: str) -> CaptureState:
        state = self.captures.get(name)
        if state is None:
            state = self.captures[name] = CaptureState()
        return state
