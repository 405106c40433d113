"""Live capture test: the highest ARP rate that arpwatchd takes with zero kernel drops.

Two network namespaces joined by a veth pair (names unique to this process, no addresses, so
the kernels ignore the ARP traffic; everything is deleted at the end, also on Ctrl-C). In the
receiving namespace runs the sensor,

    arpwatchd run -i RX --state TMP --events /dev/null --metrics-address 127.0.0.1:PORT

and in the sending one `tcpreplay --preload-pcap --pps RATE --limit N --intf1 TX` replays
the normal LAN mix (benchmarks/out/*/normal.pcap, generated if missing). After each replay
the sensor's libpcap statistics are read from its metrics endpoint
(`arpwatchd_capture_packets_dropped_total` and `..._interface_dropped_total`, with
`arpwatchd_arp_packets_total` as a cross-check that every frame was decoded), or failing that
from its log line "libpcap dropped N frames". The same steps are run with
`tcpdump -i RX -w /dev/null arp`, whose "N packets dropped by kernel" line at exit is the
reference. A fresh sensor (and a fresh state file) is started for each rate.

The rate steps up (20 k, 50 k, 100 k, 200 k, 400 k, 800 k frames/s, then tcpreplay's top
speed); a tool stops stepping at its first rate with drops, and stepping ends when tcpreplay
cannot reach the rate asked (on a 2-core machine the sender itself tops out). Each step is
sustained for `--seconds` (10; the capture is looped as needed, at least `--frames`): the
sensor's 32 MiB buffer holds ~250 k frames, so a short burst would show zero drops even from
a sensor far slower than the sender. For the same reason the sensor's *drain time* is shown:
how long after the sender stopped it took to decode the last frame (a sensor that keeps up
drains at once; one that does not has a backlog, and drops once the backlog outgrows the
buffer).

Needs root (namespaces, capture).
`--json FILE` also writes every step and the summary (the highest zero-drop rate of each
tool, the highest rate the sender reached) for bench.py, which runs this script as its live row.

Usage: live.py [--quick] [--snapshot REV] [--seconds S] [--rates 20000,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # a sibling script: package install and command discovery
import gen_captures

DEFAULT_RATES = (20_000, 50_000, 100_000, 200_000, 400_000, 800_000, 0)  # 0: top speed
QUICK_RATES = (50_000, 200_000, 0)
SETTLE_S = 2.5  # the sensor refreshes libpcap stats every 2 s
MAX_FRAMES = 3_000_000
SENDER_LIMITED = 0.8  # achieved/requested below this: the sender tops out, stop stepping
# Runs inside the sensor's namespace: one line per scrape, "monotonic-time decoded dropped".
POLLER = """
import re, sys, time, urllib.request
url = sys.argv[1]
def total(text, name):
    pattern = re.compile("^" + name + r"(?:_total)?(?:\\{[^}]*\\})? (\\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))
while True:
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        time.sleep(0.1)
        continue
    decoded = total(text, "arpwatchd_arp_packets") + total(text, "arpwatchd_frames_skipped")
    dropped = total(text, "arpwatchd_capture_packets_dropped") + total(
        text, "arpwatchd_capture_packets_interface_dropped")
    received = total(text, "arpwatchd_capture_packets_received")
    print(time.monotonic(), int(decoded), int(dropped), int(received), flush=True)
    time.sleep(0.1)
"""


@dataclass
class Step:
    tool: str
    requested: int  # 0 = top speed
    sent: int
    achieved_pps: float
    received: int | None
    dropped: int | None
    decoded: int | None = None
    drain_s: float | None = None
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.dropped == 0 and self.sent > 0


class Lab:
    """Two namespaces and a veth pair between them; `close()` removes everything."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10_000_000}"
        self.tx_ns, self.rx_ns = f"awb-tx-{tag}", f"awb-rx-{tag}"
        self.tx, self.rx = f"awbt{tag}", f"awbr{tag}"  # at most 11 of IFNAMSIZ's 15
        self._made: list[str] = []

    def open(self) -> None:
        for ns in (self.tx_ns, self.rx_ns):
            _ip("netns", "add", ns)
            self._made.append(ns)
        _ip("link", "add", self.tx, "type", "veth", "peer", "name", self.rx)
        _ip("link", "set", self.tx, "netns", self.tx_ns)
        _ip("link", "set", self.rx, "netns", self.rx_ns)
        for ns, dev in ((self.tx_ns, self.tx), (self.rx_ns, self.rx)):
            _ip("-n", ns, "link", "set", "lo", "up")
            # No IPv6 either: no router solicitations or MLD reports on the wire.
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                            f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False,
                           capture_output=True)
            _ip("-n", ns, "link", "set", dev, "up")

    def exec(self, ns: str, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def close(self) -> None:
        for ns in reversed(self._made):  # deleting a namespace deletes its veth end too
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self._made.clear()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _stop(proc: subprocess.Popen[Any], signum: int = signal.SIGTERM, wait: float = 15.0
          ) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if text in path.read_text(errors="replace"):
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def replay(lab: Lab, capture: Path, frames: int, rate: int, loops: int
           ) -> tuple[int, float, str]:
    """tcpreplay in the sending namespace; returns (frames sent, achieved pps, output)."""
    speed = ["--pps", str(rate)] if rate else ["--topspeed"]
    loop = ["--loop", str(loops)] if loops > 1 else []
    cmd = lab.exec(lab.tx_ns, ["tcpreplay", "--preload-pcap", *speed, *loop, "--limit",
                               str(frames), "--intf1", lab.tx, str(capture)])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    out = done.stdout + done.stderr
    sent = re.search(r"Successful packets:\s+(\d+)", out)
    pps = re.search(r"Rated:.*?([\d.]+) pps", out)
    return (int(sent.group(1)) if sent else 0, float(pps.group(1)) if pps else 0.0, out)


def _metric(text: str, name: str) -> int | None:
    value = bench._metric(text, name)
    return None if value is None else int(value)


class Poller:
    """Reads the sensor's metrics from inside its namespace every 0.1 s, in the background."""

    def __init__(self, lab: Lab, url: str) -> None:
        self.samples: list[tuple[float, int, int, int]] = []
        self.proc = subprocess.Popen(lab.exec(lab.rx_ns, [sys.executable, "-c", POLLER, url]),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                t, decoded, dropped, received = line.split()
                self.samples.append((float(t), int(decoded), int(dropped), int(received)))

    def last(self) -> tuple[float, int, int, int] | None:
        return self.samples[-1] if self.samples else None

    def close(self) -> None:
        _stop(self.proc)
        self._thread.join(5)


class Runner:
    def __init__(self, lab: Lab, capture: Path, capture_frames: int, under: bench.UnderTest,
                 tmp: Path, seconds: float, min_frames: int) -> None:
        self.lab = lab
        self.capture = capture
        self.capture_frames = capture_frames
        self.arpwatchd = under.command
        self.env = under.env
        self.tmp = tmp
        self.seconds = seconds
        self.min_frames = min_frames

    def frames_for(self, rate: int) -> int:
        """Enough frames to sustain the rate for `seconds` (top speed: assume 300 k/s)."""
        return min(MAX_FRAMES, max(self.min_frames, int((rate or 300_000) * self.seconds)))

    def _replay(self, rate: int) -> tuple[int, float, float]:
        frames = self.frames_for(rate)
        loops = -(-frames // self.capture_frames)
        sent, pps, _ = replay(self.lab, self.capture, frames, rate, loops)
        return sent, pps, time.monotonic()

    def sensor(self, rate: int) -> Step:
        work = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"sensor-{rate}-"))
        log = work / "sensor.log"
        port = bench._free_port()  # the sensor's namespace has its own ports: any is free
        url = f"http://127.0.0.1:{port}/metrics"
        cmd = self.lab.exec(self.lab.rx_ns, [
            *self.arpwatchd, "run", "-i", self.lab.rx, "--state", str(work / "state.sqlite"),
            "--events", "/dev/null", "--metrics-address", f"127.0.0.1:{port}"])
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env)
        poller: Poller | None = None
        drain = None
        last = None
        try:
            if not _wait_for(log, "capturing on", proc, 30):
                return Step("arpwatchd", rate, 0, 0.0, None, None,
                            note="sensor did not start: " + log.read_text()[-300:])
            poller = Poller(self.lab, url)
            sent, pps, ended = self._replay(rate)
            drain = self._drain(poller, sent, ended)
            time.sleep(SETTLE_S)  # one more libpcap stats refresh after the last frame
            last = poller.last()
        finally:
            if poller is not None:
                poller.close()
            _stop(proc)
        text = log.read_text(errors="replace")
        logged = [int(n) for n in re.findall(r"libpcap dropped (\d+) frames", text)]
        shutil.rmtree(work, ignore_errors=True)
        if last is None:  # no metrics: the log line is all there is
            dropped = max(logged, default=0) if "capturing on" in text else None
            return Step("arpwatchd", rate, sent, pps, None, dropped, None, drain,
                        "drops from the log")
        _, decoded, dropped, received = last
        return Step("arpwatchd", rate, sent, pps, received, max(dropped, *logged, 0), decoded,
                    drain, "from metrics")

    @staticmethod
    def _drain(poller: Poller, sent: int, ended: float, limit: float = 120.0) -> float | None:
        """Seconds from the sender's end until the sensor had decoded every frame sent
        (None: it never did, frames were dropped); waits while the count still moves."""
        deadline = time.monotonic() + limit
        still_since = time.monotonic()
        seen = -1
        while time.monotonic() < deadline:
            last = poller.last()
            if last is not None:
                if last[1] >= sent:
                    done = next(t for t, decoded, _, _ in poller.samples if decoded >= sent)
                    return max(0.0, done - ended)
                if last[1] != seen:
                    seen, still_since = last[1], time.monotonic()
                elif time.monotonic() - still_since > 3.0:
                    return None
            time.sleep(0.05)
        return None

    def tcpdump(self, rate: int, buffer_kib: int | None) -> Step:
        work = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"tcpdump-{rate}-"))
        log = work / "tcpdump.log"
        extra = ["-B", str(buffer_kib)] if buffer_kib else []
        cmd = self.lab.exec(self.lab.rx_ns, ["tcpdump", "-i", self.lab.rx, *extra, "-w",
                                             "/dev/null", "arp"])
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        try:
            if not _wait_for(log, "listening on", proc, 30):
                return Step("tcpdump", rate, 0, 0.0, None, None, note="tcpdump did not start")
            sent, pps, _ = self._replay(rate)
            time.sleep(1.0)
        finally:
            _stop(proc, signal.SIGINT)
        text = log.read_text(errors="replace")
        shutil.rmtree(work, ignore_errors=True)
        captured = re.search(r"(\d+) packets? captured", text)
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        received = re.search(r"(\d+) packets? received by filter", text)
        name = "tcpdump" if not buffer_kib else f"tcpdump -B {buffer_kib}"
        return Step(name, rate, sent, pps, int(received.group(1)) if received else None,
                    int(dropped.group(1)) if dropped else None,
                    int(captured.group(1)) if captured else None)


