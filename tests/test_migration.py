"""Migrating from arpwatch as the README says, onto the store the service reads (issue 16, 1).

Why: the unit passed --state on its own command line and the shipped config set no
state.path, so `import-arpdat ... -c CONFIG` wrote ./state/arpwatchd.sqlite wherever it ran
and the service then reported every migrated station as new; and an import run by root left a
root-owned store that the unprivileged service could not write ("attempt to write a readonly
database"). These tests follow the operator's path: the unit and its config agree on one store,
the tools find it with no flags, an import by root leaves it to the service's user, and that
user's sensor then reports no imported station as new.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from arpwatch_compare import PCAPS, available, run_arpwatch
from netlab import Lab, wait_until

import arpwatchd
from arpwatchd import arpdat
from arpwatchd.addresses import parse_ip
from arpwatchd.arpdat import ArpDatEntry
from arpwatchd.cli import main
from arpwatchd.config import load_config
from arpwatchd.store import Store

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
NOBODY = pwd.getpwnam("nobody")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners and users needs root")

# Debian arpwatch's arp.dat: MAC, IP, epoch, hostname, interface (padded MACs).
DAT = (
    "02:00:00:00:00:01\t10.0.0.5\t1700000000\tweb\teth0\n"
    "02:00:00:00:00:02\t10.0.0.6\t1700000100\t\teth0\n"
)


def _unit() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "arpwatchd.service", encoding="utf-8")
    return unit["Service"]


def test_unit_and_shipped_config_name_one_store() -> None:
    """The unit runs with the config the tools default to, and that config names the store,
    absolute and inside the unit's StateDirectory (the only place the service may write)."""
    service = _unit()
    argv = shlex.split(service["ExecStart"])
    assert "--state" not in argv
    assert argv[argv.index("--config") + 1] == arpwatchd.DEFAULT_CONFIG
    shipped = load_config(str(DEPLOY / "arpwatchd.yml"))
    assert shipped.state_path_set
    assert Path(shipped.state_path).is_absolute()
    assert Path(shipped.state_path).parent == Path("/var/lib") / service["StateDirectory"]


def test_tools_with_no_flags_use_the_units_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "var/lib/arpwatchd/state.sqlite"
    site = tmp_path / "arpwatchd.yml"
    site.write_text(f"state: {{path: {state}}}\n")
    monkeypatch.setattr(arpwatchd, "DEFAULT_CONFIG", str(site))
    monkeypatch.chdir(tmp_path)  # the old default, ./state/, must stay untouched
    dat = tmp_path / "eth0.dat"
    dat.write_text(DAT)
    assert main(["import-arpdat", str(dat), "--user", pwd.getpwuid(os.geteuid()).pw_name]) == 0
    assert f"into {state}: 2 new" in capsys.readouterr().out
    assert not (tmp_path / "state").exists()
    assert main(["bindings", "--json"]) == 0
    assert [json.loads(line)["ip"] for line in capsys.readouterr().out.splitlines()] == [
        "10.0.0.5", "10.0.0.6"]
    # Without that file the tools fall back to the default path, as before.
    monkeypatch.setattr(arpwatchd, "DEFAULT_CONFIG", str(tmp_path / "absent.yml"))
    assert main(["bindings"]) == 1
    assert "state/arpwatchd.sqlite: no state store here" in capsys.readouterr().err


