"""Syslog output: RFC 5424 messages with the event as structured data, to a local socket or a
collector over UDP or TCP; the only module that opens sockets for syslog.

Why a module of our own rather than `logging.handlers.SysLogHandler`: that handler writes BSD
(RFC 3164) lines without structured data, and over TCP neither frames messages (RFC 6587
octet counting) nor keeps the capture loop from blocking on a slow collector. Here `write`
formats and queues; one daemon thread sends, reconnects with backoff, and drops (counting)
only when its queue is full, so syslog can never stall capture.

Message (RFC 5424 section 6):
    <PRI>1 TIMESTAMP HOSTNAME arpwatchd PROCID MSGID [arpwatchd@32473 event="..." ...] MSG
PRI = facility * 8 + severity (info 6, warning 4, critical 2); TIMESTAMP the event's time;
MSGID the event name; the SD-ELEMENT carries every field of the JSON event (param values
escape '"', '\\' and ']', section 6.3.3); MSG is the one-line human text. 32473 is the
enterprise number RFC 5612 reserves for documentation, as the brief asked for; a site with its
own number can change SD_ID. `format: rfc3164` writes the BSD form instead (for a /dev/log
read by systemd-journald, which does not parse RFC 5424), with the JSON event as the message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from arpwatchd.events import Event, Severity, format_ts
from arpwatchd.output import human

log = logging.getLogger("arpwatchd")

APP_NAME = "arpwatchd"
SD_ID = "arpwatchd@32473"
QUEUE_SIZE = 10_000
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
SEND_TIMEOUT = 5.0
TRANSPORTS = ("udp", "tcp", "unix")
FORMATS = ("rfc5424", "rfc3164")

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "solaris-cron": 15, **{f"local{n}": 16 + n for n in range(8)},
}
SEVERITY_CODE = {Severity.INFO: 6, Severity.WARNING: 4, Severity.CRITICAL: 2}
"""RFC 5424 section 6.2.1: 2 critical, 4 warning, 6 informational."""


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    address: str = "/dev/log"
    """A socket path (unix) or host:port ([v6addr]:port) of a collector."""
    transport: str = "unix"
    facility: int = FACILITIES["daemon"]
    format: str = "rfc5424"


def parse_address(text: str, transport: str) -> tuple[str, int] | str:
    """A unix socket path, or (host, port) for udp and tcp.

    Raises:
        ValueError: the address does not fit the transport.
    """
    text = text.strip()
    if transport == "unix":
        if not text.startswith("/"):
            raise ValueError(f"a unix transport needs an absolute socket path: {text!r}")
        return text
    if text.startswith("/"):
        raise ValueError(f"{transport} needs host:port, not a path: {text!r}")
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {text!r} (e.g. 192.0.2.10:514, [2001:db8::1]:6514)")
    return host, int(port)


def parse_facility(text: str) -> int:
    name = text.strip().lower()
    if name not in FACILITIES:
        raise ValueError(f"unknown syslog facility {text!r} (known: {', '.join(FACILITIES)})")
    return FACILITIES[name]


def sd_escape(value: str) -> str:
    """RFC 5424 section 6.3.3: '"', '\\' and ']' are escaped with a backslash in PARAM-VALUE."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(text: str, limit: int) -> str:
    """PRINTUSASCII without spaces, or the NILVALUE "-" (section 6.2)."""
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def structured_data(event: Event, vendor: str | None) -> str:
    params = " ".join(
        f'{name}="{sd_escape(str(value))}"'
        for name, value in event.to_dict(vendor).items()
        if value is not None and name != "ts"
    )
    return f"[{SD_ID} {params}]"


def format_rfc5424(
    event: Event, vendor: str | None, facility: int, hostname: str, procid: int
) -> bytes:
    pri = facility * 8 + SEVERITY_CODE[event.severity]
    header = " ".join([
        f"<{pri}>1", format_ts(event.ts), _header_field(hostname, 255), APP_NAME,
        str(procid), _header_field(event.kind.value, 32),
    ])
    return f"{header} {structured_data(event, vendor)} {human(event)}".encode()


def format_rfc3164(event: Event, vendor: str | None, facility: int, procid: int) -> bytes:
    """BSD syslog as glibc's syslog() writes it to /dev/log: no hostname, local time."""
    pri = facility * 8 + SEVERITY_CODE[event.severity]
    stamp = datetime.fromtimestamp(event.ts).strftime("%b %d %H:%M:%S")
    if stamp[4] == "0":
        stamp = stamp[:4] + " " + stamp[5:]
    return f"<{pri}>{stamp} {APP_NAME}[{procid}]: {event.to_json(vendor)}".encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1 framing for TCP: MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode() + b" " + message


class SyslogSink:
    """Formats events and sends them from a background thread; never blocks, never raises."""


    def counters(self) -> dict[str, int]:
        """For metrics: messages sent, dropped (queue full), send errors."""
        return {"syslog_messages": self.sent, "syslog_messages_dropped": self.dropped,
                "syslog_errors": self.errors}

    def __init__(self, config: SyslogConfig, hostname: str | None = None) -> None:
        self.config = config
        self.target = parse_address(config.address, config.transport)
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.procid = os.getpid()
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_SIZE)
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._logged: set[str] = set()
        self._thread = threading.Thread(target=self._send_loop, name="syslog", daemon=True)
        self._thread.start()

    def write(self, events: list[Event], vendor_of: Callable[[str | None], str | None]) -> None:
        for event in events:
            vendor = vendor_of(event.mac)
            if self.config.format == "rfc3164":
                message = format_rfc3164(event, vendor, self.config.facility, self.procid)
            else:
                message = format_rfc5424(event, vendor, self.config.facility, self.hostname,
                                         self.procid)
            try:
                self._queue.put_nowait(message)
            except queue.Full:
                self.dropped += 1
                self._once("syslog: send queue full (the collector is down or slow); "
                           "dropping messages, counted")

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until everything queued was sent or given up; True if the queue emptied."""
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Sends what is queued for up to `timeout` seconds, then stops the thread."""
        self.flush(timeout)
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)
        self._disconnect()

    def _send_loop(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            message = self._queue.get()
            if message is None:
                self._queue.task_done()
                return
            while True:
                try:
                    self._send(message)
                    self.sent += 1
                    backoff = BACKOFF_FIRST
                    break
                except OSError as exc:
                    self.errors += 1
                    self._disconnect()
                    self._once(f"syslog: cannot send to {self.config.address} "
                               f"({self.config.transport}): {exc}; retrying with backoff")
                    if self._stop.wait(backoff):  # closing: give this message up
                        self.dropped += 1
                        break
                    backoff = min(backoff * 2, BACKOFF_MAX)
            self._queue.task_done()

    def _send(self, message: bytes) -> None:
        sock = self._sock or self._connect()
        if self.config.transport == "tcp":
            sock.sendall(octet_counted(message))
        else:
            sock.send(message)

    def _connect(self) -> socket.socket:
        transport = self.config.transport
        if isinstance(self.target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.settimeout(SEND_TIMEOUT)
                sock.connect(self.target)
            except OSError:
                sock.close()
                raise
        elif transport == "tcp":
            sock = socket.create_connection(self.target, timeout=SEND_TIMEOUT)
        else:
            host, port = self.target
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                raise
        self._sock = sock
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _once(self, message: str) -> None:
        if message not in self._logged and len(self._logged) < 100:
            self._logged.add(message)
            log.warning("%s", message)
