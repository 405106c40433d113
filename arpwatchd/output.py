"""Where events go: JSON lines (a file or standard output), the one-line human log, and the
optional sinks (syslog, hook; see `sinks`) that get the same events.

No decisions here: events arrive already decided, limited and filtered; this only prints.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TextIO

from arpwatchd.errors import OutputError
from arpwatchd.events import Event, Severity
from arpwatchd.files import STREAMS, UnsafeFileError, open_file

if TYPE_CHECKING:
    from arpwatchd.vendors import Vendors

log = logging.getLogger("arpwatchd")

_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
          Severity.CRITICAL: logging.CRITICAL}


class EventSink(Protocol):
    """A further destination (syslog, hook): must neither block nor raise."""

    def write(self, events: list[Event], vendor_of: Callable[[str | None], str | None]
              ) -> None: ...

    def close(self) -> None: ...


class EventWriter:
    def __init__(self, destination: str, vendors: Vendors | None = None,
                 sinks: Sequence[EventSink] = ()) -> None:
        self.destination = destination
        self.vendors = vendors
        """The OUI table; made at the first event (a replay that emits none never reads it)."""
        self.sinks = list(sinks)
        self._retired: Counter[str] = Counter()
        """Final counts of sinks replaced by a reload, so the metrics never go backwards."""
        self._lock = threading.Lock()
        self._stream: TextIO
        if destination == "-":
            self._stream = sys.stdout
            self._owned = False
        else:
            self._stream = _open_events(destination, "open")
            self._owned = True

    def reopen(self) -> None:
        """Opens the events file again by its name, so that after logrotate moved it (then
        sent SIGHUP) events go to the new file, not on into the rotated one.

        Raises:
            OutputError: the file cannot be opened; events go on to the old one.
        """
        if not self._owned:
            return
        stream = _open_events(self.destination, "reopen")
        self._stream.close()
        self._stream = stream

    def replace_sinks(self, sinks: Sequence[EventSink]) -> None:
        """New syslog and hook settings (SIGHUP): events go to `sinks` from now on; the old
        ones finish what they hold (queued messages, running hooks) on a thread of their own,
        so the capture loop does not wait for a slow collector."""
        with self._lock:
            old, self.sinks = self.sinks, list(sinks)

        def retire() -> None:
            for sink in old:
                sink.close()
            with self._lock:
                for sink in old:
                    self._retired.update(_counters(sink))

        threading.Thread(target=retire, name="retire sinks", daemon=True).start()

    def counters(self) -> dict[str, int]:
        """The sinks' own counters (syslog, hook), for the metrics endpoint."""
        with self._lock:
            out = Counter(self._retired)
            for sink in self.sinks:
                out.update(_counters(sink))
        return dict(out)

    def write(self, events: list[Event]) -> None:
        if not events:
            return
        if self.vendors is None:
            from arpwatchd.vendors import Vendors  # noqa: PLC0415  (import on use: start-up)

            self.vendors = Vendors()
        lookup = self.vendors.lookup
        for sink in self.sinks:  # they only queue, so a dead collector cannot stop JSON lines
            sink.write(events, lookup)
        lines = [event.to_json(lookup(event.mac)) for event in events]
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except OSError as exc:
            raise OutputError(f"{self.destination}: cannot write events: {exc.strerror}") \
                from None
        for event in events:
            log.log(_LEVEL[event.severity], "%s", human(event))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        if self._owned:
            self._stream.close()


def _open_events(path: str, verb: str) -> TextIO:
    """Appends to `path`, created 0640 if missing; never through a link (it is opened as
    root), but /dev/null or a FIFO are fine.

    Raises:
        OutputError: in one line.
    """
    try:
        fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640, kinds=STREAMS)
    except UnsafeFileError as exc:
        raise OutputError(f"{path}: cannot {verb} events file: it {exc.reason}") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot {verb} events file: {exc.strerror}") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def _counters(sink: EventSink) -> dict[str, int]:
    counters = getattr(sink, "counters", None)
    return counters() if callable(counters) else {}


def human(event: Event) -> str:
    """One line for people: what happened, where, to whom."""
    where = event.interface if event.vlan is None else f"{event.interface}.{event.vlan}"
    parts = [event.kind.value, where]
    if event.ip:
        parts.append(event.ip)
    if event.mac:
        parts.append(event.mac)
    if event.previous_mac:
        parts.append(f"(other {event.previous_mac})")
    if event.reason:
        parts.append(f"reason={event.reason}")
    if event.suspect:
        parts.append(f"suspect={event.suspect}")
    if event.count is not None:
        parts.append(f"count={event.count}")
    if event.suppressed_event is not None:
        parts.append(f"of={event.suppressed_event.value}")
    return " ".join(parts)
