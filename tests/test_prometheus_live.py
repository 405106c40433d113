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


@pytest.fixture
def sensor(tmp_path: Path) -> Iterator[Sensor]:
    """`arpwatchd replay --serve` over the lab capture, serving metrics until stopped."""
    capture = tmp_path / "lab.pcap"
    make_capture(capture, time.time() - 300)
    port = _free_port()
    events = tmp_path / "events.jsonl"
    stderr = tmp_path / "sensor.stderr"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "arpwatchd", "replay", "--serve", "--metrics-address",
             f"127.0.0.1:{port}", "-i", INTERFACE, "--events", str(events), str(capture)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    running = Sensor(proc, port, events, stderr)
    try:
        # The endpoint starts before the replay; the files are read when the conflict shows.
        _wait("the sensor's conflict metric",
              lambda: f'ip="{CONFLICT_IP}"' in running.scrape(), alive=proc)
        yield running
    finally:
        _stop(proc)


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


@pytest.fixture
def prometheus(tmp_path: Path, sensor: Sensor) -> Iterator[PrometheusServer]:
    assert PROMETHEUS is not None
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DASHBOARDS / "alerts.yml")],
        "scrape_configs": [{
            "job_name": "arpwatchd",
            "static_configs": [{"targets": [sensor.target], "labels": {"sensor": "lab"}}],
        }],
    }), encoding="utf-8")
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = PrometheusServer(proc, port, log)
    try:
        _wait("prometheus /-/ready", lambda: _get(f"{server.base}/-/ready"), alive=proc)
        yield server
    finally:
        _stop(proc)


def _substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces Grafana template variables ($name, ${name}, [[name]]) like Grafana would."""
    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert result["status"] == "success", result
    data = result["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]  # type: ignore[no-any-return]


@pytest.mark.prometheus
@needs_prometheus
def test_every_dashboard_and_alert_expression_runs_on_real_prometheus(
    sensor: Sensor, prometheus: PrometheusServer
) -> None:
    assert PROMTOOL is not None
    # promtool lints a real scrape (names, types, help, _total suffixes).
    scrape = sensor.scrape()
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape.encode(),
                          capture_output=True, timeout=60, check=False)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

    # Wait until the sensor is scraped and every rule has been evaluated once.
    _wait("a scrape of the sensor", lambda: _series(prometheus.query(
        f'arpwatchd_conflict_active{{ip="{CONFLICT_IP}"}}')), alive=prometheus.proc)

    def rules_evaluated() -> bool:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r["health"] == "ok" for r in rules)

    _wait("every alert rule evaluated healthy", rules_evaluated, alive=prometheus.proc)
    _wait("two scrapes for rate()", lambda: float(_series(prometheus.query(
        "count_over_time(up[5m])"))[0]["value"][1]) >= 3, alive=prometheus.proc)

    dashboard = json.loads((DASHBOARDS / "arpwatchd.json").read_text(encoding="utf-8"))
    values = {"datasource": "prometheus", "job": "arpwatchd", "instance": sensor.target,
              "interface": INTERFACE, "vlan": ".*", "__rate_interval": "1m",
              "__interval": "15s", "__range": "1h"}

    # Template variables: label_values(selector, label) -> the label values API.
    variables = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", var["definition"])
        assert match, var["definition"]
        selector = _substitute(match.group(1), values)
        answer = prometheus.api(f"label/{match.group(2)}/values", **{"match[]": selector})
        assert answer["status"] == "success", (var["name"], answer)
        variables[var["name"]] = answer["data"]
    assert variables["job"] == ["arpwatchd"]
    assert variables["instance"] == [sensor.target]
    assert variables["interface"] == [INTERFACE]
    assert variables["vlan"] == [CONFLICT_VLAN]  # untagged is the absent (empty) label

    # Every panel target and annotation: parses and evaluates.
    results: dict[str, list[dict[str, Any]]] = {}
    evaluated = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = _substitute(target["expr"], values)
            results[f"{panel['title']}/{target['refId']}"] = _series(prometheus.query(expr))
            evaluated += 1
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            _series(prometheus.query(_substitute(annotation["expr"], values)))
            evaluated += 1
    assert evaluated >= 25

    def one(key: str) -> float:
        (sample,) = results[key]
        return float(sample["value"][1])

    (conflict,) = results["Active conflicts/A"]
    assert {k: conflict["metric"][k] for k in ("ip", "vlan", "interface", "instance")} == {
        "ip": CONFLICT_IP, "vlan": CONFLICT_VLAN, "interface": INTERFACE,
        "instance": sensor.target}
    assert one("Failovers/A") == 1
    assert one("Sensor up/A") == 1
    assert one("Capture up/A") == 1
    assert one("Active conflicts over time/A") == 1
    assert one("Store write errors/A") == 0
    assert 0 < one("Last ARP seen/A") < 3600
    (uptime,) = results["Uptime and version/A"]
    assert uptime["metric"]["version"] == __version__
    bindings = {s["metric"].get("vlan", ""): float(s["value"][1]) for s in results["Bindings/A"]}
    assert bindings == {"": 2, CONFLICT_VLAN: 1}
    assert {s["metric"]["kind"] for s in results["ARP rate by kind/A"]} >= {"announcement",
                                                                           "request"}
    assert "conflict" in {s["metric"]["event"] for s in results["Events by type/A"]}

    # Every alert expression: parses; only the conflict is lit by this capture.
    rules = yaml.safe_load((DASHBOARDS / "alerts.yml").read_text(encoding="utf-8"))
    lit = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            lit[rule["alert"]] = _series(prometheus.query(rule["expr"]))
    (fired,) = lit.pop("ArpwatchdAddressConflict")
    assert fired["metric"]["ip"] == CONFLICT_IP
    assert fired["metric"]["sensor"] == "lab"
    assert all(series == [] for series in lit.values()), lit

    # And Prometheus itself, evaluating alerts.yml, raises the conflict alert.
    def conflict_alert() -> list[dict[str, Any]]:
        alerts = prometheus.api("alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ArpwatchdAddressConflict"
                and a["state"] == "firing"]

    (alert,) = _wait("the conflict alert firing", conflict_alert, alive=prometheus.proc)
    assert alert["labels"]["ip"] == CONFLICT_IP
    assert CONFLICT_IP in alert["annotations"]["summary"]
    firing = {a["labels"]["alertname"] for a in prometheus.api("alerts")["data"]["alerts"]
              if a["state"] == "firing"}
    assert firing == {"ArpwatchdAddressConflict"}
