"""YAML config to frozen settings, validated once; the only module that imports yaml.

Every error names the key path and the line (`failover_groups[0].macs[1] (line 12): not a MAC
address: '00:11'`), unknown keys are rejected so a typo never silently disables a rule, and
durations accept plain seconds or 30s / 5m / 2h / 180d.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from arpwatchd.addresses import (
    ip_text,
    is_ipv6,
    mac_text,
    network_text,
    parse_address,
    parse_mac,
    parse_mac_prefix,
    parse_network,
)
from arpwatchd.defend import DEFEND_INTERVAL, LOCKTIME, DefenseMode, DefensePolicy, OwnedAddress
from arpwatchd.errors import ConfigError
from arpwatchd.events import EventKind, Severity
from arpwatchd.policy import (
    ANY_VLAN,
    DomainMatch,
    FailoverGroup,
    NetworkRule,
    Protected,
    TrackerPolicy,
)
from arpwatchd.suppress import SuppressRule

if TYPE_CHECKING:
    import yaml

    from arpwatchd.hooks import HookConfig
    from arpwatchd.syslog import SyslogConfig

T = TypeVar("T")

@dataclass(frozen=True, slots=True)
class OutputConfig:
    events: str = "-"
    """Where JSON lines go: a path, or "-" for standard output."""
    events_per_window: int = 200
    event_window: float = 10.0
    syslog: SyslogConfig | None = None
    """RFC 5424 syslog, in addition to JSON lines."""
    hook: HookConfig | None = None
    """A program run per chosen event (no shell)."""


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    interfaces: tuple[str, ...] = ()
    buffer_mib: int = 32
    snaplen: int = 256
    batch: int = 512
    promiscuous: bool = True


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    address: str = "127.0.0.1"
    port: int = 20806
    max_conflict_series: int = 200


@dataclass(frozen=True, slots=True)
class Config:
    policy: TrackerPolicy = field(default_factory=TrackerPolicy)
    output: OutputConfig = field(default_factory=OutputConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    defense: DefensePolicy = field(default_factory=DefensePolicy)
    suppress: tuple[SuppressRule, ...] = ()
    state_path: str = ""
    state_path_set: bool = False
    """Whether the file set state.path; if not, `state_path` depends on the working directory
    (and $XDG_STATE_HOME) of whoever runs the command, so the service and the tools may differ."""
    max_events: int = 1_000_000
    source: str = "(defaults)"
    warnings: tuple[str, ...] = ()
    """Rules that load but look wrong (a suppression hiding conflicts, two owners for one
    protected address, a network with host bits), one line each naming the key and line."""

    def summary(self) -> dict[str, Any]:
        """The effective settings, for `check-config`."""
        from arpwatchd.effective import summary  # noqa: PLC0415  (only check-config needs it)

        return summary(self)


def default_state_path() -> str:
    """Where the store is when the config names none. Under systemd with StateDirectory= the
    unit's directory ($STATE_DIRECTORY): a service upgraded to a unit without --state but
    still reading an older config with no state.path keeps its store, where the working
    directory (/) would be read-only."""
    unit = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if unit:
        return str(Path(unit) / "state.sqlite")
    base = os.environ.get("XDG_STATE_HOME")
    if base:
        return str(Path(base) / "arpwatchd" / "state.sqlite")
    return str(Path.cwd() / "state" / "arpwatchd.sqlite")


def reloaded_config(running: Config, reloaded: Config) -> tuple[Config, list[str]]:
    """What a SIGHUP reload can apply: `reloaded` with the settings opened at start (events
    file, capture handles, metrics endpoint, state file) kept as they run, and the names of
    those it changed, so the operator is told instead of left guessing. Syslog and hook
    settings do apply (`Sensor.reconfigure` replaces those sinks)."""
    kept = replace(
        reloaded,
        output=replace(reloaded.output, events=running.output.events),
        capture=running.capture,
        metrics=running.metrics,
        state_path=running.state_path,
        state_path_set=running.state_path_set,
        max_events=running.max_events,
    )
    changed = [
        name
        for name, before, after in (
            ("output.events", running.output.events, reloaded.output.events),
            ("capture", running.capture, reloaded.capture),
            ("metrics", running.metrics, reloaded.metrics),
            ("state", (running.state_path, running.max_events),
             (reloaded.state_path, reloaded.max_events)),
        )
        if before != after
    ]
    return kept, changed


def load_config(path: str | None) -> Config:
    """Reads and validates a config file; None gives the defaults.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or has a bad key or value.
    """
    if path is None:
        return Config(state_path=default_state_path())
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    return parse_config(text, source=path)


def parse_config(text: str, source: str = "<config>") -> Config:
    import yaml  # noqa: PLC0415  (on first use: a replay without a config file never needs it)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    if root is None:
        return Config(state_path=default_state_path(), source=source)
    return _Reader(source).config(_Node(root, "", source))


class _Node:
    """A YAML node with its key path, so every error can say where it is."""

    def __init__(self, node: yaml.Node, path: str, source: str) -> None:
        self.node = node
        self.kind: str = getattr(node, "id", "")
        """PyYAML's node kind, "scalar", "sequence" or "mapping" (no isinstance on yaml's
        classes: yaml is imported only when a config file is parsed)."""
        self.path = path or "(top)"
        self.source = source

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.path} (line {self.line}): {message}")

    def warning(self, message: str) -> str:
        return f"{self.source}: {self.path} (line {self.line}): {message}"

    def mapping(self, allowed: set[str]) -> dict[str, _Node]:
        if self.kind != "mapping":
            raise self.fail("expected a mapping of keys")
        out: dict[str, _Node] = {}
        for key_node, value_node in self.node.value:
            key = key_node.value
            child = _Node(value_node, f"{self.path}.{key}" if self.path != "(top)" else key,
                          self.source)
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise child.fail(f"unknown key {key!r} (known: {known})")
            if key in out:
                raise child.fail(f"duplicate key {key!r}")
            out[key] = child
        return out

    def sequence(self) -> list[_Node]:
        if self.kind == "scalar" and self.node.value in ("", "~", "null"):
            return []
        if self.kind != "sequence":
            raise self.fail("expected a list")
        return [_Node(n, f"{self.path}[{i}]", self.source) for i, n in enumerate(self.node.value)]

    def scalar(self) -> str:
        if self.kind != "scalar":
            raise self.fail("expected a single value")
        return str(self.node.value)

    def convert(self, fn: Callable[[str], T]) -> T:
        try:
            return fn(self.scalar())
        except ValueError as exc:
            raise self.fail(str(exc)) from None


_DEFEND_KEYS = {"addresses", "mode", "interval", "locktime", "delay", "max", "rate",
                "announce_at_start", "ethernet_source"}
_HIDDEN = ", ".join(sorted(k.value for k in EventKind if k.severity is Severity.CRITICAL))


def _overlap(a: DomainMatch, b: DomainMatch) -> bool:
    """Whether some (interface, VLAN) domain matches both."""
    return (a.interface is None or b.interface is None or a.interface == b.interface) and (
        ANY_VLAN in (a.vlan, b.vlan) or a.vlan == b.vlan)


_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use seconds or 30s, 5m, 2h, 180d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise ValueError(f"not a TCP port (0 disables metrics): {text!r}")
    return value


def _metrics_host(text: str) -> str:
    if not text.strip():
        raise ValueError("an empty address would listen on every interface: write 0.0.0.0 or "
                         ":: for that (reachable from the network), or 127.0.0.1")
    return text


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _vlan(text: str) -> int:
    if text.lower() in ("untagged", "none", "0"):
        return 0
    value = int(text) if text.isdigit() else -1
    if not 1 <= value <= 4094:
        raise ValueError(f"not a VLAN id (1-4094, or 'untagged'): {text!r}")
    return value


def _event_kind(text: str) -> EventKind:
    try:
        return EventKind(text.strip())
    except ValueError:
        known = ", ".join(k.value for k in EventKind)
        raise ValueError(f"unknown event {text!r} (known: {known})") from None


def _timestamp(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a date or time (use 2027-01-31 or 2027-01-31T12:00Z): "
                         f"{text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _ip(text: str) -> int:
    """An IPv4 or IPv6 address; IPv6 ones in any spelling (RFC 5952 text when printed)."""
    return parse_address(text)


def _mac(text: str) -> bytes:
    mac = parse_mac(text)
    if mac[0] & 1 or mac == b"\x00" * 6:
        raise ValueError(f"not a unicast MAC address: {text!r}")
    return mac


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[str] = []

    def prefix(self, node: _Node) -> tuple[int, int]:
        """A network; one written with host bits (10.0.10.5/24) is read as its network, and
        said, since the writer may have meant the single address."""
        net, mask = node.convert(parse_network)
        text = node.scalar().strip()
        if "/" in text and parse_address(text.split("/", 1)[0]) != net:
            address = ip_text(parse_address(text.split("/", 1)[0]))
            self.warnings.append(node.warning(
                f"{text} has host bits set: it means {network_text((net, mask))} "
                f"(write that, or {address} for the address alone)"))
        return net, mask

    def protections(self, top: dict[str, _Node], defense: DefensePolicy) -> tuple[Protected, ...]:
        """protected entries, then defended addresses (protected too); a second owner of an
        address already protected in an overlapping domain is said: the first entry that
        matches wins, so the second never applies."""
        nodes = top["protected"].sequence() if "protected" in top else []
        entries = [(self.protected(n), n) for n in nodes]
        if "defend" in top and defense.addresses:
            owned_nodes = top["defend"].mapping(_DEFEND_KEYS)["addresses"].sequence()
            entries += [(Protected(o.ip, o.mac, o.where, o.group), n)
                        for o, n in zip(defense.addresses, owned_nodes, strict=True)]
        for k, (rule, node) in enumerate(entries):
            for earlier, earlier_node in entries[:k]:
                if earlier.ip == rule.ip and _overlap(earlier.where, rule.where) and not (
                        earlier.allows(rule.mac) and rule.allows(earlier.mac)):
                    self.warnings.append(node.warning(
                        f"{ip_text(rule.ip)} already has the owner {mac_text(earlier.mac)} "
                        f"({earlier_node.path}, line {earlier_node.line}): this entry never "
                        f"applies there; list both MACs in one entry (mac and group)"))
                    break
        return tuple(rule for rule, _ in entries)

    def config(self, root: _Node) -> Config:
        top = root.mapping({
            "hold", "inactive_after", "solicit_window", "answer_window", "demotion_grace",
            "repeat_after", "flood", "scan", "limits", "networks", "failover_groups", "protected",
            "output", "capture", "metrics", "state", "defend", "suppress",
        })
        policy: dict[str, Any] = {}
        for key in ("hold", "inactive_after", "solicit_window", "answer_window", "demotion_grace",
                    "repeat_after"):
            if key in top:
                policy[key] = top[key].convert(parse_duration)
        if "flood" in top:
            flood = top["flood"].mapping({"frames", "window"})
            if "frames" in flood:
                policy["flood_frames"] = flood["frames"].convert(_positive_int)
            if "window" in flood:
                policy["flood_window"] = flood["window"].convert(parse_duration)
        if "scan" in top:
            scan = top["scan"].mapping({"targets", "window"})
            if "targets" in scan:
                policy["scan_targets"] = scan["targets"].convert(_positive_int)
            if "window" in scan:
                policy["scan_window"] = scan["window"].convert(parse_duration)
        if "limits" in top:
            limits = top["limits"].mapping({"max_bindings", "max_senders", "max_pending"})
            names = {"max_bindings": "max_bindings", "max_senders": "max_macs",
                     "max_pending": "max_pending"}
            for key, attr in names.items():
                if key in limits:
                    policy[attr] = limits[key].convert(_positive_int)
        if "networks" in top:
            policy["networks"] = tuple(self.network(n) for n in top["networks"].sequence())
        if "failover_groups" in top:
            policy["failover_groups"] = tuple(
                self.group(n, i) for i, n in enumerate(top["failover_groups"].sequence())
            )
        defense = self.defense(top["defend"]) if "defend" in top else DefensePolicy()
        protected = self.protections(top, defense)
        if protected:
            policy["protected"] = protected
        state_path = default_state_path()
        state_path_set = False
        max_events = 1_000_000
        if "state" in top:
            state = top["state"].mapping({"path", "max_events"})
            if "path" in state:
                state_path = state["path"].scalar()
                state_path_set = True
            if "max_events" in state:
                max_events = state["max_events"].convert(_positive_int)
        return Config(
            policy=TrackerPolicy(**policy),
            output=self.output(top["output"]) if "output" in top else OutputConfig(),
            capture=self.capture(top["capture"]) if "capture" in top else CaptureConfig(),
            metrics=self.metrics(top["metrics"]) if "metrics" in top else MetricsConfig(),
            defense=defense,
            suppress=tuple(self.suppress_rule(n) for n in top["suppress"].sequence())
            if "suppress" in top else (),
            state_path=state_path,
            state_path_set=state_path_set,
            max_events=max_events,
            source=self.source,
            warnings=tuple(self.warnings),
        )

    def where(self, fields: dict[str, _Node]) -> DomainMatch:
        interface = fields["interface"].scalar() if "interface" in fields else None
        vlan = fields["vlan"].convert(_vlan) if "vlan" in fields else ANY_VLAN
        return DomainMatch(interface, vlan)

    def network(self, node: _Node) -> NetworkRule:
        fields = node.mapping({"interface", "vlan", "prefixes"})
        if "prefixes" not in fields:
            raise node.fail("a network needs 'prefixes'")
        prefixes = tuple(self.prefix(p) for p in fields["prefixes"].sequence())
        return NetworkRule(self.where(fields), prefixes)

    def group(self, node: _Node, index: int) -> FailoverGroup:
        fields = node.mapping({"name", "interface", "vlan", "ips", "macs"})
        for required in ("ips", "macs"):
            if required not in fields:
                raise node.fail(f"a failover group needs '{required}'")
        macs = frozenset(m.convert(_mac) for m in fields["macs"].sequence())
        if len(macs) < 2:
            raise fields["macs"].fail("a failover group needs at least two MACs")
        return FailoverGroup(
            name=fields["name"].scalar() if "name" in fields else f"group{index}",
            ips=frozenset(i.convert(_ip) for i in fields["ips"].sequence()),
            macs=macs,
            where=self.where(fields),
        )

    def protected(self, node: _Node) -> Protected:
        fields = node.mapping({"ip", "mac", "interface", "vlan", "group"})
        for required in ("ip", "mac"):
            if required not in fields:
                raise node.fail(f"a protected address needs '{required}'")
        group = frozenset(m.convert(_mac) for m in fields["group"].sequence()) \
            if "group" in fields else frozenset()
        return Protected(
            ip=fields["ip"].convert(_ip),
            mac=fields["mac"].convert(_mac),
            where=self.where(fields),
            group=group,
        )

    def defense(self, node: _Node) -> DefensePolicy:
        fields = node.mapping(_DEFEND_KEYS)
        defaults = DefensePolicy()
        mode, interval, locktime = self.defense_timing(fields)
        source = fields["ethernet_source"].scalar() if "ethernet_source" in fields else "nic"
        if source not in ("nic", "owner"):
            raise fields["ethernet_source"].fail("expected 'nic' or 'owner'")
        addresses = tuple(self.owned(n) for n in fields["addresses"].sequence()) \
            if "addresses" in fields else ()
        seen: set[tuple[str, int | None, int]] = set()
        for owned, item in zip(addresses, fields["addresses"].sequence(), strict=False):
            key = (owned.interface, owned.vlan, owned.ip)
            if key in seen:
                raise item.fail("this address is listed twice")
            seen.add(key)
        return DefensePolicy(
            addresses=addresses,
            mode=mode,
            interval=interval,
            locktime=locktime,
            delay=fields["delay"].convert(parse_duration) if "delay" in fields else defaults.delay,
            max_defenses=fields["max"].convert(_positive_int)
            if "max" in fields else defaults.max_defenses,
            rate=float(fields["rate"].convert(_positive_int))
            if "rate" in fields else defaults.rate,
            announce_at_start=fields["announce_at_start"].convert(_bool)
            if "announce_at_start" in fields else False,
            use_owner_mac_as_source=source == "owner",
        )

    def defense_timing(self, fields: dict[str, _Node]) -> tuple[DefenseMode, float | None, float]:
        """`mode`, `interval` and `locktime`, checked against each other: a mode's spacing is a
        floor, so a config asking for faster defenses is refused rather than silently slowed."""
        modes = " or ".join(repr(m.value) for m in DefenseMode)

        def known(text: str) -> DefenseMode:
            if text not in set(DefenseMode):
                raise ValueError(f"expected {modes}, not {text!r}")
            return DefenseMode(text)

        mode = fields["mode"].convert(known) if "mode" in fields else DefenseMode.LAST_WORD
        locktime = fields["locktime"].convert(parse_duration) if "locktime" in fields \
            else LOCKTIME
        if not 0 < locktime <= DEFEND_INTERVAL:
            raise fields["locktime"].fail(
                f"expected more than 0 s and at most {DEFEND_INTERVAL:g} s")
        interval = fields["interval"].convert(parse_duration) if "interval" in fields else None
        if interval is None:
            return mode, None, locktime
        if mode is DefenseMode.RFC5227 and interval < DEFEND_INTERVAL:
            raise fields["interval"].fail(
                f"mode 'rfc5227' defends at most once per {DEFEND_INTERVAL:g} s "
                "(DEFEND_INTERVAL); mode 'last-word' defends faster")
        if mode is DefenseMode.LAST_WORD and interval < locktime:
            raise fields["interval"].fail(
                f"mode 'last-word' answers no sooner than locktime ({locktime:g} s) after the "
                "previous defense; an interval below it would only add frames")
        return mode, interval, locktime

    def owned(self, node: _Node) -> OwnedAddress:
        fields = node.mapping({"ip", "mac", "interface", "vlan", "group", "router"})
        for required in ("ip", "mac", "interface"):
            if required not in fields:
                raise node.fail(f"a defended address needs '{required}'")
        interface = fields["interface"].scalar()
        if not _IFNAME.match(interface):
            raise fields["interface"].fail(f"not an interface name: {interface!r}")
        vlan = fields["vlan"].convert(_vlan) if "vlan" in fields else 0
        group = frozenset(m.convert(_mac) for m in fields["group"].sequence()) \
            if "group" in fields else frozenset()
        ip = fields["ip"].convert(_ip)
        router = fields["router"].convert(_bool) if "router" in fields else False
        if "router" in fields and not is_ipv6(ip):
            raise fields["router"].fail(
                f"'router' is the R flag of the neighbour advertisement that defends an IPv6 "
                f"address; {ip_text(ip)} is defended with ARP, which has none")
        return OwnedAddress(
            ip=ip,
            mac=fields["mac"].convert(_mac),
            interface=interface,
            vlan=vlan or None,
            group=group,
            router=router,
        )

    def suppress_rule(self, node: _Node) -> SuppressRule:
        fields = node.mapping({"events", "networks", "macs", "vlans", "until", "comment"})
        if not fields.keys() - {"comment", "until"}:
            raise node.fail("a suppression rule needs at least one of events, networks, "
                            "macs, vlans (it would silence everything)")
        events = frozenset(e.convert(_event_kind) for e in fields["events"].sequence()) \
            if "events" in fields else frozenset()
        if not events:
            self.warnings.append(node.warning(
                f"no events listed: this rule silences every event it matches, {_HIDDEN} "
                f"included; list the events you accept"))
        elif hidden := sorted(k.value for k in events if k.severity is Severity.CRITICAL):
            self.warnings.append(fields["events"].warning(
                f"silences {', '.join(hidden)}: a spoofer matching this rule goes unreported"))
        return SuppressRule(
            events=events,
            networks=tuple(self.prefix(n) for n in fields["networks"].sequence())
            if "networks" in fields else (),
            macs=tuple(m.convert(parse_mac_prefix) for m in fields["macs"].sequence())
            if "macs" in fields else (),
            vlans=frozenset(v.convert(_vlan) for v in fields["vlans"].sequence())
            if "vlans" in fields else frozenset(),
            until=fields["until"].convert(_timestamp) if "until" in fields else None,
            comment=fields["comment"].scalar() if "comment" in fields else "",
        )

    def output(self, node: _Node) -> OutputConfig:
        fields = node.mapping({"events", "events_per_window", "event_window", "syslog", "hook"})
        return OutputConfig(
            syslog=self.syslog(fields["syslog"]) if "syslog" in fields else None,
            hook=self.hook(fields["hook"]) if "hook" in fields else None,
            events=fields["events"].scalar() if "events" in fields else "-",
            events_per_window=fields["events_per_window"].convert(int)
            if "events_per_window" in fields else 200,
            event_window=fields["event_window"].convert(parse_duration)
            if "event_window" in fields else 10.0,
        )

    def syslog(self, node: _Node) -> SyslogConfig:
        # sockets and threads: imported only by a config that asks for syslog (start-up)
        from arpwatchd.syslog import (  # noqa: PLC0415
            FORMATS,
            TRANSPORTS,
            SyslogConfig,
            parse_address,
            parse_facility,
        )

        fields = node.mapping({"address", "transport", "facility", "format"})
        address = fields["address"].scalar() if "address" in fields else "/dev/log"
        transport = fields["transport"].scalar().lower() if "transport" in fields \
            else ("unix" if address.startswith("/") else "udp")
        if transport not in TRANSPORTS:
            raise fields["transport"].fail(f"expected one of {', '.join(TRANSPORTS)}")
        if "address" in fields:
            fields["address"].convert(lambda text: parse_address(text, transport))
        elif transport != "unix":
            raise node.fail(f"syslog over {transport} needs 'address' (host:port)")
        form = fields["format"].scalar().lower() if "format" in fields else "rfc5424"
        if form not in FORMATS:
            raise fields["format"].fail(f"expected one of {', '.join(FORMATS)}")
        return SyslogConfig(
            address=address,
            transport=transport,
            facility=fields["facility"].convert(parse_facility)
            if "facility" in fields else SyslogConfig().facility,
            format=form,
        )

    def hook(self, node: _Node) -> HookConfig:
        # subprocesses: imported only by a config that asks for a hook (start-up)
        from arpwatchd.hooks import HookConfig  # noqa: PLC0415

        fields = node.mapping({"command", "events", "timeout", "max_running"})
        for required in ("command", "events"):
            if required not in fields:
                raise node.fail(f"a hook needs '{required}'")
        command = tuple(part.scalar() for part in fields["command"].sequence())
        if not command:
            raise fields["command"].fail("the command is empty")
        if not command[0].startswith("/"):
            raise fields["command"].fail(f"the program must be an absolute path (no shell, "
                                         f"no PATH search): {command[0]!r}")
        events = frozenset(e.convert(_event_kind) for e in fields["events"].sequence())
        if not events:
            raise fields["events"].fail("list the events that run the hook")
        timeout = fields["timeout"].convert(parse_duration) if "timeout" in fields else 10.0
        if timeout <= 0:
            raise fields["timeout"].fail("must be more than 0")
        return HookConfig(
            command=command,
            events=events,
            timeout=timeout,
            max_running=fields["max_running"].convert(_positive_int)
            if "max_running" in fields else 4,
        )

    def capture(self, node: _Node) -> CaptureConfig:
        fields = node.mapping({"interfaces", "buffer_mib", "snaplen", "batch", "promiscuous"})
        defaults = CaptureConfig()
        return CaptureConfig(
            interfaces=tuple(i.scalar() for i in fields["interfaces"].sequence())
            if "interfaces" in fields else (),
            buffer_mib=fields["buffer_mib"].convert(_positive_int)
            if "buffer_mib" in fields else defaults.buffer_mib,
            snaplen=fields["snaplen"].convert(_positive_int)
            if "snaplen" in fields else defaults.snaplen,
            batch=fields["batch"].convert(_positive_int) if "batch" in fields else defaults.batch,
            promiscuous=fields["promiscuous"].convert(_bool)
            if "promiscuous" in fields else defaults.promiscuous,
        )

    def metrics(self, node: _Node) -> MetricsConfig:
        fields = node.mapping({"address", "port", "max_conflict_series"})
        defaults = MetricsConfig()
        return MetricsConfig(
            address=fields["address"].convert(_metrics_host)
            if "address" in fields else defaults.address,
            port=fields["port"].convert(_port) if "port" in fields else defaults.port,
            max_conflict_series=fields["max_conflict_series"].convert(_positive_int)
            if "max_conflict_series" in fields else defaults.max_conflict_series,
        )
