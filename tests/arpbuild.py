"""Test helpers: real frames through the real decoder, as capture would hand them to the tracker."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from arpwatchd.addresses import ZERO_MAC
from arpwatchd.capture import FileCapture
from arpwatchd.config import Config
from arpwatchd.daemon import replay
from arpwatchd.decode import ArpFrame, Decoder
from arpwatchd.events import Event
from arpwatchd.frames import REPLY, REQUEST, arp_frame
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.tracker import Tracker

BCAST = "ff:ff:ff:ff:ff:ff"
_DECODERS: dict[str, Decoder] = {}


def decode(frame: bytes, interface: str = "eth0") -> ArpFrame:
    decoder = _DECODERS.setdefault(interface, Decoder(interface, 1))
    result = decoder.decode(frame)
    assert isinstance(result, ArpFrame), result
    return result


def request(sha: str, spa: str, tpa: str, *, vlan: int | None = None,
            eth_src: str | None = None, tha: str | bytes = ZERO_MAC,
            interface: str = "eth0") -> ArpFrame:
    return decode(arp_frame(REQUEST, sha, spa, tha, tpa, vlan=vlan, eth_src=eth_src), interface)


def reply(sha: str, spa: str, tha: str, tpa: str, *, vlan: int | None = None,
          eth_src: str | None = None, interface: str = "eth0") -> ArpFrame:
    return decode(arp_frame(REPLY, sha, spa, tha, tpa, vlan=vlan, eth_src=eth_src,
                            eth_dst=tha), interface)


def garp(sha: str, ip: str, *, vlan: int | None = None, op: int = REQUEST,
         tha: str | bytes = BCAST, interface: str = "eth0") -> ArpFrame:
    """Gratuitous ARP as arping -U (request, target MAC broadcast) or -A (op=REPLY, tha=sha)."""
    return decode(arp_frame(op, sha, ip, tha, ip, vlan=vlan), interface)


def probe(sha: str, tpa: str, *, vlan: int | None = None) -> ArpFrame:
    return decode(arp_frame(REQUEST, sha, 0, ZERO_MAC, tpa, vlan=vlan))


def feed(tracker: Tracker, *steps: tuple[float, ArpFrame]) -> list[Event]:
    events: list[Event] = []
    for ts, frame in steps:
        events.extend(tracker.observe(frame, ts))
    return events


def brief(events: list[Event]) -> list[tuple[object, ...]]:
    """(event, ip, mac, previous_mac, reason) for exact comparisons."""
    return [(e.kind.value, e.ip, e.mac, e.previous_mac, e.reason) for e in events]


def read_arp_frames(path: Path) -> list[tuple[float, ArpFrame]]:
    """Every decodable ARP frame of a capture file, with its packet time."""
    capture = FileCapture(str(path))
    decoder = Decoder("replay", capture.linktype)
    out = []
    while batch := capture.read_batch(512):
        for ts, raw in batch.frames():
            frame = decoder.decode(raw)
            if isinstance(frame, ArpFrame):
                out.append((ts, frame))
    capture.close()
    return out


def replay_quietly(path: Path, config: Config, fast: bool = True) -> Sensor:
    """Replays a capture through a real Sensor, as `arpwatchd replay` does, with the human log
    muted; `sensor.emitted` holds the events. Fails on a damaged file or a frame error.
    `fast` False sends every frame down the slow path (as without the C kernel)."""
    writer = EventWriter(os.devnull)
    sensor = Sensor(config, writer)
    sensor.fastpath.enabled = fast
    sensor.emitted = []
    logging.getLogger("arpwatchd").disabled = True
    try:
        errors = replay(sensor, [str(path)])
    finally:
        logging.getLogger("arpwatchd").disabled = False
        writer.close()
    assert errors == [], errors
    assert sensor.stats.frame_errors == 0, "a frame raised inside the sensor"
    return sensor
