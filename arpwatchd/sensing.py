"""The sensor's commands, `run` and `replay`: the config, store, outputs, sensor and loop
wired from the command line's options.

`cli` imports this module only for these two commands, so that `--version`, `check-config`
and the operator tools do not load the capture, the tracker and their libraries (start-up,
issue 12). Each function returns an exit code (`errors.EXIT_*`); exceptions go up to
`cli.main`, which maps them to exit codes.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from arpwatchd import kernel
from arpwatchd.addresses import parse_mac
from arpwatchd.capture import default_interface, interface_mac
from arpwatchd.config import Config, load_config, reloaded_config
from arpwatchd.daemon import (
    Flags,
    LiveLoop,
    install_signals,
    replay,
    serve_metrics,
    wait_for_stop,
)
from arpwatchd.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ConfigError
from arpwatchd.events import format_ts
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.sinks import open_sinks
from arpwatchd.stats import SensorStats

if TYPE_CHECKING:
    from arpwatchd.metrics import MetricsServer

log = logging.getLogger("arpwatchd")


def run_command(args: argparse.Namespace) -> int:
    """`arpwatchd run`: live capture until SIGTERM or SIGINT."""
    _tune_gc()
    _setup_logging(args.verbose, args.quiet, logging.INFO)
    _note_fastpath()
    return _run(args)


def replay_command(args: argparse.Namespace) -> int:
    """`arpwatchd replay`: capture files through the same core."""
    _tune_gc()
    stats = SensorStats()
    _setup_logging(args.verbose, args.quiet, logging.ERROR, replayed=stats)
    _note_fastpath()
    return _replay(args, stats)


def _setup_logging(verbose: int, quiet: bool, default: int,
                   replayed: SensorStats | None = None) -> None:
    level = logging.ERROR if quiet else max(logging.DEBUG, default - 10 * verbose)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormat(replayed))
    logging.basicConfig(level=level, handlers=[handler])


class _LineFormat(logging.Formatter):
    """`TIME arpwatchd LEVEL message`. A replay's lines also say the packet time reached:
    the line's own time is when the replay ran, while its events carry the packets' time, and
    a reader matching the two would otherwise be misled."""

    def __init__(self, replayed: SensorStats | None) -> None:
        super().__init__("%(asctime)s arpwatchd %(levelname)s %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")
        self.replayed = replayed

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        wall = super().formatTime(record, datefmt)
        if self.replayed is None:
            return wall
        seen = [c.last_arp for c in tuple(self.replayed.captures.values()) if c.last_arp]
        return f"{wall} [packet time {format_ts(max(seen))}]" if seen else wall


def _note_fastpath() -> None:
    if kernel.FALLBACK is not None:
        log.info("fast path in Python (%s): every frame decoded and tracked, the same "
                 "events, more CPU per frame",
                 kernel.FALLBACK)


def _tune_gc() -> None:
    """The sensor's tables are a million small immutable tuples, but the cyclic GC's default
    young-generation threshold (700 allocations) makes it re-scan them over and over while a
    flood creates bindings: a fifth of a flood's run time, measured. Cycles are rare here
    (no per-frame object refers back to its owner), so collect young objects 70x less often."""
    gc.set_threshold(50_000, 20, 100)


def _configured(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.events:
        config = replace(config, output=replace(config.output, events=args.events))
    return config


LIVE_LATER = ("arpwatchd.vendors", "arpwatchd.ndp", "arpwatchd.syslog", "arpwatchd.hooks",
              "arpwatchd.defend", "arpwatchd.ndpframes")
"""Modules a replay imports on first use but a live sensor may need hours later: at its first
event (vendor names), first IPv6 frame, first IPv6 defense (the NA builder), or a reload that
turns syslog, hooks or defense on."""


def _import_what_a_live_sensor_may_need() -> None:
    """Imports `LIVE_LATER` while the sensor is still root: after `--user` drops root it may no
    longer read the package (an install under a root-only directory), and an import that
    fails then would lose events, not start-up time."""
    for name in LIVE_LATER:
        importlib.import_module(name)


def _run(args: argparse.Namespace) -> int:
    config = _configured(args)
    for line in config.warnings:
        log.warning("%s", line)
    interfaces = args.interface or list(config.capture.interfaces)
    if not interfaces:
        found = default_interface()
        if found is None:
            print("arpwatchd: no interface is up; name one with -i", file=sys.stderr)
            return EXIT_USAGE
        interfaces = [found]
    nic_macs = {name: mac for name in interfaces if (mac := interface_mac(name)) is not None}
    config = _with_defense(config, interfaces, nic_macs)
    state_path = args.state or config.state_path
    from arpwatchd.store import Store, state_files  # noqa: PLC0415  (sqlite3: run, replay --state)

    store = Store(state_path, max_events=config.max_events)
    writer = EventWriter(config.output.events, sinks=open_sinks(config.output))
    stats = SensorStats()
    sensor = Sensor(config, writer, store, stats, clock=time.monotonic)
    if config.defense.addresses:
        from arpwatchd.defend import Defender  # noqa: PLC0415  (only when configured)

        sensor.defender = Defender(config.defense, nic_macs)
    flags = Flags()
    install_signals(flags)

    def reload() -> Config | None:
        return _reload(args, interfaces, nic_macs, sensor.config)

    loop = LiveLoop(sensor, interfaces, flags, reload=reload, dry_run=args.dry_run)
    restored = sensor.restore()
    endpoint = _metrics_endpoint(args, config, default_on=True)
    server = serve_metrics(sensor, *endpoint) if endpoint else None
    if server is not None:
        log.info("metrics on %s", server.url)
    loop.open_all()
    _import_what_a_live_sensor_may_need()
    if args.user:
        from arpwatchd.privileges import drop_to  # noqa: PLC0415  (ctypes: only with --user)

        writable = state_files(state_path)
        if config.output.events != "-":
            writable.append(Path(config.output.events))
        drop_to(args.user, writable, store.created_directories)
        log.info("running as %s with only CAP_NET_RAW and CAP_NET_ADMIN", args.user)
    log.info("capturing on %s; %d bindings restored from %s", ", ".join(interfaces), restored,
             state_path)
    if sensor.defender is not None:
        sensor.defender.start(time.time())
        log.warning("defending %d address(es)%s", len(config.defense.addresses),
                    " (dry run: nothing is sent)" if args.dry_run else "")
    try:
        loop.run()
    finally:
        if server is not None:
            server.close()
        store.close()
        writer.close()
    if sensor.store_error is not None:
        print(f"arpwatchd: {sensor.store_error}: {sensor.unstored()}", file=sys.stderr)
        return EXIT_FAILURE
    log.info("stopped (%s); state saved to %s", flags.signal_name or "end", state_path)
    return EXIT_OK


def _with_defense(config: Config, interfaces: list[str], nic_macs: dict[str, bytes]) -> Config:
    """Checks defended addresses against what is captured; the sensor's NICs are its own.

    Raises:
        ConfigError: a defended address is on an interface this run does not capture.
    """
    for i, owned in enumerate(config.defense.addresses):
        if owned.interface not in interfaces:
            raise ConfigError(
                f"{config.source}: defend.addresses[{i}].interface: {owned.interface} is not "
                f"captured by this run ({', '.join(interfaces)}); refusing to defend it"
            )
    own = frozenset(nic_macs.values())
    return replace(config, policy=replace(config.policy, own_macs=own))


def _reload(
    args: argparse.Namespace, interfaces: list[str], nic_macs: dict[str, bytes], running: Config
) -> Config | None:
    try:
        config = _with_defense(_configured(args), interfaces, nic_macs)
    except ConfigError as exc:
        log.error("reload rejected, keeping the running config: %s", exc)
        return None
    config, later = reloaded_config(running, config)
    log.warning("config reloaded from %s", config.source)
    for line in config.warnings:
        log.warning("%s", line)
    if later:
        log.warning("reload: %s changed, kept as they were until a restart", ", ".join(later))
    return config


def _metrics_endpoint(
    args: argparse.Namespace, config: Config, default_on: bool
) -> tuple[str, int] | None:
    """--metrics-address if given, else the config's address when on by default; port 0 = off."""
    if args.metrics_address is not None:
        host, port = args.metrics_address
    elif default_on:
        host, port = config.metrics.address, config.metrics.port
    else:
        return None
    return (host, port) if port else None


