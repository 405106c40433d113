"""Operator commands: import-arpdat, export-arpdat, bindings, history.

They work on the state store, not on traffic, so an operator can migrate from arpwatch in one
command and answer "who has had 10.0.0.5?" or "what is this MAC?" without a sensor restart.
The read commands open the store read-only (WAL lets them read a consistent snapshot while a
sensor writes; busy_timeout covers its checkpoints). `cli.main` dispatches here and maps the
exceptions to exit codes; these functions return 0 or 1 themselves only for file problems
they report.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import arpwatchd
from arpwatchd.addresses import (
    ip_text,
    mac_text,
    parse_ip,
    parse_mac,
    parse_mac_prefix,
    parse_network,
)
from arpwatchd.errors import StoreError

if TYPE_CHECKING:
    from arpwatchd.config import Config
    from arpwatchd.store import Store

# The commands' own modules (the store and SQLite, arpdat, the inventory, ctypes for
# privileges, the vendor table) are imported when a command runs: this module is imported
# by every command line, for its parsers (start-up, issue 12).

COMMANDS = frozenset({"import-arpdat", "export-arpdat", "bindings", "history"})
DEFAULT_INTERFACE = "eth0"

T = TypeVar("T")


def _argtype(fn: Callable[[str], T]) -> Callable[[str], T]:
    """argparse type from a parser raising ValueError, so bad input is a usage error (2)."""
    def convert(text: str) -> T:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _vlan(text: str) -> int:
    if text.lower() in ("untagged", "none", "0"):
        return 0
    if not text.isdigit() or not 1 <= int(text) <= 4094:
        raise ValueError(f"not a VLAN id (1-4094, or 'untagged'): {text!r}")
    return int(text)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", metavar="PATH",
                        help="SQLite state file (default: the config's state.path, else "
                             "$XDG_STATE_HOME/arpwatchd/state.sqlite or ./state/arpwatchd.sqlite)")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help=f"YAML config file (default: {arpwatchd.DEFAULT_CONFIG} if it "
                             f"exists, the systemd unit's)")


def config_path(given: str | None) -> str | None:
    """-c, else the systemd unit's config when it exists: an operator command run with no
    flags works on the store the service uses."""
    if given is not None:
        return given
    default = arpwatchd.DEFAULT_CONFIG
    return default if Path(default).exists() else None


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Registers the operator commands on the main parser's subcommands."""
    imp = sub.add_parser(
        "import-arpdat", help="import arpwatch's arp.dat into the state store",
        description="Read an arpwatch arp.dat (Debian or LBL) into the state store, so known "
                    "stations are not reported as new. Per address the newest line is the "
                    "owner and older MACs its previous owners; a binding already stored that "
                    "is newer keeps its owner. Import while the sensor is stopped (it loads "
                    "the store when it starts).")
    imp.add_argument("file", metavar="FILE", help="arp.dat file (- for standard input)")
    imp.add_argument("--interface", metavar="IF",
                     help="interface of lines that name none or '(from file)' (default: the "
                          "config's first capture interface, else eth0)")
    imp.add_argument("--vlan", type=_argtype(_vlan), metavar="N",
                     help="VLAN of the imported addresses (default: untagged)")
    imp.add_argument("--user", metavar="NAME",
                     help="give the store to this user, the one the sensor runs as (default "
                          "for root: the owner of the store or of its directory, if not root)")
    _store_options(imp)

    exp = sub.add_parser(
        "export-arpdat", help="write the bindings as an arpwatch arp.dat",
        description="Write the stored bindings in Debian arpwatch's arp.dat format (MAC, IP, "
                    "time, hostname, interface; a VLAN is written as interface.VLAN).")
    exp.add_argument("-o", "--output", metavar="FILE",
                     help="write here (atomically) instead of standard output")
    exp.add_argument("--interface", metavar="IF", help="only this interface (as arpwatch "
                     "keeps one file per interface)")
    _store_options(exp)

    bind = sub.add_parser(
        "bindings", help="list the current IP-to-MAC table",
        description="List the stored bindings (a running sensor's store is read safely), "
                    "sorted by interface, VLAN and address.")
    bind.add_argument("--ip", type=_argtype(parse_network), metavar="NET",
                      help="an address or network, IPv4 or IPv6 (10.0.0.5, 10.0.0.0/24, "
                           "fd00::/64)")
    bind.add_argument("--mac", type=_argtype(parse_mac_prefix),
                      metavar="MAC_OR_PREFIX", help="a MAC or its leading octets (00:1c:7f)")
    bind.add_argument("--vlan", type=_argtype(_vlan), metavar="N",
                      help="a VLAN id, or 'untagged'")
    bind.add_argument("--interface", metavar="IF")
    bind.add_argument("--json", action="store_true", help="one JSON object per line")
    _store_options(bind)

    hist = sub.add_parser(
        "history", help="the stored events of one IP or MAC, oldest first",
        description="List the stored events about an IP address (every domain), or naming a "
                    "MAC (as owner, other side or suspect), oldest first.")
    hist.add_argument("address", metavar="IP|MAC")
    hist.add_argument("--json", action="store_true", help="one JSON object per line")
    _store_options(hist)


