"""Prometheus metrics: the only module that imports prometheus_client.

Why a custom Collector and not gauges set by the loop: the capture loop must never wait on a
scrape, and a scrape must never see half an update. The loop only adds to plain counters in
`SensorStats` (under its lock, once per batch) and swaps in an immutable `TrackerStats`
snapshot; `ArpwatchCollector.collect()` runs on the HTTP server's daemon thread, copies what
it needs under the lock, and builds fresh metric families each time, so a series whose label
value disappeared (a resolved conflict) is simply not exported again (client_python's
`process_collector`, prometheus/docs "writing exporters").

Naming follows the Prometheus conventions: an `arpwatchd_` prefix, base units, `_total` only on
counters, `_timestamp_seconds` for points in time, `_info` for metadata. Label values come
from closed enums or the configuration (interface, VLAN, event, kind, reason) with one bounded
exception: `arpwatchd_conflict_active` carries the conflicting `ip` and its two MACs (`mac`,
`previous_mac`, fixed for the conflict's life, so still one series per conflict), because an
operator's dashboard must say which address is in conflict and between whom; the tracker caps
those series at `metrics.max_conflict_series` and `arpwatchd_active_conflicts` always has the
true count.
Series known in advance are exported at 0 from the start, so `increase()` and alerts see the
first event, and no sample carries a timestamp.

VLAN labels are the 802.1Q id as text, or empty for untagged frames (Prometheus treats an
empty label as absent, so `vlan=~".*"` matches both).
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import platform
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from arpwatchd import __version__
from arpwatchd.config import Config
from arpwatchd.decode import ArpKind, SkipReason
from arpwatchd.errors import OutputError
from arpwatchd.events import EventKind
from arpwatchd.kernel import FASTPATH
from arpwatchd.ndp import NdpKind, NdpProblem, NdpSkip
from arpwatchd.stats import CaptureState, SensorStats
from arpwatchd.tracker import TrackerStats
from arpwatchd.web import routed, serve

log = logging.getLogger("arpwatchd")

PREFIX = "arpwatchd_"
SKIP_REASONS = (*(r.value for r in SkipReason), "own_frame", *(r.value for r in NdpSkip),
                *(r.value for r in NdpProblem))
FAMILIES = ("ipv4", "ipv6")
NDP_KINDS = (*(k.value for k in NdpKind), "invalid")
"""Decoder skip reasons, plus the sensor's own defense frames seen coming back."""
SUPPRESSION_CAUSES = ("rate_limit", "rule")
"""Why an event was not emitted: the event rate limit, or an operator's suppression rule."""
MODES = ("live", "replay")
"""The `mode` label of build_info: capturing interfaces, or reading capture files."""


class MetricsError(OutputError):
    """The metrics endpoint cannot be served (port busy, bad address); one line."""


def vlan_label(vlan: int | str | None) -> str:
    """The `vlan` label value: the VLAN id, or "" when untagged (None or 0)."""
    if vlan is None or vlan in (0, "0"):
        return ""
    return str(vlan)


def parse_metrics_address(text: str) -> tuple[str, int] | None:
    """Parses `--metrics-address`: HOST:PORT or [IPv6]:PORT; `0` or port 0 disable.

    An empty host (`:PORT`) is refused: it would listen on every interface without saying so.

    Returns:
        (host, port), or None when metrics are disabled.

    Raises:
        ValueError: with a message fit for the command line.
    """
    text = text.strip()
    if text == "0":
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT (or 0 to disable), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, [::1]:PORT, got {text!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"not a TCP port (0 disables metrics): {port_text!r}")
    port = int(port_text)
    if port == 0:
        return None
    if not host:
        raise ValueError(f"no host in {text!r}: write 0.0.0.0:{port} or [::]:{port} to listen "
                         f"on every interface (reachable from the network), or 127.0.0.1:{port}")
    return host, port


@dataclass(frozen=True, slots=True)
class _Copy:
    """What one scrape reads, copied under `SensorStats.lock` so the loop is held briefly."""

    packets: dict[tuple[str, str], int]
    ndp_packets: dict[tuple[str, str], int]
    skipped: dict[tuple[str, str], int]
    events: dict[tuple[str, str, str], int]
    suppressed: dict[tuple[str, str], int]
    failovers: dict[tuple[str, str], int]
    captures: dict[str, CaptureState]
    store_write_errors: int
    store_events_dropped: int
    store_writes: int
    frame_errors: int
    defense_sent: dict[tuple[str, str], int]
    defense_last_word: dict[tuple[str, str], int]
    defense_failures: dict[tuple[str, str], int]
    defense_send_errors: dict[tuple[str, str], int]
    tracker: TrackerStats | None
    outputs: dict[str, int]


