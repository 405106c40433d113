"""What each MAC has been doing: frame rate, scanning, and the evidence that makes it a suspect.

Kept apart from the ownership table because it is keyed by MAC, not by address, and because
a flood of random MACs must only ever cost a bounded table here (oldest entries go first).
Pure: every method takes the packet time.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from arpwatchd.kernel import KERNEL


def trim_oldest(table: dict[Any, Any], cap: int) -> list[Any]:
    """Removes the oldest 1/64 of a full insertion-ordered table (at least one entry).

    In bulk because a CPython dict keeps deleted entries as dummies until it resizes, and
    finding the first live entry walks past them: deleting one at a time from the front under
    a flood is quadratic, deleting a slice at a time is not.
    """
    victims = list(islice(table, max(1, cap // 64)))
    for key in victims:
        del table[key]
    return victims


_NO_WINDOW = -1
_SHARED = -2


class SenderStats:
    """Per-MAC counters. Mutable and slotted: one exists per active MAC, updated per frame.

    The addresses a MAC asked for in its scan window are a set only once it asked for two (or
    the fast path may count them: `share`); until then the one is `scan_first`, so the MACs of
    a flood, each seen once, cost no set (216 bytes each).
    """

    __slots__ = (
        "flood_count",
        "flood_start",
        "flooding",
        "mismatches",
        "owned",
        "pending",
        "scan_first",
        "scan_start",
        "scan_targets",
        "scanning",
        "unannounced",
        "unsolicited",
    )

    def __init__(self, ts: float) -> None:
        self.flood_start = ts
        self.flood_count = 0
        self.flooding = False
        self.scan_start = ts
        self.scan_targets: set[int] | None = None
        """The window's targets; None while they are in `scan_first` (none, or one)."""
        self.scan_first = _NO_WINDOW
        """The window's only target while `scan_targets` is None; `_NO_WINDOW` when no window
        is open, `_SHARED` once the fast path may read the window (then it is a set or None)."""
        self.scanning = False
        self.unsolicited = 0
        self.mismatches = 0
        self.owned = 0
        self.unannounced = 0
        self.pending = 0
        """Frames counted by the fast path, not yet added to flood_count."""

    def share(self) -> None:
        """Readies the scan window for the fast path (`Steady`), which knows only the set:
        None there means no window is open. From then on the window is never lazy again."""
        if self.scan_targets is None and self.scan_first >= 0:
            self.scan_targets = {self.scan_first}
        self.scan_first = _SHARED

    def suspicion(self, holds_contested: bool = False) -> int:
        """Weight of the evidence against this MAC (DESIGN.md section 3, "suspect")."""
        score = 0
        if self.unsolicited:
            score += 4
        if self.mismatches:
            score += 2
        if self.unannounced >= 2:
            score += 1
        if self.owned - holds_contested >= 1:  # another IP of its own besides the contested one
            score += 1
        return score


@dataclass(frozen=True, slots=True)
class RateAlarm:
    mac: bytes
    count: int
    since: float


