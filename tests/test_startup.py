"""Start-up imports (issue 12, item 4): each command loads only what it needs.

Why: every `arpwatchd` invocation paid ~210 M instructions of the package's own imports, most
of them for libraries the command never used (Prometheus, YAML, SQLite, the operator tools,
ctypes, the vendor table). These tests fail when a plain replay, one without a config file,
a state file or metrics, imports one of them again; they look at `sys.modules` in a fresh
interpreter, not at the clock, so they hold on a busy machine. The figures are in
benchmarks/README.md ("Start-up and reads").
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

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
