"""The whole metrics path against the real thing: sensor -> Prometheus -> every PromQL query.

A capture with a failover and a still-active conflict is replayed by `arpwatchd replay
--serve` (a subprocess, as an operator runs it); Debian's Prometheus scrapes it every second
and loads dashboards/alerts.yml. Then every expression of the Grafana dashboard (panels,
annotations, template variables) and of the alert rules is evaluated through the HTTP API:
each must parse, and the ones the capture lights up must return the expected series. This is
what catches a dashboard that is valid JSON but asks Prometheus for nonsense.

Timing: polls with deadlines, never fixed sleeps, because CI shares 2 cores. Every process
started here is stopped in a finally block.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from arpwatchd import __version__
from arpwatchd.frames import REQUEST, announcement, arp_frame, write_pcap

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed (Debian package 'prometheus'; CI installs it)")

INTERFACE = "lab0"
FAILOVER_IP = "10.0.0.10"
CONFLICT_IP = "10.0.20.5"
CONFLICT_VLAN = "20"
OLD, NEW, GATEWAY = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:01"
FIRST, SECOND = "02:00:00:00:00:0c", "02:00:00:00:00:0d"
STARTUP = 90.0
"""Seconds allowed for a process or a first scrape on a loaded 2-core machine."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], timeout: float = STARTUP,
          alive: subprocess.Popen[bytes] | None = None) -> Any:
    """Polls `check` until it returns something truthy; fails naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"{what}: process exited with {alive.returncode}")
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error})")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()  # type: ignore[no-any-return]


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> int | None:
    """SIGTERM, wait, then SIGKILL; returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def make_capture(path: Path, t0: float) -> None:
    """A failover of 10.0.0.10 (announced, old owner silent), then a conflict on 10.0.20.5
    in VLAN 20 that is still going on at the last packet."""
    zero = "00:00:00:00:00:00"
    frames = [
        (t0, announcement(FAILOVER_IP, OLD)),
        (t0 + 1, announcement("10.0.0.1", GATEWAY)),
        (t0 + 5, announcement(FAILOVER_IP, NEW)),  # takeover by gratuitous ARP
    ]
    # Ordinary traffic past the 30 s hold: the old owner stayed silent, so: failover.
    frames += [(t0 + 40 + i, arp_frame(REQUEST, GATEWAY, "10.0.0.1", zero, FAILOVER_IP))
               for i in range(5)]
    frames += [
        (t0 + 60, announcement(CONFLICT_IP, FIRST, vlan=int(CONFLICT_VLAN))),
        (t0 + 100, announcement(CONFLICT_IP, SECOND, vlan=int(CONFLICT_VLAN))),
        (t0 + 101, announcement(CONFLICT_IP, FIRST, vlan=int(CONFLICT_VLAN))),  # conflict
        (t0 + 102, announcement(CONFLICT_IP, SECOND, vlan=int(CONFLICT_VLAN))),
    ]
    write_pcap(path, frames)


class Sensor:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, events: Path,
                 stderr: Path) -> None:
        self.proc = proc
        self.port = port
        self.target = f"127.0.0.1:{port}"
        self.url = f"http://{self.target}/metrics"
        self.events = events
        self.stderr = stderr

    def scrape(self) -> str:
        return _get(self.url).decode()


