"""How fast ARP frames go among other traffic the sensor tracks (issue 17's bar: "ARP
throughput does not drop by more than 10 %" on the dual-stack mix), measured directly.

Subtracting an NDP-only replay from the dual-stack one charges every interference to ARP;
this instead times, inside one replay, the kernel's loop (`_kernel.run`) less the frames it
hands back that are not ARP (the NDP slow path): what ARP frames cost, including the ARP
frames that take the slow path and the non-ARP frames' own passage through the loop (memo
hash, bytes object, callback), which it cannot separate. Since the kernel also proves NDP
repeats (an NS, a solicited NA), those are inside the loop's time too and counted with ARP:
on the dual-stack mix the figure is then an upper bound of the ARP frames' cost. Runs are
paired (ARP-only capture, then the mix, in turn) and the medians compared.

    .venv/bin/python benchmarks/arp_share.py ARP_ONLY.pcap MIX.pcap [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = "--child"


def child(capture: str, state: str) -> None:
    """One replay with the kernel's callback wrapped; prints the times as JSON."""
    from arpwatchd import fastpath  # noqa: PLC0415  (patched before the sensor exists)

    kernel = fastpath.KERNEL
    if kernel is None:
        sys.exit("arp_share.py: the C kernel is not built")
    times = {"loop": 0.0, "other": 0.0, "other_frames": 0}
    clock = time.perf_counter

    class Timed:
        Recent = kernel.Recent

        @staticmethod
        def run(context: object, data: bytes, meta: bytes, horizon: float,
                handle: object) -> object:
            def timed(ts: float, frame: bytes) -> float:
                start = clock()
                horizon = handle(ts, frame)  # type: ignore[operator]
                if frame[12:14] != b"\x08\x06" and frame[16:18] != b"\x08\x06":
                    times["other"] += clock() - start
                    times["other_frames"] += 1
                return horizon  # type: ignore[no-any-return]

            start = clock()
            result = kernel.run(context, data, meta, horizon, timed)
            times["loop"] += clock() - start
            return result

    fastpath.KERNEL = Timed  # type: ignore[assignment]
    from arpwatchd.cli import main  # noqa: PLC0415

    sys.argv = ["arpwatchd", "replay", capture, "--state", state, "--events", "/dev/null",
                "-q"]
    with contextlib.suppress(SystemExit):
        main()
    print(json.dumps(times))


def measure(capture: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, __file__, CHILD, str(capture),
                               str(Path(tmp) / "state.sqlite")],
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arp_only", type=Path)
    parser.add_argument("mix", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    alone, among = [], []
    for _ in range(args.runs):
        alone.append(measure(args.arp_only)["loop"])
        mixed = measure(args.mix)
        among.append(mixed["loop"] - mixed["other"])
        print(f"ARP alone {alone[-1]:.3f} s, among the rest {among[-1]:.3f} s "
              f"({mixed['other_frames']:,} other frames, {mixed['other']:.3f} s)", flush=True)
    a, b = statistics.median(alone), statistics.median(among)
    print(f"median: ARP alone {a:.3f} s, among the rest {b:.3f} s: throughput {a / b:.2f}x "
          f"({(1 - a / b) * 100:.0f} % drop)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
