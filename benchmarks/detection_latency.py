"""Detection latency of each kind of event, live, and Debian's arpwatch on the same captures.

The real-tool live tests (tests/test_live_attack_tools.py, and the failover tests that write
the same log) measure, for each scenario, the time from the first offending frame on the wire
(its kernel timestamp in the lab's capture) to the moment the sensor's event line appeared in
its events file, and append one JSON line per measurement to ``$ARPWATCHD_LATENCY_LOG``
(tests/realtools.py ``record_latency``). This script prints those figures per scenario and per
kind (min / median / max in ms), and with ``--arpwatch`` replays each kept capture through
Debian's arpwatch and arpwatchd (tests/arpwatch_compare.py) to show what each reports.

    sudo .venv/bin/python benchmarks/detection_latency.py --run --repeat 3 --arpwatch
    .venv/bin/python benchmarks/detection_latency.py --log benchmarks/out/latency.jsonl

``--run`` needs root (network namespaces); it runs the live attack tests ``--repeat`` times
(about 2 minutes each) with the log and the captures under ``benchmarks/out/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
TESTS = ["tests/test_live_attack_tools.py"]


def kind_of(scenario: str, event: str) -> str:
    """The row of the per-kind table a measurement belongs to."""
    if event == "conflict":
        if scenario.startswith("two owners"):
            return "two owners (conflict)"
        if "victim address" in scenario:
            return "spoofer conflict, victim's address (gateway poisoned)"
        if "solicit window" in scenario:
            return "spoofer conflict, attack inside solicit_window"
        return "spoofer conflict"
    if event == "arp_scan":
        return "arp_scan, from the 101st target" if "target)" in scenario else \
            "arp_scan, from the first request"
    return event


def read_log(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_tests(log: Path, captures: Path, repeat: int, extra: list[str]) -> None:
    """Runs the live tests with the latency log and capture folder set (appends to the log)."""
    captures.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ARPWATCHD_LATENCY_LOG=str(log),
               ARPWATCHD_LATENCY_CAPTURES=str(captures))
    for n in range(repeat):
        print(f"run {n + 1}/{repeat}: pytest {' '.join(TESTS + extra)}", file=sys.stderr)
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *TESTS, *extra], cwd=ROOT, env=env, check=False, timeout=1800)
        if done.returncode != 0:
            print(f"run {n + 1}: pytest exited {done.returncode}", file=sys.stderr)


def _ms(values: list[float]) -> str:
    return (f"{1000 * min(values):.1f} | {1000 * statistics.median(values):.1f} | "
            f"{1000 * max(values):.1f}")


def latency_tables(records: list[dict[str, object]]) -> list[str]:
    by_scenario: dict[tuple[str, str], list[float]] = defaultdict(list)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for r in records:
        scenario, event, latency = str(r["scenario"]), str(r["event"]), float(r["latency"])
        by_scenario[(scenario, event)].append(latency)
        by_kind[kind_of(scenario, event)].append(latency)
    rows = ["| kind | n | min ms | median ms | max ms |", "|---|---|---|---|---|"]
    rows += [f"| {kind} | {len(v)} | {_ms(v)} |" for kind, v in sorted(by_kind.items())]
    rows += ["", "| scenario | event | n | min ms | median ms | max ms |",
             "|---|---|---|---|---|---|"]
    rows += [f"| {s} | `{e}` | {len(v)} | {_ms(v)} |" for (s, e), v in sorted(by_scenario.items())]
    return rows


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counter.items(), key=lambda x: -x[1])) \
        or "nothing"


def arpwatch_table(records: list[dict[str, object]]) -> list[str]:
    """For the last kept capture of each scenario: arpwatchd's events (with each conflict's
    suspect) and Debian arpwatch's reports, both replaying that capture offline."""
    sys.path.insert(0, str(ROOT / "tests"))
    import arpwatch_compare  # noqa: PLC0415  (a test helper: only with --arpwatch)

    ok, reason = arpwatch_compare.available()
    if not ok:
        return [f"(arpwatch not run: {reason})"]
    last: dict[str, Path] = {}
    for r in records:
        if r.get("capture") and Path(str(r["capture"])).exists():
            last[str(r["scenario"]).split(" (")[0]] = Path(str(r["capture"]))
    rows = ["| scenario | arpwatchd events (suspect) | Debian arpwatch reports |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for scenario, capture in sorted(last.items()):
            reports, _, _ = arpwatch_compare.run_arpwatch(capture, Path(tmp) / capture.stem)
            events = arpwatch_compare.run_arpwatchd(capture)
            ours = _counts(Counter(e.kind.value for e in events))
            suspects = sorted({e.suspect for e in events if e.suspect})
            if suspects:
                ours += f" (suspect {', '.join(suspects)})"
            rows.append(f"| {scenario} | {ours} | {_counts(Counter(r.kind for r in reports))} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", type=Path, default=OUT / "latency.jsonl")
    parser.add_argument("--captures", type=Path, default=OUT / "latency-captures")
    parser.add_argument("--run", action="store_true", help="run the live tests first (root)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--arpwatch", action="store_true",
                        help="replay each kept capture through Debian's arpwatch too")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.run:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        run_tests(args.log, args.captures, args.repeat, args.pytest_args)
    if not args.log.exists():
        print(f"no latency log at {args.log} (use --run, or ARPWATCHD_LATENCY_LOG with the "
              "live tests)", file=sys.stderr)
        return 1
    records = read_log(args.log)
    print("\n".join(latency_tables(records)))
    if args.arpwatch:
        print()
        print("\n".join(arpwatch_table(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