def _start_sensor(folder: Path, capture: Path, interface: str, ready: str) -> Sensor:
    """`arpwatchd replay --serve` over `capture`, serving metrics until stopped; returns once
    a scrape shows `ready` (the endpoint starts before the replay)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    events = folder / "events.jsonl"
    stderr = folder / "sensor.stderr"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "arpwatchd", "replay", "--serve", "--metrics-address",
             f"127.0.0.1:{port}", "-i", interface, "--events", str(events), str(capture)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    running = Sensor(proc, port, events, stderr)
    try:
        _wait(f"the sensor's metrics showing {ready}", lambda: ready in running.scrape(),
              alive=proc)
    except BaseException:
        _stop(proc)
        raise
    return running


@pytest.fixture
def sensor(tmp_path: Path) -> Iterator[Sensor]:
    """`arpwatchd replay --serve` over the lab capture."""
    capture = tmp_path / "lab.pcap"
    make_capture(capture, time.time() - 300)
    running = _start_sensor(tmp_path, capture, INTERFACE, f'ip="{CONFLICT_IP}"')
    try:
        yield running
    finally:
        _stop(running.proc)


def test_replay_serve_keeps_the_conflict_until_sigterm(sensor: Sensor) -> None:
    body = sensor.scrape()
    conflict = next(json.loads(line) for line in sensor.events.read_text().splitlines()
                    if '"conflict"' in line)
    assert {conflict["mac"], conflict["previous_mac"]} == {FIRST, SECOND}
    assert (f'arpwatchd_conflict_active{{interface="{INTERFACE}",ip="{CONFLICT_IP}",'
            f'mac="{conflict["mac"]}",previous_mac="{conflict["previous_mac"]}",'
            f'vlan="{CONFLICT_VLAN}"}} 1.0') in body
    assert f'arpwatchd_failovers_total{{interface="{INTERFACE}",vlan=""}} 1.0' in body
    assert "arpwatchd_active_conflicts 1.0" in body
    assert 'mode="replay"' in next(line for line in body.splitlines()
                                   if line.startswith("arpwatchd_build_info{"))
    assert "serving metrics on http://127.0.0.1:" in sensor.stderr.read_text()
    events = [json.loads(line) for line in sensor.events.read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "new_station"] == ["failover",
                                                                            "conflict"]
    assert _stop(sensor.proc) == 0
    # On stop the replay is finished as without --serve: the conflict runs to its end.
    events = [json.loads(line) for line in sensor.events.read_text().splitlines()]
    assert events[-1]["event"] == "conflict_resolved"
    assert events[-1]["ip"] == CONFLICT_IP


class PrometheusServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            body = _get(url)
        except urllib.error.HTTPError as exc:  # 400 on a bad query still has a JSON body
            body = exc.read()
        return json.loads(body)  # type: ignore[no-any-return]

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)


SPOOF_CAPTURE = ROOT / "pcaps" / "spoof-in-progress.pcap"
SPOOFED_IP, GATEWAY_MAC, ATTACKER_MAC = "192.168.10.1", "00:1c:7f:00:00:01", "02:00:00:00:66:01"
FLEET = {"lab-a": "paris", "lab-b": "lyon"}
"""sensor -> site labels, as deploy/prometheus.yml gives each target."""
UNTAGGED = "^$"
"""The vlan variable's value for untagged frames: a regex matching the absent label."""


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("arpwatchd_demo", DASHBOARDS / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Sensor]]:
    """Two sensors, as a fleet: lab-a replays the lab capture (a failover, a conflict in VLAN
    20) on lab0; lab-b replays pcaps/spoof-in-progress.pcap (an untagged conflict) on eth1."""
    capture = tmp_path / "lab.pcap"
    make_capture(capture, time.time() - 300)
    sensors: dict[str, Sensor] = {}
    try:
        sensors["lab-a"] = _start_sensor(tmp_path / "lab-a", capture, INTERFACE,
                                         f'ip="{CONFLICT_IP}"')
        sensors["lab-b"] = _start_sensor(tmp_path / "lab-b", SPOOF_CAPTURE, "eth1",
                                         f'ip="{SPOOFED_IP}"')
        yield sensors
    finally:
        for running in sensors.values():
            _stop(running.proc)


@pytest.fixture
def prometheus(tmp_path: Path, fleet: dict[str, Sensor]) -> Iterator[PrometheusServer]:
    """Debian's Prometheus on deploy/prometheus.yml (as dashboards/demo.py rewrites it: these
    targets with their sensor and site labels, alerts.yml, scrapes every second)."""
    demo = _demo()
    port = _free_port()
    folder = tmp_path / "prometheus"
    folder.mkdir()
    config = demo.prometheus_config(
        {s.target: {"sensor": name, "site": FLEET[name]} for name, s in fleet.items()},
        interval="1s")
    proc = demo.start_prometheus(config, port, folder)
    server = PrometheusServer(proc, port, folder / "prometheus.log")
    try:
        _wait("prometheus /-/ready", lambda: _get(f"{server.base}/-/ready"), alive=proc)
        yield server
    finally:
        _stop(proc)


