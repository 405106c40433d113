"""Every shell command the README and docs show is run for real, or says why not (issue 16, item 8).

Why: an operator copies these lines. A renamed option, a capture that moved, an output that
changed shape or a config path the unit no longer uses misleads them, and parsing a command
does not catch a wrong shown output or an install step that names the wrong place.

What: every line of a `sh`/`shell`/`bash`/`console` fence, every `$ ` line of another fence and
every inline `./dev.sh ...` or `.../bin/arpwatchd ...` of PAGES is a command. Each must match
one row of RULES (first match wins); a command no row matches fails, saying how to add one.
A row says how the command is checked:

- RUN: run for real by bash (pipefail) in a temporary folder that stands for the sensor host
  after the doc's install steps (`Host`). PATHS maps the host paths the docs name to that
  folder, the program to this checkout's venv, `pcaps/` etc. to the checkout; nothing outside
  the folder is written. Exit status 0 and the row's check. Where the page shows output (the
  lines after a `$ ` command, or a `# ` line right after a command of a sh fence), the real
  output, mapped back to the doc's paths, must be those lines: doctest-like, exactly for `$ `
  blocks, with the numbers left free for a `# ` line (an example's counts).
- ELSEWHERE: run by another test or by CI; the row names the file and the test checks it still
  runs the command (CI must not rerun CI, and the demo takes a Prometheus start).
- LIVE: `./dev.sh run` captures live as root: run for real by the live test at the end, in a
  network namespace with one Linux host on a bridge (tests/netlab.py), until it has seen that
  host's announcement; stopped with SIGTERM (exit 0). Elsewhere the row's check only.
- NOT_RUN: changes the host (packages, users, services, /etc) or needs one that is installed
  and running; the row gives the reason and checks what it can: the files it names exist, its
  target is where the rest of the deployment expects it.

A block's commands run in order in one Host, as a reader types them; `replay --serve` keeps
serving for the lines after it. The non-live part takes seconds (replays of short captures,
promtool). Every arpwatchd command, run or not, must also parse with the real CLI parser.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from netlab import Lab
from test_alert_demo import BASE_PYTHON, _installed, _stand_in_venv

import arpwatchd
from arpwatchd.cli import build_parser
from arpwatchd.hooks import ENV_FIELDS, ENV_PREFIX

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "dashboards" / "README.md", ROOT / "benchmarks" / "README.md"]
ARPWATCHD = str(Path(sys.executable).parent / "arpwatchd")
PROMTOOL = shutil.which("promtool")
TIMEOUT = 120
"""Seconds any one command may take on a loaded 2-core machine (they take under one idle)."""

PATHS = {
    "/etc/arpwatchd/arpwatchd.yml": "etc/arpwatchd/arpwatchd.yml",
    "/var/lib/arpwatchd/state.sqlite": "var/lib/arpwatchd/state.sqlite",
    "/var/lib/arpwatch/eth0.dat": "var/lib/arpwatch/eth0.dat",
    "/etc/prometheus/prometheus.yml": "etc/prometheus/prometheus.yml",
    "/etc/prometheus/rules/arpwatchd-alerts.yml": "etc/prometheus/rules/arpwatchd-alerts.yml",
}
"""Host paths the docs name -> the same file under the Host folder."""

STAND_INS = {
    "capture.pcap": str(ROOT / "pcaps" / "spoof-in-progress.pcap"),  # the demo's capture
    "/usr/sbin/sendmail -t": "cat",  # the hook example prints the mail it would send
}
"""Placeholders of the docs -> what runs in their place."""

TOOLS = r"(\S*/)?arpwatchd (import-arpdat|export-arpdat|bindings|history)\b"
"""The operator tools: with no -c or --state they read the unit's config, which exists on a
sensor host (config.DEFAULT_CONFIG); here it is named, the Host's copy."""

SENSOR_CAPTURE = ROOT / "pcaps" / "reassignment.pcap"
"""What the Host's sensor has seen (on eth0): the README's bindings and history example."""

ARPDAT = ("00:1c:7f:00:00:01\t192.168.10.1\t1709543396\t\teth0\n"
          "52:54:00:00:00:21\t192.168.10.21\t1709543396\t\teth0\n"
          "52:54:00:00:00:22\t192.168.10.22\t1709543370\tpc22\teth0\n")
"""The arpwatch table the migration section imports (Debian's format, as export-arpdat writes)."""


