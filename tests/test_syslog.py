"""Syslog output: RFC 5424 messages with structured data, over UDP, TCP (RFC 6587 octet
counting) and a unix datagram socket, received by real listening sockets and parsed back.

Why: a collector (rsyslog, syslog-ng, a SIEM) must get every field of an event as structured
data it can index, escaped per RFC 5424 so an odd interface or vendor name cannot break a
message, framed so that TCP streams split back into messages, and a dead collector must never
stall the sensor.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from arpwatchd.cli import main
from arpwatchd.config import ConfigError, parse_config
from arpwatchd.events import Event, EventKind
from arpwatchd.output import EventWriter
from arpwatchd.syslog import (
    SD_ID,
    SyslogConfig,
    SyslogSink,
    format_rfc3164,
    format_rfc5424,
    octet_counted,
    sd_escape,
)

ROOT = Path(__file__).resolve().parents[1]
CONFLICT = Event(1709542860.000200, EventKind.CONFLICT, "eth0", 10, "192.168.10.70",
                 "02:00:00:00:70:01", previous_mac="02:00:00:00:70:02", reason="both_active")
NEW = Event(1709542800.2, EventKind.NEW_STATION, "eth0", None, "192.168.10.1",
            "00:1c:7f:00:00:01")
WEIRD = Event(1709542900.0, EventKind.CHANGED_MAC, 'br"0]\\x', None, "10.0.0.1",
              "02:00:00:00:00:01", previous_mac="02:00:00:00:00:02")

_HEADER = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<rest>.*)$", re.DOTALL)
_PARAM = re.compile(r'\s*([^= \]"]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')


def parse(message: bytes) -> dict[str, object]:
    """An RFC 5424 message back into header fields, SD params (unescaped) and MSG."""
    match = _HEADER.match(message.decode())
    assert match, message
    rest = match["rest"]
    assert rest.startswith(f"[{SD_ID}")
    pos = len(SD_ID) + 1
    params: dict[str, str] = {}
    while rest[pos] != "]":
        param = _PARAM.match(rest, pos)
        assert param, rest[pos:]
        params[param[1]] = re.sub(r"\\([\"\\\]])", r"\1", param[2])
        pos = param.end()
    assert rest[pos + 1] == " "
    return {**{k: match[k] for k in ("pri", "ts", "host", "app", "procid", "msgid")},
            "sd": params, "msg": rest[pos + 2:]}


def test_message_layout_and_severity_mapping() -> None:
    got = parse(format_rfc5424(CONFLICT, None, facility=3, hostname="sensor1", procid=42))
    assert got == {
        "pri": "26", "ts": "2024-03-04T09:01:00.000200Z", "host": "sensor1",
        "app": "arpwatchd", "procid": "42", "msgid": "conflict",
        "sd": {"event": "conflict", "severity": "critical", "interface": "eth0", "vlan": "10",
               "ip": "192.168.10.70", "mac": "02:00:00:00:70:01",
               "previous_mac": "02:00:00:00:70:02", "reason": "both_active",
               "family": "ipv4"},
        "msg": "conflict eth0.10 192.168.10.70 02:00:00:00:70:01 (other 02:00:00:00:70:02) "
               "reason=both_active",
    }
    info = parse(format_rfc5424(NEW, "Check Point", facility=16, hostname="h", procid=1))
    assert info["pri"] == str(16 * 8 + 6)
    assert info["sd"] == {"event": "new_station", "severity": "info", "interface": "eth0",
                          "ip": "192.168.10.1", "mac": "00:1c:7f:00:00:01", "family": "ipv4",
                          "vendor": "Check Point"}  # vlan null is left out
    warning = parse(format_rfc5424(WEIRD, None, facility=3, hostname="h", procid=1))
    assert warning["pri"] == str(3 * 8 + 4)


def test_param_values_are_escaped() -> None:
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    raw = format_rfc5424(WEIRD, 'Vendor "X" [lab]', facility=3, hostname="h o s t", procid=1)
    assert b'interface="br\\"0\\]\\\\x"' in raw
    got = parse(raw)
    assert got["host"] == "host"  # header fields are printable ASCII without spaces
    sd = got["sd"]
    assert isinstance(sd, dict)
    assert sd["interface"] == 'br"0]\\x'
    assert sd["vendor"] == 'Vendor "X" [lab]'


def test_rfc3164_for_journald() -> None:
    line = format_rfc3164(CONFLICT, None, facility=3, procid=7).decode()
    assert re.match(r"^<26>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d arpwatchd\[7\]: \{", line)
    assert line.endswith('"reason":"both_active"}')


def test_octet_counting() -> None:
    assert octet_counted(b"<14>1 abc") == b"9 <14>1 abc"


def _sink(address: str, transport: str) -> SyslogSink:
    return SyslogSink(SyslogConfig(address=address, transport=transport), hostname="sensor1")


def test_udp(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        sink = _sink(f"127.0.0.1:{listener.getsockname()[1]}", "udp")
        sink.write([NEW, CONFLICT], lambda mac: None)
        got = [parse(listener.recv(65535)) for _ in range(2)]
        sink.close()
    assert [m["msgid"] for m in got] == ["new_station", "conflict"]
    assert sink.sent == 2


def test_tcp_octet_counted_stream() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)
        received = bytearray()

        def accept() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    received.extend(chunk)

        thread = threading.Thread(target=accept)
        thread.start()
        sink = _sink(f"127.0.0.1:{listener.getsockname()[1]}", "tcp")
        sink.write([NEW, CONFLICT, WEIRD], lambda mac: None)
        assert sink.flush(5)
        sink.close()
        thread.join(5)
    messages = []
    data = bytes(received)
    while data:
        length, _, data = data.partition(b" ")
        messages.append(data[:int(length)])
        data = data[int(length):]
    assert [parse(m)["msgid"] for m in messages] == ["new_station", "conflict", "changed_mac"]


def test_unix_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        sink = _sink(path, "unix")
        sink.write([CONFLICT], lambda mac: "Vendor")
        got = parse(listener.recv(65535))
        sink.close()
    assert got["pri"] == "26"
    sd = got["sd"]
    assert isinstance(sd, dict)
    assert sd["vendor"] == "Vendor"


def test_dead_collector_never_blocks_or_raises(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = _sink(f"127.0.0.1:{port}", "tcp")
    with caplog.at_level(logging.WARNING, logger="arpwatchd"):
        began = time.monotonic()
        for _ in range(50):
            sink.write([CONFLICT], lambda mac: None)
        assert time.monotonic() - began < 0.5
        sink.close(timeout=0.5)
    assert sink.sent == 0
    assert sink.errors >= 1
    warnings = [r.getMessage() for r in caplog.records if "cannot send" in r.getMessage()]
    assert len(warnings) == 1


CONFIGS = {
    "output: {syslog: {}}": ("/dev/log", "unix", 3, "rfc5424"),
    "output: {syslog: {address: '192.0.2.1:514'}}": ("192.0.2.1:514", "udp", 3, "rfc5424"),
    "output: {syslog: {address: '[2001:db8::1]:6514', transport: tcp, facility: local7}}":
        ("[2001:db8::1]:6514", "tcp", 23, "rfc5424"),
    "output: {syslog: {address: /run/log.sock, format: rfc3164, facility: AUTH}}":
        ("/run/log.sock", "unix", 4, "rfc3164"),
}


@pytest.mark.parametrize("text", CONFIGS)
def test_config(text: str) -> None:
    syslog = parse_config(text).output.syslog
    assert syslog is not None
    assert (syslog.address, syslog.transport, syslog.facility, syslog.format) == CONFIGS[text]


@pytest.mark.parametrize(("text", "message"), [
    ("output: {syslog: {transport: tcp}}", "syslog over tcp needs 'address'"),
    ("output: {syslog: {address: 'loghost:514', transport: unix}}", "absolute socket path"),
    ("output: {syslog: {address: /dev/log, transport: udp}}", "needs host:port"),
    ("output: {syslog: {address: 'loghost'}}", "not host:port"),
    ("output: {syslog: {address: 'loghost:99999'}}", "not host:port"),
    ("output: {syslog: {transport: sctp}}", "expected one of udp, tcp, unix"),
    ("output: {syslog: {facility: mail2}}", "unknown syslog facility"),
    ("output: {syslog: {format: json}}", "expected one of rfc5424, rfc3164"),
    ("output: {syslog: {port: 514}}", "unknown key 'port'"),
])
def test_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, source="site.yml")


def test_replay_sends_its_events_to_syslog(tmp_path: Path) -> None:
    """Wired end to end: JSON lines and syslog get the same events."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        config = tmp_path / "site.yml"
        config.write_text(f"output:\n  syslog: {{address: '127.0.0.1:"
                          f"{listener.getsockname()[1]}', facility: local0}}\n")
        events = tmp_path / "events.jsonl"
        assert main(["replay", str(ROOT / "pcaps" / "duplicate-ip.pcap"), "-c", str(config),
                     "--events", str(events), "-q"]) == 0
        expected = len(events.read_text().splitlines())
        got = [parse(listener.recv(65535)) for _ in range(expected)]
    assert [m["msgid"] for m in got][-2:] == ["conflict", "conflict_resolved"]
    assert got[-2]["pri"] == str(16 * 8 + 2)


def test_replaced_sinks_keep_their_counts_in_the_metrics() -> None:
    """A reload with a new collector (`EventWriter.replace_sinks`): events go to the new one,
    and the counters the metrics export go on from the old one's, never backwards."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as old, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as new:
        for listener in (old, new):
            listener.bind(("127.0.0.1", 0))
            listener.settimeout(5)
        writer = EventWriter(os.devnull, sinks=[_sink(f"127.0.0.1:{old.getsockname()[1]}",
                                                      "udp")])
        writer.write([NEW])
        assert parse(old.recv(65535))["msgid"] == "new_station"
        writer.replace_sinks([_sink(f"127.0.0.1:{new.getsockname()[1]}", "udp")])
        writer.write([CONFLICT])
        assert parse(new.recv(65535))["msgid"] == "conflict"
        deadline = time.monotonic() + 5
        while writer.counters()["syslog_messages"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        writer.close()
    assert writer.counters()["syslog_messages"] == 2
