"""Instructions per frame for each capture mix, counted by callgrind: load-independent figures
on a machine whose wall-clock speed drifts with its neighbours (issue 12).

Each count is the whole process, `python -m arpwatchd replay --state TMP --events /dev/null
-q FILE` under `valgrind --tool=callgrind` (start-up, the reader thread, SQLite included), on
the interpreter the venv was made from (Debian's /usr/bin/python3 by default: PGO and LTO).
A run under callgrind is ~50x slower, so each mix is cut to its first frames (`FRAMES`,
written to a temp file) and its cost per frame is

    (instructions of the cut file - instructions of an empty file) / frames in the cut.

Two variants: `kernel` (the fast path as built, with its C kernel when compiled) and `python`
(`ARPWATCHD_KERNEL=off`: the same rules in Python, the fast path before issue 12's kernel).

Usage: callgrind.py [--quick] [--variant kernel|python ...] [--only NAME ...] [--jobs N]
                    [--frames MIX=N ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_captures  # a sibling script, not a package

FRAMES = {"normal": 100_000, "small": 100_000, "flood": 20_000, "mirror": 500_000,
          "vlan": 50_000, "dualstack": 132_000}
"""Frames counted per mix: each run is about 1-3 G instructions (30-60 s under callgrind).
The dualstack cut holds about the normal cut's 100,000 ARP frames (the same ones) and NDP."""
NDP_ALONE = "dualstack-ndp"
"""The dualstack cut without its ARP frames, counted with it (`arp_among_ndp`)."""
VARIANTS: dict[str, dict[str, str]] = {"kernel": {}, "python": {"ARPWATCHD_KERNEL": "off"},
                                       "arpwatch": {}}
ARPWATCH = "/usr/sbin/arpwatch"
"""The `arpwatch` variant counts LBL arpwatch itself (`-Q -N -r`, in an empty network
namespace as bench.py runs it): the same per-frame cost, for the ratio without the clock."""
_PCAP_HEADER = 24
_RECORD = struct.Struct("<IIII")


@dataclass
class Count:
    """One mix under one variant: instructions of the cut file and per frame."""

    mix: str
    variant: str
    frames: int
    total: int | None
    startup: int | None
    objects: dict[str, int] = field(default_factory=dict)
    """Instructions of the cut file's run by shared object, exclusive (`by_object`)."""
    arp_frames: int = 0
    """ARP frames in the cut (all of them but in the mirror and dualstack mixes)."""

    @property
    def per_frame(self) -> float | None:
        if self.total is None or self.startup is None or self.frames == 0:
            return None
        return (self.total - self.startup) / self.frames


def cut_capture(source: Path, target: Path, frames: int) -> int:
    """Writes the first `frames` records of a classic little-endian pcap (what
    gen_captures.py writes) to `target`; returns how many were written (0: header only)."""
    with source.open("rb") as src, target.open("wb") as out:
        out.write(src.read(_PCAP_HEADER))
        written = 0
        while written < frames:
            head = src.read(_RECORD.size)
            if len(head) < _RECORD.size:
                break
            caplen = _RECORD.unpack(head)[2]
            out.write(head + src.read(caplen))
            written += 1
    return written


def instructions(command: Sequence[str], env: dict[str, str], capture: Path, work: Path
                 ) -> tuple[int | None, dict[str, int]]:
    """Callgrind's total instruction count for one replay of `capture` (None if it failed)
    and the same by shared object (`by_object`)."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if command == [ARPWATCH]:
        (work / "arp.dat").touch()  # arpwatch chdir()s first: absolute paths only
        cmd = ["unshare", "-n", *valgrind, ARPWATCH, "-Q", "-N", "-f",
               str((work / "arp.dat").resolve()), "-r", str(capture.resolve())]
    else:
        cmd = [*valgrind, *command, "replay", "--state", str(work / "state.sqlite"),
               "--events", os.devnull, "-q", str(capture)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    total = None
    if done.returncode == 0 and out.exists():
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
                break
    if total is None:
        print(f"callgrind: {' '.join(cmd)} failed ({done.returncode}):\n"
              f"{done.stderr[-600:]}", file=sys.stderr)
    objects = by_object(out) if total is not None else {}
    shutil.rmtree(work, ignore_errors=True)
    return total, objects


_LINE = re.compile(r"\s*([\d,]+) \(.*?\)\s+.* \[(.*)\]\s*$")
STAGES = (("python3.", "interpreter (Python code)"), ("_kernel.", "C kernel"),
          ("libpcap", "libpcap"), ("pcapy", "libpcap"), ("sqlite", "SQLite"),
          ("libc.", "libc (memcpy, malloc)"))


def by_object(out: Path) -> dict[str, int]:
    """Exclusive instructions per stage, from the shared object each function lives in
    (`callgrind_annotate`): the interpreter running Python code, the kernel, libpcap and
    pcapy, SQLite, libc; the rest (the loader, json, other modules) is "other"."""
    if shutil.which("callgrind_annotate") is None:
        return {}
    done = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
                          capture_output=True, text=True, check=False)
    stages: dict[str, int] = {}
    for line in done.stdout.splitlines():
        found = _LINE.match(line)
        if found is None:
            continue
        name = found.group(2).rsplit("/", 1)[-1]
        stage = next((label for part, label in STAGES if part in name), "other")
        stages[stage] = stages.get(stage, 0) + int(found.group(1).replace(",", ""))
    return stages


def python_command(command: Sequence[str]) -> list[str]:
    """The measured arpwatchd as `python ... -m arpwatchd`: valgrind runs the interpreter
    itself, not a console script's shebang line."""
    if "-m" in command:
        return list(command)
    python = Path(command[0]).parent / "python"
    return [str(python) if python.exists() else sys.executable, "-m", "arpwatchd"]


