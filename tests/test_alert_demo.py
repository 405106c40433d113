"""`./dev.sh demo --prometheus`: the command the README gives to see an alert fire, run for real.

Why: the path sensor -> Prometheus -> alert is what an operator checks first, and it breaks
silently (a capture that no longer ends in a conflict, a rule rename, a scrape config the
rewrite no longer understands). The first test runs the very command through dev.sh, with a
prepared virtualenv standing in for dev.sh's own `.venv` (this interpreter's packages and
this checkout, marked installed) so nothing is downloaded; the second stops the demo the way
a user does (Ctrl-C) and checks both processes and the temporary folder are gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_PACKAGES = ("python3", "python3-venv", "ieee-data", "libcap2-bin", "prometheus")
BASE_PYTHON: str = getattr(sys, "_base_executable", sys.executable)
"""The interpreter this test's venv was made from (dev.sh checks its venv's base)."""
TIMEOUT = 240
"""Seconds for the whole demo on a loaded 2-core machine (it takes about 10 s idle)."""

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="prometheus not installed (Debian package 'prometheus')"),
]


def _installed(package: str) -> bool:
    status = subprocess.run(["dpkg", "-s", package], capture_output=True, text=True,
                            check=False)
    return "Status: install ok installed" in status.stdout


def _stand_in_venv(folder: Path) -> Path:
    """A venv dev.sh takes as its own: made by this base interpreter, seeing this
    interpreter's packages and this checkout, stamped as installed."""
    base = os.path.realpath(BASE_PYTHON)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=120)
    (purelib,) = (folder / "lib").glob("python3*/site-packages")
    paths = [str(ROOT), *site.getsitepackages()]
    (purelib / "arpwatchd-test.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")
    (folder / ".installed").touch()
    return folder


def _firing(out: str) -> None:
    assert ("FIRING ArpwatchdAddressConflict (critical): ARP conflict on 192.168.10.1 "
            "(sensor demo, ") in out
    assert re.search(r"http://127\.0\.0\.1:\d+/alerts", out), out


def test_dev_sh_demo_prometheus_shows_the_conflict_alert_firing(tmp_path: Path) -> None:
    if shutil.which("dpkg") is None or not all(_installed(p) for p in RUN_PACKAGES):
        pytest.skip("dev.sh would install Debian packages first (not Debian, or missing)")
    venv = _stand_in_venv(tmp_path / "venv")
    env = dict(os.environ, ARPWATCHD_VENV=str(venv),
               ARPWATCHD_PYTHON=os.path.realpath(BASE_PYTHON))
    started = time.monotonic()
    done = subprocess.run([str(ROOT / "dev.sh"), "demo", "--prometheus", "--once"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    _firing(done.stdout)
    print(f"dev.sh demo --prometheus --once: {time.monotonic() - started:.1f} s")
    (folder,) = re.findall(r"events: (\S+)/events\.jsonl", done.stdout)
    assert not Path(folder).exists()  # removed with the processes stopped


def test_ctrl_c_stops_the_sensor_and_prometheus(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen([sys.executable, str(ROOT / "dashboards" / "demo.py")],
                                stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "Ctrl-C stops" not in out.read_text():
            assert demo.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        text = out.read_text()
        _firing(text)
        (folder,) = re.findall(r"events: (\S+)/events\.jsonl", text)
        children = _children(demo.pid)
        assert len(children) == 2, children
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=90) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid
    assert not Path(folder).exists()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