def _substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces Grafana template variables ($name, ${name}, ${name:format}, [[name]]) with
    values already formatted as Grafana would (the custom all value `.*` is never escaped).
    Grafana leaves what names no variable as it is: `$1` in a label_replace()."""
    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return match.group(0) if name.isdigit() else values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert result["status"] == "success", result
    data = result["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]  # type: ignore[no-any-return]


def _variable_options(prometheus: PrometheusServer, var: dict[str, Any],
                      values: dict[str, str]) -> list[tuple[str, str]]:
    """(text, value) options of a query variable, as Grafana's Prometheus data source makes
    them: label_values() through the label values API; query_result() as one string per
    series, `{label="value",...} VALUE TIMESTAMP`, filtered by the variable's regex, whose
    named groups `text` and `value` (JavaScript syntax, the first match of each wins)."""
    definition = _substitute(var["definition"], values)
    match = re.fullmatch(r"label_values\((.*), (\w+)\)", definition)
    if match:
        answer = prometheus.api(f"label/{match.group(2)}/values", **{"match[]": match.group(1)})
        assert answer["status"] == "success", (var["name"], answer)
        return [(v, v) for v in answer["data"]]
    match = re.fullmatch(r"query_result\((.*)\)", definition, re.DOTALL)
    assert match, definition
    regex = re.fullmatch(r"/(.*)/g?", var["regex"])
    assert regex, var["regex"]
    pattern = re.compile(regex.group(1).replace("(?<", "(?P<"))
    options = []
    for series in _series(prometheus.query(match.group(1))):
        labels = ",".join(f'{k}="{v}"' for k, v in series["metric"].items())
        line = f"{{{labels}}} {series['value'][1]} {int(series['value'][0] * 1000)}"
        found = list(pattern.finditer(line))
        text = next((m["text"] for m in found if m["text"]), None)
        value = next((m["value"] for m in found if m["value"]), None)
        if text or value:
            options.append((text or value or "", value or text or ""))
    return sorted(options)


def _sensors(series: list[dict[str, Any]]) -> set[str]:
    return {s["metric"]["sensor"] for s in series if "sensor" in s["metric"]}


def _run_dashboard(prometheus: PrometheusServer, dashboard: dict[str, Any],
                   values: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every panel target, by "type title/refId", evaluated with `values` substituted."""
    results = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = _substitute(target["expr"], values)
            key = f"{panel['type']} {panel['title']}/{target['refId']}"
            results[key] = _series(prometheus.query(expr))
    return results


def _check_per_sensor(results: dict[str, list[dict[str, Any]]], sensors: set[str]) -> None:
    """Each panel shows each selected sensor where it keeps the label, and has data anyway."""
    for key, series in results.items():
        assert series, f"{key}: no data"
        if any("sensor" in s["metric"] for s in series):
            assert _sensors(series) == sensors, (key, series)


