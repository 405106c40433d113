"""Hostile input: random and mutated frames through decode and tracker never raise, and the
tracker's promises (bounded tables, one conflict_resolved per conflict) hold on any sequence."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pcapy
from hypothesis import given, settings
from hypothesis import strategies as st

from arpwatchd.decode import ArpFrame, Decoder
from arpwatchd.events import EventKind
from arpwatchd.frames import REPLY, REQUEST, arp_frame
from arpwatchd.policy import TrackerPolicy
from arpwatchd.tracker import Tracker

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 6)] + ["00:00:5e:00:01:01",
                                                           "00:07:b4:00:01:02"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "0.0.0.0"]

frame_strategy = st.builds(
    lambda op, sha, spa, tha, tpa, src, vlan: arp_frame(op, sha, spa, tha, tpa, eth_src=src,
                                                        vlan=vlan),
    st.sampled_from([REQUEST, REPLY]),
    st.sampled_from(MACS),
    st.sampled_from(IPS),
    st.sampled_from([*MACS, "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"]),
    st.sampled_from(IPS),
    st.sampled_from([None, *MACS[:2]]),
    st.sampled_from([None, None, 10]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(frame_strategy, st.floats(0, 40)), max_size=60))
def test_any_sequence_keeps_the_trackers_promises(steps: list[tuple[bytes, float]]) -> None:
    tracker = Tracker(TrackerPolicy(hold=5.0, max_bindings=4, max_macs=4, max_pending=8))
    decoder = Decoder("eth0", 1)
    now = 1_000.0
    events = []
    for frame, gap in steps:
        now += gap
        decoded = decoder.decode(frame)
        assert isinstance(decoded, ArpFrame)
        events += tracker.observe(decoded, now)
        assert len(tracker) <= 4
    events += tracker.tick(float("inf"))
    assert tracker.snapshot().conflicts_active_total == 0
    assert tracker.snapshot().holds_active == 0
    starts = Counter((e.vlan, e.ip) for e in events if e.kind is EventKind.CONFLICT)
    ends = Counter((e.vlan, e.ip) for e in events if e.kind is EventKind.CONFLICT_RESOLVED)
    assert starts == ends
    times = [e.ts for e in events if e.kind in (EventKind.FAILOVER, EventKind.CHANGED_MAC)]
    assert all(t != float("inf") for t in times)


def _corpus() -> list[bytes]:
    frames = []
    for path in sorted((Path(__file__).parents[1] / "pcaps").glob("*.pcap")):
        reader = pcapy.open_offline(str(path))
        while True:
            header, data = reader.next()
            if header is None:
                break
            frames.append(data)
    return frames or [arp_frame(REQUEST, MACS[0], IPS[0], MACS[1], IPS[1], vlan=5)]


CORPUS = _corpus()


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, len(CORPUS) - 1), st.lists(st.tuples(st.integers(0, 200),
                                                           st.integers(0, 255)), max_size=6),
       st.integers(0, 80))
def test_mutated_corpus_frames_never_raise(index: int, flips: list[tuple[int, int]],
                                           cut: int) -> None:
    frame = bytearray(CORPUS[index])
    for position, value in flips:
        if frame:
            frame[position % len(frame)] = value
    data = bytes(frame[: max(0, len(frame) - cut)])
    tracker = Tracker(TrackerPolicy())
    decoded = Decoder("eth0", 1).decode(data)
    if isinstance(decoded, ArpFrame):
        tracker.observe(decoded, 1.0)
        tracker.tick(100.0)
