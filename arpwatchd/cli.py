"""Command line: argparse, logging, exit codes. The only place that calls sys.exit.

Exit codes: 0 success (and a clean stop on SIGTERM/SIGINT); 1 the sensor could not do its
work (capture, state store or output failed, a capture file was damaged); 2 bad usage or a
bad config file; 69 (EX_UNAVAILABLE) an interface to capture on is missing or down at start.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from arpwatchd import __version__, kernel, tools
from arpwatchd.addresses import parse_mac
from arpwatchd.capture import (
    CaptureError,
    InterfaceUnavailableError,
    default_interface,
    interface_mac,
)
from arpwatchd.config import Config, ConfigError, load_config, reloaded_config
from arpwatchd.daemon import (
    Flags,
    LiveLoop,
    install_signals,
    replay,
    serve_metrics,
    wait_for_stop,
)
from arpwatchd.defend import Defender
from arpwatchd.events import format_ts
from arpwatchd.output import EventWriter, OutputError
from arpwatchd.privileges import PrivilegeError, drop_to
from arpwatchd.sensor import Sensor
from arpwatchd.sinks import open_sinks
from arpwatchd.stats import SensorStats
from arpwatchd.store import Store, StoreError, state_files

if TYPE_CHECKING:
    from arpwatchd.metrics import MetricsServer

log = logging.getLogger("arpwatchd")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: its own print the usage block first, two or three
    lines in which the error is easy to miss; every other error of the command is one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"arpwatchd: error: {message} (see {self.prog} --help)\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    parser.add_argument("--events", metavar="PATH",
                        help="write JSON lines events here instead of standard output")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log lines on standard error (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="log only errors on standard error")


def _metrics_address(text: str) -> tuple[str, int]:
    """argparse type for --metrics-address; ("", 0) means disabled."""
    from arpwatchd.metrics import parse_metrics_address  # noqa: PLC0415  (import on use: start-up)

    try:
        return parse_metrics_address(text) or ("", 0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metrics_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--metrics-address", type=_metrics_address, metavar="HOST:PORT",
                        help=f"serve Prometheus metrics here ([::1]:PORT for IPv6; 0 disables; "
                             f"{default})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="arpwatchd",
        description="ARP conflict-detection sensor: tells failover from conflict, per VLAN.",
        epilog="Exit codes: 0 ok, 1 capture/store/output failure or damaged file, 2 bad usage "
               "or config, 69 an interface to capture on is missing or down at start.",
    )
    parser.add_argument("--version", action="version",
                        version=f"arpwatchd {__version__} (fast path: {kernel.FASTPATH})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="capture live on one or more interfaces",
                         description="Capture ARP live (kernel BPF filter, batched reads) and "
                                     "report events until SIGTERM or SIGINT.")
    run.add_argument("-i", "--interface", action="append", metavar="IFACE",
                     help="interface to capture on (repeatable; default: the config's "
                          "capture.interfaces, else the first interface that is up)")
    run.add_argument("--user", metavar="NAME",
                     help="after opening the capture, state store and metrics port, run as this "
                          "user keeping only CAP_NET_RAW and CAP_NET_ADMIN")
    run.add_argument("--dry-run", action="store_true",
                     help="defense: log and report what would be sent, send nothing")
    run.add_argument("--state", metavar="PATH", help="SQLite state file (default: config "
                     "state.path, else $XDG_STATE_HOME/arpwatchd/state.sqlite or "
                     "./state/arpwatchd.sqlite)")
    _metrics_option(run, "default: the config's metrics.address and metrics.port")
    _common(run)

    rep = sub.add_parser("replay", help="run the same core over pcap/pcapng files",
                         description="Replay capture files through the sensor; time is the "
                                     "packets' time. Holds and conflicts still open at the end "
                                     "run to their end as if the network went quiet (with "
                                     "--serve, when serving stops).")
    rep.add_argument("files", nargs="+", metavar="FILE", help="pcap or pcapng files, in order")
    rep.add_argument("--own-mac", action="append", default=[], metavar="MAC",
                     help="the capturing sensor's own NIC MAC (repeatable): its defense frames "
                          "in the file are recognised and ignored, as live")
    rep.add_argument("-i", "--interface", default="replay", metavar="NAME",
                     help="interface name to report in events (default: replay)")
    rep.add_argument("--state", metavar="PATH",
                     help="SQLite state file to load and update (default: none, in memory)")
    _metrics_option(rep, "default: off, or the config's metrics.address and metrics.port "
                         "with --serve")
    rep.add_argument("--serve", action="store_true",
                     help="after the files, keep serving metrics until SIGTERM or SIGINT, with "
                          "conflicts still open at the last packet kept active")
    _common(rep)

    check = sub.add_parser("check-config", help="validate a config file and print it",
                           description="Validate a config file and print the effective "
                                       "settings as JSON.")
    check.add_argument("file", metavar="FILE")
    tools.add_commands(sub)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command in tools.COMMANDS:
            return tools.run(args)
        _tune_gc()
        if args.command == "run":
            _setup_logging(args.verbose, args.quiet, logging.INFO)
            _note_fastpath()
            return _run(args)
        stats = SensorStats()
        _setup_logging(args.verbose, args.quiet, logging.ERROR, replayed=stats)
        _note_fastpath()
        return _replay(args, stats)
    except ConfigError as exc:
        print(f"arpwatchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InterfaceUnavailableError as exc:
        print(f"arpwatchd: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (CaptureError, StoreError, OutputError, PrivilegeError) as exc:  # MetricsError too
        print(f"arpwatchd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _check_config(path: str) -> int:
    """Prints the effective settings; each rule that looks wrong is one warning line on
    standard error. A config with warnings still loads (exit 0): they are judgements."""
    from arpwatchd.effective import warnings  # noqa: PLC0415  (only this command needs it)

    config = load_config(path)
    print(json.dumps(config.summary(), indent=2))
    for line in warnings(config):
        print(f"arpwatchd: warning: {line}", file=sys.stderr)
    return EXIT_OK


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
    store = Store(state_path, max_events=config.max_events)
    writer = EventWriter(config.output.events, sinks=open_sinks(config.output))
    stats = SensorStats()
    sensor = Sensor(config, writer, store, stats, clock=time.monotonic)
    if config.defense.addresses:
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
    if args.user:
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
    store = Store(args.state, max_events=config.max_events) if args.state else None
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
