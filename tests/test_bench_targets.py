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

sys.path.insert(0, str(ROOT / "tests"))
from netlab import read_pcap  # noqa: E402


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


def test_arp_among_ndp_is_judged_without_the_ndp_frames_own_time() -> None:
    """(normal - empty) / (dualstack - dualstack-ndp): the same ARP frames on both sides."""
    def walls(**wall: float) -> bench.Results:
        return bench.Results({("arpwatchd", c): bench.Summary(
            "arpwatchd", c, 1, 3, w, 1 / w, 50.0, None, True) for c, w in wall.items()})

    def dualstack(results: bench.Results) -> list[bench.Target]:
        return [t for t in bench.check_targets(results) if t.name == bench.DUALSTACK_TARGET]

    (target,) = dualstack(walls(normal=3.2, dualstack=5.0, **{"dualstack-ndp": 2.0},
                                          empty=0.2))
    assert (target.name, target.wanted, target.passed) == (
        bench.DUALSTACK_TARGET, ">= 0.9x", True)
    assert target.measured.startswith("1.00x (ARP 3.00 s among NDP, 3.00 s alone; the whole "
                                      "dual-stack file 1.56x")
    (slow,) = dualstack(walls(normal=3.2, dualstack=5.5, **{"dualstack-ndp": 2.0},
                                        empty=0.2))
    assert slow.measured.startswith("0.86x") and slow.passed is False
    assert dualstack(walls(normal=3.2, dualstack=5.0)) == []


def test_the_dualstack_mix_is_the_normal_mix_with_valid_ndp_among_it(tmp_path: Path) -> None:
    """Its ARP frames are the normal mix's, byte for byte and at the same times; the rest,
    20-30 % of the file, is NDP that arpwatchd's decoder accepts, of the kinds Linux sends
    (docs/ipv6.md); `ndp_only` keeps exactly those."""
    import gen_captures  # noqa: PLC0415  (a script folder, not a package)

    from arpwatchd.ndp import NdpFrame, NdpKind, decode_ndp  # noqa: PLC0415

    scale = 0.01
    specs = {s.name: s for s in gen_captures.specs(scale)}
    for name in ("normal", "dualstack"):
        gen_captures.generate(specs[name], tmp_path)
    normal = read_pcap(tmp_path / "normal.pcap")
    mixed = read_pcap(tmp_path / "dualstack.pcap")
    assert [r for r in mixed if gen_captures.is_arp(r[1])] == normal
    ndp = [r for r in mixed if not gen_captures.is_arp(r[1])]
    assert 0.2 < len(ndp) / len(mixed) < 0.3
    assert [t for t, _ in mixed] == sorted(t for t, _ in mixed)
    decoded = [decode_ndp(raw) for _, raw in ndp]
    assert all(isinstance(f, NdpFrame) for f in decoded), {
        str(f) for f in decoded if not isinstance(f, NdpFrame)}
    found = {(f.kind, f.solicited, f.override, bool(f.source_lla), bool(f.target_lla))
             for f in decoded if isinstance(f, NdpFrame)}
    assert found == {
        (NdpKind.SOLICITATION, False, False, True, False),  # multicast and NUD probes
        (NdpKind.SOLICITED_ADVERTISEMENT, True, True, False, True),  # to a multicast NS
        (NdpKind.SOLICITED_ADVERTISEMENT, True, False, False, False),  # to a NUD probe
        (NdpKind.DAD_PROBE, False, False, False, False),
    }
    assert gen_captures.ndp_only(tmp_path / "dualstack.pcap", tmp_path / "ndp.pcap") == len(ndp)
    assert read_pcap(tmp_path / "ndp.pcap") == ndp
    assert callgrind.count_arp(tmp_path / "dualstack.pcap") == len(normal)


def test_instructions_per_arp_frame_among_ndp() -> None:
    counts = [callgrind.Count("normal", "kernel", 100, 3_000, 1_000, arp_frames=100),
              callgrind.Count("dualstack", "kernel", 130, 6_300, 1_000, arp_frames=100),
              callgrind.Count(callgrind.NDP_ALONE, "kernel", 30, 4_000, 1_000)]
    assert callgrind.arp_among_ndp(counts) == [
        "kernel: 23 instructions per ARP frame among NDP (100 ARP and 30 NDP frames) against "
        "20 per frame of the ARP-only normal mix (+15.0 %); each NDP frame alone 100"]