def _copy(stats: SensorStats) -> _Copy:
    with stats.lock:
        return _Copy(
            packets=dict(stats.packets),
            ndp_packets=dict(stats.ndp_packets),
            skipped=dict(stats.skipped),
            events=dict(stats.events),
            suppressed=dict(stats.suppressed),
            failovers=dict(stats.failovers),
            captures={name: copy.copy(state) for name, state in stats.captures.items()},
            store_write_errors=stats.store_write_errors,
            store_events_dropped=stats.store_events_dropped,
            store_writes=stats.store_writes,
            frame_errors=stats.frame_errors,
            defense_sent=dict(stats.defense_sent),
            defense_last_word=dict(stats.defense_last_word),
            defense_failures=dict(stats.defense_failures),
            defense_send_errors=dict(stats.defense_send_errors),
            tracker=stats.tracker,
            outputs=stats.outputs() if stats.outputs is not None else {},
        )


K = TypeVar("K", tuple[str, str], tuple[str, str, str])


def _with_zeros(values: dict[K, int], known: Iterable[K]) -> Counter[K]:
    out: Counter[K] = Counter(dict.fromkeys(known, 0))
    out.update(values)
    return out


_OUTPUT_HELP = {
    "syslog_messages": "Events sent to the syslog collector.",
    "syslog_messages_dropped": "Events dropped because the syslog queue was full.",
    "syslog_errors": "Failed attempts to send to the syslog collector.",
    "hook_runs": "Hook command runs started.",
    "hook_dropped": "Events not given to the hook because every slot was busy.",
    "hook_failures": "Hook runs that could not start or exited non-zero.",
    "hook_timeouts": "Hook runs killed at their timeout.",
}


