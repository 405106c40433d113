"""The event rate limiter: what it lets through, and the bare events the tracker builds for
what it will drop (`EventLimiter.surely_drops`), which must change no output and no counter."""

from __future__ import annotations

import logging
import os
import random
import struct
from pathlib import Path

import pytest
from test_robustness import fast_pcap

from arpwatchd.config import Config, parse_config
from arpwatchd.daemon import replay
from arpwatchd.events import Event, EventKind, EventLimiter
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
CAPTURES = sorted((ROOT / "pcaps").glob("*.pcap")) + sorted(
    p for p in SHARED.glob("*.pcap*") if SHARED.is_dir()
)
TIGHT = "output: {events_per_window: 2, event_window: 1s}\nhold: 2s\n"
"""A limiter that drops most events of every capture, with windows rolling often."""


BARE = [0]


class _CountingLimiter(EventLimiter):
    def surely_drops(self, kind: EventKind, latest: float) -> bool:
        drops = super().surely_drops(kind, latest)
        BARE[0] += drops
        return drops


def _replay(paths: list[Path], config: Config, gate: bool) -> Sensor:
    sensor = Sensor(config, EventWriter(os.devnull))
    BARE[0] = 0
    if gate:
        limiter = sensor.limiter
        sensor.limiter = sensor.tracker.gate = _CountingLimiter(limiter.limit, limiter.window)
    else:
        sensor.tracker.gate = None
    sensor.emitted = []
    logging.getLogger("arpwatchd").disabled = True
    try:
        assert replay(sensor, [str(p) for p in paths]) == []
    finally:
        logging.getLogger("arpwatchd").disabled = False
    assert sensor.stats.frame_errors == 0
    return sensor


def _same_output(paths: list[Path], config: Config) -> int:
    """Replays `paths` with bare events and without; returns how many were built bare."""
    bare = _replay(paths, config, gate=True)
    built_bare = BARE[0]
    full = _replay(paths, config, gate=False)
    assert bare.emitted == full.emitted
    assert bare.stats.events == full.stats.events
    assert bare.stats.suppressed == full.stats.suppressed
    assert bare.stats.failovers == full.stats.failovers
    return built_bare


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_bare_events_change_nothing_on_any_capture(capture: Path) -> None:
    _same_output([capture], parse_config(TIGHT))


def _stepping_flood(path: Path, count: int, seed: int) -> None:
    """New stations in bursts, with pauses longer than a window and packet times that step
    back a little (a capture merged from two taps)."""
    rng = random.Random(seed)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    ts = 1_700_000_000.0
    for i in range(count):
        ts += rng.choice([0.0001, 0.001, 0.01, 0.3, 1.5, -0.2])
        mac = bytes([0x02, *rng.randbytes(5)])
        ip = (0x0A000000 + i + 1).to_bytes(4, "big")
        op = rng.choice([b"\x00\x01", b"\x00\x02"])
        target = (0xAC100000 + rng.randrange(1 << 16)).to_bytes(4, "big")
        frame = (b"\xff" * 6 + mac + b"\x08\x06\x00\x01\x08\x00\x06\x04" + op + mac + ip
                 + b"\x00" * 6 + target + b"\x00" * 18)
        out += struct.pack("<IIII", int(ts), round((ts % 1) * 1e6) % 1_000_000, 60, 60)
        out += frame
    path.write_bytes(out)


@pytest.mark.parametrize("seed", range(4))
def test_bare_events_change_nothing_under_floods(tmp_path: Path, seed: int) -> None:
    flood, stepping = tmp_path / "flood.pcap", tmp_path / "stepping.pcap"
    fast_pcap(flood, 3000, seed=seed)
    _stepping_flood(stepping, 3000, seed)
    config = parse_config(TIGHT + "capture: {batch: 37}\nlimits: {max_bindings: 500}\n")
    assert _same_output([flood, stepping], config) > 1000


def _event(ts: float, kind: EventKind = EventKind.NEW_STATION) -> Event:
    return Event(ts, kind, "eth0", None, "10.0.0.1", "02:00:00:00:00:01")


def test_surely_drops_only_inside_a_full_window() -> None:
    limiter = EventLimiter(limit=2, window=10.0)
    assert not limiter.surely_drops(EventKind.NEW_STATION, 100.0)  # no window yet
    limiter.filter([_event(100.0)])
    assert not limiter.surely_drops(EventKind.NEW_STATION, 101.0)  # room for one more
    assert len(limiter.filter([_event(101.0), _event(102.0)])) == 1
    assert limiter.surely_drops(EventKind.NEW_STATION, 109.9)
    assert not limiter.surely_drops(EventKind.NEW_STATION, 110.0)  # an event may end it
    assert not limiter.surely_drops(EventKind.BOGON, 105.0)  # another kind's window
    assert not limiter.surely_drops(EventKind.CONFLICT_RESOLVED, 105.0)
    limiter.limit = 0  # unlimited now
    assert not limiter.surely_drops(EventKind.NEW_STATION, 105.0)


def test_a_window_ends_at_the_first_event_after_it_whatever_its_kind() -> None:
    limiter = EventLimiter(limit=1, window=10.0)
    out = limiter.filter([_event(0.0), _event(1.0), _event(2.0), _event(5.0, EventKind.BOGON),
                          _event(12.0, EventKind.BOGON), _event(13.0)])
    assert [(e.kind, e.ts) for e in out] == [
        (EventKind.NEW_STATION, 0.0),
        (EventKind.BOGON, 5.0),
        (EventKind.EVENTS_SUPPRESSED, 10.0),  # ended by the bogon at 12, dropped (its window)
        (EventKind.NEW_STATION, 13.0),
    ]
    assert out[2].count == 2
