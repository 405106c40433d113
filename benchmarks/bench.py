"""Side-by-side benchmark: arpwatchd replay against LBL arpwatch and the libpcap floor.

One command (re)generates the captures if they are missing or stale (`gen_captures.py`),
then runs on the same files, several times each (the median is reported):

* `arpwatchd replay FILE` -- the real CLI with the tracker, events (JSON to /dev/null), the
  SQLite state store (a fresh temp file per run) and the default config;
* Debian's `arpwatch -Q -N -f TMP/arp.dat -r FILE` under `unshare -n` (no mail, no bogon
  reports, and its per-report reverse-DNS look-ups fail at once in an empty network namespace);
* `tcpdump -r FILE -w /dev/null FILTER` with arpwatchd's own BPF filter -- libpcap reading
  and filtering, no work: the floor.

Whole-process wall time (start-up included) and peak RSS (GNU time's %M, the process's own
peak) per run; frames/s counts every frame in the file (for the mirror mix, the 98 % that the BPF
filter drops too). Runs are interleaved (tool A, B, C, then again) so a noisy neighbour on a
shared machine hits all tools alike; a run longer than `--long` seconds is not repeated.

Then live.py measures live capture (root only; bounded by `--live-timeout`), callgrind.py
counts instructions per frame on the first frames of each capture (`--callgrind`), and the
targets of issue 12 are checked on this run's figures, in one table (floor, measured, result):

* normal: arpwatchd >= 2x arpwatch (aim 3x); small (a /24 of 250 hosts) >= 0.9x arpwatch;
* flood: arpwatchd >= 50x arpwatch (aim 100x), peak RSS <= 300 MiB with the default
  `max_bindings` (1 M bindings at full scale);
* flood with `limits: {max_bindings: N/10}` (100,000 at full scale): RSS stays flat once the
  cap is reached, and evictions are counted (read from the sensor's metrics, `replay --serve`);
* mirror: arpwatchd >= 0.8x tcpdump with the same filter;
* live: zero kernel drops up to the sender's ceiling (tcpreplay's top speed), next to it;
* dualstack (issue 17): ARP throughput among 25 % NDP at least 0.9x ARP alone. The
  dualstack mix is the normal mix's ARP frames with the same hosts' NDP among them, so
  arpwatchd also replays the mix's NDP frames alone (`dualstack-ndp`) and an empty capture:
  ARP alone takes normal - empty, ARP among NDP dualstack - dualstack-ndp (start-up and the
  NDP frames' own work cancel out), on interleaved runs.

Each target is one small function in `TARGETS`.

Installs `arpwatch tcpdump tcpreplay time valgrind` with apt-get when missing (as root).

Usage: bench.py [--quick] [--snapshot REV] [--runs N] [--only NAME ...] [--profile]
                [--json FILE] [--callgrind off|kernel|both] [--live-timeout S]

Exit status 1 when a target fails (0 when all pass or cannot be measured).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import callgrind  # sibling scripts, not a package
import gen_captures

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
DEBIAN_PACKAGES = {"arpwatch": "/usr/sbin/arpwatch", "tcpdump": "/usr/bin/tcpdump",
                   "tcpreplay": "/usr/bin/tcpreplay", "time": "/usr/bin/time",
                   "valgrind": "/usr/bin/valgrind"}
TOOLS = ("arpwatchd", "arpwatch", "tcpdump")
RSS_SAMPLE_S = 0.05
DEFAULT_CAP = 100_000  # arpwatchd's default max_senders and max_pending
FLOOD_RSS_MIB = 300  # issue 12: peak RSS of the 1 M-station flood, default max_bindings
ARP_AMONG_NDP = 0.9  # issue 17: ARP throughput among NDP drops by at most 10 %
PARTS = ("dualstack-ndp", "empty")
"""Replayed by arpwatchd alone, for the dualstack target: the mix's NDP frames, no frames."""


# ----------------------------------------------------------------------------- setup


