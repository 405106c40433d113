"""The dashboard, alert rules and deployment files, checked without a running Prometheus.

Why: these files are what operators install; a dashboard panel naming a metric the sensor
does not export, or a rule that does not parse, fails silently in production. The rules are
checked and unit-tested by Debian's promtool (tests that need it skip with a reason when it
is missing; CI installs it). The live evaluation of every expression is in
test_prometheus_live.py.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from arpwatchd.config import MetricsConfig, load_config
from arpwatchd.metrics import FAMILIES, NDP_KINDS, build_registry
from arpwatchd.stats import SensorStats
from arpwatchd.tracker import ActiveConflict, TrackerStats

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
DEPLOY = ROOT / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus'; CI has it)")

PANEL_TYPES = {"alertlist", "row", "stat", "table", "timeseries"}
VARIABLES = {"datasource", "job", "site", "sensor", "family", "interface", "vlan"}
PER_MINUTE_UNITS = {"suffix: events/min", "suffix: packets/min"}


def _dashboard() -> dict[str, Any]:
    with open(DASHBOARDS / "arpwatchd.json", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def _rules() -> list[dict[str, Any]]:
    with open(DASHBOARDS / "alerts.yml", encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation of the dashboard."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return found


def _registry() -> CollectorRegistry:
    stats = SensorStats()
    stats.capture("eth0")
    stats.tracker = TrackerStats(
        bindings={("eth0", None): 1}, active_conflicts=(
            ActiveConflict("eth0", None, "10.0.0.1", "02:00:00:00:00:02", "02:00:00:00:00:01"),),
        conflicts_active_total=1, holds_active=0, bindings_evicted=0, senders_tracked=0)
    return build_registry(stats, load_config(None), started=0.0)


def _exported_names() -> set[str]:
    return {sample.name for metric in _registry().collect() for sample in metric.samples}


def test_dashboard_has_the_fields_grafana_requires() -> None:
    d = _dashboard()
    assert d["schemaVersion"] >= 39
    assert d["uid"] == "arpwatchd"
    assert d["title"]
    assert d["id"] is None  # importable into any Grafana
    assert isinstance(d["time"]["from"], str)
    assert d["annotations"]["list"][0]["builtIn"] == 1
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in d["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid)
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["y"] + dy, grid["x"] + dx)
                 for dy in range(grid["h"]) for dx in range(grid["w"])}
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] in ("row", "alertlist"):
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"]["uid"] == "${datasource}"


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    titles = {p["title"] for p in _dashboard()["panels"]}
    for wanted in ("ARP rate by kind", "Events by type", "Active conflicts", "Bindings",
                   "Capture drops", "Defense packets", "Sensor up", "Last ARP seen",
                   "Store write errors", "Capture up"):
        assert wanted in titles
    table = next(p for p in _dashboard()["panels"] if p["type"] == "table")
    assert table["targets"][0]["format"] == "table"
    assert table["targets"][0]["instant"] is True
    names = {a["name"] for a in _dashboard()["annotations"]["list"]}
    assert "Failovers" in names


def test_dashboard_variables() -> None:
    """A fleet: site and sensor come from the target labels deploy/prometheus.yml adds. The
    VLAN list names untagged frames, whose empty label Prometheus drops (label_values()
    cannot list it): its value is the regex ^$, so panels use ${vlan:pipe}, which joins a
    selection with | and escapes nothing (the regex formats would escape ^ and $)."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert set(variables) == VARIABLES
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in VARIABLES - {"datasource"}:
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] == "${datasource}"
        assert var["query"]["query"] == var["definition"]
        assert var["includeAll"] and var["allValue"] == ".*"
        if name != "vlan":
            assert var["definition"].startswith("label_values(")
            assert var["definition"].endswith(f", {name})")
    with open(DEPLOY / "prometheus.yml", encoding="utf-8") as f:
        (job,) = yaml.safe_load(f)["scrape_configs"]
    for static in job["static_configs"]:
        assert {"sensor", "site"} <= set(static["labels"])
    vlan = variables["vlan"]
    assert vlan["definition"].startswith("query_result(")
    assert '"vlan_value", "^$$", "vlan", ""' in vlan["definition"]
    assert "(?<text>" in vlan["regex"] and "(?<value>" in vlan["regex"]
    used = set()
    for where, expr in dashboard_expressions(_dashboard()):
        used |= set(re.findall(r"\$\{?(\w+)", expr)) - {"__rate_interval", "__range", "__interval"}
        assert "instance=~" not in expr, where
        if "vlan=~" in expr:
            assert 'vlan=~"${vlan:pipe}"' in expr, where
        if "$sensor" in expr:
            assert 'site=~"$site"' in expr, where
    assert used <= VARIABLES


def test_events_carry_the_address_family() -> None:
    """Issue 17: every panel and annotation on arpwatchd_events_total selects the `family`
    variable (ipv4 from ARP, ipv6 from neighbour discovery), the event panels draw one series
    per family, and an NDP panel sits beside the ARP one."""
    d = _dashboard()
    on_events = [(where, expr) for where, expr in dashboard_expressions(d)
                 if "arpwatchd_events_total" in expr]
    assert on_events
    for where, expr in on_events:
        assert 'family=~"$family"' in expr, where
    panels = {p["title"]: p for p in d["panels"]}
    for title in ("Events by type", "Events by severity", "Events by address family"):
        (target,) = panels[title]["targets"]
        assert re.search(r"sum by \([^)]*\bfamily\b", target["expr"]), title
        assert "{{family}}" in target["legendFormat"], title
    (ndp,) = panels["NDP rate by kind"]["targets"]
    assert "arpwatchd_ndp_packets_total" in ndp["expr"] and "sum by (kind)" in ndp["expr"]
    assert panels["NDP rate by kind"]["gridPos"]["w"] == panels["ARP rate by kind"]["gridPos"]["w"]
    for kind in NDP_KINDS:
        assert kind in panels["NDP rate by kind"]["description"], kind
    (family,) = [v for v in d["templating"]["list"] if v["name"] == "family"]
    assert "arpwatchd_events_total" in family["definition"]
    labels = {labels for metric in _registry().collect() if metric.name == "arpwatchd_events"
              for labels in [tuple(sorted(s.labels)) for s in metric.samples]}
    assert labels == {("event", "family", "severity")}
    values = {s.labels["family"] for metric in _registry().collect()
              if metric.name == "arpwatchd_events" for s in metric.samples}
    assert values == set(FAMILIES)


