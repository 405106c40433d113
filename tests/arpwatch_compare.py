"""Runs Debian's LBL arpwatch and arpwatchd over the same capture and lines up what they say.

Why: arpwatchd claims to report everything arpwatch reports (new station, changed ethernet
address, flip flop, reused old ethernet address), only named after what happened. This
helper is the measuring stick for that claim (tests/test_arpwatch_compare.py) and prints the
comparison table of docs/arpwatch.md ("Compared with arpwatch"):

    .venv/bin/python tests/arpwatch_compare.py        # markdown table on standard output

arpwatch runs offline (`-r FILE`) in an empty network namespace (`unshare -n`: its per-report
reverse DNS look-ups fail at once instead of hanging), with `-d` so that its reports come on
standard output as the mails it would send and its syslog lines on standard error, and with
`-s /bin/true` so that nothing is mailed. `-f` needs an absolute path: arpwatch changes to
/var/lib/arpwatch before it opens the file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from arpwatchd.config import Config, load_config
from arpwatchd.daemon import replay
from arpwatchd.events import Event
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
SHARED = ROOT.parent / "shared" / "pcaps"
ARPWATCH = shutil.which("arpwatch") or "/usr/sbin/arpwatch"

# What accounts for each arpwatch report (DESIGN.md section 3, "arpwatch name" column).
ACCOUNTS_FOR = {
    "new station": {"new_station", "bogon"},
    "changed ethernet address": {"changed_mac", "failover", "conflict", "reused_mac"},
    "flip flop": {"changed_mac", "failover", "conflict", "reused_mac"},
    "reused old ethernet address": {"changed_mac", "failover", "conflict", "reused_mac"},
}
REPORTS = tuple(ACCOUNTS_FOR)

_SUBJECT = re.compile(r"^Subject: (?P<kind>[a-z ]+) \((?P<ip>[0-9.]+)\)")
_SYSLOG = re.compile(r"^arpwatch: (?P<kind>[a-z ]+?) (?P<ip>\d+\.\d+\.\d+\.\d+) (?P<mac>\S+)")


@dataclass(frozen=True)
class Report:
    kind: str
    ip: str
    mac: str = ""


def available() -> tuple[bool, str]:
    if not Path(ARPWATCH).exists():
        return False, "Debian's arpwatch is not installed (apt-get install arpwatch)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return False, "unshare -n is not permitted here (needs root or user namespaces)"
    return True, ""


def captures() -> list[Path]:
    """The project's synthetic captures, then the shared real ones when present."""
    found = sorted(PCAPS.glob("*.pcap"))
    if SHARED.is_dir():
        found += sorted(p for p in SHARED.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return found


def config_for(capture: Path) -> Config:
    """The capture's own config (pcaps/NAME.yml) when it has one, else the defaults."""
    path = capture.with_suffix(".yml")
    return load_config(str(path) if path.exists() else None)


def run_arpwatch(capture: Path, workdir: Path) -> tuple[list[Report], Path, int]:
    """arpwatch's reports (mailed and syslogged), the arp.dat it wrote, its exit status."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = (workdir / "arp.dat").resolve()
    data.write_text("")
    proc = subprocess.run(
        ["unshare", "-n", ARPWATCH, "-d", "-r", str(capture.resolve()), "-f", str(data),
         "-s", "/bin/true"],
        capture_output=True, text=True, errors="replace", timeout=120, check=False,
    )
    reports: list[Report] = []
    mac = ""
    pending: Report | None = None
    for line in proc.stdout.splitlines():
        match = _SUBJECT.match(line)
        if match:
            if pending:
                reports.append(Report(pending.kind, pending.ip, mac))
            pending, mac = Report(match["kind"], match["ip"]), ""
        elif line.strip().startswith("ethernet address:"):
            mac = line.split(":", 1)[1].strip()
    if pending:
        reports.append(Report(pending.kind, pending.ip, mac))
    for line in proc.stderr.splitlines():
        match = _SYSLOG.match(line)
        if match and match["kind"] in REPORTS:
            reports.append(Report(match["kind"], match["ip"], match["mac"]))
    return reports, data, proc.returncode


def run_arpwatchd(capture: Path, config: Config | None = None) -> list[Event]:
    """Every event `arpwatchd replay` emits for the capture (default interface "replay")."""
    sensor = Sensor(config or config_for(capture), EventWriter(os.devnull))
    sensor.emitted = []
    logger = logging.getLogger("arpwatchd")
    disabled, logger.disabled = logger.disabled, True
    try:
        replay(sensor, [str(capture)])
    finally:
        logger.disabled = disabled
    return sensor.emitted


def unaccounted(reports: list[Report], events: list[Event]) -> list[Report]:
    """arpwatch reports with no arpwatchd event of a matching kind for the same IP."""
    kinds: dict[str, set[str]] = {}
    for event in events:
        if event.ip is not None:
            kinds.setdefault(event.ip, set()).add(event.kind.value)
    return [r for r in dict.fromkeys(reports)
            if not ACCOUNTS_FOR[r.kind] & kinds.get(r.ip, set())]


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counter.items(), key=lambda x: -x[1])) \
        or "—"


def table(workdir: Path) -> list[str]:
    """The markdown comparison table over every capture."""
    rows = ["| capture | arpwatch reports | arpwatchd events |", "|---|---|---|"]
    for capture in captures():
        reports, _, status = run_arpwatch(capture, workdir / capture.stem)
        events = run_arpwatchd(capture)
        said = _counts(Counter(r.kind for r in reports))
        if status != 0:
            said = "cannot read it (link type)" if not reports else said
        rows.append(f"| `{capture.name}` | {said} | "
                    f"{_counts(Counter(e.kind.value for e in events))} |")
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sys.stdout.write("\n".join(table(Path(tmp))) + "\n")
