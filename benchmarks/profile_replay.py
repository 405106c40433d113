"""Where arpwatchd replay spends its time: py-spy (sampling, low overhead) or cProfile.

Profiles `arpwatchd replay --state TMP --events /dev/null CAPTURE` exactly as bench.py runs
it, and prints the top functions by own time ("self") and by time including callees
("total"), as a share of all samples. py-spy is preferred because cProfile's per-call
overhead inflates small hot functions; py-spy is pip-installed into the venv if missing
(`--tool cprofile` avoids that). `--seconds` stops sampling after that long (the flood runs
minutes today): the profile is then of the first seconds only.

Usage: profile_replay.py [--quick] [--capture normal|flood|...] [--tool py-spy|cprofile]
                  [--seconds S] [--top N]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # a sibling script: command discovery
import gen_captures

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    """'observe (/work/main/arpwatchd/tracker.py:199)' -> 'tracker.py:observe'."""
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    return f"{Path(found.group('file')).name}:{found.group('func')}"


def summarise_raw(path: Path, top: int) -> str:
    """Self and total shares per function from py-spy's raw (collapsed stack) output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    if not samples:
        return "(no samples)"
    rows = [f"{samples} samples", "", f"{'self %':>7} {'total %':>8}  function"]
    for name, n in own.most_common(top):
        rows.append(f"{100 * n / samples:7.1f} {100 * total[name] / samples:8.1f}  {name}")
    rows += ["", "by total (including callees):", f"{'total %':>8} {'self %':>7}  function"]
    for name, n in total.most_common(top):
        rows.append(f"{100 * n / samples:8.1f} {100 * own[name] / samples:7.1f}  {name}")
    return "\n".join(rows)


def _py_spy(python: str) -> str | None:
    here = Path(python).parent / "py-spy"
    if here.exists():
        return str(here)
    found = shutil.which("py-spy")
    if found:
        return found
    print("profile_replay: installing py-spy into the venv with pip", file=sys.stderr)
    done = subprocess.run([python, "-m", "pip", "install", "-q", "py-spy"], check=False)
    return str(here) if done.returncode == 0 and here.exists() else None


def run_py_spy(spy: str, under: bench.UnderTest, capture: Path, seconds: float, top: int
               ) -> str:
    with tempfile.TemporaryDirectory(prefix="arpwatchd-profile-") as tmp:
        raw = Path(tmp) / "raw.txt"
        target = subprocess.Popen(
            [*under.command, "replay", "--state", f"{tmp}/state.sqlite", "--events",
             "/dev/null", str(capture)], env=under.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(0.3)  # past interpreter start-up: imports are not what is measured
        cmd = [spy, "record", "--rate", "250", "--format", "raw", "--output", str(raw),
               "--pid", str(target.pid), "--duration", str(int(seconds))]
        try:
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=seconds + 60)
        finally:
            if target.poll() is None:
                target.send_signal(signal.SIGTERM)
                try:
                    target.wait(10)
                except subprocess.TimeoutExpired:
                    target.kill()
                    target.wait()
        return summarise_raw(raw, top) if raw.exists() else "(py-spy wrote nothing)"


def run_cprofile(under: bench.UnderTest, capture: Path, top: int) -> str:
    python = bench.python_of(under.command)
    site = [flag for flag in ("-S", "-P") if flag in under.command]
    with tempfile.TemporaryDirectory(prefix="arpwatchd-profile-") as tmp:
        stats = Path(tmp) / "stats"
        subprocess.run([python, *site, "-m", "cProfile", "-o", str(stats), "-m", "arpwatchd",
                        "replay", "--state", f"{tmp}/state.sqlite", "--events", "/dev/null",
                        str(capture)], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=under.env)
        code = ("import pstats, sys; p = pstats.Stats(sys.argv[1]); p.strip_dirs(); "
                "p.sort_stats('tottime').print_stats(int(sys.argv[2]))")
        done = subprocess.run([python, "-c", code, str(stats), str(top)], capture_output=True,
                              text=True, check=False)
        text = done.stdout
        return text[text.find("ncalls"):] if "ncalls" in text else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 1/10-size captures")
    parser.add_argument("--capture", action="append", metavar="NAME",
                        choices=[s.name for s in gen_captures.specs(1.0)],
                        help="capture to replay (repeatable; default normal and flood)")
    parser.add_argument("--tool", choices=("py-spy", "cprofile"), default="py-spy")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="py-spy: stop sampling after this long (60)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--arpwatchd", metavar="CMD", help="command for arpwatchd")
    parser.add_argument("--snapshot", metavar="REV", help="profile this git revision")
    parser.add_argument("--out", type=Path, default=gen_captures.DEFAULT_OUT)
    args = parser.parse_args(argv)
    names = args.capture or ["normal", "flood"]
    scale, folder = gen_captures.scale_folder(args.out, args.quick, None)
    gen_captures.ensure(folder, scale, names, log=lambda m: print(f"profile_replay: {m}",
                                                                    file=sys.stderr))
    with bench.arpwatchd_under_test(args.arpwatchd, args.snapshot) as under:
        python = bench.python_of(under.command)
        spy = _py_spy(python) if args.tool == "py-spy" else None
        if args.tool == "py-spy" and spy is None:
            print("profile_replay: py-spy unavailable; using cProfile", file=sys.stderr)
        for name in names:
            capture = folder / f"{name}.pcap"
            how = f"py-spy, first {args.seconds:g} s at most" if spy else "cProfile"
            print(f"## arpwatchd replay {capture.name} ({how}; {under.label}, sources "
                  f"{bench.source_digest(under.sources)})\n")
            body = (run_py_spy(spy, under, capture, args.seconds, args.top) if spy
                    else run_cprofile(under, capture, args.top))
            print("```\n" + body.rstrip() + "\n```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
