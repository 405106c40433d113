"""`check-config`: every effective setting, written as the config writes it, and the warnings.

The printout is what the sensor will do, not a digest: each network, protected address,
failover group and suppression rule in full (an operator checks a rule by reading it back),
the state file as configured (not resolved against the directory check-config runs in, which
is not the service's). The warnings are the config's own (`Config.warnings`, found while
reading it) and those about where the store and capture are, which only make sense here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from arpwatchd.addresses import ip_text, is_ipv6, mac_text, network_text
from arpwatchd.events import format_ts
from arpwatchd.policy import ANY_VLAN, DomainMatch

if TYPE_CHECKING:
    from arpwatchd.config import Config
    from arpwatchd.defend import OwnedAddress
    from arpwatchd.hooks import HookConfig
    from arpwatchd.syslog import SyslogConfig


def _vlan(vlan: int) -> int | str:
    return "any" if vlan == ANY_VLAN else "untagged" if vlan == 0 else vlan


def _where(where: DomainMatch) -> dict[str, Any]:
    return {"interface": where.interface or "any", "vlan": _vlan(where.vlan)}


def _net(prefix: tuple[int, int]) -> str:
    return network_text(prefix)


def _macs(macs: frozenset[bytes]) -> list[str]:
    return sorted(mac_text(m) for m in macs)


def summary(config: Config) -> dict[str, Any]:
    """The effective settings as JSON-ready values."""
    p = config.policy
    return {
        "source": config.source,
        "state_path": config.state_path if config.state_path_set else None,
        "max_events": config.max_events,
        "hold": p.hold,
        "inactive_after": p.inactive_after,
        "solicit_window": p.solicit_window,
        "answer_window": p.answer_window,
        "demotion_grace": p.demotion_grace,
        "repeat_after": p.repeat_after,
        "flood": {"frames": p.flood_frames, "window": p.flood_window},
        "scan": {"targets": p.scan_targets, "window": p.scan_window},
        "limits": {"max_bindings": p.max_bindings, "max_senders": p.max_macs,
                   "max_pending": p.max_pending},
        "networks": [{**_where(n.where), "prefixes": [_net(x) for x in n.prefixes]}
                     for n in p.networks],
        "failover_groups": [{"name": g.name, **_where(g.where),
                             "ips": sorted(ip_text(i) for i in g.ips), "macs": _macs(g.macs)}
                            for g in p.failover_groups],
        "protected": [{"ip": ip_text(r.ip), "mac": mac_text(r.mac), **_where(r.where),
                       "group": _macs(r.group)} for r in p.protected],
        "suppress": [{"events": sorted(k.value for k in r.events) or "all",
                      "networks": [_net(x) for x in r.networks], "macs": list(r.macs),
                      "vlans": sorted((_vlan(v) for v in r.vlans), key=str),
                      "until": format_ts(r.until) if r.until is not None else None,
                      "comment": r.comment} for r in config.suppress],
        "output": {"events": config.output.events,
                   "events_per_window": config.output.events_per_window,
                   "event_window": config.output.event_window,
                   "syslog": _syslog(config.output.syslog),
                   "hook": _hook(config.output.hook)},
        "capture": {"interfaces": list(config.capture.interfaces),
                    "buffer_mib": config.capture.buffer_mib,
                    "snaplen": config.capture.snaplen, "batch": config.capture.batch,
                    "promiscuous": config.capture.promiscuous},
        "metrics": {"address": config.metrics.address, "port": config.metrics.port,
                    "max_conflict_series": config.metrics.max_conflict_series},
        "defend": _defend(config),
    }


def _defend(config: Config) -> dict[str, Any]:
    d = config.defense
    return {
        "addresses": [_owned(a) for a in d.addresses],
        "mode": d.mode.value,
        "interval": d.spacing,
        "locktime": d.locktime,
        "delay": d.delay,
        "max": d.budget,
        "rate": d.rate,
        "announce_at_start": d.announce_at_start,
        "ethernet_source": "owner" if d.use_owner_mac_as_source else "nic",
    }


def _owned(a: OwnedAddress) -> dict[str, Any]:
    """A defended address; an IPv6 one also says what defends it (the NA's R flag)."""
    out: dict[str, Any] = {"ip": ip_text(a.ip), "mac": mac_text(a.mac),
                           "interface": a.interface, "vlan": a.vlan, "group": _macs(a.group)}
    if is_ipv6(a.ip):
        out["router"] = a.router
    return out


def _syslog(syslog: SyslogConfig | None) -> dict[str, Any] | None:
    if syslog is None:
        return None
    return {"address": syslog.address, "transport": syslog.transport,
            "facility": syslog.facility, "format": syslog.format}


def _hook(hook: HookConfig | None) -> dict[str, Any] | None:
    if hook is None:
        return None
    return {"command": list(hook.command), "events": sorted(k.value for k in hook.events),
            "timeout": hook.timeout, "max_running": hook.max_running}


def warnings(config: Config) -> list[str]:
    """The config's own warnings, then where its store and defenses would end up."""
    out = list(config.warnings)
    where = f"{config.source}: state.path"
    if not config.state_path_set:
        out.append(f"{where}: not set: a service uses $STATE_DIRECTORY/state.sqlite, other "
                   f"commands ./state/arpwatchd.sqlite in their working directory (or under "
                   f"$XDG_STATE_HOME), so the service and the operator tools may use "
                   f"different stores; set an absolute path")
    elif not Path(config.state_path).is_absolute():
        out.append(f"{where}: {config.state_path} is relative: each command resolves it "
                   f"against its own working directory; set an absolute path")
    captured = config.capture.interfaces
    for i, owned in enumerate(config.defense.addresses):
        if captured and owned.interface not in captured:
            out.append(f"{config.source}: defend.addresses[{i}].interface: {owned.interface} "
                       f"is not in capture.interfaces ({', '.join(captured)}): run refuses "
                       f"to start unless it is captured (-i)")
    return out
