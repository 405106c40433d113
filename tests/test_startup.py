"""Start-up imports (issue 12, item 4): each command loads only what it needs.

Why: every `arpwatchd` invocation paid ~210 M instructions of the package's own imports, most
of them for libraries the command never used (Prometheus, YAML, SQLite, the operator tools,
ctypes, the vendor table). These tests fail when a plain replay, one without a config file,
a state file or metrics, imports one of them again; they look at `sys.modules` in a fresh
interpreter, not at the clock, so they hold on a busy machine. The figures are in
benchmarks/README.md ("Start-up and reads").

Reads: a replay reads an ARP capture in its main thread (a reading thread cost more in hand-
offs than it saved) and moves to the reading thread only when libpcap's filter drops most of
the file, as on a mirror port's capture.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from arpwatchd import daemon
from arpwatchd.capture import FileCapture, Prefetcher
from arpwatchd.cli import main
from arpwatchd.frames import announcement, write_pcap

PCAPS = Path(__file__).parents[1] / "pcaps"
LIBRARIES = ("prometheus_client", "yaml", "sqlite3")
"""Imported only to serve metrics, read a config file, open a state store."""
OPTIONAL = ("ctypes", "subprocess", "arpwatchd.metrics", "arpwatchd.web", "arpwatchd.store",
            "arpwatchd.syslog", "arpwatchd.hooks", "arpwatchd.privileges",
            "arpwatchd.arpdat", "arpwatchd.inventory", "arpwatchd.effective")
"""Modules of features a plain replay does not use (privileges: only with `run --user`)."""


def _modules_after(*argv: str) -> set[str]:
    """The modules imported by `arpwatchd ARGV` run in a fresh interpreter."""
    script = ("import json, sys\nfrom arpwatchd.cli import main\n"
              "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n"
              "    code = exc.code\n"
              "print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                          text=True, check=False, timeout=60)
    code, modules = json.loads(done.stderr.strip().splitlines()[-1])
    assert code in (0, None), done.stderr
    return set(modules)


@pytest.fixture
def empty_pcap(tmp_path: Path) -> Path:
    """A capture of no frames: a pcap global header only (Ethernet)."""
    path = tmp_path / "empty.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


def test_replay_of_an_empty_capture_imports_no_optional_library(empty_pcap: Path) -> None:
    loaded = _modules_after("replay", "--events", os.devnull, "-q", str(empty_pcap))
    assert {"pcapy", "dpkt", "arpwatchd.tracker"} <= loaded  # the replay did run
    assert not loaded & {*LIBRARIES, *OPTIONAL, "arpwatchd.vendors"}


def test_replay_with_events_imports_no_optional_library() -> None:
    """Events need the vendor table (their `vendor` field), nothing else optional."""
    loaded = _modules_after("replay", "--events", os.devnull, "-q",
                            str(PCAPS / "duplicate-ip.pcap"))
    assert "arpwatchd.vendors" in loaded
    assert not loaded & {*LIBRARIES, *OPTIONAL}


def test_replay_with_a_state_file_imports_sqlite(empty_pcap: Path, tmp_path: Path) -> None:
    """The control: the check above would see SQLite if a replay loaded it."""
    loaded = _modules_after("replay", "--events", os.devnull, "-q", "--state",
                            str(tmp_path / "state.sqlite"), str(empty_pcap))
    assert {"sqlite3", "arpwatchd.store"} <= loaded
    assert not loaded & {"prometheus_client", "yaml"}


def test_version_imports_neither_the_sensor_nor_its_libraries() -> None:
    loaded = _modules_after("--version")
    assert not loaded & {*LIBRARIES, "pcapy", "dpkt", "logging", "arpwatchd.config",
                         "arpwatchd.sensing"}


def test_check_config_imports_yaml_but_not_the_sensor() -> None:
    loaded = _modules_after("check-config", str(PCAPS / "bogon.yml"))
    assert "yaml" in loaded
    assert not loaded & {"prometheus_client", "sqlite3", "pcapy", "arpwatchd.sensing"}


def _mirror_like(path: Path, arp: int, other_per_arp: int) -> None:
    """ARP announcements among `other_per_arp` IPv4 frames each, as a mirror port sees."""
    ipv4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + bytes(114)
    frames = []
    for i in range(arp):
        frames.append(announcement(0x0A000000 + i % 200, bytes([2, 0, 0, 0, 0, i % 200])))
        frames.extend([ipv4] * other_per_arp)
    write_pcap(path, [(1_700_000_000 + i * 0.001, f) for i, f in enumerate(frames)])


def test_filtered_share_tells_a_mirror_capture_from_an_arp_capture(tmp_path: Path) -> None:
    arp_only, mirror = tmp_path / "arp.pcap", tmp_path / "mirror.pcap"
    _mirror_like(arp_only, 3000, 0)
    _mirror_like(mirror, 3000, 20)
    for path, low, high in ((arp_only, 0.0, 0.1), (mirror, 0.9, 1.0)):
        source = FileCapture(str(path))
        assert len(source.read_batch(512)) == 512
        assert low <= source.filtered_share() <= high, path.name
        source.close()


@pytest.mark.parametrize(("filtered", "threaded"), [(0, False), (20, True)])
def test_replay_reads_on_a_thread_only_when_the_filter_drops_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filtered: int, threaded: bool
) -> None:
    """An ARP capture is read in the main thread; a mirror-like one switches to the reading
    thread after its first batch; the events are the same either way."""
    path = tmp_path / "capture.pcap"
    _mirror_like(path, 3000, filtered)
    started: list[Prefetcher] = []

    class Spy(Prefetcher):
        def __init__(self, source: FileCapture, max_frames: int) -> None:
            super().__init__(source, max_frames)
            started.append(self)

    monkeypatch.setattr(daemon, "Prefetcher", Spy)
    events = []
    for threshold in (daemon.PREFETCH_FILTERED, 2.0):  # the default, then never a thread
        monkeypatch.setattr(daemon, "PREFETCH_FILTERED", threshold)
        out = tmp_path / f"events-{threshold}.jsonl"
        assert main(["replay", "--events", str(out), "-q", str(path)]) == 0
        events.append(out.read_text().splitlines())
    assert bool(started) is threaded
    assert events[0] == events[1] and len(events[0]) == 200