class ArpwatchCollector(Collector):
    """Builds every arpwatchd metric family from a `SensorStats` at scrape time.

    Args:
        stats: the sensor's counters; read under `stats.lock`, never written.
        max_conflict_series: at most this many `arpwatchd_conflict_active` series (the tracker
            snapshot is already capped; this is a second guard).
        started: the sensor's start, seconds since the epoch (the caller reads the clock).
        mode: "live" (`run`) or "replay" (`replay`, `replay --serve`), the `mode` label of
            `arpwatchd_build_info`: a replayed capture's last ARP time is in the past by
            nature, so the no-ARP alert must tell the two apart.
    """

    def __init__(self, stats: SensorStats, *, max_conflict_series: int = 200,
                 started: float = 0.0, mode: str = "live") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.stats = stats
        self.max_conflict_series = max_conflict_series
        self.started = started
        self.mode = mode

    def collect(self) -> Iterator[Metric]:
        c = _copy(self.stats)
        interfaces = sorted(
            set(c.captures) | {i for i, _ in c.packets} | {i for i, _ in c.skipped}
            | {i for i, _ in c.ndp_packets}
        )
        yield from self._info()
        yield from self._traffic(c, interfaces)
        yield from self._events(c)
        yield from self._state(c)
        yield from self._capture(c)
        yield from self._health(c, interfaces)

    def _info(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "build_info", "arpwatchd version, Python runtime, mode (live: capturing "
            "interfaces, replay: reading capture files) and fast path (c: the compiled kernel, "
            "python: none, every frame decoded and tracked in Python); always 1.",
            labels=["version", "python_version", "mode", "fastpath"])
        info.add_metric([__version__, platform.python_version(), self.mode, FASTPATH], 1)
        yield info
        yield GaugeMetricFamily(
            PREFIX + "start_time_seconds", "When this sensor process started (Unix time).",
            value=self.started)

    def _traffic(self, c: _Copy, interfaces: list[str]) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            PREFIX + "arp_packets", "ARP frames decoded, by interface and kind (request, reply, "
            "announcement, probe, invalid).", labels=["interface", "kind"])
        known = [(i, k.value) for i in interfaces for k in ArpKind]
        for (interface, kind), n in sorted(_with_zeros(c.packets, known).items()):
            packets.add_metric([interface, kind], n)
        yield packets
        ndp = CounterMetricFamily(
            PREFIX + "ndp_packets", "IPv6 neighbour discovery messages decoded, by interface "
            "and kind (solicitation, dad_probe, solicited_advertisement, "
            "unsolicited_advertisement, router_solicitation, router_advertisement, invalid).",
            labels=["interface", "kind"])
        known = [(i, k) for i in interfaces for k in NDP_KINDS]
        for (interface, kind), n in sorted(_with_zeros(c.ndp_packets, known).items()):
            ndp.add_metric([interface, kind], n)
        yield ndp
        skipped = CounterMetricFamily(
            PREFIX + "frames_skipped", "Captured frames that were not usable ARP or neighbour "
            "discovery, by interface and reason (not_ndp: IPv6 but no neighbour discovery; "
            "invalid NDP also by its RFC 4861 problem).", labels=["interface", "reason"])
        known = [(i, r) for i in interfaces for r in SKIP_REASONS]
        for (interface, reason), n in sorted(_with_zeros(c.skipped, known).items()):
            skipped.add_metric([interface, reason], n)
        yield skipped
        yield CounterMetricFamily(
            PREFIX + "frame_errors", "Frames whose processing raised an internal error (a bug; "
            "the frame was skipped and the sensor went on).", value=c.frame_errors)

    def _events(self, c: _Copy) -> Iterator[Metric]:
        events = CounterMetricFamily(
            PREFIX + "events", "Events detected, by event, severity and address family (ipv4: "
            "ARP, ipv6: neighbour discovery), including events later suppressed.",
            labels=["event", "severity", "family"])
        by_family = [(k.value, k.severity.value, f) for k in EventKind for f in FAMILIES]
        for (event, severity, family), n in sorted(_with_zeros(c.events, by_family).items()):
            events.add_metric([event, severity, family], n)
        yield events
        suppressed = CounterMetricFamily(
            PREFIX + "events_suppressed", "Events detected but not emitted, by event and cause "
            "(rate_limit, rule).", labels=["event", "cause"])
        known = [(k.value, cause) for k in EventKind for cause in SUPPRESSION_CAUSES]
        for (event, cause), n in sorted(_with_zeros(c.suppressed, known).items()):
            suppressed.add_metric([event, cause], n)
        yield suppressed

    def _state(self, c: _Copy) -> Iterator[Metric]:
        t = c.tracker
        domains = [(i, vlan_label(v)) for i, v in t.bindings] if t is not None else []
        failovers = CounterMetricFamily(
            PREFIX + "failovers", "Ownership moves judged legitimate failover (announced, or "
            "within a failover group), by interface and VLAN.", labels=["interface", "vlan"])
        normalised: Counter[tuple[str, str]] = Counter()
        for (interface, vlan), n in c.failovers.items():
            normalised[(interface, vlan_label(vlan))] += n
        for (interface, vlan), n in sorted(_with_zeros(normalised, domains).items()):
            failovers.add_metric([interface, vlan], n)
        yield failovers
        bindings = GaugeMetricFamily(
            PREFIX + "bindings", "IP to MAC bindings held in memory, by interface and VLAN.",
            labels=["interface", "vlan"])
        conflict = GaugeMetricFamily(
            PREFIX + "conflict_active", "1 for each address in an active conflict (two MACs "
            "claiming it: mac and previous_mac, as the conflict event names them); capped at "
            "metrics.max_conflict_series series.",
            labels=["interface", "vlan", "ip", "mac", "previous_mac"])
        if t is not None:
            per_domain: Counter[tuple[str, str]] = Counter()
            for (interface, vlan_id), n in t.bindings.items():
                per_domain[(interface, vlan_label(vlan_id))] += n
            for labels, n in sorted(per_domain.items()):
                bindings.add_metric(list(labels), n)
            for active in t.active_conflicts[: self.max_conflict_series]:
                conflict.add_metric(
                    [active.interface, vlan_label(active.vlan), active.ip, active.mac,
                     active.previous_mac], 1)
        yield bindings
        yield conflict
        yield GaugeMetricFamily(
            PREFIX + "active_conflicts", "Addresses in an active conflict, uncapped.",
            value=t.conflicts_active_total if t is not None else 0)
        yield GaugeMetricFamily(
            PREFIX + "holds_active", "Ownership changes waiting out the hold before they are "
            "judged failover or changed MAC.", value=t.holds_active if t is not None else 0)
        yield CounterMetricFamily(
            PREFIX + "bindings_evicted", "Bindings dropped because limits.max_bindings was "
            "reached (least recently seen first).",
            value=t.bindings_evicted if t is not None else 0)
        yield GaugeMetricFamily(
            PREFIX + "senders_tracked", "MAC addresses tracked for flood and scan detection.",
            value=t.senders_tracked if t is not None else 0)

    def _capture(self, c: _Copy) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "capture_up", "1 while the interface is being captured, 0 while it is "
            "lost and being reopened.", labels=["interface"])
        received = CounterMetricFamily(
            PREFIX + "capture_packets_received", "Packets that passed the kernel filter "
            "(libpcap ps_recv).", labels=["interface"])
        dropped = CounterMetricFamily(
            PREFIX + "capture_packets_dropped", "Packets dropped because the capture buffer "
            "was full (libpcap ps_drop).", labels=["interface"])
        if_dropped = CounterMetricFamily(
            PREFIX + "capture_packets_interface_dropped", "Packets dropped by the network "
            "interface or its driver (libpcap ps_ifdrop).", labels=["interface"])
        restarts = CounterMetricFamily(
            PREFIX + "capture_restarts", "Times a lost interface was opened again.",
            labels=["interface"])
        last_arp = GaugeMetricFamily(
            PREFIX + "last_arp_timestamp_seconds", "Packet time of the last ARP frame seen on "
            "the interface (Unix time; 0 = none yet).", labels=["interface"])
        for interface, state in sorted(c.captures.items()):
            up.add_metric([interface], 1 if state.up else 0)
            received.add_metric([interface], state.received)
            dropped.add_metric([interface], state.dropped)
            if_dropped.add_metric([interface], state.interface_dropped)
            restarts.add_metric([interface], state.restarts)
            last_arp.add_metric([interface], state.last_arp or 0.0)
        yield from (up, received, dropped, if_dropped, restarts, last_arp)

    def _health(self, c: _Copy, interfaces: list[str]) -> Iterator[Metric]:
        yield CounterMetricFamily(
            PREFIX + "store_writes", "Batches written to the state store.",
            value=c.store_writes)
        yield CounterMetricFamily(
            PREFIX + "store_write_errors", "Failed writes to the state store (the sensor keeps "
            "state in memory and retries).", value=c.store_write_errors)
        yield CounterMetricFamily(
            PREFIX + "store_events_dropped", "Events left out of the stored history because "
            "the state store could not be written for too long.", value=c.store_events_dropped)
        labels = ["interface", "family"]
        defense = (
            (c.defense_sent, CounterMetricFamily(
                PREFIX + "defense_packets_sent", "Frames sent to defend owned addresses, by "
                "interface and address family (ipv4: ARP announcements, ipv6: unsolicited "
                "neighbour advertisements).", labels=labels)),
            (c.defense_last_word, CounterMetricFamily(
                PREFIX + "defense_last_word_packets_sent", "Of the defense frames, those "
                "sent as the last word, the lock time after an intruder's last claim.",
                labels=labels)),
            (c.defense_send_errors, CounterMetricFamily(
                PREFIX + "defense_send_errors", "Defense frames that could not be sent "
                "(interface lost, libpcap error).", labels=labels)),
            (c.defense_failures, CounterMetricFamily(
                PREFIX + "defense_failures", "Defenses that failed: the intruder still claimed "
                "the address after defend_max defenses (defense_failed events).",
                labels=labels)),
        )
        known = [(interface, f) for interface in interfaces for f in FAMILIES]
        for values, metric in defense:
            for (interface, f), n in sorted(_with_zeros(values, known).items()):
                metric.add_metric([interface, f], n)
            yield metric
        for name, value in sorted(c.outputs.items()):  # only the outputs configured
            yield CounterMetricFamily(PREFIX + name, _OUTPUT_HELP.get(name, name), value=value)


