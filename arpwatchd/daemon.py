"""The loops: live capture (select, clock ticks, signals, reopening lost interfaces) and replay.

The only module that reads the wall clock. Signal handlers only set a flag; the select()
timeout (at most `TICK` seconds) bounds how long a SIGTERM waits and ends holds on a quiet
network.
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from arpwatchd.capture import (
    FileCapture,
    LiveCapture,
    Prefetcher,
    interface_index,
    interface_up,
)
from arpwatchd.config import Config
from arpwatchd.decode import Decoder
from arpwatchd.errors import CaptureError, OutputError
from arpwatchd.sensor import Sensor

if TYPE_CHECKING:
    from arpwatchd.metrics import MetricsServer

log = logging.getLogger("arpwatchd")

TICK = 0.5
STATS_EVERY = 2.0
MAX_BATCHES_PER_WAKE = 64
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 10.0
NO_ARP_AFTER = 60.0
"""Capture time after which an interface that has shown no ARP at all is mentioned, once."""
PREFETCH_FILTERED = 0.5
"""A replay reads its file on a thread (`Prefetcher`) once the BPF filter has dropped more
than this share of what was read, as on a mirror port's capture: libpcap's reading and
filtering then overlap the sensor's work. An ARP-only capture is read in the main thread,
where batches cost no hand-off between threads (benchmarks/README.md, "Start-up and reads")."""


# Plain classes, not dataclasses: defining a dataclass compiles its generated methods at
# import, which every replay paid for these live-loop records (start-up, issue 12).


class Flags:
    """Set by the signal handlers, read by the loops."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self.signal_name = ""


def install_signals(flags: Flags) -> None:
    def on_stop(signum: int, _frame: FrameType | None) -> None:
        flags.stop = True
        flags.signal_name = signal.Signals(signum).name

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        flags.reload = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


class QuietWatch:
    """Says once that an interface has shown no ARP since capture started, `after` seconds
    in: on a quiet or wrong port (not the mirror port, a VLAN the trunk does not carry) the
    sensor otherwise logs nothing after its start lines, and a newcomer cannot tell it works."""

    def __init__(self, after: float = NO_ARP_AFTER) -> None:
        self.after = after
        self.started: float | None = None
        self.done = False

    def due(self, now: float, seen: bool) -> bool:
        """Whether to say it now; `seen`: an ARP frame has been seen on the interface."""
        if self.done:
            return False
        if seen:
            self.done = True
            return False
        if self.started is None:
            self.started = now
        if now - self.started < self.after:
            return False
        self.done = True
        return True


