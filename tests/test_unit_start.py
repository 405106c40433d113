"""The systemd unit's start: a missing interface stops after a few tries (issue 16 item 6).

Why: on a host without the configured interface the unit restarted every 5 s forever. Now the
sensor exits 69 (EX_UNAVAILABLE) with one line naming the interface when it is missing or down
at start, and the unit's start limit stops the retries after 5 in a minute ("start-limit-hit"
in `systemctl status`, the line in the journal). There is no systemd running here, so the
unit's ExecStart command line is run as it stands, with only the program and the config path
swapped for this checkout's, and the unit file is checked by `systemd-analyze verify`.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arpwatchd.cli import EXIT_UNAVAILABLE
from arpwatchd.config import default_state_path, parse_config

ROOT = Path(__file__).parents[1]
UNIT = ROOT / "deploy" / "arpwatchd.service"
PROGRAM = "/opt/arpwatchd/bin/arpwatchd"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT, encoding="utf-8")
    return unit


def _exec_start(config: Path) -> list[str]:
    argv = shlex.split(_unit()["Service"]["ExecStart"])
    assert argv[0] == PROGRAM
    argv[argv.index("--config") + 1] = str(config)
    return [sys.executable, "-m", "arpwatchd", *argv[1:]]


def _config(tmp_path: Path, interface: str) -> Path:
    config = tmp_path / "arpwatchd.yml"
    config.write_text(f"capture: {{interfaces: [{interface}]}}\nmetrics: {{port: 0}}\n"
                      f"state: {{path: {tmp_path / 'state.sqlite'}}}\n")
    return config


def test_a_missing_interface_is_exit_69_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(_exec_start(_config(tmp_path, "nosuch0")), capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == EXIT_UNAVAILABLE == 69
    assert done.stderr.splitlines()[-1] == "arpwatchd: nosuch0: cannot capture: no such interface"
    assert len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a private network namespace needs root and unshare")
def test_an_interface_down_at_start_is_exit_69(tmp_path: Path) -> None:
    argv = shlex.join(_exec_start(_config(tmp_path, "down0")))
    script = f"ip link add down0 type veth peer name down1 && exec {argv}"
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 69, done.stderr
    assert done.stderr.splitlines() == ["arpwatchd: down0: cannot capture: the interface is down"]


def test_the_unit_gives_up_after_a_few_tries() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert "69" not in service["RestartPreventExitStatus"].split()  # an interface may come
    interval = float(unit["Unit"]["StartLimitIntervalSec"].removesuffix("s"))
    burst = int(unit["Unit"]["StartLimitBurst"])
    delay = float(service["RestartSec"].removesuffix("s"))
    assert 2 <= burst <= 10
    assert (burst - 1) * delay < interval  # every try falls in the window: the limit is hit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """Only the program is swapped for one that exists here (verify checks it is executable)."""
    copy = tmp_path / "arpwatchd.service"
    copy.write_text(UNIT.read_text().replace(PROGRAM, f"{sys.executable} -m arpwatchd"))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_config_without_state_path_uses_the_units_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older config with no state.path under the new unit (no --state): systemd's
    $STATE_DIRECTORY, not the working directory (/, read-only under ProtectSystem=strict)."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "lib"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert parse_config("hold: 10s\n").state_path == str(tmp_path / "lib" / "state.sqlite")
    monkeypatch.delenv("STATE_DIRECTORY")
    assert default_state_path() == str(tmp_path / "xdg" / "arpwatchd" / "state.sqlite")
