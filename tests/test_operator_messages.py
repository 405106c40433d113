"""What a newcomer reads (issue 16 item 7): one-line usage errors, an empty history said in
words, replay log lines tagged with packet time, and a word when a port shows no ARP at all.

Why: argparse printed a usage block before its error (the README promises one line per
error); `history` of an unknown address printed a bare header; a replay's log lines carried
the wall-clock time of the run beside events stamped with packet time; a sensor on a quiet or
wrong port logged nothing after its two start lines.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netlab import Lab, SensorProcess, wait_until

from arpwatchd.cli import main
from arpwatchd.daemon import NO_ARP_AFTER, STATS_EVERY, QuietWatch
from arpwatchd.store import Store
from arpwatchd.tracker import BindingRecord

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: COMMAND (see arpwatchd --help)"),
    (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
    (["history"], "the following arguments are required: IP|MAC (see arpwatchd history --help)"),
    (["bindings", "--ip", "10.0.0.x"], "argument --ip: not an IPv4 or IPv6 network: "
                                       "'10.0.0.x' "
                                       "(see arpwatchd bindings --help)"),
    (["run", "--metrics-address", "nowhere"], "argument --metrics-address:"),
    (["replay"], "the following arguments are required: FILE"),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "arpwatchd", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("arpwatchd: error: ") and message in line


def test_an_empty_history_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.sqlite"
    store = Store(str(state))
    store.write([BindingRecord("eth0", None, 0x0A000005, b"\x02" + bytes(5), 10.0, 20.0)], [],
                [])
    store.close()
    for argv, said in (
        (["history", "10.0.0.9"], f"no events for 10.0.0.9 in {state}"),
        (["history", "02:00:00:00:00:09"], f"no events for 02:00:00:00:00:09 in {state}"),
        (["bindings", "--ip", "10.1.0.0/16"], f"no bindings match in {state}"),
    ):
        assert main([*argv, "--state", str(state)]) == 0
        assert capsys.readouterr().out.splitlines() == [said]
    assert main(["history", "10.0.0.9", "--json", "--state", str(state)]) == 0
    assert capsys.readouterr().out == ""  # a script reading JSON lines gets none


def test_replay_tags_its_log_lines_end_to_end(tmp_path: Path) -> None:
    """A hook that fails during a replay is logged with the packet time reached, not only the
    time of the run."""
    site = tmp_path / "site.yml"
    site.write_text("output: {hook: {command: [/bin/false], events: [new_station]}}\n")
    events = tmp_path / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "replay",
                           str(ROOT / "pcaps" / "cluster-failover.pcap"), "-c", str(site),
                           "--events", str(events), "-v"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    day = json.loads(events.read_text().splitlines()[0])["ts"][:10]
    (line,) = [line for line in done.stderr.splitlines() if "/bin/false exited" in line]
    assert re.match(rf"\S+ \[packet time {day}T[0-9:.]+Z\] arpwatchd WARNING hook: ", line)


def test_no_arp_seen_is_said_once_after_a_minute() -> None:
    watch = QuietWatch()
    assert not watch.due(1000.0, seen=False)  # capture starts
    assert not watch.due(1000.0 + NO_ARP_AFTER - 0.5, seen=False)
    assert watch.due(1000.0 + NO_ARP_AFTER, seen=False)
    assert not watch.due(1000.0 + 10 * NO_ARP_AFTER, seen=False)  # once
    heard = QuietWatch()
    assert not heard.due(0.0, seen=False)
    assert not heard.due(5.0, seen=True)
    assert not heard.due(NO_ARP_AFTER * 2, seen=False)  # ARP was seen: nothing to say


@pytest.mark.live
def test_a_silent_port_is_said_once_live(lab: Lab) -> None:
    """The sensor on a bridge where nothing speaks: after a minute, one line saying no ARP has
    been seen; a host that then speaks changes nothing more (62-70 s)."""
    sensor = SensorProcess(lab, "hold: 3s\n").start()
    line = f"{lab.bridge}: no ARP frame seen in the 60 s since capture started"
    seen_at = wait_until(lambda: line in sensor.log(), NO_ARP_AFTER + 15, "the quiet line")
    assert seen_at - sensor.started_at >= NO_ARP_AFTER - 1
    lab.add_host("a", "02:00:00:00:16:0a", ["192.0.2.10"]).arping_announce(count=1)
    sensor.wait_for(lambda events: any(e["event"] == "new_station" for e in events), 10,
                    "new_station")
    time.sleep(STATS_EVERY * 2)
    assert sensor.stop()[0] == 0
    assert sensor.log().count("no ARP frame seen") == 1
