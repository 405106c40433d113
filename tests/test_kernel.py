"""The C kernel (`_kernel.c`) is safe on any bytes, and the package without it gives the same
events: what an operator sees must not depend on whether the build found a compiler.

The kernel holds the only copy of the repeat rules; without it every frame takes the slow
path. The kernel is compared with the slow path in test_fastpath.py and
test_fastpath_fuzz.py; here: hostile batches fed to it directly, the fallback (import
blocked, or switched off), how each says which one runs, two interfaces, and one run of these
tests and the capture differential under AddressSanitizer.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fastpath import random_lan

from arpwatchd.batch import META, Batch
from arpwatchd.config import Config, parse_config
from arpwatchd.events import Event
from arpwatchd.frames import REPLY, REQUEST, arp_frame
from arpwatchd.kernel import FASTPATH, KERNEL
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor

ROOT = Path(__file__).parents[1]
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="the C kernel is not built")
EPOCH = 1_700_000_000
GATEWAY, HOST = "02:00:00:00:00:01", "02:00:00:00:00:02"
ASK = arp_frame(REQUEST, HOST, "10.0.0.2", "00:00:00:00:00:00", "10.0.0.1")
ANSWER = arp_frame(REPLY, GATEWAY, "10.0.0.1", HOST, "10.0.0.2", eth_dst=HOST)


def _batch(records: list[tuple[int, int, int, int]], data: bytes) -> Batch:
    return Batch(data, b"".join(META.pack(*r) for r in records))


def _warm_sensor() -> Sensor:
    """A sensor whose fast path remembers the host's request and the gateway's answer."""
    sensor = Sensor(Config(), EventWriter(os.devnull))
    sensor.emitted = []
    frames = [ASK, ANSWER] * 3
    sensor.feed(sensor.decoder("eth0", 1), _batch(
        [(EPOCH + i, 0, 60 * i, 60) for i in range(len(frames))], b"".join(frames)))
    return sensor


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                          st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=12),
       st.integers(0, 3), st.integers(0, 15), st.integers(0, 20))
def test_any_batch_is_safe(records: list[tuple[int, int, int, int]], copies: int,
                           cut: int, variant: int) -> None:
    """Offsets and lengths past the data, huge times, a meta cut mid-record: the kernel reads
    only inside the buffers, hands back what it cannot prove as Python slices it, in order,
    and the sensor never fails."""
    assert KERNEL is not None
    rnd = random.Random(len(records) + variant)
    # frames the memo knows, so that records pointing at them are repeats
    data = b"".join(rnd.choice([ASK, ANSWER]) for _ in range(copies))
    records += [(EPOCH + 10 + i, 0, 60 * i, 60) for i in range(copies)]
    rnd.shuffle(records)
    batch = _batch(records, data)
    sensor = _warm_sensor()
    context = sensor.fastpath.kernel_context(("eth0", 1), claims=variant % 2 == 0)
    meta = batch.meta[: len(batch.meta) - cut]
    whole = list(Batch(data, meta[: len(meta) // 16 * 16]).frames())
    handed: list[tuple[float, bytes]] = []

    def handle(ts: float, frame: bytes) -> float:
        handed.append((ts, frame))
        return float(EPOCH + 99)

    requests, replies, claimed, solicitations, advertisements = KERNEL.run(
        context, data, meta, float(EPOCH + 99), handle)
    assert solicitations == advertisements == 0  # ARP only here
    assert requests + replies + len(handed) == len(whole)
    assert 0 <= claimed <= requests + replies
    assert all(frame in whole for frame in handed)
    assert handed == [f for f in whole if f in handed]
    sensor.feed(sensor.decoder("eth0", 1), batch)
    sensor.finish()
    assert sensor.stats.frame_errors == 0


@needs_kernel
def test_the_kernel_rejects_what_is_not_a_batch() -> None:
    assert KERNEL is not None
    context = _warm_sensor().fastpath.kernel_context(("eth0", 1))
    with pytest.raises(TypeError):
        KERNEL.run((), b"", b"", 0.0, print)
    with pytest.raises(TypeError):
        KERNEL.run((None,) * len(context), b"", b"", 0.0, print)
    with pytest.raises(TypeError):
        KERNEL.run(context, bytearray(), b"", 0.0, print)
    with pytest.raises(TypeError):
        KERNEL.run(context, b"", b"", 0.0, None)
    # a hand-back that fails stops the walk with its error
    with pytest.raises(ZeroDivisionError):
        KERNEL.run(context, ASK, META.pack(EPOCH + 200, 0, 0, 60), 0.0, lambda ts, f: 1 / 0)


@needs_kernel
def test_repeats_go_through_the_kernel() -> None:
    sensor = _warm_sensor()
    hits = sensor.fastpath.request_hits + sensor.fastpath.reply_hits
    frames = [ASK, ANSWER] * 50
    sensor.feed(sensor.decoder("eth0", 1), _batch(
        [(EPOCH + 10, i, 60 * i, 60) for i in range(len(frames))], b"".join(frames)))
    assert sensor.fastpath.request_hits + sensor.fastpath.reply_hits - hits == 100


def _replay(capture: Path, env: dict[str, str], tmp_path: Path, name: str) -> str:
    events = tmp_path / f"{name}.jsonl"
    subprocess.run([sys.executable, "-m", "arpwatchd", "replay", "-q", "--events", str(events),
                    str(capture)], check=True, cwd=ROOT, env={**os.environ, **env},
                   timeout=120)
    return events.read_text()


@pytest.mark.parametrize("capture", ["quiet-lan.pcap", "gateway-spoof.pcap",
                                     "vlan-trunk.pcap"])
def test_without_the_kernel_the_cli_gives_the_same_events(tmp_path: Path,
                                                          capture: str) -> None:
    """`arpwatchd replay` with the kernel switched off (as on an install without a compiler)
    writes the same event lines as with whatever this install has."""
    path = ROOT / "pcaps" / capture
    off = _replay(path, {"ARPWATCHD_KERNEL": "off"}, tmp_path, "off")
    assert off
    assert _replay(path, {}, tmp_path, "default") == off


def test_a_missing_kernel_falls_back_and_says_so() -> None:
    """The extension absent (blocked from import, as when the build had no compiler):
    `--version` and the metric say python, one log line says why, and the sensor runs."""
    code = (
        "import sys; sys.modules['arpwatchd._kernel'] = None\n"
        "from arpwatchd import kernel, metrics\n"
        "print(kernel.FASTPATH, kernel.FALLBACK)\n"
        "from arpwatchd.cli import main\n"
        f"sys.exit(main(['replay', '-vv', '--events', '/dev/null', "
        f"'{ROOT / 'pcaps' / 'quiet-lan.pcap'}']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    assert done.stdout.startswith("python C kernel not built")
    lines = [line for line in done.stderr.splitlines() if "fast path" in line]
    assert len(lines) == 1
    assert "INFO fast path in Python (C kernel not built" in lines[0]
    version = subprocess.run([sys.executable, "-m", "arpwatchd", "--version"], cwd=ROOT,
                             env={**os.environ, "ARPWATCHD_KERNEL": "off"},
                             capture_output=True, text=True, check=True, timeout=60)
    assert version.stdout.strip().endswith("(fast path: python)")


def test_version_says_which_fast_path_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "--version"], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip().endswith(f"(fast path: {FASTPATH})")


def _asan_kernel(tmp_path: Path) -> Path | None:
    """The kernel compiled with AddressSanitizer, or None when gcc or libasan is missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=False).stdout.strip()
    if not os.path.isabs(libasan):
        return None
    out = tmp_path / "_kernel_asan.so"
    build = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer",
         "-ffp-contract=off", f"-I{sysconfig.get_paths()['include']}",
         str(ROOT / "arpwatchd" / "_kernel.c"), str(ROOT / "arpwatchd" / "_recent.c"),
         "-o", str(out)],
        capture_output=True, text=True, check=False)
    return out if build.returncode == 0 else None