def run(args: argparse.Namespace) -> int:
    """Runs one operator command.

    Raises:
        ConfigError, StoreError: for `cli.main` to report with its exit code.
    """
    from arpwatchd.config import load_config  # noqa: PLC0415  (import on use: start-up)

    config = load_config(config_path(args.config))
    path = args.state or config.state_path
    try:
        if args.command == "import-arpdat":
            return _import(args, config, path)
        if args.command == "export-arpdat":
            return _export(args, path)
        if args.command == "bindings":
            return _bindings(args, path)
        return _history(args, path)
    except BrokenPipeError:  # `arpwatchd bindings | head`: the reader is gone, not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _reader(path: str) -> Store:
    from arpwatchd.store import Store  # noqa: PLC0415  (import on use: start-up)

    if not Path(path).exists():
        raise StoreError(f"{path}: no state store here (give --state, or run the sensor or "
                         f"import-arpdat first)")
    return Store(path, readonly=True)


@contextlib.contextmanager
def _opened(path: str, readonly: bool) -> Iterator[Store]:
    from arpwatchd.store import Store  # noqa: PLC0415

    store = _reader(path) if readonly else Store(path)
    try:
        yield store
    finally:
        store.close()


def _import(args: argparse.Namespace, config: Config, path: str) -> int:
    from arpwatchd import arpdat  # noqa: PLC0415  (import on use: start-up)
    from arpwatchd.privileges import store_owner  # noqa: PLC0415

    interface = args.interface or (config.capture.interfaces[0] if config.capture.interfaces
                                   else DEFAULT_INTERFACE)
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"arpwatchd: {args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    entries: list[arpdat.ArpDatEntry] = []
    bad = 0
    lines = text.splitlines()
    for item in arpdat.parse(lines):
        if isinstance(item, arpdat.ArpDatError):
            bad += 1
            print(f"arpwatchd: {args.file}: {item} (skipped)", file=sys.stderr)
        else:
            entries.append(item)
    owner = store_owner(Path(path), args.user)  # before writing: an unknown user writes nothing
    found = arpdat.stations(entries, interface, args.vlan or None)
    seen = [(s.interface, s.vlan, s.ip, s.mac, s.seen, s.hostname)
            for group in found.values() for s in group]
    with _opened(path, readonly=False) as store:
        outcome = store.merge_bindings(found, arpdat.merge, seen)
        created = store.created_directories
    new = sum(1 for stored, _ in outcome if stored is None)
    unchanged = sum(1 for _, written in outcome if written is None)
    updated = len(outcome) - new - unchanged
    skipped = len(lines) - len(entries) - bad
    print(f"{args.file}: {len(lines)} lines: {len(entries)} read"
          + (f", {bad} bad skipped" if bad else "")
          + (f", {skipped} blank or comments" if skipped else "")
          + f"; {len(found)} addresses into {path}: {new} new, {updated} updated, {unchanged} "
            f"unchanged (the store knew as much or newer)"
          + (f"; owned by {owner[0]}" if owner else ""))
    return _handed_over(path, owner, created)