class _Handle:
    """One interface of the live loop: its capture (None while it is being reopened)."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.capture: LiveCapture | None = None
        self.decoder: Decoder | None = None
        self.retry_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.base_stats = (0, 0, 0)
        self.last_stats = (0, 0, 0)
        self.reported_drops = 0
        self.ifindex: int | None = None
        self.link_down = False
        self.quiet = QuietWatch()


class LiveLoop:
    def __init__(
        self,
        sensor: Sensor,
        interfaces: list[str],
        flags: Flags,
        reload: Callable[[], Config | None] | None = None,
        dry_run: bool = False,
    ) -> None:
        self.sensor = sensor
        self.flags = flags
        self.reload = reload
        self.dry_run = dry_run
        self.handles = [_Handle(name) for name in interfaces]

    def open_all(self) -> None:
        """Opens every interface now; a failure here is fatal (bad name, no permission).

        Raises:
            CaptureError: naming the interface.
        """
        for handle in self.handles:
            self._open(handle)

    def _open(self, handle: _Handle) -> None:
        cap = self.sensor.config.capture
        handle.capture = LiveCapture(handle.interface, cap.snaplen, cap.buffer_mib,
                                     cap.promiscuous)
        handle.decoder = self.sensor.decoder(handle.interface, handle.capture.linktype)
        handle.base_stats = handle.last_stats
        handle.backoff = BACKOFF_FIRST
        handle.ifindex = interface_index(handle.interface)
        handle.link_down = False
        self.sensor.stats.capture(handle.interface).up = True

    def run(self) -> None:
        sensor = self.sensor
        batch_size = sensor.config.capture.batch
        next_stats = 0.0
        while not self.flags.stop:
            if self.flags.reload:
                self.flags.reload = False
                self._reload()
            now = time.time()
            live = {h.capture: h for h in self.handles if h.capture is not None}
            deadlines = [d for d in (sensor.tracker.next_deadline(),
                                     sensor.defender.next_due() if sensor.defender else None)
                         if d is not None]
            timeout = max(0.0, min([TICK] + [d - now for d in deadlines]))
            try:
                ready, _, _ = select.select(list(live), [], [], timeout)
            except InterruptedError:
                continue
            for capture in ready:
                self._drain(live[capture], batch_size)
            now = time.time()
            sensor.tick(now)
            self._defend(now)
            if now >= next_stats:
                self._refresh_stats(now)
                next_stats = now + STATS_EVERY
        self._refresh_stats(time.time())
        sensor.flush()
        for handle in self.handles:
            if handle.capture is not None:
                handle.capture.close()

    def _drain(self, handle: _Handle, batch_size: int) -> None:
        assert handle.capture is not None and handle.decoder is not None
        for _ in range(MAX_BATCHES_PER_WAKE):
            try:
                batch = handle.capture.read_batch(batch_size)
            except CaptureError as exc:
                self._lost(handle, str(exc))
                return
            if not batch:
                return
            self.sensor.feed(handle.decoder, batch)

    def _defend(self, now: float) -> None:
        sends = self.sensor.defense_due(now)
        if not sends:
            return
        sent, failed = [], []
        by_name = {h.interface: h for h in self.handles}
        for send in sends:
            handle = by_name.get(send.interface)
            if self.dry_run:
                sent.append(send)
            elif handle is None or handle.capture is None:
                failed.append((send, f"{send.interface}: not capturing; defense not sent"))
            else:
                try:
                    handle.capture.send(send.frame)
                    sent.append(send)
                except CaptureError as exc:
                    failed.append((send, str(exc)))
        self.sensor.defense_done(sent, failed, dry_run=self.dry_run)

    def _lost(self, handle: _Handle, reason: str) -> None:
        log.error("%s; will retry with backoff", reason)
        if handle.capture is not None:
            with contextlib.suppress(Exception):  # the handle is already broken
                handle.capture.close()
        handle.capture = None
        handle.retry_at = time.time() + handle.backoff
        state = self.sensor.stats.capture(handle.interface)
        state.up = False

    def _refresh_stats(self, now: float) -> None:
        for handle in self.handles:
            if handle.capture is None:
                if now >= handle.retry_at:
                    self._retry(handle, now)
                continue
            if not self._link_ok(handle):
                continue
            stats = handle.capture.stats()
            current = (stats.received, stats.dropped, stats.interface_dropped)
            handle.last_stats = tuple(  # type: ignore[assignment]
                base + cur for base, cur in zip(handle.base_stats, current, strict=True)
            )
            state = self.sensor.stats.capture(handle.interface)
            state.received, state.dropped, state.interface_dropped = handle.last_stats
            if handle.quiet.due(now, state.last_arp is not None):
                log.warning("%s: no ARP frame seen in the %.0f s since capture started (a quiet "
                            "port, or not the mirror port or VLAN meant?); said once",
                            handle.interface, handle.quiet.after)
            drops = state.dropped + state.interface_dropped
            if drops > handle.reported_drops:
                log.warning("%s: libpcap dropped %d frames so far (%d by the interface)",
                            handle.interface, drops, state.interface_dropped)
                handle.reported_drops = drops

    def _link_ok(self, handle: _Handle) -> bool:
        """Notices an interface that vanished (or was re-created: a new index), which a
        libpcap handle may never report, and one that went down, which it keeps across."""
        index = interface_index(handle.interface)
        if index is None or index != handle.ifindex:
            self._lost(handle, f"{handle.interface}: the interface disappeared")
            return False
        down = not interface_up(handle.interface)
        state = self.sensor.stats.capture(handle.interface)
        if down != handle.link_down:
            handle.link_down = down
            state.up = not down
            if down:
                log.error("%s: the interface is down; capturing again when it comes up",
                          handle.interface)
            else:
                log.warning("%s: the interface is up again", handle.interface)
        return True

    def _retry(self, handle: _Handle, now: float) -> None:
        try:
            self._open(handle)
        except CaptureError as exc:
            handle.backoff = min(handle.backoff * 2, BACKOFF_MAX)
            handle.retry_at = now + handle.backoff
            log.debug("%s", exc)
            return
        self.sensor.stats.capture(handle.interface).restarts += 1
        log.warning("%s: capturing again", handle.interface)

    def _reload(self) -> None:
        """SIGHUP: the events file is opened again (log rotation), then the config reloaded."""
        try:
            self.sensor.writer.reopen()
        except OutputError as exc:
            log.error("%s; events go on to the file as it was", exc)
        if self.reload is None:
            return
        config = self.reload()
        if config is not None:
            self.sensor.reconfigure(config)


def replay(
    sensor: Sensor, paths: list[str], interface: str = "replay", finish: bool = True
) -> list[str]:
    """Feeds capture files in order; returns one error line per damaged or unreadable file.

    A file that cannot be read (missing, not a capture, a link type without ARP) does not
    stop the others: each file is evidence of its own, and what was read is stored either way.

    With `finish=False` (replay --serve) holds and conflicts still open at the last packet
    stay open, so the metrics show the network as the capture left it; the caller runs
    `sensor.finish()` when it stops serving.
    """
    errors = [error for path in paths if (error := _replay_file(sensor, path, interface))]
    if finish:
        sensor.finish()
    else:
        sensor.flush()
    return errors


def _replay_file(sensor: Sensor, path: str, interface: str) -> str | None:
    """Feeds one file; returns why it could not be read to its end, or None."""
    try:
        source = FileCapture(path)
    except CaptureError as exc:
        return str(exc)
    try:
        decoder = sensor.decoder(interface, source.linktype)
        size = sensor.config.capture.batch
        reader: Prefetcher | None = None
        try:
            while batch := reader.read_batch() if reader else source.read_batch(size):
                sensor.feed(decoder, batch)
                if reader is None and source.filtered_share() > PREFETCH_FILTERED:
                    reader = Prefetcher(source, size)
        finally:
            if reader is not None:
                reader.close()
    except CaptureError as exc:
        return str(exc)
    finally:
        source.close()
    return source.error


def serve_metrics(sensor: Sensor, address: str, port: int, mode: str = "live"
                  ) -> MetricsServer:
    """Starts the metrics endpoint for a sensor; the start time is read here (the clock).
    `mode` is "replay" for `replay` (build_info's label: no-ARP alerts skip replays)."""
    from arpwatchd.metrics import start_metrics  # noqa: PLC0415  (import on use: start-up)

    return start_metrics(sensor.stats, sensor.config, address, port, started=time.time(),
                         mode=mode)


def wait_for_stop(flags: Flags) -> None:
    """Blocks until SIGTERM or SIGINT sets the flag (replay --serve keeps serving meanwhile)."""
    while not flags.stop:
        time.sleep(TICK)