def measure(command: Sequence[str], env: dict[str, str], captures: dict[str, Path],
            variants: Sequence[str], jobs: int = 2,
            log: Callable[[str], None] = lambda _m: None,
            frames: dict[str, int] | None = None) -> list[Count]:
    """Counts every mix of `captures` (name -> full pcap) under every variant, `jobs`
    valgrind runs at a time (instruction counts do not depend on the load); `frames`
    overrides `FRAMES` for some mixes."""
    cut_at = {**FRAMES, **(frames or {})}
    if shutil.which("valgrind") is None:
        log("valgrind is not installed (apt-get install valgrind): no instruction counts")
        return []
    command = python_command(command)
    with tempfile.TemporaryDirectory(prefix="arpwatchd-callgrind-") as tmp:
        folder = Path(tmp)
        cuts: dict[str, tuple[Path, int]] = {}
        empty = next(iter(captures.values()))
        cuts[""] = (folder / "empty.pcap", cut_capture(empty, folder / "empty.pcap", 0))
        for mix, path in captures.items():
            cut = folder / f"{mix}.pcap"
            cuts[mix] = (cut, cut_capture(path, cut, cut_at.get(mix, 50_000)))
            if mix == "dualstack":
                alone = folder / f"{NDP_ALONE}.pcap"
                cuts[NDP_ALONE] = (alone, gen_captures.ndp_only(cut, alone))
        jobs_list = [(mix, variant) for variant in variants for mix in cuts]

        def one(job: tuple[str, str]) -> tuple[int | None, dict[str, int]]:
            mix, variant = job
            total, objects = instructions([ARPWATCH] if variant == "arpwatch" else command,
                                          {**env, **VARIANTS[variant]}, cuts[mix][0],
                                          folder / f"work-{variant}-{mix or 'empty'}")
            log(f"{variant:6} {mix or 'start-up':7} {cuts[mix][1]:>8,} frames: "
                f"{'failed' if total is None else f'{total / 1e6:,.0f} M instructions'}")
            return total, objects

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            done = dict(zip(jobs_list, pool.map(one, jobs_list), strict=True))
        return [Count(mix, variant, cuts[mix][1], done[(mix, variant)][0],
                      done[("", variant)][0], done[(mix, variant)][1],
                      count_arp(cuts[mix][0]))
                for variant in variants for mix in cuts if mix]


def count_arp(path: Path) -> int:
    """ARP frames (untagged or tagged) in a classic little-endian pcap."""
    data = path.read_bytes()
    at, arp = _PCAP_HEADER, 0
    while at + _RECORD.size <= len(data):
        caplen = _RECORD.unpack_from(data, at)[2]
        arp += gen_captures.is_arp(data[at + _RECORD.size:at + _RECORD.size + caplen])
        at += _RECORD.size + caplen
    return arp


