"""The per-event hook: no shell, literal data, bounded concurrency, timeouts, never blocking.

Why: a hook turns event fields into a program's input. Interface names come from the command
line and config, so a hook built on a shell would run whatever they contain; arpwatch's
sendmail children blocked its capture loop. These tests run a real program and check that
shell metacharacters arrive literally and run nothing, that a flood of events cannot start
more than `max_running` programs, that a hung program (and its children) is killed, and that
`write` returns at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import pytest

from arpwatchd.cli import main
from arpwatchd.config import ConfigError, parse_config
from arpwatchd.events import Event, EventKind
from arpwatchd.hooks import HookConfig, HookRunner, hook_env

ROOT = Path(__file__).resolve().parents[1]

RECORDER = f"""#!{sys.executable}
import json, os, sys
out = sys.argv[1]
data = sys.stdin.read()
with open(out, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[2:], "stdin": data, "cwd": os.getcwd(),
                        "env": {{k: v for k, v in os.environ.items()
                                 if k.startswith("ARPWATCHD_")}}}}) + "\\n")
"""

SLEEPER = f"""#!{sys.executable}
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1], "a") as f:
    f.write(f"{{child.pid}}\\n")
time.sleep(float(sys.argv[2]))
"""


def _program(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _event(kind: EventKind = EventKind.CONFLICT, **fields: object) -> Event:
    values: dict[str, object] = {"ts": 1709542860.0, "kind": kind, "interface": "eth0",
                                 "vlan": None, "ip": "10.0.0.5", "mac": "02:00:00:00:00:01",
                                 "previous_mac": "02:00:00:00:00:02", "reason": "both_active"}
    values.update(fields)
    return Event(**values)  # type: ignore[arg-type]


def test_shell_metacharacters_reach_the_program_literally(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = tmp_path / "calls.jsonl"
    nasty_interface = f"eth0;rm -rf /;touch {marker}"
    nasty_mac = f"$(touch {marker})`touch {marker}`"
    program = _program(tmp_path, "record", RECORDER)
    runner = HookRunner(HookConfig((program, str(out), "$(id)", f"; touch {marker}", "a b"),
                                   frozenset({EventKind.CONFLICT})))
    event = _event(interface=nasty_interface, mac=nasty_mac, vlan=10)
    runner.write([event], lambda mac: "Vendor | cat /etc/shadow")
    runner.wait()
    [call] = _records(out)
    assert call["argv"] == ["$(id)", f"; touch {marker}", "a b"]
    assert json.loads(str(call["stdin"])) == event.to_dict("Vendor | cat /etc/shadow")
    env = call["env"]
    assert isinstance(env, dict)
    assert env["ARPWATCHD_INTERFACE"] == nasty_interface
    assert env["ARPWATCHD_MAC"] == nasty_mac
    assert env["ARPWATCHD_VENDOR"] == "Vendor | cat /etc/shadow"
    assert env["ARPWATCHD_EVENT"] == "conflict"
    assert env["ARPWATCHD_SEVERITY"] == "critical"
    assert env["ARPWATCHD_VLAN"] == "10"
    assert env["ARPWATCHD_IP"] == "10.0.0.5"
    assert env["ARPWATCHD_PREVIOUS_MAC"] == "02:00:00:00:00:02"
    assert env["ARPWATCHD_SUSPECT"] == ""
    assert call["cwd"] == "/"
    assert not marker.exists()
    assert runner.started == 1
    assert runner.failed == 0


def test_only_chosen_events_run_it(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    runner = HookRunner(HookConfig((_program(tmp_path, "record", RECORDER), str(out)),
                                   frozenset({EventKind.CHANGED_MAC})))
    runner.write([_event(), _event(EventKind.NEW_STATION), _event(EventKind.CHANGED_MAC)],
                 lambda mac: None)
    runner.wait()
    assert [json.loads(str(c["stdin"]))["event"] for c in _records(out)] == ["changed_mac"]


def test_excess_events_are_dropped_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pids = tmp_path / "pids"
    runner = HookRunner(HookConfig((_program(tmp_path, "sleep", SLEEPER), str(pids), "0.5"),
                                   frozenset({EventKind.CONFLICT}), timeout=5, max_running=2))
    with caplog.at_level(logging.WARNING, logger="arpwatchd"):
        began = time.monotonic()
        runner.write([_event() for _ in range(5)], lambda mac: None)
        runner.write([_event()], lambda mac: None)
        assert time.monotonic() - began < 0.3  # never waits for a program
        runner.wait()
    assert (runner.started, runner.dropped) == (2, 4)
    busy = [r for r in caplog.records if "already running" in r.getMessage()]
    assert len(busy) == 1
    runner.write([_event()], lambda mac: None)  # slots are free again
    runner.wait()
    assert runner.started == 3
    for pid in pids.read_text().split():  # clean up the sleeping grandchildren
        _kill(int(pid))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_hung_program_and_its_children_are_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pids = tmp_path / "pids"
    runner = HookRunner(HookConfig((_program(tmp_path, "sleep", SLEEPER), str(pids), "60"),
                                   frozenset({EventKind.CONFLICT}), timeout=0.5))
    with caplog.at_level(logging.WARNING, logger="arpwatchd"):
        began = time.monotonic()
        runner.write([_event()], lambda mac: None)
        runner.wait()
        assert time.monotonic() - began < 5
    assert runner.timed_out == 1
    assert any("killed" in r.getMessage() for r in caplog.records)
    child = int(pids.read_text().split()[0])
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_failures_are_counted_not_raised(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    failing = _program(tmp_path, "fail", f"#!{sys.executable}\nimport sys\n"
                                         "sys.stderr.write('no route to pager\\n')\n"
                                         "sys.exit(3)\n")
    runner = HookRunner(HookConfig((failing,), frozenset({EventKind.CONFLICT})))
    missing = HookRunner(HookConfig((str(tmp_path / "nope"),), frozenset({EventKind.CONFLICT})))
    with caplog.at_level(logging.WARNING, logger="arpwatchd"):
        for r in (runner, missing):
            r.write([_event(), _event()], lambda mac: None)
            r.wait()
    assert (runner.failed, missing.failed) == (2, 2)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "exited with status 3: no route to pager" in text
    assert "cannot run" in text
    assert text.count("exited with status 3") == 1


def test_env_has_every_field_even_when_empty() -> None:
    env = hook_env(_event(EventKind.NEW_STATION, previous_mac=None, reason=None), None,
                   base={"PATH": "/usr/bin"})
    assert env["PATH"] == "/usr/bin"
    assert env["ARPWATCHD_TS"] == "2024-03-04T09:01:00.000000Z"
    assert env["ARPWATCHD_PREVIOUS_MAC"] == env["ARPWATCHD_REASON"] == ""
    assert sorted(k for k in env if k.startswith("ARPWATCHD_")) == sorted(
        "ARPWATCHD_" + k for k in ("TS", "EVENT", "SEVERITY", "INTERFACE", "VLAN", "IP", "MAC",
                                   "PREVIOUS_MAC", "REASON", "SUSPECT", "VENDOR", "COUNT",
                                   "SINCE", "DURATION", "SUPPRESSED_EVENT"))


def test_config() -> None:
    hook = parse_config("output:\n  hook:\n    command: [/usr/local/bin/page, --team, net]\n"
                        "    events: [conflict, defense_failed]\n    timeout: 30s\n"
                        "    max_running: 2\n").output.hook
    assert hook == HookConfig(("/usr/local/bin/page", "--team", "net"),
                              frozenset({EventKind.CONFLICT, EventKind.DEFENSE_FAILED}), 30.0, 2)
    default = parse_config("output: {hook: {command: [/bin/true], events: [conflict]}}")
    assert default.output.hook is not None
    assert (default.output.hook.timeout, default.output.hook.max_running) == (10.0, 4)


@pytest.mark.parametrize(("text", "message"), [
    ("output: {hook: {events: [conflict]}}", "a hook needs 'command'"),
    ("output: {hook: {command: [/bin/true]}}", "a hook needs 'events'"),
    ("output: {hook: {command: [], events: [conflict]}}", "the command is empty"),
    ("output: {hook: {command: 'mail -s x root', events: [conflict]}}", "expected a list"),
    ("output: {hook: {command: [notify.sh], events: [conflict]}}", "absolute path"),
    ("output: {hook: {command: [/bin/true], events: [conflicts]}}", "unknown event"),
    ("output: {hook: {command: [/bin/true], events: []}}", "list the events"),
    ("output: {hook: {command: [/bin/true], events: [conflict], timeout: 0}}",
     "must be more than 0"),
    ("output: {hook: {command: [/bin/true], events: [conflict], max_running: 0}}",
     "must be at least 1"),
])
def test_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, source="site.yml")


def test_replay_runs_the_hook_for_its_conflict(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    program = _program(tmp_path, "record", RECORDER)
    config = tmp_path / "site.yml"
    config.write_text(f"output:\n  hook:\n    command: [{program}, {out}]\n"
                      f"    events: [conflict, conflict_resolved]\n")
    assert main(["replay", str(ROOT / "pcaps" / "duplicate-ip.pcap"), "-c", str(config),
                 "--events", os.devnull, "-q"]) == 0
    got = sorted(json.loads(str(c["stdin"]))["event"] for c in _records(out))
    assert got == ["conflict", "conflict_resolved"]
