"""The whole alert chain on one machine: sensor -> Prometheus -> a firing alert.

Why: an operator installing arpwatchd wants to see an alert fire before trusting the rules,
and a LAN rarely obliges. This replays pcaps/spoof-in-progress.pcap (a gateway spoof still
running when the capture ends) with `arpwatchd replay --serve`, so the conflict stays open,
and runs Debian's Prometheus on deploy/prometheus.yml with dashboards/alerts.yml, rewritten
into a temporary folder: the one target is the demo's sensor, there is no Alertmanager, and
scrapes and rule evaluations run every 2 s instead of 15 s so the alert fires within seconds
(the shipped rules are loaded unchanged). It waits until ArpwatchdAddressConflict is firing,
prints what to open in a browser, and keeps everything running until Ctrl-C (`--once`: exit
as soon as the alert fires, for tests). Both processes are stopped on the way out and the
temporary folder is removed.

Usage: python dashboards/demo.py [--once] [--timeout S] [--sensor-port N] [--prometheus-port N]
(`./dev.sh demo --prometheus` runs it after installing what it needs.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "pcaps" / "spoof-in-progress.pcap"
RULES = ROOT / "dashboards" / "alerts.yml"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus.yml"
ALERT = "ArpwatchdAddressConflict"
INTERVAL = "2s"
"""Scrape and rule-evaluation interval of the demo (deploy/prometheus.yml has 15 s)."""

T = TypeVar("T")


class DemoError(Exception):
    """The demo cannot go on (a process died, a deadline passed); one line for the user."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float,
              *alive: subprocess.Popen[bytes]) -> T:
    """Polls `check` until it returns something truthy; a dead process or the deadline
    raises DemoError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in alive:
            if proc.poll() is not None:
                name = proc.args[0] if isinstance(proc.args, list) else proc.args
                raise DemoError(f"{what}: {name!s} exited with {proc.returncode}")
        try:
            result = check()
        except (OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()  # type: ignore[no-any-return]


def get_json(url: str) -> Any:
    try:
        return json.loads(get(url))
    except urllib.error.HTTPError as exc:  # Prometheus answers a bad query with JSON too
        return json.load(exc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def start_sensor(capture: Path, port: int, folder: Path, interface: str = "demo0"
                 ) -> subprocess.Popen[bytes]:
    """`arpwatchd replay --serve` on `capture`, metrics on 127.0.0.1:port, events and log
    in `folder` (events.jsonl, sensor.log)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    with open(folder / "sensor.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "arpwatchd", "replay", "--serve", "--metrics-address",
             f"127.0.0.1:{port}", "-i", interface, "--events", str(folder / "events.jsonl"),
             str(capture)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
            start_new_session=True)


def prometheus_config(targets: dict[str, dict[str, str]], interval: str = INTERVAL
                      ) -> dict[str, Any]:
    """deploy/prometheus.yml for a local run: the arpwatchd job scrapes `targets` (address ->
    target labels, as the shipped file gives `sensor` and `site`), the rules are the
    repository's alerts.yml, no Alertmanager, and everything runs every `interval`."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(RULES)]
    config.pop("alerting", None)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "arpwatchd"]
    job.update(scrape_interval=interval, scrape_timeout="1s", static_configs=[
        {"targets": [target], "labels": labels} for target, labels in targets.items()])
    return config


def start_prometheus(config: dict[str, Any], port: int, folder: Path
                     ) -> subprocess.Popen[bytes]:
    """Debian's prometheus on 127.0.0.1:port with `config`, its data and log in `folder`."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise DemoError("prometheus is not installed (Debian: apt-get install prometheus; "
                        "./dev.sh demo --prometheus installs it)")
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    with open(folder / "prometheus.log", "wb") as log:
        return subprocess.Popen(
            [binary, f"--config.file={path}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)


def firing(base: str, alert: str = ALERT) -> list[dict[str, Any]]:
    """The alerts named `alert` that Prometheus at `base` has firing."""
    alerts = get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alert and a["state"] == "firing"]


@contextmanager
def running(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(procs):
            stop(proc)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def demo(args: argparse.Namespace, folder: Path) -> None:
    sensor_port = args.sensor_port or free_port()
    sensor = start_sensor(CAPTURE, sensor_port, folder)
    with running(sensor):
        metrics = f"http://127.0.0.1:{sensor_port}/metrics"
        print(f"sensor: arpwatchd replay --serve {CAPTURE.relative_to(ROOT)} -> {metrics}",
              flush=True)
        wait_for("the sensor's conflict metric",
                 lambda: b"arpwatchd_conflict_active{" in get(metrics), args.timeout, sensor)
        prom_port = args.prometheus_port or free_port()
        base = f"http://127.0.0.1:{prom_port}"
        config = prometheus_config({f"127.0.0.1:{sensor_port}": {"sensor": "demo",
                                                                 "site": "lab"}})
        prometheus = start_prometheus(config, prom_port, folder)
        with running(prometheus):
            print(f"prometheus: deploy/prometheus.yml + dashboards/alerts.yml (every "
                  f"{INTERVAL}) -> {base}", flush=True)
            alerts = wait_for(f"{ALERT} to fire", lambda: firing(base), args.timeout,
                              sensor, prometheus)
            for alert in alerts:
                print(f"FIRING {ALERT} ({alert['labels']['severity']}): "
                      f"{alert['annotations']['summary']}", flush=True)
            graph = f"{base}/graph?g0.expr=" + urllib.parse.quote("arpwatchd_conflict_active")
            print("\nOpen in a browser:", flush=True)
            for url, what in ((f"{base}/alerts", "the alert, firing, with its runbook"),
                              (graph, "the conflict gauge"),
                              (f"{base}/targets", "the sensor scraped, labels sensor and site"),
                              (metrics, "the sensor's own metrics")):
                print(f"  {url:<60} {what}", flush=True)
            print(f"The sensor's events: {folder / 'events.jsonl'}", flush=True)
            print(f"With a Grafana: add {base} as a Prometheus data source and import "
                  f"dashboards/arpwatchd.json (sensor demo, site lab).", flush=True)
            if args.once:
                return
            print("Ctrl-C stops the sensor and Prometheus.", flush=True)
            wait_for("Ctrl-C", lambda: None, float("inf"), sensor, prometheus)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true",
                        help="exit as soon as the alert fires (for tests)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each step (default 120)")
    parser.add_argument("--sensor-port", type=int, default=0,
                        help="the sensor's metrics port (default: a free one)")
    parser.add_argument("--prometheus-port", type=int, default=0,
                        help="Prometheus's port (default: a free one; 9090 is often taken)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)  # also where a shell started it ignoring SIGINT
    try:
        with tempfile.TemporaryDirectory(prefix="arpwatchd-demo-") as tmp:
            try:
                demo(args, Path(tmp))
            except DemoError as exc:
                print(f"demo: {exc}", file=sys.stderr)
                for log in sorted(Path(tmp).glob("*.log")):  # gone with the folder
                    tail = log.read_text(errors="replace").splitlines()[-10:]
                    print(f"--- {log.name}:", *tail, sep="\n", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
