"""Soak run: ten minutes of live traffic, normal LAN plus periodic random floods, on a veth pair.

Prints resident memory, libpcap drops, bindings and event counts every `--every` seconds,
so a leak shows as a slope; at the end, the slope of resident memory over the second half
(after the bounded tables have filled) and the totals. Not part of the test suite: it takes
minutes and its figures depend on the machine. Needs root (network namespaces); everything
it creates is removed when it ends, and every traffic loop is bounded.

Usage: sudo .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 2000]
       [--flood-every 60] [--flood-frames 100000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench
import gen_captures
import live

ROOT = Path(__file__).parents[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _metrics(lab: live.Lab, url: str) -> str:
    code = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
    done = subprocess.run(lab.exec(lab.rx_ns, [sys.executable, "-c", code, url]),
                          capture_output=True, text=True, timeout=20, check=False)
    return done.stdout


def _sum(text: str, name: str) -> int:
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " ")))


def _captures(quick: bool) -> tuple[Path, Path]:
    gen_captures.main(["--quick", "--only", "normal", "--only", "flood"] if quick
                      else ["--only", "normal", "--only", "flood"])
    folder = gen_captures.DEFAULT_OUT / ("quick" if quick else "full")
    return folder / "normal.pcap", folder / "flood.pcap"


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares KiB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="normal traffic, frames/s")
    parser.add_argument("--flood-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--flood-frames", type=int, default=100_000)
    parser.add_argument("--flood-rate", type=int, default=20_000, help="frames/s")
    parser.add_argument("--every", type=float, default=30.0, help="report interval, seconds")
    parser.add_argument("--quick", action="store_true", help="one minute, small captures")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.every, args.flood_every, args.flood_frames = 1.0, 10.0, 20.0, 20_000
    normal, flood = _captures(args.quick)
    seconds = args.minutes * 60
    lab = live.Lab()
    work = Path(tempfile.mkdtemp(prefix="arpwatchd-soak-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lab.open()
        port = bench._free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        log = work / "sensor.log"
        events = work / "events.jsonl"
        with log.open("wb") as out:
            sensor = subprocess.Popen(lab.exec(lab.rx_ns, [
                sys.executable, "-m", "arpwatchd", "run", "-i", lab.rx, "--state",
                str(work / "state.sqlite"), "--events", str(events), "--metrics-address",
                f"127.0.0.1:{port}"]), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        procs.append(sensor)
        if not live._wait_for(log, "capturing on", sensor, 30):
            print("sensor did not start:", log.read_text()[-500:])
            return 1
        background = subprocess.Popen(lab.exec(lab.tx_ns, [
            "tcpreplay", "--pps", str(args.rate), "--loop", "1000", "--limit",
            str(int(args.rate * seconds)), "--intf1", lab.tx, str(normal)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(background)
        print(f"soak: {args.minutes:g} min, normal {args.rate}/s, a flood of "
              f"{args.flood_frames} frames at {args.flood_rate}/s every {args.flood_every:g} s")
        print(f"{'t (s)':>6} {'RSS MiB':>8} {'received':>10} {'dropped':>8} {'bindings':>9} "
              f"{'events':>8} {'floods':>6}")
        start = time.monotonic()
        next_report = next_flood = start
        floods = 0
        samples: list[tuple[float, int]] = []
        while (now := time.monotonic()) - start < seconds and sensor.poll() is None:
            if now >= next_flood:
                procs.append(subprocess.Popen(lab.exec(lab.tx_ns, [
                    "tcpreplay", "--pps", str(args.flood_rate), "--limit",
                    str(args.flood_frames), "--intf1", lab.tx, str(flood)]),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                floods += 1
                next_flood += args.flood_every
            if now >= next_report:
                text = _metrics(lab, url)
                rss = _rss_kib(sensor.pid)
                elapsed = now - start
                samples.append((elapsed, rss))
                lines = sum(1 for _ in events.open()) if events.exists() else 0
                print(f"{elapsed:6.0f} {rss / 1024:8.1f} "
                      f"{_sum(text, 'arpwatchd_capture_packets_received_total'):>10} "
                      f"{_sum(text, 'arpwatchd_capture_packets_dropped_total'):>8} "
                      f"{_sum(text, 'arpwatchd_bindings'):>9} {lines:>8} {floods:>6}",
                      flush=True)
                next_report += args.every
            time.sleep(0.2)
        half = [p for p in samples if p[0] >= seconds / 2]
        print(f"resident memory slope over the second half: {_slope(half):+.0f} KiB/min "
              f"({len(half)} samples); final {samples[-1][1] / 1024 if samples else 0:.1f} MiB")
        return 0 if sensor.poll() is None else 1
    finally:
        for proc in reversed(procs):
            live._stop(proc)
        lab.close()
        with contextlib.suppress(OSError):
            for path in sorted(work.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            work.rmdir()


if __name__ == "__main__":
    sys.exit(main())