def _steps(rates: Sequence[int], run: Runner, tool: str, buffer_kib: int | None
           ) -> Iterator[Step]:
    for rate in rates:
        step = run.sensor(rate) if tool == "arpwatchd" else run.tcpdump(rate, buffer_kib)
        yield step
        if not step.clean or (rate and step.achieved_pps < SENDER_LIMITED * rate):
            return


def _rate(r: int) -> str:
    return "top speed" if r == 0 else f"{r:,}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _fmt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3-second steps at three rates (about a minute)")
    parser.add_argument("--seconds", type=float,
                        help="how long each rate is sustained (10; quick 3)")
    parser.add_argument("--frames", type=int,
                        help="at least this many frames per step (200,000; quick 50,000)")
    parser.add_argument("--rates", help="comma-separated frames/s, 0 = tcpreplay top speed")
    parser.add_argument("--tcpdump-buffer-kib", type=int, action="append", default=[],
                        metavar="KIB", help="also run tcpdump -B KIB (e.g. 32768, the "
                        "sensor's buffer); repeatable")
    parser.add_argument("--arpwatchd", metavar="CMD", help="command for arpwatchd")
    parser.add_argument("--snapshot", metavar="REV", help="test this git revision of "
                        "arpwatchd/ instead of the working tree")
    parser.add_argument("--out", type=Path, default=gen_captures.DEFAULT_OUT)
    parser.add_argument("--json", type=Path, help="also write the steps and summary here")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    if os.geteuid() != 0:
        print("live.py: needs root (network namespaces and live capture)", file=sys.stderr)
        return 2
    bench.ensure_debian_packages(["tcpdump", "tcpreplay"])
    min_frames = args.frames or (50_000 if args.quick else 200_000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    rates = ([int(x) for x in args.rates.split(",")] if args.rates
             else list(QUICK_RATES if args.quick else DEFAULT_RATES))
    scale, folder = gen_captures.scale_folder(args.out, args.quick, None)
    manifest = gen_captures.ensure(folder, scale, ["normal"],
                                   log=lambda m: print(f"live: {m}", file=sys.stderr))
    available = int(str(manifest["normal"]["frames"]))
    capture = folder / "normal.pcap"
    with bench.arpwatchd_under_test(args.arpwatchd, args.snapshot) as under:
        return _live(args, under, capture, available, seconds, min_frames, rates)


def _live(args: argparse.Namespace, under: bench.UnderTest, capture: Path, available: int,
          seconds: float, min_frames: int, rates: list[int]) -> int:
    info = bench.machine_info(under)

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    lab = Lab()
    results: list[Step] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="arpwatchd-live-") as tmp:
        try:
            lab.open()
            run = Runner(lab, capture, available, under, Path(tmp), seconds, min_frames)
            tools: list[tuple[str, int | None]] = [("arpwatchd", None), ("tcpdump", None)]
            tools += [("tcpdump", kib) for kib in args.tcpdump_buffer_kib]
            for tool, kib in tools:
                for step in _steps(rates, run, tool, kib):
                    results.append(step)
                    if args.json:  # after every step: a run stopped early still tells
                        args.json.write_text(json.dumps(summary(results), indent=2))
                    print(f"live: {step.tool:10} {_rate(step.requested):>9} pps requested, "
                          f"{step.achieved_pps:>10,.0f} achieved, sent {step.sent:,}, "
                          f"dropped {_fmt(step.dropped)}, drain {_secs(step.drain_s)}",
                          file=sys.stderr, flush=True)
        finally:
            lab.close()

    command = "python3 benchmarks/live.py " + " ".join(args.argv)
    print("# arpwatchd live capture test\n")
    print(f"command: `{command.strip()}`  ")
    for key, value in info.items():
        print(f"{key}: {value}  ")
    print(f"capture: {capture} (looped), each rate sustained {seconds:g} s (at least "
          f"{min_frames:,} frames), veth pair between two network namespaces\n")
    print("| reader | requested pps | achieved pps | sent | received (libpcap) | decoded / "
          "captured | dropped | drain s | zero drops |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in results:
        print(f"| {s.tool} | {_rate(s.requested)} | {s.achieved_pps:,.0f} | {s.sent:,} | "
              f"{_fmt(s.received)} | {_fmt(s.decoded)} | {_fmt(s.dropped)} | "
              f"{_secs(s.drain_s) if s.tool == 'arpwatchd' else ''} | "
              f"{'yes' if s.clean else 'NO'} |")
    print()
    for tool in dict.fromkeys(s.tool for s in results):
        clean = [s for s in results if s.tool == tool and s.clean]
        best = max(clean, key=lambda s: s.achieved_pps, default=None)
        if best is None:
            print(f"- {tool}: drops at every rate tried")
        elif all(s.clean for s in results if s.tool == tool):
            print(f"- {tool}: zero drops at every rate tried, up to {best.achieved_pps:,.0f} "
                  f"frames/s achieved: its limit is higher than the sender's")
        else:
            print(f"- {tool}: zero drops up to {best.achieved_pps:,.0f} frames/s achieved "
                  f"({_rate(best.requested)} requested)")
        kept = [s for s in results if s.tool == tool and s.clean and s.drain_s is not None
                and s.drain_s <= 1.0]
        if tool == "arpwatchd" and kept:
            top = max(kept, key=lambda s: s.achieved_pps)
            print(f"  (and drained within 1 s, i.e. kept up, up to {top.achieved_pps:,.0f} "
                  f"frames/s)")
    print(f"\ntotal time: {time.perf_counter() - started:.0f} s")
    return 0


def summary(results: list[Step]) -> dict[str, object]:
    """Per tool: the highest achieved rate with zero drops and whether every step it ran was
    clean (stepping stops at the first drops, or when the sender cannot reach the rate); the
    sender's ceiling: the highest rate tcpreplay achieved in any step."""
    tools: dict[str, dict[str, object]] = {}
    for tool in dict.fromkeys(s.tool for s in results):
        steps = [s for s in results if s.tool == tool]
        clean = [s.achieved_pps for s in steps if s.clean]
        tools[tool] = {"zero_drop_pps": max(clean, default=None),
                       "all_clean": all(s.clean for s in steps),
                       "top_speed_clean": any(s.clean and s.requested == 0 for s in steps)}
    return {"steps": [{**asdict(s), "clean": s.clean} for s in results], "tools": tools,
            "sender_ceiling_pps": max((s.achieved_pps for s in results), default=None)}


if __name__ == "__main__":
    sys.exit(main())