@pytest.mark.prometheus
@needs_prometheus
def test_every_dashboard_and_alert_expression_runs_on_a_fleet_of_two_sensors(
    fleet: dict[str, Sensor], prometheus: PrometheusServer
) -> None:
    assert PROMTOOL is not None
    for running in fleet.values():  # promtool lints real scrapes (names, types, _total)
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=running.scrape().encode(),
                              capture_output=True, timeout=60, check=False)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

    # Both sensors scraped, every rule evaluated once, enough scrapes for rate().
    _wait("both sensors' conflicts in Prometheus", lambda: len(_series(prometheus.query(
        "arpwatchd_conflict_active"))) == 2, alive=prometheus.proc)

    def rules_evaluated() -> bool:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r["health"] == "ok" for r in rules)

    _wait("every alert rule evaluated healthy", rules_evaluated, alive=prometheus.proc)
    _wait("three scrapes of each sensor for rate()", lambda: all(
        float(s["value"][1]) >= 3 for s in _series(prometheus.query(
            'count_over_time(up{job="arpwatchd"}[5m])'))), alive=prometheus.proc)

    dashboard = json.loads((DASHBOARDS / "arpwatchd.json").read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "query"}
    everything = {"datasource": "prometheus", "job": ".*", "site": ".*", "sensor": ".*",
                  "interface": ".*", "vlan": ".*", "family": ".*", "__rate_interval": "1m",
                  "__interval": "15s", "__range": "1h"}

    # Template variables, every sensor selected, then lab-b's site alone.
    options = {name: _variable_options(prometheus, var, everything)
               for name, var in variables.items()}
    assert options["job"] == [("arpwatchd", "arpwatchd")]
    assert options["site"] == [("lyon", "lyon"), ("paris", "paris")]
    assert options["sensor"] == [("lab-a", "lab-a"), ("lab-b", "lab-b")]
    assert options["interface"] == [("eth1", "eth1"), (INTERFACE, INTERFACE)]
    assert options["vlan"] == [(CONFLICT_VLAN, CONFLICT_VLAN), ("untagged", UNTAGGED)]
    assert options["family"] == [("ipv4", "ipv4"), ("ipv6", "ipv6")]  # both pre-initialised
    lyon = dict(everything, site="lyon")
    assert _variable_options(prometheus, variables["sensor"], lyon) == [("lab-b", "lab-b")]
    lab_b = dict(lyon, sensor="lab-b")
    assert _variable_options(prometheus, variables["interface"], lab_b) == [("eth1", "eth1")]
    assert _variable_options(prometheus, variables["vlan"], lab_b) == [("untagged", UNTAGGED)]

    # Every panel with every sensor: each sensor's series where the panel keeps the label.
    results = _run_dashboard(prometheus, dashboard, everything)
    assert len(results) >= 25
    _check_per_sensor(results, set(FLEET))
    table = {s["metric"]["sensor"]: s["metric"] for s in results["table Active conflicts/A"]}
    assert {k: table["lab-a"].get(k) for k in ("ip", "vlan", "interface", "site")} == {
        "ip": CONFLICT_IP, "vlan": CONFLICT_VLAN, "interface": INTERFACE, "site": "paris"}
    assert {table["lab-a"]["mac"], table["lab-a"]["previous_mac"]} == {FIRST, SECOND}
    assert {k: table["lab-b"].get(k) for k in ("ip", "vlan", "mac", "previous_mac")} == {
        "ip": SPOOFED_IP, "vlan": None, "mac": ATTACKER_MAC, "previous_mac": GATEWAY_MAC}
    (version,) = {s["metric"]["version"] for s in results["stat Uptime and version/A"]}
    assert version == __version__
    assert {s["metric"]["mode"] for s in results["stat Uptime and version/A"]} == {"replay"}
    kinds = {s["metric"]["kind"] for s in results["timeseries ARP rate by kind/A"]}
    assert kinds >= {"announcement", "request"}
    assert "conflict" in {s["metric"]["event"] for s in results["timeseries Events by type/A"]}
    assert {s["metric"]["family"] for s in results["timeseries Events by address family/A"]} \
        == {"ipv4", "ipv6"}
    assert {s["metric"]["kind"] for s in results["timeseries NDP rate by kind/A"]} >= {
        "solicitation", "unsolicited_advertisement"}  # pre-initialised to 0 per interface

    def one(found: dict[str, list[dict[str, Any]]], key: str) -> float:
        (sample,) = found[key]
        return float(sample["value"][1])

    assert one(results, "stat Active conflicts/A") == 2  # the stat sums the fleet
    assert one(results, "stat Failovers/A") == 1
    assert one(results, "stat Store write errors/A") == 0

    # One sensor, one VLAN: only its series, and the untagged value selects untagged ones.
    only_b = dict(lab_b, interface="eth1", vlan=UNTAGGED)
    results = _run_dashboard(prometheus, dashboard, only_b)
    _check_per_sensor(results, {"lab-b"})
    (row,) = results["table Active conflicts/A"]
    assert row["metric"]["ip"] == SPOOFED_IP
    assert {s["metric"].get("vlan") for s in results["timeseries Bindings/A"]} == {None}
    only_a_vlan = dict(everything, sensor="lab-a", vlan=CONFLICT_VLAN)
    (row,) = _run_dashboard(prometheus, dashboard, only_a_vlan)["table Active conflicts/A"]
    assert row["metric"]["ip"] == CONFLICT_IP
    assert one(_run_dashboard(prometheus, dashboard, dict(everything, sensor="lab-a",
                                                          vlan=UNTAGGED)), "stat Failovers/A") == 1

    for annotation in dashboard["annotations"]["list"]:  # parse and evaluate
        if "expr" in annotation:
            _series(prometheus.query(_substitute(annotation["expr"], everything)))

    # Every alert expression: parses; only the two conflicts are lit.
    rules = yaml.safe_load((DASHBOARDS / "alerts.yml").read_text(encoding="utf-8"))
    lit = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            lit[rule["alert"]] = _series(prometheus.query(rule["expr"]))
    fired = lit.pop("ArpwatchdAddressConflict")
    assert {(s["metric"]["sensor"], s["metric"]["ip"]) for s in fired} == {
        ("lab-a", CONFLICT_IP), ("lab-b", SPOOFED_IP)}
    assert all(series == [] for series in lit.values()), lit

    # And Prometheus itself, evaluating alerts.yml, raises one conflict alert per sensor.
    def conflict_alerts() -> list[dict[str, Any]]:
        alerts = prometheus.api("alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ArpwatchdAddressConflict"
                and a["state"] == "firing"]

    alerts = _wait("both conflict alerts firing", lambda: len(conflict_alerts()) == 2
                   and conflict_alerts(), alive=prometheus.proc)
    assert {(a["labels"]["sensor"], a["labels"]["site"]) for a in alerts} == set(FLEET.items())
    assert any(SPOOFED_IP in a["annotations"]["summary"] for a in alerts)
    firing = {a["labels"]["alertname"] for a in prometheus.api("alerts")["data"]["alerts"]
              if a["state"] == "firing"}
    assert firing == {"ArpwatchdAddressConflict"}