def test_per_minute_panels_say_so() -> None:
    for panel in _dashboard()["panels"]:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if any(e.rstrip().endswith("* 60") for e in exprs):
            assert unit in PER_MINUTE_UNITS, panel["title"]
        else:
            assert unit not in PER_MINUTE_UNITS, panel["title"]


def test_alert_list_panel_and_link_to_the_rules() -> None:
    d = _dashboard()
    (alerts,) = [p for p in d["panels"] if p["type"] == "alertlist"]
    assert alerts["options"]["alertName"] == "Arpwatchd"
    assert all(r["alert"].startswith(alerts["options"]["alertName"]) for r in _rules())
    assert alerts["options"]["stateFilter"]["firing"]
    assert [link["url"] for link in d["links"]] == ["/alerting/list?search=Arpwatchd"]


def test_conflict_table_shows_both_macs() -> None:
    table = next(p for p in _dashboard()["panels"] if p["type"] == "table")
    (organize,) = table["transformations"]
    shown = organize["options"]["indexByName"]
    assert {"ip", "mac", "previous_mac", "vlan", "interface", "sensor", "site"} <= set(shown)
    assert organize["options"]["excludeByName"]["instance"]


def test_every_metric_named_in_dashboard_and_rules_is_exported() -> None:
    exported = _exported_names() | {"up"}
    texts = [expr for _where, expr in dashboard_expressions(_dashboard())]
    texts += [v["definition"] for v in _dashboard()["templating"]["list"] if "definition" in v]
    texts += [rule["expr"] for rule in _rules()]
    named = {m for text in texts for m in re.findall(r"\barpwatchd_[a-z0-9_]+", text)}
    assert named, "no metric found"
    assert named <= exported, named - exported


def test_rules_have_runbook_annotations() -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    for wanted in ("ArpwatchdAddressConflict", "ArpwatchdDefenseFailed", "ArpwatchdArpFlood",
                   "ArpwatchdCaptureDropping", "ArpwatchdSensorDown", "ArpwatchdSensorMissing",
                   "ArpwatchdNoArpSeen", "ArpwatchdStateStoreFailing",
                   "ArpwatchdCaptureInterfaceDown"):
        assert wanted in names
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"][key].strip(), (rule["alert"], key)
        assert rule["annotations"]["runbook"].lstrip().startswith("1. ")


SENSOR_NAME = "{{ with $labels.sensor }}sensor {{ . }}{{ else }}{{ $labels.instance }}{{ end }}"


def test_every_alert_summary_names_the_sensor() -> None:
    """A fleet's notification must say which sensor saw it: the `sensor` target label of
    deploy/prometheus.yml, else the instance. Only the rule about no target at all (absent())
    has no sensor to name. alerts_test.yml checks the rendered texts, with and without the
    label."""
    for rule in _rules():
        if rule["expr"].startswith("absent("):
            continue
        assert SENSOR_NAME in rule["annotations"]["summary"], rule["alert"]
        if " by (" in rule["expr"]:
            assert re.search(r"by \([^)]*\bsensor\b", rule["expr"]), rule["alert"]


def test_every_alert_is_unit_tested() -> None:
    with open(DASHBOARDS / "alerts_test.yml", encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names <= firing, names - firing
    assert names <= quiet, names - quiet


@pytest.mark.prometheus
@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "rules", str(DASHBOARDS / "alerts.yml")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
@needs_promtool
def test_promtool_test_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=DASHBOARDS,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
@needs_promtool
def test_promtool_check_example_prometheus_config(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    text = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    installed = "/etc/prometheus/rules/arpwatchd-alerts.yml"
    assert installed in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(installed, str(DASHBOARDS / "alerts.yml")), encoding="utf-8")
    result = subprocess.run([PROMTOOL, "check", "config", str(config)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_labels_each_sensor() -> None:
    with open(DEPLOY / "prometheus.yml", encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "arpwatchd"]
    port = str(MetricsConfig().port)
    sensors = set()
    for static in job["static_configs"]:
        assert all(t.endswith(f":{port}") for t in static["targets"])
        sensors.add(static["labels"]["sensor"])
    assert len(sensors) == len(job["static_configs"]) >= 2


def test_grafana_provisioning_examples() -> None:
    with open(DASHBOARDS / "provisioning/datasources/prometheus.yml", encoding="utf-8") as f:
        (source,) = yaml.safe_load(f)["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http")
    with open(DASHBOARDS / "provisioning/dashboards/arpwatchd.yml", encoding="utf-8") as f:
        (provider,) = yaml.safe_load(f)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def test_systemd_unit_is_confined() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "arpwatchd.service", encoding="utf-8")
    service = unit["Service"]
    assert service["User"] == "arpwatchd"
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(service[key].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert service["StateDirectory"] == "arpwatchd"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_example_sensor_config_loads() -> None:
    config = load_config(str(DEPLOY / "arpwatchd.yml"))
    assert config.metrics.port == MetricsConfig().port
    assert config.metrics.address == "0.0.0.0"