# --- the commands of the pages ---------------------------------------------------------------

@dataclass
class Command:
    page: Path
    line: str  # as the page shows it, without `$ ` or `sudo`
    shown: list[str] = field(default_factory=list)  # output the page shows after it
    shown_as_comment: bool = False
    script: str = ""  # the whole block, for a `#!` script

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}: `{self.line}`"


_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`((?:\./dev\.sh|\S*bin/arpwatchd) [^`\n]*)`")
SHELL = {"sh", "shell", "bash"}


def _strip(line: str) -> str:
    return line.strip().removeprefix("$ ").removeprefix("sudo ").strip()


def _block(page: Path, lang: str, text: str) -> list[Command]:
    """A fence with `$ ` prompts (or a console fence): prompt lines are commands, the lines
    under one its output. A sh fence: every line is a command, and a `# ` line right after
    one is its output. A sh fence starting with `#!` is one script. Other fences: none."""
    lines = text.splitlines()
    prompts = lang == "console" or any(line.startswith("$ ") for line in lines)
    if lang in SHELL and lines and lines[0].startswith("#!"):
        return [Command(page, lines[0], script=text)]
    commands: list[Command] = []
    for raw in lines:
        if (prompts or lang not in SHELL) and not raw.startswith("$ "):
            if commands and raw.strip():
                commands[-1].shown.append(raw.rstrip())  # output under a `$ ` command
            continue
        if not raw.strip():
            continue
        if raw.startswith("# "):
            if commands and not commands[-1].shown:
                commands[-1].shown, commands[-1].shown_as_comment = [raw[2:]], True
            continue
        commands.append(Command(page, _strip(raw)))
    return commands


def blocks(page: Path) -> list[list[Command]]:
    """The page's commands, one list per fence (inline commands are one-line blocks)."""
    text = page.read_text(encoding="utf-8")
    found = [_block(page, lang.strip(), body) for lang, body in _FENCE.findall(text)]
    found += [[Command(page, line)] for line in _INLINE.findall(_FENCE.sub("", text))]
    return [b for b in found if b]


BLOCKS = [b for page in PAGES for b in blocks(page)]
COMMANDS = [c for b in BLOCKS for c in b]


def _words(command: Command) -> list[str]:
    return shlex.split(command.line, comments=True)


# --- the host the commands run on --------------------------------------------------------------