def _handed_over(path: str, owner: tuple[str, int, int] | None, created: list[Path]) -> int:
    """Gives the store to the sensor's user: a store root made and kept would stop a sensor
    running as that user ("attempt to write a readonly database")."""
    from arpwatchd.privileges import give_files  # noqa: PLC0415  (import on use: start-up)
    from arpwatchd.store import state_files  # noqa: PLC0415

    if owner is None:
        if os.geteuid() == 0 and os.stat(path).st_uid == 0:
            print(f"arpwatchd: note: {path} is owned by root; a sensor running as another user "
                  f"cannot write it: import again with --user NAME", file=sys.stderr)
        return 0
    problems = give_files(owner, state_files(path), created)
    for problem in problems:
        print(f"arpwatchd: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _export(args: argparse.Namespace, path: str) -> int:
    import tempfile  # noqa: PLC0415  (import on use: start-up)

    from arpwatchd import arpdat  # noqa: PLC0415

    with _opened(path, readonly=True) as store:
        bindings = [b for b in store.load_bindings()
                    if args.interface is None or b.interface == args.interface]
        seen = store.macs_seen()
    # arp.dat is IPv4 only (arpwatch has no IPv6 format): IPv6 bindings are left out, said so
    ipv6 = sum(1 for b in bindings if b.ip > 0xFFFFFFFF)
    if ipv6:
        bindings = [b for b in bindings if b.ip <= 0xFFFFFFFF]
        print(f"arpwatchd: export-arpdat: {ipv6} IPv6 binding{'s' * (ipv6 != 1)} left out "
              f"(arp.dat holds IPv4 only)", file=sys.stderr)
    lines = list(arpdat.export_lines(bindings, seen))
    if args.output is None:
        _write(sys.stdout, lines)
        return 0
    target = Path(args.output)
    tmp = ""
    try:  # temp file + rename, as arpwatch does: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(prefix=".arp.dat.", dir=target.parent)
        os.fchmod(fd, 0o644)  # not chmod(tmp): the name may be a link by then (root, shared dir)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            _write(out, lines)
        os.replace(tmp, target)  # replaces a link at `target`, never writes through it
    except OSError as exc:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        print(f"arpwatchd: {args.output}: cannot write: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.output}: {len(lines)} lines, {len(bindings)} addresses", file=sys.stderr)
    return 0


def _bindings(args: argparse.Namespace, path: str) -> int:
    import json  # noqa: PLC0415  (import on use: start-up)

    from arpwatchd import inventory  # noqa: PLC0415
    from arpwatchd.vendors import Vendors  # noqa: PLC0415

    where = inventory.BindingFilter(network=args.ip, mac_prefix=args.mac, vlan=args.vlan,
                                    interface=args.interface)
    with _opened(path, readonly=True) as store:
        found = inventory.select(store.load_bindings(), where)
    vendor_of = Vendors().lookup
    if not found and not args.json:
        print(f"no bindings{' match' if where != inventory.BindingFilter() else ''} in {path}")
        return 0
    if args.json:
        _write(sys.stdout, (json.dumps(inventory.binding_dict(b, vendor_of)) for b in found))
    else:
        _write(sys.stdout, inventory.binding_table(found, vendor_of))
    return 0


def _history(args: argparse.Namespace, path: str) -> int:
    import json  # noqa: PLC0415  (import on use: start-up)

    from arpwatchd import inventory  # noqa: PLC0415
    from arpwatchd.vendors import Vendors  # noqa: PLC0415

    text = args.address
    try:
        ip: str | None = ip_text(parse_ip(text))
        mac = None
    except ValueError:
        ip = None
        try:
            mac = mac_text(parse_mac(text))
        except ValueError:
            try:  # events keep IPv6 addresses in RFC 5952 text
                ip = str(ipaddress.IPv6Address(text.strip()))
            except ValueError:
                print(f"arpwatchd: history: not an IP or MAC address: {text!r}",
                      file=sys.stderr)
                return 2
    with _opened(path, readonly=True) as store:
        stored = store.events_for(ip=ip) if ip is not None else store.events_naming(mac or "")
    vendor_of = Vendors().lookup
    events = [inventory.with_vendor(line, vendor_of) for line in stored]
    if not events and not args.json:
        print(f"no events for {text} in {path}")
        return 0
    if args.json:
        _write(sys.stdout, (json.dumps(e, separators=(",", ":")) for e in events))
    else:
        _write(sys.stdout, inventory.history_table(events))
    return 0


def _write(out: TextIO, lines: Iterable[str]) -> None:
    for line in lines:
        out.write(line + "\n")
    out.flush()
