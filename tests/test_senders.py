"""Per-MAC statistics: a MAC seen once costs no scan set, and the lazy window counts exactly as
the set it stands for."""

from __future__ import annotations

import random

import pytest

from arpwatchd.senders import Senders

MAC = b"\x02\x00\x00\x00\x00\x01"


class _SetWindow:
    """The scan window as a set from its first target (the rule `Senders.count_target` keeps)."""

    def __init__(self, threshold: int, window: float) -> None:
        self.threshold, self.window = threshold, window
        self.targets: set[int] | None = None
        self.start = 0.0
        self.scanning = False

    def count(self, target: int, ts: float) -> tuple[int, float] | None:
        if self.targets is None or ts - self.start >= self.window:
            if self.targets is not None and len(self.targets) <= self.threshold:
                self.scanning = False
            self.start = ts
            self.targets = set()
        if len(self.targets) <= self.threshold:
            self.targets.add(target)
            if len(self.targets) > self.threshold and not self.scanning:
                self.scanning = True
                return len(self.targets), self.start
        return None


@pytest.mark.parametrize("seed", range(40))
def test_the_lazy_scan_window_alarms_as_a_set_would(seed: int) -> None:
    rng = random.Random(seed)
    threshold = rng.choice([1, 1, 2, 3, 5])
    senders = Senders(10, 1000, 10.0, threshold, 2.0)
    reference = _SetWindow(threshold, 2.0)
    ts = 0.0
    for _ in range(300):
        ts += rng.choice([0.0, 0.1, 0.5, 1.0, 2.5])
        target = rng.randrange(4)
        alarm = senders.count_target(MAC, target, ts)
        expected = reference.count(target, ts)
        assert ((alarm.count, alarm.since) if alarm else None) == expected
        stats = senders.peek(MAC)
        assert stats is not None
        assert stats.scanning == reference.scanning
        if rng.random() < 0.02:
            stats.share()  # a Steady was built: the fast path may now read the window
        if stats.scan_targets is not None:
            assert stats.scan_targets == reference.targets
        else:
            assert reference.targets == {stats.scan_first}
        assert stats.scan_start == reference.start


def test_a_mac_seen_once_has_no_scan_set_until_shared() -> None:
    senders = Senders(10, 100, 10.0, 100, 10.0)
    senders.count_target(MAC, 7, 1.0)
    stats = senders.peek(MAC)
    assert stats is not None
    assert stats.scan_targets is None
    assert stats.scan_first == 7
    senders.count_target(MAC, 7, 2.0)
    assert stats.scan_targets is None  # the same target again
    stats.share()
    assert stats.scan_targets == {7}
    senders.count_target(MAC, 8, 3.0)
    assert stats.scan_targets == {7, 8}