class MetricsServer:
    """The HTTP endpoint serving one private registry from a daemon thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str,
                 port: int, registry: CollectorRegistry) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.registry = registry

    @property
    def url(self) -> str:
        return f"http://{_host_port(self.host, self.port)}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def build_registry(stats: SensorStats, config: Config, started: float,
                   mode: str = "live") -> CollectorRegistry:
    """A private registry holding only the arpwatchd collector (no default process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArpwatchCollector(
        stats, max_conflict_series=config.metrics.max_conflict_series, started=started,
        mode=mode))
    return registry


def start_metrics(
    stats: SensorStats, config: Config, address: str, port: int, *, started: float = 0.0,
    mode: str = "live",
) -> MetricsServer:
    """Serves /metrics on address:port from a daemon thread; returns the running server.
    Logs a warning when the address is not a loopback one.

    Raises:
        MetricsError: the port is busy or the address cannot be bound, in one line.
    """
    registry = build_registry(stats, config, started, mode)
    try:
        server, thread = serve(routed(make_wsgi_app(registry)), address, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise MetricsError(
            f"metrics: cannot listen on {_host_port(address, port)}: {reason}; choose another "
            f"with --metrics-address HOST:PORT or metrics.port in the config (0 disables)"
        ) from None
    bound = ipaddress.ip_address(str(server.server_address[0]))
    if not bound.is_loopback:
        log.warning("metrics on %s are reachable from the network",
                    _host_port(str(bound), server.server_port))
    return MetricsServer(server, thread, address, server.server_port, registry)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