def arp_among_ndp(counts: list[Count]) -> list[str]:
    """Issue 17's bar, one line per variant: instructions per ARP frame in the dual-stack
    cut, without its NDP frames' own cost (the dualstack run minus the run of its NDP frames
    alone: start-up and NDP cancel out), against the ARP-only normal cut (its same first ARP
    frames), and the NDP frames' cost each."""
    by = {(c.mix, c.variant): c for c in counts}
    lines = []
    for variant in dict.fromkeys(c.variant for c in counts):
        mixed, alone, normal = (by.get((m, variant)) for m in ("dualstack", NDP_ALONE, "normal"))
        if mixed is None or alone is None or normal is None or None in (
                mixed.total, alone.total, normal.per_frame) or not mixed.arp_frames:
            continue
        assert mixed.total is not None and alone.total is not None
        assert normal.per_frame is not None
        per_arp = (mixed.total - alone.total) / mixed.arp_frames
        ndp = "-" if alone.per_frame is None else f"{alone.per_frame:,.0f}"
        lines.append(
            f"{variant}: {per_arp:,.0f} instructions per ARP frame among NDP "
            f"({mixed.arp_frames:,} ARP and {alone.frames:,} NDP frames) against "
            f"{normal.per_frame:,.0f} per frame of the ARP-only normal mix "
            f"({100 * (per_arp / normal.per_frame - 1):+.1f} %); each NDP frame alone {ndp}")
    return lines


def table(counts: list[Count]) -> str:
    """One row per mix: frames counted, start-up, per variant the total and the cost per
    frame, then where arpwatchd's instructions went (shares by stage)."""
    variants = list(dict.fromkeys(c.variant for c in counts))
    mixes = list(dict.fromkeys(c.mix for c in counts))
    names = {"kernel": "as built", "python": "ARPWATCHD_KERNEL=off",
             "arpwatch": "LBL arpwatch -r"}
    where = next((v for v in ("kernel", "python") if v in variants), variants[-1])
    head = f"| mix | frames counted | start-up ({names.get(where, where)}) |"
    for v in variants:
        head += f" {names.get(v, v)}: total | per frame |"
    head += f" where ({names.get(where, where)}, start-up included) |"
    lines = [head, "|" + "---|" * (4 + 2 * len(variants))]
    by = {(c.mix, c.variant): c for c in counts}
    for mix in mixes:
        first = by[(mix, where)]
        startup = "-" if first.startup is None else f"{first.startup / 1e6:,.0f} M"
        row = f"| {mix} | {first.frames:,} | {startup} |"
        for v in variants:
            c = by[(mix, v)]
            total = "-" if c.total is None else f"{c.total / 1e6:,.0f} M"
            per = "-" if c.per_frame is None else f"{c.per_frame:,.0f}"
            row += f" {total} | {per} |"
        lines.append(row + f" {shares(by[(mix, where)].objects)} |")
    return "\n".join(lines)


def shares(objects: dict[str, int]) -> str:
    whole = sum(objects.values())
    if not whole:
        return "-"
    return ", ".join(f"{name} {100 * n / whole:.0f} %" for name, n in
                     sorted(objects.items(), key=lambda kv: -kv[1]) if 100 * n / whole >= 0.5)


def frames_option(text: str) -> tuple[str, int]:
    """`MIX=N` of `--frames` (also bench.py's `--callgrind-frames`)."""
    mix, _, count = text.partition("=")
    if mix not in FRAMES or not count.isdigit():
        raise argparse.ArgumentTypeError(f"want MIX=N with MIX one of {', '.join(FRAMES)}")
    return mix, int(count)


def main(argv: list[str] | None = None) -> int:
    import bench  # noqa: PLC0415  (a sibling script; only the command line needs it)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="cut from the 1/10 captures")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    parser.add_argument("--only", action="append", choices=list(FRAMES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--frames", action="append", type=frames_option, default=[],
                        metavar="MIX=N", help="count the first N frames of MIX (repeatable)")
    parser.add_argument("--snapshot", metavar="REV")
    parser.add_argument("--out", type=Path, default=gen_captures.DEFAULT_OUT)
    args = parser.parse_args(argv)
    scale, folder = gen_captures.scale_folder(args.out, args.quick, None)
    gen_captures.ensure(folder, scale, args.only, log=lambda m: print(m, file=sys.stderr))
    captures = {n: folder / f"{n}.pcap" for n in FRAMES if not args.only or n in args.only}
    with bench.arpwatchd_under_test(None, args.snapshot) as under:
        counts = measure(under.command, under.env, captures, args.variant or ["kernel"],
                         args.jobs, log=lambda m: print(f"callgrind: {m}", file=sys.stderr),
                         frames=dict(args.frames))
    print(table(counts))
    for line in arp_among_ndp(counts):
        print(f"\n{line}")
    return 0 if counts and all(c.total is not None for c in counts) else 1


if __name__ == "__main__":
    sys.exit(main())