def ensure_debian_packages(names: Sequence[str]) -> None:
    """apt-get installs the packages whose program is missing (root only)."""
    missing = [n for n in names if not Path(DEBIAN_PACKAGES[n]).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"bench: missing {' '.join(missing)}; install them as root with apt-get")
    print(f"bench: installing {' '.join(missing)} with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep package scripts from starting the arpwatch service: only the binary is needed.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)


def arpwatchd_command(override: str | None) -> list[str]:
    if override:
        return override.split()
    script = REPO / ".venv" / "bin" / "arpwatchd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "arpwatchd"]


def _run_text(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


@dataclass
class UnderTest:
    """The arpwatchd that is measured: a command, its environment and its source folder."""

    command: list[str]
    env: dict[str, str]
    sources: Path
    label: str


@contextlib.contextmanager
def arpwatchd_under_test(override: str | None, snapshot: str | None) -> Iterator[UnderTest]:
    """The working tree's arpwatchd, or with `snapshot` a git revision of it.

    A snapshot (`git archive REV arpwatchd` into a temp folder, byte-compiled like an
    installed package) keeps the measured code still while others edit the tree. It runs as
    `python -S -m arpwatchd` with PYTHONPATH = the snapshot, then the venv's site-packages:
    -S skips the venv's .pth files, whose editable finder would otherwise import the working
    tree's package instead, and -P keeps the current folder (the repository, for a command
    run from it) off sys.path.
    """
    command = arpwatchd_command(override)
    if snapshot is None:
        yield UnderTest(command, dict(os.environ), REPO / "arpwatchd", "working tree")
        return
    python = python_of(command)
    with tempfile.TemporaryDirectory(prefix="arpwatchd-snapshot-") as tmp:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", snapshot],
                             capture_output=True, text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "arpwatchd"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        # compiled once, as `pip install` does: otherwise every run (PYTHONDONTWRITEBYTECODE
        # is set on some machines) pays ~50 ms compiling the package's sources
        subprocess.run([python, "-m", "compileall", "-q", str(Path(tmp) / "arpwatchd")],
                       check=True)
        build_kernel(python, Path(tmp) / "arpwatchd")
        site = subprocess.run([python, "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, site])}
        yield UnderTest([python, "-S", "-P", "-m", "arpwatchd"], env, Path(tmp) / "arpwatchd",
                        f"snapshot of git {rev}")


def build_kernel(python: str, package: Path) -> None:
    """Compiles a snapshot's C kernel (`_kernel.c` and the other C files of the package, issue
    12) in place with the interpreter's own compiler and flags, as the package's build does;
    without a compiler the snapshot runs its pure-Python fast path, as an install would (said
    on stderr)."""
    if not (package / "_kernel.c").exists():
        return
    sources = [str(path) for path in sorted(package.glob("*.c"))]
    script = (
        "import shlex, subprocess, sys, sysconfig\n"
        "v = sysconfig.get_config_var\n"
        "out, srcs = sys.argv[1] + v('EXT_SUFFIX'), sys.argv[2:]\n"
        "cc = [*shlex.split(v('CC')), *shlex.split(v('CFLAGS')), *shlex.split(v('CCSHARED')),\n"
        "      '-I' + sysconfig.get_paths()['include'], '-ffp-contract=off']\n"
        "objs = [src + '.o' for src in srcs]\n"
        "for src, obj in zip(srcs, objs):\n"
        "    subprocess.run([*cc, '-c', src, '-o', obj], check=True)\n"
        "subprocess.run([*shlex.split(v('LDSHARED')), *objs, '-o', out], check=True)\n"
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('arpwatchd._kernel', out)\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    )
    done = subprocess.run([python, "-c", script, str(package / "_kernel"), *sources],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"bench.py: the snapshot's C kernel did not build; its fast path runs in "
              f"Python:\n{done.stderr.strip()}", file=sys.stderr)


def capture_filter(under: UnderTest) -> str:
    """The BPF filter the measured arpwatchd gives libpcap (`ARP_FILTER` in its capture.py),
    so tcpdump filters exactly as it does: a string literal in older sources, else asked of
    the measured package itself (it is built from the decoder's VLAN tag depth)."""
    found = re.search(r'^ARP_FILTER = "([^"]+)"', (under.sources / "capture.py").read_text(),
                      re.M)
    if found:
        return found.group(1)
    command = under.command
    python = command[:-2] if command[-2:] == ["-m", "arpwatchd"] else [python_of(command)]
    done = subprocess.run([*python, "-c", "from arpwatchd.capture import ARP_FILTER; "
                           "print(ARP_FILTER)"], env=under.env, cwd=under.sources.parent,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        sys.exit(f"bench.py: cannot read ARP_FILTER from {under.sources}: {done.stderr.strip()}")
    return done.stdout.strip()


def python_of(arpwatchd: list[str]) -> str:
    """The Python interpreter behind an arpwatchd command."""
    if len(arpwatchd) >= 3 and arpwatchd[1] in ("-m", "-S", "-P"):
        return arpwatchd[0]
    candidate = Path(arpwatchd[0]).parent / "python"
    return str(candidate) if candidate.exists() else sys.executable


def source_digest(folder: Path = REPO / "arpwatchd") -> str:
    """A digest of arpwatchd/*.py as they are now (others may be editing the tree)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        with contextlib.suppress(OSError):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info(under: UnderTest) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / MIB:.1f} GiB"
    commit = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?"
    dirty = _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "arpwatchd"])
    return {
        "host": socket.gethostname(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "arpwatchd": " ".join(under.command) + (
            f" (git {commit}{'+dirty' if dirty else ''}, sources "
            f"{source_digest(under.sources)})" if under.label == "working tree"
            else f" ({under.label}, sources {source_digest(under.sources)})"),
        "arpwatch": _run_text(["dpkg-query", "-W", "-f", "${Version}", "arpwatch"]) or "?",
        "tcpdump": (_run_text(["tcpdump", "--version"]).splitlines() or ["?"])[0],
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ----------------------------------------------------------------------------- one run


@dataclass
class Run:
    tool: str
    capture: str
    wall: float
    rss_kib: int
    status: int
    stations: int | None = None
    timed_out: bool = False
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def _child_of(pid: int, wait: float = 5.0) -> int | None:
    """The process that /usr/bin/time started (its only child)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if children:
            return int(children[0])
        time.sleep(0.002)
    return None


def _rss_sampler(pid: int, samples: list[tuple[float, int]], started: float,
                 stop: threading.Event) -> None:
    child = _child_of(pid)
    if child is None:
        return
    path = f"/proc/{child}/status"
    while not stop.is_set():
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        samples.append((time.perf_counter() - started, int(line.split()[1])))
                        break
        except (OSError, ValueError):
            return
        stop.wait(RSS_SAMPLE_S)


class Timed:
    """One process under GNU time, whose %M is the child's own peak RSS.

    `wait4` on a child that Python forked would not do: Linux carries the peak RSS of the
    forking (40 MiB) Python process over exec into the child's ru_maxrss, so a 6 MiB tcpdump
    would show 40 MiB. GNU time forks from its own small image. Wall time is measured here.
    """

    def __init__(self, cmd: Sequence[str], work: Path, timeout: float, sample_rss: bool,
                 stderr: int | None = None, env: dict[str, str] | None = None) -> None:
        self.rss_file = work / "rss.txt"
        self.samples: list[tuple[float, int]] = []
        self.killed = threading.Event()
        self._stop = threading.Event()
        self._log = (work / "output.log").open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [DEBIAN_PACKAGES["time"], "-f", "%M", "-o", str(self.rss_file), *cmd],
            stdout=self._log, stderr=stderr if stderr is not None else subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=stderr is not None, env=env)
        self._sampler = None
        if sample_rss:
            self._sampler = threading.Thread(
                target=_rss_sampler, args=(self.proc.pid, self.samples, self.started,
                                           self._stop), daemon=True)
            self._sampler.start()
        self._timer = threading.Timer(timeout, self._kill)
        self._timer.start()

    def _kill(self) -> None:
        self.killed.set()
        self.signal(signal.SIGKILL)

    def signal(self, signum: int) -> None:
        """Signals the measured process itself (GNU time would just die)."""
        child = _child_of(self.proc.pid, wait=0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child if child is not None else self.proc.pid, signum)

    def wait(self) -> tuple[float, int, int]:
        """Returns (wall s, exit status, peak RSS KiB)."""
        try:
            status = self.proc.wait()
        finally:
            self._timer.cancel()
            self._stop.set()
            self._log.close()
        wall = time.perf_counter() - self.started
        if self._sampler is not None:
            self._sampler.join()
        rss = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            # GNU time writes "Command exited with non-zero status N" before the figure.
            rss = int(self.rss_file.read_text().split()[-1])
        return wall, status, rss


def count_bindings(state: Path) -> int | None:
    """Bindings as a reader sees them: the table with the journal applied (a replay leaves a
    flood's journal to be folded in the next run's idle time)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from arpwatchd.errors import StoreError  # noqa: PLC0415
    from arpwatchd.store import Store  # noqa: PLC0415

    try:
        store = Store(str(state), readonly=True)
        try:
            return len(store.load_bindings())
        finally:
            store.close()
    except StoreError:
        return None


def count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return None


class Bench:
    def __init__(self, under: UnderTest, tmp: Path, timeout: float) -> None:
        self.arpwatchd = under.command
        self.bpf = capture_filter(under)
        self.env = under.env
        self.tmp = tmp
        self.timeout = timeout
        self.serial = 0

    def _dir(self, tool: str, capture: str) -> Path:
        self.serial += 1
        folder = self.tmp / f"{self.serial:03d}-{tool}-{capture}"
        folder.mkdir()
        return folder

    def run(self, tool: str, capture: str, path: Path, sample_rss: bool = False) -> Run:
        work = self._dir(tool, capture)
        if tool == "arpwatchd":
            state = work / "state.sqlite"
            cmd = [*self.arpwatchd, "replay", "--state", str(state), "--events", "/dev/null",
                   str(path)]
        elif tool == "arpwatch":
            dat = work / "arp.dat"
            dat.touch()
            # arpwatch chdir()s to its own folder: every path must be absolute.
            cmd = ["unshare", "-n", DEBIAN_PACKAGES["arpwatch"], "-Q", "-N", "-f", str(dat),
                   "-r", str(path.resolve())]
        else:
            cmd = [DEBIAN_PACKAGES["tcpdump"], "-r", str(path), "-w", "/dev/null", self.bpf]
        timed = Timed(cmd, work, self.timeout, sample_rss, env=self.env)
        wall, status, rss = timed.wait()
        run = Run(tool, capture, wall, rss, status, timed_out=timed.killed.is_set(),
                  rss_samples=timed.samples)
        if tool == "arpwatchd":
            run.stations = count_bindings(work / "state.sqlite")
        elif tool == "arpwatch":
            run.stations = count_lines(work / "arp.dat")
        if status != 0 and not run.timed_out:
            tail = (work / "output.log").read_text(errors="replace")[-800:]
            print(f"bench: {tool} on {capture} exited with {status}:\n{tail}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return run

    def run_capped(self, path: Path, cap: int) -> Run:
        """arpwatchd replay with max_bindings = cap; evictions read from its metrics."""
        work = self._dir("arpwatchd", "flood-capped")
        config = work / "capped.yml"
        # At full scale only max_bindings changes (the setting; the senders and
        # pending tables are capped at 100,000 by default). A smaller flood (--quick) scales
        # every cap down with it, or the default caps would not be reached at all.
        limits = f"limits:\n  max_bindings: {cap}\n"
        if cap < DEFAULT_CAP:
            limits += f"  max_senders: {cap}\n  max_pending: {cap}\n"
        config.write_text(limits)
        state = work / "state.sqlite"
        port = _free_port()
        cmd = [*self.arpwatchd, "replay", "-c", str(config), "--state", str(state), "--events",
               "/dev/null", "--serve", "--metrics-address", f"127.0.0.1:{port}", str(path)]
        timed = Timed(cmd, work, self.timeout, sample_rss=True, stderr=subprocess.PIPE,
                      env=self.env)
        # The endpoint serves during the replay too: poll it, so that a run stopped at the
        # timeout still tells how far it got and how many bindings it evicted on the way.
        latest = {"text": ""}
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(1.0):
                text = _scrape(port, tries=1)
                if text:
                    latest["text"] = text

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        wall = float("nan")
        stderr_tail: list[str] = []
        stream = timed.proc.stderr
        assert stream is not None
        for line in stream:
            stderr_tail = [*stderr_tail[-20:], line]
            if "files read" in line:
                wall = time.perf_counter() - timed.started
                stop.set()
                poller.join()
                latest["text"] = _scrape(port) or latest["text"]
                timed.signal(signal.SIGTERM)
                break
        stream.close()
        _, status, rss = timed.wait()
        stop.set()
        poller.join()
        run = Run("arpwatchd", "flood-capped", wall, rss, status,
                  stations=count_bindings(state), timed_out=timed.killed.is_set(),
                  rss_samples=timed.samples)
        metrics = latest["text"]
        for key, name in (("evicted", "arpwatchd_bindings_evicted"),
                          ("decoded", "arpwatchd_arp_packets"),
                          ("bindings", "arpwatchd_bindings")):
            value = _metric(metrics, name)
            if value is not None:
                run.extra[key] = value
        if run.timed_out:
            run.wall = self.timeout  # at least: the rate shown is an upper bound
            print(f"bench: capped replay stopped at the {self.timeout:g} s timeout after "
                  f"{run.extra.get('decoded', 0):,.0f} frames", file=sys.stderr)
        elif math.isnan(wall):  # it never said that the files were read
            print("bench: capped replay did not finish:\n" + "".join(stderr_tail),
                  file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int, tries: int = 50) -> str:
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text: str = reply.read().decode()
                return text
        except OSError:
            time.sleep(0.1)
    return ""


def _metric(text: str, name: str) -> float | None:
    """Sum of every sample of a metric family (any labels, with or without `_total`)."""
    total = None
    pattern = re.compile(rf"^{re.escape(name)}(?:_total)?(?:\{{[^}}]*\}})? (\S+)$")
    for line in text.splitlines():
        found = pattern.match(line)
        if found:
            total = (total or 0.0) + float(found.group(1))
    return total


# ----------------------------------------------------------------------------- results


@dataclass
class Summary:
    tool: str
    capture: str
    frames: int
    runs: int
    wall: float
    fps: float
    rss_mib: float
    stations: int | None
    ok: bool
    lower_bound: bool = False


def summarise(runs: list[Run], frames: int) -> Summary:
    walls = [r.wall for r in runs]
    wall = statistics.median(walls)
    rss = max(r.rss_kib for r in runs) / 1024
    timed_out = any(r.timed_out for r in runs)
    ok = all(r.status == 0 for r in runs) and not timed_out and not math.isnan(wall)
    stations = runs[-1].stations
    return Summary(runs[0].tool, runs[0].capture, frames, len(runs), wall, frames / wall, rss,
                   stations, ok, timed_out)


def _fmt_rate(fps: float, lower: bool = False) -> str:
    prefix = "<" if lower else ""
    if fps >= 1e6:
        return f"{prefix}{fps / 1e6:.2f} M"
    if fps >= 1e3:
        return f"{prefix}{fps / 1e3:.1f} k"
    return f"{prefix}{fps:.0f}"


def results_table(summaries: dict[tuple[str, str], Summary], captures: list[str]) -> str:
    head = ("| capture | frames | tool | runs | wall s (median) | frames/s | peak RSS MiB | "
            "stations | arpwatchd/arpwatch | arpwatchd/tcpdump |")
    lines = [head, "|" + "---|" * 10]
    for capture in captures:
        ours = summaries.get(("arpwatchd", capture))
        for tool in (*TOOLS, "arpwatchd-capped"):
            s = summaries.get((tool, capture))
            if s is None:
                continue
            ratio_aw = ratio_td = ""
            if tool == "arpwatchd" and ours is not None:
                if (aw := summaries.get(("arpwatch", capture))) is not None:
                    ratio_aw = f"{ours.fps / aw.fps:.2f}x"
                if (td := summaries.get(("tcpdump", capture))) is not None:
                    ratio_td = f"{ours.fps / td.fps:.3f}x"
            note = "" if s.ok else (" (stopped at the timeout)" if s.lower_bound
                                    else " (FAILED)")
            lines.append(
                f"| {capture} | {s.frames:,} | {tool}{note} | {s.runs} | "
                f"{'>' if s.lower_bound else ''}{s.wall:.2f} | "
                f"{_fmt_rate(s.fps, s.lower_bound)} | {s.rss_mib:.0f} | "
                f"{'' if s.stations is None else f'{s.stations:,}'} | {ratio_aw} | {ratio_td} |"
            )
    return "\n".join(lines)


@dataclass
class Target:
    name: str
    wanted: str
    measured: str
    passed: bool | None


@dataclass
class Results:
    """What one run measured, as the target checks read it."""

    summaries: dict[tuple[str, str], Summary]
    capped: Run | None = None
    cap: int = 0
    flood_claims: int = 0
    live: dict[str, Any] | None = None
    """live.py's `--json` summary; None when not run (`live_note` says why)."""
    live_note: str = "not run"


def _ratio(summaries: dict[tuple[str, str], Summary], capture: str, other: str
           ) -> float | None:
    ours = summaries.get(("arpwatchd", capture))
    theirs = summaries.get((other, capture))
    if ours is None or theirs is None or not ours.ok:
        return None
    return ours.fps / theirs.fps


def _speed(results: Results, capture: str, other: str, name: str, floor: float,
           aim: float | None = None) -> Target | None:
    """arpwatchd's frames/s over `other`'s on one capture, against a floor (and an aim)."""
    if ("arpwatchd", capture) not in results.summaries:
        return None
    r = _ratio(results.summaries, capture, other)
    theirs = results.summaries.get((other, capture))
    bound = f" ({other} was stopped at the timeout: at least this)" \
        if theirs and theirs.lower_bound else ""
    digits = 1 if floor >= 10 else 2
    wanted = f">= {floor:g}x" + (f" (aim {aim:g}x)" if aim else "")
    return Target(name, wanted, "-" if r is None else f"{r:.{digits}f}x{bound}",
                  None if r is None else r >= floor)


def normal_target(results: Results) -> Target | None:
    return _speed(results, "normal", "arpwatch", "normal: arpwatchd vs arpwatch -r", 2, 3)


def small_target(results: Results) -> Target | None:
    return _speed(results, "small", "arpwatch",
                  "/24 of 250 hosts (small): arpwatchd vs arpwatch -r", 0.9)


def flood_target(results: Results) -> Target | None:
    return _speed(results, "flood", "arpwatch", "flood: arpwatchd vs arpwatch -r", 50, 100)


def flood_rss_target(results: Results) -> Target | None:
    ours = results.summaries.get(("arpwatchd", "flood"))
    if ours is None:
        return None
    bindings = "" if ours.stations is None else f" at {ours.stations:,} bindings"
    return Target(f"flood: arpwatchd peak RSS{bindings} (default max_bindings)",
                  f"<= {FLOOD_RSS_MIB} MiB", f"{ours.rss_mib:.0f} MiB",
                  ours.rss_mib <= FLOOD_RSS_MIB)


def capped_target(results: Results) -> Target | None:
    if results.capped is None:
        return None
    return _capped_target(results.capped, results.cap, results.flood_claims)


def mirror_target(results: Results) -> Target | None:
    return _speed(results, "mirror", "tcpdump",
                  "mirror: arpwatchd vs tcpdump -r (same filter)", 0.8)


def live_target(results: Results) -> Target | None:
    """Zero drops at the sender's ceiling: every rate stepped through, up to tcpreplay's top
    speed (or the highest rate it reached), taken without a kernel drop."""
    name = "live (live.py, normal mix on a veth): zero-drop rate"
    wanted = "zero drops at the sender's ceiling"
    live = results.live
    if live is None:
        return Target(name, wanted, results.live_note, None)
    ours = live["tools"].get("arpwatchd")
    ceiling = live.get("sender_ceiling_pps")
    reference = live["tools"].get("tcpdump")
    text = "sender (tcpreplay) reached " + ("-" if ceiling is None else f"{ceiling:,.0f}/s")
    if reference is not None:
        text += f", tcpdump zero drops up to {_pps(reference['zero_drop_pps'])}"
        if not reference["all_clean"]:
            text += " (drops above)"
    if ours is None:
        return Target(name, wanted, f"arpwatchd did not run; {text}", None)
    best = ours["zero_drop_pps"]
    said = "drops at every rate tried" if best is None else f"zero drops up to {best:,.0f}/s"
    return Target(name, wanted, f"{said}; {text}"
                  + ("" if results.live_note == "ran" else f" ({results.live_note})"),
                  bool(ours["all_clean"]) and results.live_note == "ran")


def dualstack_target(results: Results) -> Target | None:
    """ARP frames among NDP against ARP alone: (normal - empty) / (dualstack - dualstack-ndp)
    in wall time, the same ARP frames on both sides."""
    walls = {c: s.wall for (tool, c), s in results.summaries.items()
             if tool == "arpwatchd" and s.ok}
    if not {"normal", "dualstack", *PARTS} <= set(walls):
        return None
    alone = walls["normal"] - walls["empty"]
    among = walls["dualstack"] - walls["dualstack-ndp"]
    if alone <= 0 or among <= 0:
        return Target(DUALSTACK_TARGET, f">= {ARP_AMONG_NDP:g}x", "- (too short to tell)", None)
    ratio = alone / among
    return Target(DUALSTACK_TARGET, f">= {ARP_AMONG_NDP:g}x",
                  f"{ratio:.2f}x (ARP {among:.2f} s among NDP, {alone:.2f} s alone; the whole "
                  f"dual-stack file {walls['dualstack'] / walls['normal']:.2f}x the normal "
                  "mix's time)", ratio >= ARP_AMONG_NDP)


DUALSTACK_TARGET = "dualstack: ARP throughput among 25 % NDP vs ARP alone (normal)"


def _pps(value: float | None) -> str:
    return "no rate (drops at every one)" if value is None else f"{value:,.0f}/s"


TARGETS: list[Callable[[Results], Target | None]] = [
    normal_target, small_target, flood_target, flood_rss_target, capped_target,
    mirror_target, live_target, dualstack_target,
]
"""The issue's targets, one small function each (None: not measured in this run)."""


def check_targets(results: Results) -> list[Target]:
    return [t for check in TARGETS if (t := check(results)) is not None]


def targets_table(targets: list[Target]) -> str:
    lines = ["| target | floor | measured | result |", "|---|---|---|---|"]
    for t in targets:
        verdict = "n/a" if t.passed is None else ("PASS" if t.passed else "FAIL")
        lines.append(f"| {t.name} | {t.wanted} | {t.measured} | {verdict} |")
    return "\n".join(lines)


def _capped_target(capped: Run, cap: int, flood_claims: int) -> Target:
    """Flat RSS, at most `cap` bindings, and every binding past the cap evicted and counted.

    Every flood frame is a new station, so after `decoded` frames `decoded - cap` bindings
    must have been evicted. `decoded` and the eviction count come from the sensor's metrics
    (polled during the run, so a run stopped at the timeout is judged on what it did);
    without metrics, from the state file at the end of a complete run.
    """
    flat, text = _flatness(capped)
    evicted = capped.extra.get("evicted")
    decoded = capped.extra.get("decoded")
    bindings = capped.extra.get("bindings", capped.stations)
    if evicted is not None and decoded is not None:
        source = "from metrics"
    elif not capped.timed_out and capped.stations is not None:
        decoded = float(flood_claims)
        evicted = float(flood_claims - capped.stations)
        source = "derived from the state file"
    else:
        source = "unknown"
    expected = None if decoded is None else max(0, int(decoded) - cap)
    counted = evicted is not None and expected is not None and evicted >= expected > 0
    held = bindings is not None and bindings <= cap
    progress = ("" if not capped.timed_out else
                f"; stopped at the timeout after {decoded or 0:,.0f} of {flood_claims:,} frames")
    return Target(
        f"flood, max_bindings {cap:,}: RSS flat, evictions counted",
        f"flat RSS, <= {cap:,} bindings, every binding past the cap evicted",
        f"{text}; evicted {'-' if evicted is None else f'{evicted:,.0f}'} of "
        f"{'-' if expected is None else f'{expected:,}'} expected ({source}); bindings "
        f"{'-' if bindings is None else f'{bindings:,.0f}'}{progress}",
        flat and counted and held)


def _flatness(run: Run) -> tuple[bool, str]:
    """RSS after the first quarter of the run may grow at most 15 %: the cap holds memory."""
    samples = run.rss_samples
    if len(samples) < 8:
        return False, "too few RSS samples"
    end = samples[-1][0]
    quarter = next(rss for t, rss in samples if t >= end * 0.25)
    later = max(rss for t, rss in samples if t >= end * 0.25)
    growth = later / quarter - 1
    text = (f"RSS {quarter / 1024:.0f} MiB at 25 % of the run, max {later / 1024:.0f} MiB "
            f"after (+{growth * 100:.0f} %)")
    return growth <= 0.15, text


def rss_curve(run: Run, points: int = 5) -> str:
    samples = run.rss_samples
    if not samples:
        return "-"
    end = samples[-1][0]
    picks = []
    for i in range(1, points + 1):
        at = end * i / points
        rss = next((r for t, r in samples if t >= at), samples[-1][1])
        picks.append(f"{100 * i // points}%: {rss / 1024:.0f}")
    return "RSS MiB by share of run time: " + ", ".join(picks)


# ----------------------------------------------------------------------------- live, callgrind

LIVE_SCRIPT = Path(__file__).resolve().parent / "live.py"


def run_live(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str, str]:
    """live.py (namespaces, tcpreplay, the sensor and tcpdump), bounded by `--live-timeout`:
    returns its `--json` summary, a note (ran, skipped and why, stopped at the bound) and its
    printed table."""
    if os.geteuid() != 0:
        return None, "skipped: needs root (network namespaces and live capture)", ""
    if args.live_timeout <= 0:
        return None, "skipped (--live-timeout 0)", ""
    with tempfile.TemporaryDirectory(prefix="arpwatchd-bench-live-") as tmp:
        out = Path(tmp) / "live.json"
        cmd = [sys.executable, str(LIVE_SCRIPT), "--json", str(out), "--out", str(args.out),
               "--rates", args.live_rates,
               "--seconds", str(args.live_seconds or (3 if args.quick else 10)),
               *(["--quick"] if args.quick else []),
               *(["--snapshot", args.snapshot] if args.snapshot else []),
               *(["--arpwatchd", args.arpwatchd] if args.arpwatchd else [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        note = "ran"
        try:
            printed, _ = proc.communicate(timeout=args.live_timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # live.py removes its namespaces on SIGTERM
            try:
                printed, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                printed, _ = proc.communicate()
            note = f"stopped at the {args.live_timeout:g} s bound"
        if proc.returncode not in (0, None) and note == "ran":
            note = f"live.py exited with {proc.returncode}"
        try:
            summary: dict[str, Any] | None = json.loads(out.read_text())
        except (OSError, ValueError):
            summary = None
            note = f"{note}; no result"
    lines = (printed or "").splitlines()
    groups = [[x for x in lines if x.startswith("capture:")],
              [x for x in lines if x.startswith("|")],
              [x for x in lines if x.startswith(("- ", "  ("))]]
    return summary, note, "\n\n".join("\n".join(g) for g in groups if g)


def run_callgrind(args: argparse.Namespace, under: UnderTest, paths: dict[str, Path]
                  ) -> list[callgrind.Count]:
    variants = {"off": [], "kernel": ["kernel"], "both": ["python", "kernel"],
                "all": ["arpwatch", "python", "kernel"]}[args.callgrind]
    if not variants:
        return []
    return callgrind.measure(under.command, under.env, paths, variants, jobs=2,
                             log=lambda m: print(f"bench: callgrind {m}", file=sys.stderr,
                                                 flush=True),
                             frames=dict(args.callgrind_frames))
# ----------------------------------------------------------------------------- start-up


STARTUP_TARGET_MS = 30.0
"""Issue 12, item 4: a replay of an empty capture within 30 ms of `python3 -c pass` plus
importing pcapy and dpkt (the libraries no sensor can do without)."""


def startup_check(under: UnderTest, runs: int = 20) -> Target:
    """Prints the start-up row: `arpwatchd replay` of an empty capture (a pcap header only)
    against `python -c 'import pcapy, dpkt'` and `python -c pass` on the same interpreter
    and flags, interleaved, median of `runs` each. Returns the start-up row of the targets."""
    command = under.command
    python = command[:-2] if command[-2:] == ["-m", "arpwatchd"] else [python_of(command)]
    with tempfile.TemporaryDirectory(prefix="arpwatchd-startup-") as tmp:
        empty = Path(tmp) / "empty.pcap"
        empty.write_bytes(gen_captures._PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        commands = {
            "python -c pass": [*python, "-c", "pass"],
            "python -c 'import pcapy, dpkt'": [*python, "-c", "import pcapy, dpkt"],
            "arpwatchd replay EMPTY": [*command, "replay", "--events", os.devnull, "-q",
                                       str(empty)],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                began = time.perf_counter()
                subprocess.run(cmd, env=under.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)
                walls[name].append(time.perf_counter() - began)
    ms = {name: statistics.median(w) * 1000 for name, w in walls.items()}
    base = ms["python -c 'import pcapy, dpkt'"]
    over = ms["arpwatchd replay EMPTY"] - base
    print(f"\n## Start-up (issue 12)\n\n| command | wall ms (median of {runs}) |\n|---|---|")
    for name, value in ms.items():
        print(f"| `{name}` | {value:.1f} |")
    return Target("start-up: empty-capture replay over python -c 'import pcapy, dpkt'",
                  f"<= {STARTUP_TARGET_MS:.0f} ms", f"{over:+.1f} ms", over <= STARTUP_TARGET_MS)


# ----------------------------------------------------------------------------- main


def _order(captures: list[str], runs: int) -> Iterator[tuple[int, str, str]]:
    for i in range(runs):
        for capture in captures:
            for tool in ("arpwatchd",) if capture in PARTS else TOOLS:
                yield i, capture, tool


def _dualstack_parts(folder: Path, paths: dict[str, Path]) -> dict[str, int]:
    """Writes the PARTS beside the dualstack capture; returns their frame counts."""
    ndp = folder / "dualstack-ndp.pcap"
    empty = folder / "empty.pcap"
    counts = {"dualstack-ndp": gen_captures.ndp_only(paths["dualstack"], ndp), "empty": 0}
    empty.write_bytes(gen_captures._PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    paths.update({"dualstack-ndp": ndp, "empty": empty})
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="captures at 1/10 size (about a minute in all)")
    parser.add_argument("--scale", type=float, help="any capture size factor")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and capture (3)")
    parser.add_argument("--long", type=float, default=30.0, metavar="S",
                        help="do not repeat a run that took longer than this (30 s)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="kill a run after this long; its rate is then an upper bound")
    parser.add_argument("--only", action="append", metavar="NAME",
                        choices=[s.name for s in gen_captures.specs(1.0)],
                        help="only this capture (repeatable)")
    parser.add_argument("--out", type=Path, default=gen_captures.DEFAULT_OUT)
    parser.add_argument("--arpwatchd", metavar="CMD",
                        help="command for arpwatchd (default: .venv/bin/arpwatchd)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile arpwatchd on the normal mix and the flood "
                             "(profile_replay.py: py-spy, 60 s at most each)")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--no-capped", action="store_true",
                        help="skip the flood run with a max_bindings cap")
    parser.add_argument("--snapshot", metavar="REV",
                        help="measure this git revision of arpwatchd/ (e.g. HEAD), not the "
                             "working tree that others may be editing")
    parser.add_argument("--json", type=Path, help="write all results here as JSON")
    parser.add_argument("--live-rates", default="50000,100000,200000,0", metavar="PPS,...",
                        help="live.py's rates, 0 = tcpreplay's top speed "
                             "(50000,100000,200000,0)")
    parser.add_argument("--live-seconds", type=float, metavar="S",
                        help="live.py's seconds per rate (10; quick 3)")
    parser.add_argument("--live-timeout", type=float, default=300.0, metavar="S",
                        help="stop live.py after this long; 0 skips the live row (300)")
    parser.add_argument("--callgrind", choices=("off", "kernel", "both", "all"),
                        default="kernel",
                        help="instructions per frame of each mix, cut short "
                             "(callgrind.py): as built (kernel, the default), also with "
                             "ARPWATCHD_KERNEL=off (both), and LBL arpwatch's (all), or "
                             "not at all")
    parser.add_argument("--callgrind-frames", action="append", default=[], metavar="MIX=N",
                        type=callgrind.frames_option,
                        help="count the first N frames of MIX, not callgrind.py's FRAMES "
                             "(e.g. normal=1000000 for the whole file; repeatable)")
    args = parser.parse_args(argv)

    ensure_debian_packages(list(DEBIAN_PACKAGES))
    command = "python3 benchmarks/bench.py " + " ".join(argv if argv is not None else
                                                        sys.argv[1:])
    with arpwatchd_under_test(args.arpwatchd, args.snapshot) as under:
        return _bench(args, under, command.strip())


def _bench(args: argparse.Namespace, under: UnderTest, command: str) -> int:
    scale, folder = gen_captures.scale_folder(args.out, args.quick, args.scale)
    started = time.perf_counter()
    manifest = gen_captures.ensure(folder, scale, args.only,
                                   log=lambda m: print(f"bench: {m}", file=sys.stderr))
    names = [s.name for s in gen_captures.specs(scale) if not args.only or s.name in args.only]
    paths = {n: folder / f"{n}.pcap" for n in names}
    frames = {n: int(str(manifest[n]["frames"])) for n in names}
    measured = dict(paths)  # what callgrind.py cuts (it makes its own NDP-alone cut)
    if {"normal", "dualstack"} <= set(names):
        frames.update(_dualstack_parts(folder, paths))
        names += list(PARTS)

    info = machine_info(under)
    digest_before = source_digest(under.sources)
    print(f"# arpwatchd benchmark ({'quick' if args.quick else f'scale {scale:g}'})\n")
    print(f"command: `{command}`  ")
    for key, value in info.items():
        print(f"{key}: {value}  ")
    print()
    for name in (n for n in names if n in manifest):
        m = manifest[name]
        spec = m["spec"]
        assert isinstance(spec, dict)
        print(f"- {name}.pcap: {frames[name]:,} frames ({m['arp_frames']:,} ARP, "
              f"{m['distinct_arp_frames']:,} distinct ARP frames), "
              f"{int(str(m['bytes'])) / MIB:.0f} MiB: {spec['description']}")
    sys.stdout.flush()

    for path in paths.values():  # warm the page cache so the first tool pays no disk reads
        with path.open("rb") as handle:
            while handle.read(16 * MIB):
                pass

    runs: dict[tuple[str, str], list[Run]] = {}
    capped: Run | None = None
    cap = max(1, frames.get("flood", 0) // 10)
    with tempfile.TemporaryDirectory(prefix="arpwatchd-bench-") as tmp:
        bench = Bench(under, Path(tmp), args.timeout)
        for i, capture, tool in _order(names, args.runs):
            done = runs.setdefault((tool, capture), [])
            if i > 0 and done and max(r.wall for r in done) > args.long:
                continue
            run = bench.run(tool, capture, paths[capture],
                            sample_rss=(tool == "arpwatchd" and capture == "flood"))
            done.append(run)
            print(f"bench: run {i + 1} {tool:9} {capture:7} {run.wall:7.2f} s "
                  f"{run.rss_kib / 1024:6.0f} MiB", file=sys.stderr, flush=True)
        if "flood" in names and not args.no_capped:
            capped = bench.run_capped(paths["flood"], cap)
            print(f"bench: capped    arpwatchd flood   {capped.wall:7.2f} s "
                  f"{capped.rss_kib / 1024:6.0f} MiB", file=sys.stderr, flush=True)

    summaries = {key: summarise(value, frames[key[1]]) for key, value in runs.items()}
    if capped is not None:
        s = summarise([capped], frames["flood"])
        s.tool = "arpwatchd-capped"
        s.capture = "flood"
        summaries[("arpwatchd-capped", "flood")] = s

    print("\n## Results\n")
    print(results_table(summaries, names))
    print("\nframes/s = frames in the file / whole-process wall time (median of the runs; "
          "start-up included). stations = bindings in arpwatchd's state file, lines in "
          "arpwatch's arp.dat.")
    flood_run = runs.get(("arpwatchd", "flood"))
    if flood_run:
        print(f"\nflood, default max_bindings: {rss_curve(flood_run[-1])}")
    if capped is not None:
        print(f"flood, max_bindings {cap:,}: {rss_curve(capped)}")

    flood_claims = int(str(manifest["flood"].get("distinct_claims", 0))) if "flood" in names \
        else 0
    results = Results(summaries, capped, cap, flood_claims)
    sys.stdout.flush()
    results.live, results.live_note, live_table = run_live(args)
    print("\n## Live capture (live.py)\n")
    print(live_table or f"live: {results.live_note}")
    sys.stdout.flush()
    counts = run_callgrind(args, under, measured)
    if counts:
        print("\n## Instructions per frame (callgrind, whole process, first frames of each "
              "capture)\n")
        print(callgrind.table(counts))
        print("\nper frame = (instructions of the cut capture - instructions of an empty "
              "one) / frames; callgrind.py says how.")
        for line in callgrind.arp_among_ndp(counts):
            print(f"\n{line}")

    targets = [*check_targets(results), startup_check(under)]
    print("\n## Targets (issues 12 and 17)\n")
    print(targets_table(targets))
    print(f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s")
    digest_after = source_digest(under.sources)
    if digest_after != digest_before:
        print("\nWARNING: arpwatchd/ changed while the benchmark ran (sources "
              f"{digest_before} -> {digest_after}): the runs mix versions; run it again "
              "(--snapshot HEAD measures a fixed revision).")

    if args.profile:
        print()
        sys.stdout.flush()
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent /
                                            "profile_replay.py"),
                        *(["--quick"] if args.quick else []), "--out", str(args.out),
                        "--top", str(args.profile_lines),
                        *(["--arpwatchd", args.arpwatchd] if args.arpwatchd else []),
                        *(["--snapshot", args.snapshot] if args.snapshot else []),
                        *[f"--capture={n}" for n in ("normal", "flood") if n in paths]],
                       check=False)
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "machine": info, "scale": scale,
            "captures": {n: manifest[n] for n in names if n in manifest},
            "summaries": [asdict(s) for s in summaries.values()],
            "runs": [{k: v for k, v in asdict(r).items() if k != "rss_samples"}
                     for rs in runs.values() for r in rs],
            "targets": [asdict(t) for t in targets],
            "live": results.live,
            "callgrind": [{**asdict(c), "per_frame": c.per_frame} for c in counts],
        }, indent=2))
    return 0 if all(t.passed is not False for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