def _replay(args: argparse.Namespace, stats: SensorStats) -> int:
    config = _configured(args)
    if args.own_mac:
        try:
            own = frozenset(parse_mac(text) for text in args.own_mac)
        except ValueError as exc:
            print(f"arpwatchd: --own-mac: {exc}", file=sys.stderr)
            return EXIT_USAGE
        config = replace(config, policy=replace(config.policy, own_macs=own))
    endpoint = _metrics_endpoint(args, config, default_on=args.serve)
    if args.serve and endpoint is None:
        print("arpwatchd: --serve needs a metrics endpoint: give --metrics-address HOST:PORT",
              file=sys.stderr)
        return EXIT_USAGE
    flags = Flags()
    if args.serve:
        install_signals(flags)
    store = None
    if args.state:
        from arpwatchd.store import Store  # noqa: PLC0415  (sqlite3: only with a state file)

        store = Store(args.state, max_events=config.max_events)
    writer = EventWriter(config.output.events, sinks=open_sinks(config.output))
    sensor = Sensor(config, writer, store, stats, clock=time.monotonic)
    server: MetricsServer | None = None
    try:
        if endpoint is not None:
            server = serve_metrics(sensor, *endpoint, mode="replay")
        sensor.restore()
        errors = replay(sensor, args.files, args.interface, finish=not args.serve)
        if server is not None and args.serve:
            print(f"arpwatchd: files read; serving metrics on {server.url} until SIGTERM or "
                  f"SIGINT", file=sys.stderr, flush=True)
            wait_for_stop(flags)
            sensor.finish()
    finally:
        if server is not None:
            server.close()
        if store is not None:
            store.close()
        writer.close()
    for error in errors:
        print(f"arpwatchd: {error}", file=sys.stderr)
    if sensor.store_error is not None:
        print(f"arpwatchd: {sensor.store_error}: {sensor.unstored()}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_FAILURE if errors else EXIT_OK