@dataclass
class Host:
    """A temporary folder standing for the sensor host after the doc's install steps: the
    unit's config, Prometheus's config and rules, the store of a sensor that saw
    SENSOR_CAPTURE, an arpwatch table; every host path of PATHS is under the folder."""

    root: Path
    user: str
    port: int = 0
    server: subprocess.Popen[bytes] | None = None

    def path(self, host_path: str) -> Path:
        return self.root / PATHS[host_path]

    def install(self, source: Path, host_path: str) -> None:
        target = self.path(host_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_temp(source.read_text(encoding="utf-8")), encoding="utf-8")

    def to_temp(self, text: str) -> str:
        for doc, temp in PATHS.items():
            text = text.replace(doc, str(self.root / temp))
        return text

    def to_doc(self, text: str) -> str:
        for doc, temp in PATHS.items():
            text = text.replace(str(self.root / temp), doc)
        if self.port:
            text = text.replace(f":{self.port}", ":20806")
        return text.replace(f"owned by {self.user}", "owned by arpwatchd")

    def shell(self, line: str) -> str:
        """The command as it runs here: host paths, program, repository paths, user, port."""
        if re.match(TOOLS, line) and not re.search(r" (-c|--config|--state)\b", line):
            line += f" -c {arpwatchd.DEFAULT_CONFIG}"  # what the tools read on a sensor host
        text = self.to_temp(line)
        for doc, stand_in in STAND_INS.items():
            text = text.replace(doc, stand_in)
        text = re.sub(r"(^|&& |\| )(?:\S*/)?arpwatchd\b", rf"\g<1>{ARPWATCHD}", text)
        text = re.sub(r"(?<![\w./-])(pcaps|deploy|dashboards|benchmarks)\b", rf"{ROOT}/\1", text)
        text = text.replace("--user arpwatchd", f"--user {self.user}")
        return text.replace(":20806", f":{self.port}") if self.port else text

    def run(self, line: str, stdin: str = "", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-o", "pipefail", "-c", self.shell(line)], cwd=self.root,
                              input=stdin, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def sensor_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of a sensor on eth0 that saw SENSOR_CAPTURE, made once by a real replay."""
    folder = tmp_path_factory.mktemp("sensor-store")
    subprocess.run([ARPWATCHD, "replay", "-i", "eth0", "--state", str(folder / "state.sqlite"),
                    "--events", os.devnull, str(SENSOR_CAPTURE)], check=True, timeout=TIMEOUT)
    return folder


@pytest.fixture
def host(tmp_path: Path, sensor_store: Path) -> Iterator[Host]:
    # As root, the import hands the store to the sensor's user: any user but root will do.
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    the_host = Host(tmp_path, user)
    the_host.install(ROOT / "deploy" / "arpwatchd.yml", "/etc/arpwatchd/arpwatchd.yml")
    the_host.install(ROOT / "deploy" / "prometheus.yml", "/etc/prometheus/prometheus.yml")
    the_host.install(ROOT / "dashboards" / "alerts.yml",
                     "/etc/prometheus/rules/arpwatchd-alerts.yml")
    shutil.copytree(sensor_store, the_host.path("/var/lib/arpwatchd/state.sqlite").parent)
    the_host.path("/var/lib/arpwatch/eth0.dat").parent.mkdir(parents=True)
    the_host.path("/var/lib/arpwatch/eth0.dat").write_text(ARPDAT, encoding="utf-8")
    yield the_host
    if the_host.server is not None:
        _stop(the_host.server)


def _stop(server: subprocess.Popen[bytes]) -> int:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise


# --- what a run must show --------------------------------------------------------------------

def _ok(command: Command, done: subprocess.CompletedProcess[str], host: Host) -> None:
    out = host.to_doc(done.stdout + done.stderr)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{out}"
    if not command.shown:
        return
    real = host.to_doc(done.stdout).splitlines()
    if command.shown_as_comment:
        (shown,) = command.shown
        pattern = re.sub(r"\d+", r"\\d+", re.escape(shown))
        assert any(re.fullmatch(pattern, line) for line in real), \
            f"{command}: the page shows\n  {shown}\nthe command printed\n  " + "\n  ".join(real)
    else:
        assert real == command.shown, (f"{command}: the page shows\n" + "\n".join(command.shown)
                                       + "\nthe command printed\n" + "\n".join(real))


def _events(command: Command, done: subprocess.CompletedProcess[str], host: Host) -> None:
    _ok(command, done, host)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events and all("event" in e for e in events), f"{command}: no JSON events"


def _config_ok(command: Command, done: subprocess.CompletedProcess[str], host: Host) -> None:
    _ok(command, done, host)
    checked = json.loads(done.stdout)
    assert host.to_doc(checked["source"]) == _words(command)[-1], command


def _promtool_ok(command: Command, done: subprocess.CompletedProcess[str], host: Host) -> None:
    _ok(command, done, host)
    assert "SUCCESS" in done.stdout + done.stderr, command


def _metrics_shown(command: Command, done: subprocess.CompletedProcess[str], host: Host) -> None:
    _ok(command, done, host)
    names = {line.split("{")[0] for line in done.stdout.splitlines()}
    assert names == {"arpwatchd_build_info", "arpwatchd_capture_up"}, done.stdout


def _hook_script(command: Command, done: subprocess.CompletedProcess[str], host: Host) -> None:
    _ok(command, done, host)
    assert "To: netops@example.org\n" in done.stdout, done.stdout
    assert "Subject: arpwatchd: conflict 192.168.10.70 (eth0)\n" in done.stdout, done.stdout
    assert json.dumps(HOOK_EVENT) in done.stdout, done.stdout  # the event, on standard input


# --- checks of commands that are not run ------------------------------------------------------

def _mentions(path: str, *needles: str) -> Callable[[Command], None]:
    """The command is run by `path` (a test or CI), which must still contain the needles."""
    def check(command: Command) -> None:
        text = (ROOT / path).read_text(encoding="utf-8")
        for needle in needles:
            assert needle in text, f"{command}: {path} no longer runs it ({needle!r})"
    return check


def _dev_sh_accepts(command: Command) -> None:
    """`./dev.sh X`: X is one of dev.sh's case entries; `run`'s arguments go to arpwatchd run."""
    words = _words(command)
    entries = re.findall(r"^ {4}([\w-]+)\)", (ROOT / "dev.sh").read_text(encoding="utf-8"),
                         flags=re.MULTILINE)
    assert words[1] in entries, f"{command}: dev.sh has no command {words[1]!r} ({entries})"
    if words[1] == "run":
        _parses(command, ["run", *words[2:]])


def _sources_exist(command: Command) -> None:
    """install/cp: every repository file it copies exists, and the target is where the rest of
    the deployment looks for it."""
    words = [w for w in _words(command)[1:] if not w.startswith("-") and not w.isdigit()]
    *sources, target = words
    for source in sources:
        assert (ROOT / source).is_file(), f"{command}: no {source} in the repository"
    expected = {
        arpwatchd.DEFAULT_CONFIG: "the unit's --config and the tools' default",
        "/etc/systemd/system/arpwatchd.service": "a local unit",
        "/etc/prometheus/rules/arpwatchd-alerts.yml": "deploy/prometheus.yml rule_files",
        "/etc/grafana/provisioning/datasources/arpwatchd-prometheus.yml": "Grafana's folder",
        "/etc/grafana/provisioning/dashboards/arpwatchd.yml": "Grafana's folder",
        "/var/lib/grafana/dashboards/arpwatchd/arpwatchd.json": "the provider's path",
    }
    assert target in expected, f"{command}: unexpected target {target}; add it to _sources_exist"
    unit = (ROOT / "deploy" / "arpwatchd.service").read_text(encoding="utf-8")
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    provider = yaml.safe_load((ROOT / "dashboards" / "provisioning" / "dashboards" /
                               "arpwatchd.yml").read_text(encoding="utf-8"))["providers"][0]
    if target == arpwatchd.DEFAULT_CONFIG:
        assert f"--config {target}" in unit
    elif target.startswith("/etc/prometheus/"):
        assert target in prometheus["rule_files"]
    elif target.startswith("/var/lib/grafana/"):
        assert Path(target).parent == Path(provider["options"]["path"]), provider


def _unit_user(command: Command) -> None:
    """useradd: the user and home are the unit's User= and its StateDirectory."""
    words = _words(command)
    unit = (ROOT / "deploy" / "arpwatchd.service").read_text(encoding="utf-8")
    assert f"User={words[-1]}\n" in unit, command
    home = words[words.index("--home-dir") + 1]
    assert f"StateDirectory={Path(home).name}\n" in unit and home.startswith("/var/lib/"), command


def _services_known(command: Command) -> None:
    """systemctl: arpwatchd's unit is deploy's (systemd-analyze verifies it in
    test_unit_start.py); the others belong to Debian packages."""
    unit = _words(command)[-1]
    assert unit in {"daemon-reload", "arpwatchd", "arpwatch", "prometheus", "grafana-server"}, \
        f"{command}: a unit this test does not know"
    if unit == "arpwatchd":
        _mentions("tests/test_unit_start.py", "systemd-analyze", "verify")(command)


def _venv_like_dev_sh(command: Command) -> None:
    """The venv is made like dev.sh's, whose `.venv` every test of this suite runs in."""
    dev = (ROOT / "dev.sh").read_text(encoding="utf-8")
    assert "BASE_PYTHON=${ARPWATCHD_PYTHON:-/usr/bin/python3}" in dev
    assert '"$base" -m venv' in dev and "pip install" in dev
    unit = (ROOT / "deploy" / "arpwatchd.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/arpwatchd/bin/arpwatchd " in unit  # the venv's entry point


def _edits_an_installed_file(command: Command) -> None:
    assert _words(command)[-1] in PATHS, f"{command}: edits a file the docs do not install"


def _jq_reads_the_api(command: Command) -> None:
    """The jq program of a Prometheus API query reads the API's answer (checked on a canned
    one; the live API is queried by dashboards/demo.py in tests/test_alert_demo.py)."""
    if shutil.which("jq") is None:
        pytest.skip("jq not installed")
    program = _words(command)[-1]
    answer = {"status": "success", "data": {
        "result": [{"metric": {"instance": "sensor-a:20806"}, "value": [0, "1"]}],
        "alerts": [{"labels": {"alertname": "ArpwatchdAddressConflict"}, "state": "firing",
                    "annotations": {"summary": "ARP conflict on 10.0.0.1"}}]}}
    done = subprocess.run(["jq", "-c", program], input=json.dumps(answer), capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0 and done.stdout.strip() and "null" not in done.stdout, \
        f"{command}: {done.stdout}{done.stderr}"
    _mentions("dashboards/demo.py", "/api/v1/alerts")(command)


def _script_options(command: Command) -> None:
    """A benchmark script exists and its --help names every option the line gives it."""
    words = _words(command)
    script = next(w for w in words if w.endswith(".py"))
    done = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    for word in words:
        if word.startswith("--"):
            assert re.search(rf"{re.escape(word)}\b", done.stdout), f"{command}: no {word}"


# --- the rules ------------------------------------------------------------------------------

RUN, ELSEWHERE, LIVE, NOT_RUN = "run", "elsewhere", "live", "not run"


@dataclass(frozen=True)
class Rule:
    pattern: str  # re.match on the command line
    how: str
    why: str
    check: Callable[..., None]  # RUN: (command, result, host); otherwise (command)


RULES = [
    # arpwatchd itself: safe to run on the Host
    Rule(r"(\S*/)?arpwatchd replay --serve ", RUN,
         "serves the replayed capture's metrics until SIGTERM (exit 0), for the lines after it",
         _ok),
    Rule(r"(\S*/)?arpwatchd replay ", RUN, "a shipped capture, its events as JSON lines",
         _events),
    Rule(r"(\S*/)?arpwatchd check-config ", RUN, "the shipped config as the unit reads it",
         _config_ok),
    Rule(TOOLS, RUN, "operator tools on the Host's store (the unit's config names it)", _ok),
    Rule(r"curl -s http://127\.0\.0\.1:20806/metrics", RUN,
         "the sensor's endpoint (a `replay --serve` stands in for the service)", _metrics_shown),
    Rule(r"#!/bin/sh", RUN, "the hook example, fed a conflict event, sendmail swapped for cat",
         _hook_script),
    Rule(r"(cd dashboards && )?promtool (check|test) rules ", RUN, "Debian's promtool",
         _promtool_ok),
    Rule(r"promtool check config /etc/prometheus/prometheus.yml", RUN,
         "deploy/prometheus.yml, installed with its rule file on the Host", _promtool_ok),
    # run by another test or by CI
    Rule(r"\./dev\.sh test\b", ELSEWHERE, "it is CI: .ci/run runs exactly this",
         _mentions(".ci/run", "./dev.sh test")),
    Rule(r"\./dev\.sh demo --prometheus\b", ELSEWHERE,
         "tests/test_alert_demo.py runs it (with --once) and checks the alert fires",
         _mentions("tests/test_alert_demo.py", '"demo", "--prometheus", "--once"')),
    Rule(r"\./dev\.sh demo$", ELSEWHERE,
         "replays each shipped capture with its config: tests/test_replay_pcaps.py replays "
         "each (with its .yml) and checks it covers them all",
         _mentions("tests/test_replay_pcaps.py", 'with_suffix(".yml")', 'PCAPS.glob("*.pcap")')),
    Rule(r"\./dev\.sh run$", LIVE,
         "captures live until stopped, as root: run in a namespace by the live test",
         _dev_sh_accepts),
    Rule(r"\./dev\.sh (run|bench)\b", NOT_RUN,
         "run with arguments names the reader's interface and config; bench takes minutes: "
         "dev.sh must accept the command, and run's arguments must parse as `arpwatchd run`'s",
         _dev_sh_accepts),
    Rule(r"(sudo )?(python3|\.venv/bin/python) benchmarks/\w+\.py", NOT_RUN,
         "a benchmark takes minutes (live ones need root): the script exists and takes each "
         "option the line gives", _script_options),
    # change the host, or need a running service
    Rule(r"/usr/bin/python3 -m venv /opt/arpwatchd", NOT_RUN,
         "writes /opt; dev.sh makes its .venv (this suite's) the same way", _venv_like_dev_sh),
    Rule(r"/opt/arpwatchd/bin/pip install ", NOT_RUN,
         "installs into /opt; the unit runs that venv's entry point", _venv_like_dev_sh),
    Rule(r"useradd ", NOT_RUN, "adds a system user: the unit's User= and StateDirectory",
         _unit_user),
    Rule(r"install (-D )?-m 0644 ", NOT_RUN,
         "writes /etc and /var/lib: the sources exist, the targets are where they are read",
         _sources_exist),
    Rule(r"\$EDITOR ", NOT_RUN, "interactive: the file is one the docs install",
         _edits_an_installed_file),
    Rule(r"systemctl ", NOT_RUN, "starts, stops or reloads host services", _services_known),
    Rule(r"curl -s '?http://localhost:9090/api/v1/", NOT_RUN,
         "needs a running Prometheus scraping sensors", _jq_reads_the_api),
]


def rule_for(command: Command) -> Rule | None:
    return next((r for r in RULES if re.match(r.pattern, command.line)), None)


def _parses(command: Command, args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{command}: does not parse as arpwatchd {' '.join(args)} (exit {exc.code})")


# --- the tests ------------------------------------------------------------------------------

def test_the_pages_have_commands_of_each_kind() -> None:
    # The extraction must keep working: the README shows replays, tools, promtool, installs.
    hows = {rule.how for c in COMMANDS if (rule := rule_for(c)) is not None}
    assert hows == {RUN, ELSEWHERE, LIVE, NOT_RUN}
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("command", COMMANDS, ids=[str(c) for c in COMMANDS])
def test_every_command_is_classified(command: Command) -> None:
    if rule_for(command) is None:
        pytest.fail(f"{command} matches no row of RULES in tests/test_doc_commands.py. Add one: "
                    "RUN if it is safe to run in the temporary Host (map new host paths in "
                    "PATHS), ELSEWHERE naming the test or CI file that runs it, or NOT_RUN with "
                    "the reason and a check of what it names.")


def test_every_rule_is_used() -> None:
    unused = [r.pattern for r in RULES if not any(rule_for(c) is r for c in COMMANDS)]
    assert not unused, f"rules no page needs any more: {unused}"


ARPWATCHD_COMMANDS = [c for c in COMMANDS if re.match(r"(\S*/)?arpwatchd ", c.line)]


@pytest.mark.parametrize("command", ARPWATCHD_COMMANDS, ids=[str(c) for c in ARPWATCHD_COMMANDS])
def test_every_arpwatchd_command_parses(command: Command) -> None:
    _parses(command, _words(command)[1:])
    for word in _words(command):
        if word.startswith(("pcaps/", "deploy/", "dashboards/")):
            assert (ROOT / word).exists(), f"{command}: names {word}, not in the repository"


def _serve(command: Command, host: Host) -> None:
    """Starts a `replay --serve` line (or the stand-in for the service) on a free port and
    waits until it answers."""
    host.port = host.port or _free_port()
    line = command.line if "--serve" in command.line else (
        "arpwatchd replay --serve --metrics-address 127.0.0.1:20806 capture.pcap")
    with open(host.root / "served-events.jsonl", "wb") as events:
        host.server = subprocess.Popen(["bash", "-c", "exec " + host.shell(line)],
                                       cwd=host.root, stdout=events, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{host.port}/metrics"
    deadline = time.monotonic() + TIMEOUT  # a failure guard only: ready is a condition
    while b"arpwatchd_conflict_active{" not in _get(url):
        assert host.server.poll() is None, f"{command}: exit {host.server.returncode}"
        assert time.monotonic() < deadline, f"{command}: no metrics on {url}"
        time.sleep(0.05)


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read()  # type: ignore[no-any-return]
    except OSError:
        return b""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HOOK_EVENT = {"ts": "2024-03-04T09:02:11.000200Z", "event": "conflict", "severity": "critical",
              "interface": "eth0", "vlan": None, "ip": "192.168.10.70",
              "mac": "02:00:00:00:70:01", "previous_mac": "02:00:00:00:70:02"}


def _run_one(command: Command, rule: Rule, host: Host) -> None:
    if "promtool" in command.line and PROMTOOL is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; CI has it)")
    if "--serve" in command.line:
        _serve(command, host)
        return
    if command.line.startswith("curl") and host.server is None:
        _serve(command, host)  # stands in for `systemctl enable --now arpwatchd`
    if command.script:
        script = host.root / "notify"
        script.write_text(host.shell(command.script), encoding="utf-8")
        env = {ENV_PREFIX + name.upper(): str(HOOK_EVENT.get(name) or "") for name in ENV_FIELDS}
        for name in re.findall(r"\$(ARPWATCHD_\w+)", command.script):
            assert name in env, f"{command}: the hook sets no {name}"
        done = host.run(f"sh -n {script} && sh {script} --to netops@example.org",
                        stdin=json.dumps(HOOK_EVENT), env=env)
    else:
        done = host.run(command.line)
    rule.check(command, done, host)


RUN_BLOCKS = [b for b in BLOCKS if any((r := rule_for(c)) and r.how == RUN for c in b)]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[str(b[0]) for b in RUN_BLOCKS])
def test_each_block_as_a_reader_runs_it(block: list[Command], host: Host) -> None:
    for command in block:
        rule = rule_for(command)
        assert rule is not None, f"{command}: unclassified (see test_every_command_is_classified)"
        if rule.how == RUN:
            _run_one(command, rule, host)
        else:
            rule.check(command)
    if host.server is not None:
        assert _stop(host.server) == 0, "replay --serve: not a clean stop on SIGTERM"
        host.server = None
        # On stop the replay is finished like a plain one: the capture's conflict resolves.
        lines = (host.root / "served-events.jsonl").read_text(encoding="utf-8").splitlines()
        assert "conflict_resolved" in {json.loads(line)["event"] for line in lines}, lines[-3:]


NOT_RUN_COMMANDS = [c for c in COMMANDS if all(c is not x for b in RUN_BLOCKS for x in b)]


@pytest.mark.parametrize("command", NOT_RUN_COMMANDS, ids=[str(c) for c in NOT_RUN_COMMANDS])
def test_each_command_not_run_is_checked_instead(command: Command) -> None:
    rule = rule_for(command)
    assert rule is not None and rule.how != RUN, command
    rule.check(command)


LIVE_LINES = sorted({c.line for c in COMMANDS if (r := rule_for(c)) and r.how == LIVE})


@pytest.mark.live
@pytest.mark.parametrize("line", LIVE_LINES)
def test_live_commands_capture_in_a_namespace(line: str, lab: Lab, tmp_path: Path) -> None:
    """`./dev.sh run` as the README gives it, in the lab's sensor namespace: dev.sh runs
    `arpwatchd run` with the default config on the first interface that is up, says it is
    capturing, reports the host that announces itself, and stops cleanly on SIGTERM. dev.sh
    gets the stand-in venv of test_alert_demo.py, so nothing is installed; the store goes to
    $XDG_STATE_HOME, not the checkout."""
    packages = re.search(r"^RUN_PACKAGES=\(([^)]*)\)", (ROOT / "dev.sh").read_text(
        encoding="utf-8"), flags=re.MULTILINE)
    assert packages is not None
    if not all(_installed(p) for p in packages[1].split()):
        pytest.skip("dev.sh would install Debian packages first (not Debian, or missing)")
    venv = _stand_in_venv(tmp_path / "venv")
    program = venv / "bin" / "arpwatchd"  # the console script pip would write
    program.write_text(f"#!{venv}/bin/python\nimport sys\nfrom arpwatchd.cli import main\n"
                       "sys.exit(main())\n", encoding="utf-8")
    program.chmod(0o755)
    env = dict(os.environ, ARPWATCHD_VENV=str(venv),
               ARPWATCHD_PYTHON=os.path.realpath(BASE_PYTHON),
               XDG_STATE_HOME=str(tmp_path / "state"))
    host = lab.add_host("a", "02:00:00:00:00:0a", ["192.0.2.11"])
    events, log = tmp_path / "events.jsonl", tmp_path / "stderr.log"
    with open(events, "wb") as out, open(log, "wb") as err:
        sensor = lab.sensor_popen([str(ROOT / "dev.sh"), *shlex.split(line)[1:]], env=env,
                                  stdout=out, stderr=err)
    _wait(sensor, "capturing on", lambda: "capturing on " in log.read_text(encoding="utf-8"), log)

    def seen() -> bool:
        lines = events.read_text(encoding="utf-8").split("\n")[:-1]  # whole lines only
        found = [json.loads(x) for x in lines]
        if any(e["event"] == "new_station" and e["ip"] == "192.0.2.11" for e in found):
            return True
        host.arping_announce(count=1)  # again: a new port may not forward the first one
        return False

    _wait(sensor, "the host's new_station", seen, log)
    assert _stop(sensor) == 0, log.read_text(encoding="utf-8")
    assert (tmp_path / "state" / "arpwatchd" / "state.sqlite").exists()


def _wait(proc: subprocess.Popen[bytes], what: str, ready: Callable[[], bool], log: Path
          ) -> None:
    deadline = time.monotonic() + TIMEOUT  # a failure guard only: ready is a condition
    while not ready():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}: {log.read_text()}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)