class Senders:
    """Bounded table of `SenderStats`, with flood and scan detection over fixed windows.

    A window opens at a MAC's first frame and lasts `window` seconds; crossing the threshold
    inside it raises one alarm, and the MAC must spend a whole window under the threshold
    before it can raise another (one alarm per episode, not per frame).
    """

    def __init__(
        self,
        cap: int,
        flood_frames: int,
        flood_window: float,
        scan_targets: int,
        scan_window: float,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self._cap = cap
        self._on_evict = on_evict
        """Called after statistics were evicted: whoever holds a `SenderStats` (the fast
        path's memos, through `Steady`) must let go of it, as a new one replaces it."""
        self._flood_frames = flood_frames
        self._flood_window = flood_window
        self._scan_targets = scan_targets
        self._scan_window = scan_window
        self._stats: dict[bytes, SenderStats] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._stats)

    def reconfigure(
        self, flood_frames: int, flood_window: float, scan_targets: int, scan_window: float
    ) -> None:
        self._flood_frames = flood_frames
        self._flood_window = flood_window
        self._scan_targets = scan_targets
        self._scan_window = scan_window

    def get(self, mac: bytes, ts: float) -> SenderStats:
        stats = self._stats.get(mac)
        if stats is None:
            if len(self._stats) >= self._cap:
                self.evicted += len(trim_oldest(self._stats, self._cap))
                if self._on_evict is not None:
                    self._on_evict()
            stats = self._stats[mac] = SenderStats(ts)
        return stats

    def peek(self, mac: bytes) -> SenderStats | None:
        return self._stats.get(mac)

    def count_frame(self, mac: bytes, ts: float) -> RateAlarm | None:
        stats = self.get(mac, ts)
        if stats.pending:  # frames the fast path counted
            stats.flood_count += stats.pending
            stats.pending = 0
        if ts - stats.flood_start >= self._flood_window:
            if stats.flood_count <= self._flood_frames:
                stats.flooding = False
            stats.flood_start = ts
            stats.flood_count = 0
        stats.flood_count += 1
        if stats.flood_count > self._flood_frames and not stats.flooding:
            stats.flooding = True
            return RateAlarm(mac, stats.flood_count, stats.flood_start)
        return None

    def count_target(self, mac: bytes, target: int, ts: float) -> RateAlarm | None:
        stats = self.get(mac, ts)
        targets = stats.scan_targets
        first = stats.scan_first
        if targets is None and first != _SHARED:  # at most one target so far, in scan_first
            if first == _NO_WINDOW or ts - stats.scan_start >= self._scan_window:
                if first >= 0 and self._scan_targets >= 1:  # the window ended with one
                    stats.scanning = False
                stats.scan_start = ts
                first = _NO_WINDOW
            if first in (_NO_WINDOW, target) and self._scan_targets >= 1:
                stats.scan_first = target  # one target: no alarm, no set
                return None
            targets = stats.scan_targets = set() if first == _NO_WINDOW else {first}
            stats.scan_first = _SHARED  # a set from now on, as if shared
        elif targets is None or ts - stats.scan_start >= self._scan_window:
            if targets is not None and len(targets) <= self._scan_targets:
                stats.scanning = False
            stats.scan_start = ts
            targets = stats.scan_targets = set()
        if len(targets) <= self._scan_targets:
            targets.add(target)
            if len(targets) > self._scan_targets and not stats.scanning:
                stats.scanning = True
                return RateAlarm(mac, len(targets), stats.scan_start)
        return None

    def suspect(self, a: bytes, b: bytes, holder: bytes | None = None) -> bytes | None:
        """The one of two MACs the evidence points at, or None when it does not point one way.

        `holder` is the MAC currently bound to the contested address, which its `owned`
        count includes.
        """
        stats_a, stats_b = self._stats.get(a), self._stats.get(b)
        score_a = stats_a.suspicion(holder == a) if stats_a else 0
        score_b = stats_b.suspicion(holder == b) if stats_b else 0
        if score_a > score_b:
            return a
        if score_b > score_a:
            return b
        return None


class PyRecent:
    """A bounded map of key -> value (mostly the last time seen), for "was there a request?",
    "who answered?" and "reported yet?".

    Entries move to the end when noted again, so the oldest fall out first when full. The
    C kernel's `Recent` (_recent.c) behaves the same (tests/test_recent.py) and is used when
    built (`recent`); this one runs without a compiler.
    """

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._seen

    def items(self) -> list[tuple[Hashable, Any]]:
        """(key, value) pairs, oldest first."""
        return list(self._seen.items())

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self._seen.get(key, default)

    def pop(self, key: Hashable, *default: Any) -> Any:
        return self._seen.pop(key, *default)

    def clear(self) -> None:
        self._seen.clear()

    def note(self, key: Hashable, value: Any) -> None:
        seen = self._seen
        if key in seen:
            del seen[key]
        elif len(seen) >= self._cap:
            trim_oldest(seen, self._cap)
        seen[key] = value

    def within(self, key: Hashable, ts: float, window: float) -> bool:
        last = self._seen.get(key)
        return last is not None and ts - last <= window

    def first_in(self, key: Hashable, ts: float, window: float) -> bool:
        """True (and remembers ts) unless `key` was already noted within `window` of ts."""
        if self.within(key, ts, window):
            return False
        self.note(key, ts)
        return True


def recent(cap: int) -> PyRecent:
    """A `Recent` table of `cap` entries: the kernel's when it is built (the kernel refreshes
    the tracker's tables in place, in C), else `PyRecent`."""
    return KERNEL.Recent(cap) if KERNEL is not None else PyRecent(cap)
