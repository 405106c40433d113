"""Command line: argparse and exit codes. The only place that calls sys.exit.

Exit codes: 0 success (and a clean stop on SIGTERM/SIGINT); 1 the sensor could not do its
work (capture, state store or output failed, a capture file was damaged); 2 bad usage or a
bad config file; 69 (EX_UNAVAILABLE) an interface to capture on is missing or down at start.

Each command imports its own modules when it runs (`sensing` for run and replay, the tools'
modules in `tools`, the config code for check-config): this module is loaded by every
invocation, `--version` included (start-up, issue 12; tests/test_startup.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from arpwatchd import __version__, kernel, tools
from arpwatchd.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CaptureError,
    ConfigError,
    InterfaceUnavailableError,
    OutputError,
    PrivilegeError,
    StoreError,
)

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "build_parser", "main"]


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command in tools.COMMANDS:
            return tools.run(args)
        from arpwatchd import sensing  # noqa: PLC0415  (only run and replay need the sensor)

        if args.command == "run":
            return sensing.run_command(args)
        return sensing.replay_command(args)
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
    import json  # noqa: PLC0415  (import on use: start-up)

    from arpwatchd.config import load_config  # noqa: PLC0415
    from arpwatchd.effective import warnings  # noqa: PLC0415  (only this command needs it)

    config = load_config(path)
    print(json.dumps(config.summary(), indent=2))
    for line in warnings(config):
        print(f"arpwatchd: warning: {line}", file=sys.stderr)
    return EXIT_OK


