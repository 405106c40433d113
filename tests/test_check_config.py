"""`check-config` prints every effective setting and warns on rules that look wrong
(issue 16 item 5).

Why: it promised the effective settings but printed counts (`"networks": 1`), left out the
suppression rules and max_conflict_series, printed a state path resolved against the
directory it ran in (not the service's), and said nothing about a suppression rule with no
events (which hides conflicts), two owners for one protected address, or `10.0.10.5/24`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

SITE = """\
networks:
  - {interface: eth0, vlan: 10, prefixes: [10.0.10.5/24, 10.0.11.0/24]}
failover_groups:
  - {name: sql, ips: [10.0.10.50], macs: [00:15:5d:01:02:03, 00:15:5d:01:02:04]}
protected:
  - {ip: 10.0.10.1, mac: 00:26:0b:31:07:33, group: [00:26:0b:31:07:34]}
  - {ip: 10.0.10.1, mac: 00:26:0b:31:07:99, interface: eth0}
suppress:
  - {networks: [10.0.20.7/24], comment: DHCP pool}
  - {events: [conflict, arp_scan], macs: ["00:26:0b"], vlans: [untagged, 5], until: 2027-06-30}
defend:
  addresses:
    - {ip: 10.0.10.5, mac: 00:15:5d:01:02:03, interface: eth1}
capture: {interfaces: [eth0]}
metrics: {max_conflict_series: 50}
state: {path: state/site.sqlite}
"""


def _check(config: Path, cwd: Path = ROOT) -> tuple[dict[str, object], list[str]]:
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "check-config", str(config)],
                          capture_output=True, text=True, cwd=cwd, timeout=60, check=False,
                          env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr.splitlines()


def test_everything_is_printed_as_configured(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text(SITE)
    printed, _ = _check(site, cwd=tmp_path)
    assert printed["networks"] == [{"interface": "eth0", "vlan": 10,
                                    "prefixes": ["10.0.10.0/24", "10.0.11.0/24"]}]
    assert printed["failover_groups"] == [{
        "name": "sql", "interface": "any", "vlan": "any", "ips": ["10.0.10.50"],
        "macs": ["00:15:5d:01:02:03", "00:15:5d:01:02:04"]}]
    assert printed["protected"] == [
        {"ip": "10.0.10.1", "mac": "00:26:0b:31:07:33", "interface": "any", "vlan": "any",
         "group": ["00:26:0b:31:07:34"]},
        {"ip": "10.0.10.1", "mac": "00:26:0b:31:07:99", "interface": "eth0", "vlan": "any",
         "group": []},
        {"ip": "10.0.10.5", "mac": "00:15:5d:01:02:03", "interface": "eth1",
         "vlan": "untagged", "group": []},  # a defended address is protected too
    ]
    assert printed["suppress"] == [
        {"events": "all", "networks": ["10.0.20.0/24"], "macs": [], "vlans": [],
         "until": None, "comment": "DHCP pool"},
        {"events": ["arp_scan", "conflict"], "networks": [], "macs": ["00:26:0b"],
         "vlans": [5, "untagged"], "until": "2027-06-30T00:00:00.000000Z", "comment": ""},
    ]
    assert printed["metrics"] == {"address": "127.0.0.1", "port": 20806,
                                  "max_conflict_series": 50}
    assert printed["state_path"] == "state/site.sqlite"  # as written, not resolved here


def test_each_dangerous_or_contradictory_rule_is_one_warning(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text(SITE)
    _, warned = _check(site)
    prefix = f"arpwatchd: warning: {site}: "
    assert all(line.startswith(prefix) for line in warned), warned
    assert [line.removeprefix(prefix) for line in warned] == [
        "networks[0].prefixes[0] (line 2): 10.0.10.5/24 has host bits set: it means "
        "10.0.10.0/24 (write that, or 10.0.10.5 for the address alone)",
        "protected[1] (line 7): 10.0.10.1 already has the owner 00:26:0b:31:07:33 "
        "(protected[0], line 6): this entry never applies there; list both MACs in one entry "
        "(mac and group)",
        "suppress[0] (line 9): no events listed: this rule silences every event it matches, "
        "conflict, defense_failed included; list the events you accept",
        "suppress[0].networks[0] (line 9): 10.0.20.7/24 has host bits set: it means "
        "10.0.20.0/24 (write that, or 10.0.20.7 for the address alone)",
        "suppress[1].events (line 10): silences conflict: a spoofer matching this rule goes "
        "unreported",
        "state.path: state/site.sqlite is relative: each command resolves it against its own "
        "working directory; set an absolute path",
        "defend.addresses[0].interface: eth1 is not in capture.interfaces (eth0): run refuses "
        "to start unless it is captured (-i)",
    ]


def test_a_defended_address_with_another_owner_in_protected_is_a_warning(
        tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text("protected: [{ip: 10.0.0.1, mac: 02:00:00:00:00:01}]\n"
                    "defend: {addresses: [{ip: 10.0.0.1, mac: 02:00:00:00:00:02, "
                    "interface: eth0}]}\n"
                    "state: {path: /var/lib/arpwatchd/state.sqlite}\n")
    _, warned = _check(site)
    assert len(warned) == 1 and "defend.addresses[0] (line 2): 10.0.0.1 already has the " \
        "owner 02:00:00:00:00:01 (protected[0], line 1)" in warned[0]


def test_the_state_path_left_unset_is_said_not_resolved_here(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text("hold: 10s\n")
    printed, warned = _check(site, cwd=tmp_path)
    assert printed["state_path"] is None
    assert warned == [f"arpwatchd: warning: {site}: state.path: not set: a service uses "
                      "$STATE_DIRECTORY/state.sqlite, other commands ./state/arpwatchd.sqlite "
                      "in their working directory (or under $XDG_STATE_HOME), so the service "
                      "and the operator tools may use different stores; set an absolute path"]


def test_the_shipped_config_has_no_warning() -> None:
    _, warned = _check(ROOT / "deploy" / "arpwatchd.yml")
    assert warned == []


def test_run_logs_the_rule_warnings_at_start(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text("suppress: [{macs: ['00:26:0b']}]\n")
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "run", "-i", "nosuch0", "-c",
                           str(site), "--state", str(tmp_path / "s.sqlite"),
                           "--metrics-address", "0"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert done.returncode == 69
    warned, failed = done.stderr.splitlines()
    assert warned.endswith(f"arpwatchd WARNING {site}: suppress[0] (line 1): no events listed: "
                           "this rule silences every event it matches, conflict, "
                           "defense_failed included; list the events you accept")
    assert failed == "arpwatchd: nosuch0: cannot capture: no such interface"