@pytest.mark.skipif(os.environ.get("ARPWATCHD_UNDER_ASAN") == "1", reason="inside the run")
def test_the_kernel_under_address_sanitizer(tmp_path: Path) -> None:
    """This file's kernel tests and the capture differential, with the kernel built under
    AddressSanitizer (any out-of-bounds read or use after free aborts the run). Bounded:
    well under a minute on this machine."""
    kernel = _asan_kernel(tmp_path)
    if kernel is None:
        pytest.skip("gcc with libasan is needed")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    loader = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('arpwatchd._kernel', {str(kernel)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "sys.modules['arpwatchd._kernel'] = module\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-x',\n"
        "    'tests/test_kernel.py::test_any_batch_is_safe',\n"
        "    'tests/test_kernel.py::test_the_kernel_rejects_what_is_not_a_batch',\n"
        "    'tests/test_kernel.py::test_repeats_go_through_the_kernel',\n"
        "    'tests/test_recent.py',\n"
        "    'tests/test_fastpath.py', '-k', 'not random_lans and not generated']))\n"
    )
    env = {**os.environ, "LD_PRELOAD": libasan, "ARPWATCHD_UNDER_ASAN": "1",
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "PYTHONMALLOC": "malloc"}
    done = subprocess.run([sys.executable, "-c", loader], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def _two_interfaces(frames: list[tuple[float, bytes]], config: Config, seed: int, fast: bool
                    ) -> tuple[object, ...]:
    """Feeds `frames` in batches of random sizes, each batch to eth0 or eth1 by turn: the
    same bytes on two interfaces are two stations' frames (separate memos and bindings)."""
    rnd = random.Random(seed)
    sensor = Sensor(config, EventWriter(os.devnull))
    sensor.fastpath.enabled = fast
    sensor.emitted = []
    decoders = [sensor.decoder("eth0", 1), sensor.decoder("eth1", 1)]
    i = 0
    while i < len(frames):
        chunk = frames[i : i + rnd.randint(1, 40)]
        offsets = [0]
        for _, raw in chunk:
            offsets.append(offsets[-1] + len(raw))
        meta = b"".join(META.pack(int(ts), round((ts - int(ts)) * 1e6), off, len(raw))
                        for (ts, raw), off in zip(chunk, offsets, strict=False))
        sensor.feed(decoders[rnd.randint(0, 1)], Batch(b"".join(r for _, r in chunk), meta))
        i += len(chunk)
    sensor.finish()
    assert sensor.stats.frame_errors == 0
    bindings = sorted(sensor.tracker.bindings(), key=lambda b: (b.interface, b.vlan or 0, b.ip))
    return sensor.emitted, bindings


@pytest.mark.parametrize("seed", range(40))
@needs_kernel
def test_paths_agree_on_two_interfaces(seed: int) -> None:
    """Random LANs at small table caps, their batches split between two interfaces: the
    slow path and the kernel give the same events and bindings."""
    frames, config_text = random_lan(seed)
    config = parse_config(config_text)
    assert _two_interfaces(frames, config, seed, True) == _two_interfaces(
        frames, config, seed, False)


def test_without_the_kernel_every_frame_takes_the_slow_path() -> None:
    """No kernel: nothing is remembered, deferred or counted as a repeat (no second copy of
    the repeat rules runs in Python)."""
    sensor = Sensor(Config(), EventWriter(os.devnull))
    sensor.fastpath.kernel = None
    sensor.emitted = []
    frames = [ASK, ANSWER] * 20
    sensor.feed(sensor.decoder("eth0", 1), _batch(
        [(EPOCH + i, 0, 60 * i, 60) for i in range(len(frames))], b"".join(frames)))
    fast = sensor.fastpath
    assert fast.request_hits == fast.reply_hits == fast.claimed == 0
    assert not any(fast._memos.values()) and not fast._pending
    assert sensor.stats.packets[("eth0", "request")] == 20


def _events_of(frames: list[tuple[float, bytes]], config: Config, fast: bool
               ) -> tuple[list[Event], int]:
    """Events of `frames` fed as one batch on eth0 (`fast`: through the kernel when built),
    and how many of them the kernel proved."""
    sensor = Sensor(config, EventWriter(os.devnull))
    sensor.fastpath.enabled = fast
    sensor.emitted = []
    offsets = [0]
    for _, raw in frames:
        offsets.append(offsets[-1] + len(raw))
    sensor.feed(sensor.decoder("eth0", 1), _batch(
        [(int(ts), 0, off, len(raw)) for (ts, raw), off in zip(frames, offsets, strict=False)],
        b"".join(raw for _, raw in frames)))
    sensor.finish()
    assert sensor.stats.frame_errors == 0
    assert sensor.emitted is not None
    return sensor.emitted, sensor.fastpath.request_hits + sensor.fastpath.reply_hits


def test_new_activity_after_time_stepped_back() -> None:
    """Two captures merged out of order (found by tests/atheris_kernel.py): a capture of
    the host and its gateway today, then an older one where another host asks at 100 and
    101, is silent, and asks again at 170, past `inactive_after` (60 s). That is new
    activity on both paths. The kernel once proved the last request a repeat: its binding
    had a deferred refresh waiting (from 101), and the horizon, counted from the last flush
    (today), was far ahead."""
    other = arp_frame(REQUEST, "02:00:00:00:00:03", "10.0.0.3", "00:00:00:00:00:00",
                      "10.0.0.1")
    frames = [(float(EPOCH + i), raw) for i, raw in enumerate([ASK, ANSWER] * 3)]
    frames += [(100.0, other), (101.0, other), (170.0, other)]
    config = parse_config("inactive_after: 60s\n")
    slow, _ = _events_of(frames, config, fast=False)
    assert [(e.kind, e.ip, e.ts) for e in slow[-2:]] == [
        ("new_station", "10.0.0.3", 100.0), ("new_activity", "10.0.0.3", 170.0)]
    fast, proven = _events_of(frames, config, fast=True)
    assert fast == slow
    if KERNEL is not None:
        assert proven >= 3  # the kernel ran: the repeats of today and the one at 101


def test_no_new_activity_when_time_steps_back() -> None:
    """The other way: a host seen today, then (a clock stepped back by NTP) a day earlier
    and at 70 s after that: no silence of `inactive_after` is measured back from today
    (last_seen never goes back), on either path."""
    frames = [(float(EPOCH + i), raw) for i, raw in enumerate([ASK, ANSWER] * 3)]
    frames += [(float(EPOCH - 86_400), ASK), (float(EPOCH - 86_400 + 70), ASK),
               (float(EPOCH + 30), ASK), (float(EPOCH + 100), ASK)]
    config = parse_config("inactive_after: 60s\n")
    slow, _ = _events_of(frames, config, fast=False)
    assert [(e.kind, e.ip) for e in slow] == [
        ("new_station", "10.0.0.2"), ("new_station", "10.0.0.1"),
        ("new_activity", "10.0.0.2")]  # at EPOCH + 100: 70 s after EPOCH + 30
    assert _events_of(frames, config, fast=True)[0] == slow


def test_a_sender_evicted_by_an_invalid_frame_is_forgotten() -> None:
    """A full table of senders (`max_senders`) evicts the host's statistics while the sender
    of an invalid frame is counted (found by tests/atheris_kernel.py). The host's next
    requests are counted afresh, and the fourth in the window is a flood, on both paths:
    the kernel once kept counting them on the evicted statistics its memo held, because
    only a claim's path told the fast path that senders went."""
    invalid = [arp_frame(3, f"02:00:00:00:00:1{n}", f"10.0.0.1{n}", "00:00:00:00:00:00",
                         "10.0.0.1") for n in range(2)]
    frames = [(float(EPOCH + i), raw) for i, raw in enumerate(
        [ASK, ASK, *invalid, ASK, ASK, ASK, ASK])]
    config = parse_config("limits: {max_senders: 2}\nflood: {frames: 3, window: 60s}\n")
    slow, _ = _events_of(frames, config, fast=False)
    assert [(e.kind, e.mac, e.ts) for e in slow if e.kind == "arp_flood"] == [
        ("arp_flood", HOST, EPOCH + 7.0)]
    fast, proven = _events_of(frames, config, fast=True)
    assert fast == slow
    if KERNEL is not None:
        assert proven >= 1