def test_import_counts_every_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An 8-line file with 3 bad lines: the summary says 8 lines, 5 read, 3 skipped."""
    dat = tmp_path / "arp.dat"
    good = [f"02:00:00:00:00:0{n}\t10.0.0.{n}\t{1000 + n}\t\teth0" for n in range(1, 6)]
    dat.write_text("\n".join([*good[:2], "junk", *good[2:4], "x\ty\tz", good[4], "1\t2\t3"])
                   + "\n")
    state = tmp_path / "s.sqlite"
    assert main(["import-arpdat", str(dat), "--state", str(state), "--user",
                 pwd.getpwuid(os.geteuid()).pw_name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{dat}: 8 lines: 5 read, 3 bad skipped; 5 addresses into {state}")


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A stand-in for / that `nobody` can traverse (pytest's own directories are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="arpwatchd-migrate-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _service_host(root: Path, monkeypatch: pytest.MonkeyPatch, settings: str = "") -> Path:
    """/var/lib/arpwatchd as systemd's StateDirectory= leaves it once the service has run (the
    service user's), and the unit's config (the tools' default) naming the store in it, with
    `settings` before. Returns the store's path."""
    state = root / "var/lib/arpwatchd/state.sqlite"
    state.parent.mkdir(parents=True)
    os.chown(state.parent, NOBODY.pw_uid, NOBODY.pw_gid)
    site = root / "arpwatchd.yml"
    site.write_text(f"{settings}state: {{path: {state}}}\n")
    site.chmod(0o644)
    monkeypatch.setattr(arpwatchd, "DEFAULT_CONFIG", str(site))
    return state


SERVICE_PACKAGES = ("arpwatchd", "pcapy", "dpkt", "yaml", "_yaml", "prometheus_client")


@pytest.fixture(scope="module")
def service_site() -> Iterator[Path]:
    """The sensor's packages where `nobody` can read them, as on an installed host. This
    checkout and its venv may sit in a root-only directory (`mktemp -d`, pytest's own temp
    folders), which a service user never has to cross."""
    site = Path(tempfile.mkdtemp(prefix="arpwatchd-site-"))
    for name in SERVICE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, site / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, site / origin.name)
            for libs in origin.parent.glob("*.libs"):  # a wheel's bundled libpcap
                if not (site / libs.name).exists():
                    shutil.copytree(libs, site / libs.name)
    for path in (site, *site.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        yield site
    finally:
        shutil.rmtree(site)


def _service_argv(site: Path, *argv: str) -> tuple[list[str], dict[str, str]]:
    """`python -m arpwatchd ARGV` from `site`, and its environment."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    return [os.path.realpath(sys.executable), "-m", "arpwatchd", *argv], env


def _as_nobody(site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The sensor as the unit starts it: another user from the start (User=), not root."""
    command, env = _service_argv(site, *argv)
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups",
         *command], capture_output=True, text=True, cwd=site, env=env, timeout=120,
        check=False)


