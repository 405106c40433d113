"""benchmarks/bench.py judges issue 12's targets from one run's figures: each check on
made-up figures (no benchmark is run here), and callgrind.py's capture cutting."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402  (a script folder, not a package)
import callgrind  # noqa: E402


def _summary(tool: str, capture: str, fps: float, rss: float = 50.0,
             stations: int | None = None) -> bench.Summary:
    return bench.Summary(tool, capture, 1_000_000, 3, 1e6 / fps, fps, rss, stations, True)


def _results(**live: object) -> bench.Results:
    s = [
        _summary("arpwatchd", "normal", 2.1e6), _summary("arpwatch", "normal", 1e6),
        _summary("arpwatchd", "small", 0.5e6), _summary("arpwatch", "small", 1e6),
        _summary("arpwatchd", "flood", 60e3, rss=320, stations=1_000_000),
        _summary("arpwatch", "flood", 1e3),
        _summary("arpwatchd", "mirror", 9e6), _summary("tcpdump", "mirror", 10e6),
    ]
    results = bench.Results({(x.tool, x.capture): x for x in s})
    if live:
        results.live = {"tools": live, "sender_ceiling_pps": 300_000.0}
        results.live_note = "ran"
    return results


def test_each_target_is_judged_on_its_floor() -> None:
    targets = bench.check_targets(_results())
    assert [(t.name, t.wanted, t.measured, t.passed) for t in targets] == [
        ("normal: arpwatchd vs arpwatch -r", ">= 2x (aim 3x)", "2.10x", True),
        ("/24 of 250 hosts (small): arpwatchd vs arpwatch -r", ">= 0.9x", "0.50x", False),
        ("flood: arpwatchd vs arpwatch -r", ">= 50x (aim 100x)", "60.0x", True),
        ("flood: arpwatchd peak RSS at 1,000,000 bindings (default max_bindings)",
         "<= 300 MiB", "320 MiB", False),
        ("mirror: arpwatchd vs tcpdump -r (same filter)", ">= 0.8x", "0.90x", True),
        ("live (live.py, normal mix on a veth): zero-drop rate",
         "zero drops at the sender's ceiling", "not run", None),
    ]


def test_the_live_row_passes_only_without_drops() -> None:
    clean = {"zero_drop_pps": 290_000.0, "all_clean": True, "top_speed_clean": True}
    dropped = {"zero_drop_pps": 100_000.0, "all_clean": False, "top_speed_clean": False}
    live = "live (live.py, normal mix on a veth): zero-drop rate"
    targets = {t.name: t for t in bench.check_targets(_results(arpwatchd=clean))}
    assert targets[live].passed is True
    assert targets[live].measured.startswith("zero drops up to 290,000/s; sender")
    targets = {t.name: t for t in bench.check_targets(_results(arpwatchd=dropped))}
    assert targets[live].passed is False
    skipped = bench.Results({}, live_note="skipped: needs root")
    assert [(t.measured, t.passed) for t in bench.check_targets(skipped)] == [
        ("skipped: needs root", None)]


def test_a_capture_is_cut_to_its_first_frames(tmp_path: Path) -> None:
    source = tmp_path / "in.pcap"
    records = b"".join(struct.pack("<IIII", i, 0, 3, 3) + bytes([i] * 3) for i in range(5))
    source.write_bytes(b"H" * 24 + records)
    assert callgrind.cut_capture(source, tmp_path / "two.pcap", 2) == 2
    assert (tmp_path / "two.pcap").read_bytes() == b"H" * 24 + records[: 2 * 19]
    assert callgrind.cut_capture(source, tmp_path / "all.pcap", 99) == 5
    assert callgrind.cut_capture(source, tmp_path / "none.pcap", 0) == 0
    assert (tmp_path / "none.pcap").read_bytes() == b"H" * 24