@needs_root
def test_import_by_root_into_the_service_directory_leaves_it_to_the_service(
    host_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    service_site: Path,
) -> None:
    state = _service_host(host_root, monkeypatch)
    state_dir = state.parent
    dat = host_root / "eth0.dat"
    dat.write_text(DAT)
    assert main(["import-arpdat", str(dat)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("; owned by nobody")
    assert [p.name for p in state_dir.iterdir() if p.stat().st_uid != NOBODY.pw_uid] == []
    events = state_dir / "events.jsonl"
    capture = Path(shutil.copy(PCAPS / "cluster-failover.pcap", host_root))  # nobody reads it
    done = _as_nobody(service_site, "replay", str(capture),
                      "--state", str(state), "--events", str(events), "-q")
    assert done.returncode == 0, done.stderr  # was: attempt to write a readonly database


@needs_root
def test_import_with_user_hands_over_the_directories_it_made(host_root: Path) -> None:
    state = host_root / "var/lib/arpwatchd/state.sqlite"
    (host_root / "var").mkdir()
    dat = host_root / "eth0.dat"
    dat.write_text(DAT)
    assert main(["import-arpdat", str(dat), "--state", str(state), "--user", "nobody"]) == 0
    for path in (state, state.parent, state.parent.parent):
        assert path.stat().st_uid == NOBODY.pw_uid, path
    assert (host_root / "var").stat().st_uid == 0  # there before: not ours to give
    assert main(["import-arpdat", str(dat), "--state", str(state), "--user", "nosuchuser"]) == 1


@needs_root
def test_a_store_left_to_root_goes_back_to_its_directorys_owner(host_root: Path) -> None:
    """The broken state of the issue, mended by importing again."""
    state = host_root / "state.sqlite"
    Store(str(state)).close()
    os.chown(host_root, NOBODY.pw_uid, NOBODY.pw_gid)
    assert state.stat().st_uid == 0
    dat = host_root / "eth0.dat"
    dat.write_text(DAT)
    assert main(["import-arpdat", str(dat), "--state", str(state)]) == 0
    assert state.stat().st_uid == NOBODY.pw_uid


OK, WHY = available()


@needs_root
@pytest.mark.skipif(not OK, reason=WHY)
def test_migration_from_arpwatch_reports_no_known_station_as_new(
    host_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    service_site: Path,
) -> None:
    """Debian's arpwatch watches the traffic and writes arp.dat; root imports it with no flags
    (the unit's config); the service's user replays the same traffic onto that store: no
    new_station for any station arpwatch knew."""
    capture = Path(shutil.copy(PCAPS / "reassignment.pcap", host_root))  # nobody reads it
    _, written, status = run_arpwatch(capture, host_root / "arpwatch")
    assert status == 0
    known = {e.ip for e in arpdat.parse(written.read_text().splitlines())
             if isinstance(e, ArpDatEntry)}
    assert len(known) >= 3
    state = _service_host(host_root, monkeypatch, "capture: {interfaces: [eth9]}\n")
    state_dir, site = state.parent, Path(arpwatchd.DEFAULT_CONFIG)
    assert main(["import-arpdat", str(written)]) == 0
    assert f"{len(known)} new" in capsys.readouterr().out
    events = state_dir / "events.jsonl"
    done = _as_nobody(service_site, "replay", str(capture), "-i", "eth9", "-c", str(site),
                      "--state", str(state_dir / "state.sqlite"), "--events", str(events), "-q")
    assert done.returncode == 0, done.stderr
    new = [json.loads(line)["ip"] for line in events.read_text().splitlines()
           if json.loads(line)["event"] == "new_station"]
    assert [ip for ip in new if parse_ip(ip) in known] == []


@pytest.mark.live
def test_service_user_on_a_live_port_knows_the_imported_stations(
    lab: Lab, host_root: Path, monkeypatch: pytest.MonkeyPatch, service_site: Path
) -> None:
    """The whole path live: root imports an arp.dat with no flags into the directory the
    service's user owns; the unit's ExecStart command line runs as that user with only the
    unit's two capabilities (what User= and AmbientCapabilities= do) on the lab's bridge; two
    imported hosts and one newcomer announce themselves: only the newcomer is new."""
    hosts = [lab.add_host(name, f"02:00:00:00:16:0{n}", [f"192.0.2.{10 + n}"])
             for n, name in enumerate(("a", "b", "c"), start=1)]
    state = _service_host(host_root, monkeypatch,
                          f"capture: {{interfaces: [{lab.bridge}]}}\nmetrics: {{port: 0}}\n")
    site = Path(arpwatchd.DEFAULT_CONFIG)
    dat = host_root / "eth0.dat"
    dat.write_text("".join(f"{h.mac}\t{h.ip}\t1700000000\t{h.name}\t{lab.bridge}\n"
                           for h in hosts[:2]))
    assert main(["import-arpdat", str(dat)]) == 0
    argv = shlex.split(_unit()["ExecStart"])
    argv[argv.index("--config") + 1] = str(site)
    command, env = _service_argv(service_site, *argv[1:])
    as_service = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                  "--clear-groups", "--inh-caps=+net_raw,+net_admin",
                  "--ambient-caps=+net_raw,+net_admin", "--bounding-set=-all,+net_raw,+net_admin",
                  "--no-new-privs", *command]
    events, log = host_root / "journal.jsonl", host_root / "stderr.log"
    with events.open("wb") as out, log.open("wb") as err:
        sensor = lab.sensor_popen(as_service, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  cwd=str(service_site), env=env)
    wait_until(lambda: sensor.poll() is None and "capturing on" in log.read_text(), 15.0,
               "the sensor to capture")
    for host in hosts:
        host.arping_announce(count=2)

    def news() -> list[str]:
        return [e["ip"] for e in map(json.loads, events.read_text().splitlines())
                if e["event"] == "new_station"]

    wait_until(lambda: hosts[2].ip in news(), 15.0, "the newcomer's new_station")
    time.sleep(1.0)  # the imported hosts' frames went out first; give any late event a second
    assert sensor.poll() is None, log.read_text()
    sensor.send_signal(signal.SIGTERM)
    assert sensor.wait(10) == 0, log.read_text()
    assert news() == [hosts[2].ip]
    assert "readonly" not in log.read_text()
    assert state.stat().st_uid == NOBODY.pw_uid
