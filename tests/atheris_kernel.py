"""Coverage-guided fuzzing (atheris, libFuzzer) of the sensor's batch entry, run by
tests/test_kernel_atheris.py in a subprocess for a bounded time (issue 12).

Each fuzzer input is decoded into batches of frames as pcapy's `next_batch` hands them over
(`Batch`: frame bytes back to back plus 16-byte records of seconds, microseconds, offset and
length) and fed through `Sensor.feed` three ways: the slow path (fast path disabled), the fast
path's rules in Python, and the C kernel when it is built. The property: no frame errors, and
the same events, counters and bindings all three ways. Any difference raises, which makes
libFuzzer write the input to its artifact path and exit non-zero.

The frames are mostly near-valid ARP from a few hosts, so that claims settle and repeats reach
the fast path and the kernel, then mutated byte by byte, cut, tagged; some are arbitrary bytes
of arbitrary length, some records point anywhere (offsets and lengths past the data: bounds
safety), and times step back and forth, by a little or to any time at all (captures merged
out of order, a clock stepped back). Only the public way frames enter is used (a Sensor, a
decoder, `feed`, `finish`), so the harness keeps working while rules move into the kernel.

Python code under `arpwatchd` is instrumented for coverage; the kernel itself is not (gcc
has no libFuzzer instrumentation), so the fuzzer is guided by what the Python side does
with what the kernel hands back.

Usage: atheris_kernel.py [libFuzzer flags] [corpus dir or crash file ...]
    -max_total_time=S, -runs=N bound a run; a crash file as argument replays that input and
    prints it (`ATHERIS_KERNEL_SHOW=1` prints every input's frames).
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import atheris

with atheris.instrument_imports(include=["arpwatchd"]):
    from arpwatchd.batch import META, Batch
    from arpwatchd.config import Config, parse_config
    from arpwatchd.decode import DLT_EN10MB, DLT_LINUX_SLL
    from arpwatchd.kernel import KERNEL
    from arpwatchd.output import EventWriter
    from arpwatchd.sensor import Sensor

HOSTS = [(bytes.fromhex(f"0200000000{i:02x}"), bytes([10, 0, 0, i])) for i in range(1, 5)]
MACS = [mac for mac, _ in HOSTS] + [b"\x00" * 6, b"\xff" * 6, bytes.fromhex("01005e000001"),
                                     bytes.fromhex("00005e000101")]
IPS = [ip for _, ip in HOSTS] + [b"\x00" * 4, b"\xff" * 4, bytes([224, 0, 0, 1]),
                                  bytes([127, 0, 0, 1]), bytes([172, 16, 0, 9])]
STEPS = [0.0, *[0.0001, 0.001, 0.3, 1.0] * 4, 3.0, 6.0, 12.0, 70.0, 400.0, -0.5, -30.0]
CONFIGS: list[Config] = [
    parse_config("hold: 5s\n"),
    # small windows and tables: alarms, evictions and rolled windows among the repeats
    parse_config("hold: 5s\ninactive_after: 60s\nflood: {frames: 12, window: 10s}\n"
                 "scan: {targets: 4, window: 10s}\nlimits: {max_pending: 8, max_senders: 6}\n"),
]
EPOCH = 1_700_000_000
MAX_FRAMES = 200


def _exchange(host: int) -> list[bytes]:
    """A host's broadcast request for the gateway (host 0) and the gateway's unicast answer."""
    (gw, gw_ip), (mac, ip) = HOSTS[0], HOSTS[host]
    pad = b"\0" * 18
    ask = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac
           + ip + b"\0" * 6 + gw_ip + pad)
    answer = (mac + gw + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + gw + gw_ip
              + mac + ip + pad)
    return [ask, answer]


LAN = [frame for host in range(1, len(HOSTS)) for frame in _exchange(host)]
"""Every input starts with these exchanges three times over (so claims settle and the memo
knows them) and draws many of its frames from them."""
LAST_SECOND = 2**32 - 1
BREAK = os.environ.get("ATHERIS_KERNEL_BREAK") == "1"
"""The harness's own test: the kernel run loses its last event, so the property must fail."""


@dataclass
class Case:
    """One input, decoded: the configuration, link type and batches (interface, batch)."""

    config: int
    linktype: int
    batches: list[tuple[str, Batch]] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"config {self.config}, link type {self.linktype}, "
                 f"kernel {'built' if KERNEL is not None else 'absent'}"]
        for n, (interface, batch) in enumerate(self.batches):
            lines.append(f"batch {n} on {interface}: {len(batch.data)} data bytes")
            for sec, usec, offset, length in META.iter_unpack(batch.meta):
                frame = batch.data[offset : offset + length]
                lines.append(f"  {sec}.{usec:06d} off {offset} len {length}: {frame.hex()}")
        return "\n".join(lines)


def _arp(fdp: atheris.FuzzedDataProvider, history: list[bytes], sll: bool) -> bytes:
    """A frame: a repeat, arbitrary bytes, or an ARP frame of the LAN, maybe mutated."""
    kind = fdp.ConsumeIntInRange(0, 15)
    if kind <= 6:  # the LAN's own exchanges again: what the fast path and the kernel prove
        return LAN[fdp.ConsumeIntInRange(0, len(LAN) - 1)]
    if kind <= 9 and history:  # any earlier frame again, mostly a recent one
        recent = 0 if kind == 7 else max(0, len(history) - 6)
        return history[fdp.ConsumeIntInRange(recent, len(history) - 1)]
    if kind == 10:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 90))
    sender = fdp.ConsumeIntInRange(0, len(HOSTS) - 1)
    target = fdp.ConsumeIntInRange(0, len(HOSTS) - 1)
    sha, spa = HOSTS[sender]
    mac, tpa = HOSTS[target]
    shape = (0, 0, 0, 1, 1, 1, 2, 3)[fdp.ConsumeIntInRange(0, 7)]
    if shape == 0:  # broadcast request
        eth_dst, op, tha = b"\xff" * 6, 1, b"\x00" * 6
    elif shape == 1:  # unicast reply to the target
        eth_dst, op, tha = mac, 2, mac
    elif shape == 2:  # announcement
        eth_dst, op, tha, tpa = b"\xff" * 6, fdp.ConsumeIntInRange(1, 2), b"\x00" * 6, spa
    else:  # any field from the pools
        eth_dst = MACS[fdp.ConsumeIntInRange(0, len(MACS) - 1)]
        op = fdp.ConsumeIntInRange(0, 4)
        sha = MACS[fdp.ConsumeIntInRange(0, len(MACS) - 1)]
        spa = IPS[fdp.ConsumeIntInRange(0, len(IPS) - 1)]
        tha = MACS[fdp.ConsumeIntInRange(0, len(MACS) - 1)]
        tpa = IPS[fdp.ConsumeIntInRange(0, len(IPS) - 1)]
    tags = b""
    if fdp.ConsumeIntInRange(0, 5) == 0:
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            tags += struct.pack("!HH", (0x8100, 0x88A8, 0x9100)[fdp.ConsumeIntInRange(0, 2)],
                                fdp.ConsumeIntInRange(0, 0xFFFF))
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa + b"\0" * 18
    raw = bytearray(eth_dst + sha + tags + b"\x08\x06" + body)
    if sll:  # the Linux cooked (v1) header: packet type, ARPHRD_ETHER, address length
        raw = bytearray(struct.pack("!HHH", 1 if eth_dst == b"\xff" * 6 else 0, 1, 6) + sha
                        + b"\0\0" + tags + b"\x08\x06" + body)
    for _ in range(fdp.ConsumeIntInRange(0, 9) // 8):  # now and then one or two bytes
        raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] = fdp.ConsumeIntInRange(0, 255)
    if fdp.ConsumeIntInRange(0, 11) == 0:
        del raw[fdp.ConsumeIntInRange(0, len(raw)):]
    return bytes(raw)


def decode_input(data: bytes) -> Case:
    fdp = atheris.FuzzedDataProvider(data)
    case = Case(fdp.ConsumeIntInRange(0, len(CONFIGS) - 1),
                DLT_LINUX_SLL if fdp.ConsumeIntInRange(0, 5) == 0 else DLT_EN10MB)
    history: list[bytes] = []
    ts = float(EPOCH)
    frames = [(ts + 0.01 * i, raw) for i, raw in enumerate(LAN * 3)]
    ts = frames[-1][0]
    count = 0
    while fdp.remaining_bytes() and count < MAX_FRAMES:
        if fdp.ConsumeIntInRange(0, 63) == 0:
            # any time, up to the end of pcap's: far ahead, or far back (captures merged or
            # replayed out of order, a clock stepped back by NTP, two interfaces' frames)
            ts = float(fdp.ConsumeIntInRange(0, LAST_SECOND))
        else:
            ts = min(max(0.0, ts + STEPS[fdp.ConsumeIntInRange(0, len(STEPS) - 1)]),
                     float(LAST_SECOND))
        raw = _arp(fdp, history, case.linktype == DLT_LINUX_SLL)
        history.append(raw)
        frames.append((ts, raw))
        count += 1
        if fdp.ConsumeIntInRange(0, 4) == 0 or not fdp.remaining_bytes():
            case.batches.append((("eth0", "eth1")[fdp.ConsumeIntInRange(0, 3) // 3],
                                 _batch(frames, fdp)))
            frames = []
    if frames:
        case.batches.append(("eth0", _batch(frames, fdp)))
    return case


def _batch(frames: list[tuple[float, bytes]], fdp: atheris.FuzzedDataProvider) -> Batch:
    """The frames back to back; now and then a record pointing anywhere (past the data)."""
    data = b"".join(raw for _, raw in frames)
    meta = b""
    offset = 0
    for ts, raw in frames:
        sec = int(ts)
        usec = min(round((ts - int(ts)) * 1e6), 999_999)
        start, length = offset, len(raw)
        if fdp.ConsumeIntInRange(0, 31) == 0:
            start = fdp.ConsumeIntInRange(0, 2**32 - 1) if fdp.ConsumeBool() else \
                fdp.ConsumeIntInRange(0, len(data) + 8)
            length = fdp.ConsumeIntInRange(0, 2**32 - 1) if fdp.ConsumeBool() else \
                fdp.ConsumeIntInRange(0, 100)
        meta += META.pack(sec, usec, start, length)
        offset += len(raw)
    return Batch(data, meta)


WRITER = EventWriter(os.devnull)
WAYS = ["slow", "python fast path"] + (["C kernel"] if KERNEL is not None else [])
HITS = {"kernel": 0, "frames": 0, "inputs": 0}
STATS = os.environ.get("ATHERIS_KERNEL_STATS")
"""A file rewritten every 100 inputs with what was exercised (libFuzzer's exit skips
Python's atexit): inputs, frames fed to the kernel run, frames the fast path proved there."""


def run(case: Case, way: str) -> tuple[object, ...]:
    """Events, counters and bindings after feeding the case's batches, then the end."""
    sensor = Sensor(CONFIGS[case.config], WRITER)
    sensor.fastpath.enabled = way != "slow"
    if way != "C kernel":
        sensor.fastpath.kernel = None
    sensor.emitted = []
    decoders = {name: sensor.decoder(name, case.linktype) for name in ("eth0", "eth1")}
    for interface, batch in case.batches:
        sensor.feed(decoders[interface], batch)
    sensor.finish()
    if BREAK and way == WAYS[-1] and sensor.emitted:
        sensor.emitted.pop()
    if way == "C kernel":
        HITS["kernel"] += sensor.fastpath.request_hits + sensor.fastpath.reply_hits
        HITS["frames"] += sum(len(b) for _, b in case.batches)
    bindings = sorted(sensor.tracker.bindings(), key=lambda b: (b.interface, b.vlan or 0, b.ip))
    return (sensor.stats.frame_errors, sensor.emitted, dict(sensor.stats.packets),
            dict(sensor.stats.skipped), bindings)


def _differences(a: tuple[object, ...], b: tuple[object, ...]) -> Iterator[str]:
    for name, x, y in zip(("frame errors", "events", "packets", "skipped", "bindings"), a, b,
                          strict=True):
        if x != y:
            if isinstance(x, list) and isinstance(y, list):
                at = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q),
                          min(len(x), len(y)))
                yield (f"{name} differ at #{at} (lengths {len(x)} and {len(y)}):\n"
                       f"    {x[at] if at < len(x) else '(none)'}\n"
                       f"    {y[at] if at < len(y) else '(none)'}")
            else:
                yield f"{name}: {x} != {y}"


def test_one_input(data: bytes) -> None:
    HITS["inputs"] += 1
    if HITS["inputs"] % 100 == 1:
        _report()
    case = decode_input(data)
    if os.environ.get("ATHERIS_KERNEL_SHOW"):
        print(case.describe(), flush=True)
    slow = run(case, "slow")
    problems = [] if slow[0] == 0 else [f"slow path: {slow[0]} frame errors"]
    for way in WAYS[1:]:
        other = run(case, way)
        problems += [f"{way} vs slow path: {d}" for d in _differences(other, slow)]
    if problems:
        raise AssertionError("paths disagree\n" + "\n".join(problems) + "\ninput:\n"
                             + case.describe())


def _report() -> None:
    if STATS:
        with open(STATS, "w") as out:
            out.write(f"{HITS['inputs']} {HITS['frames']} {HITS['kernel']} {len(WAYS)}\n")


def main() -> None:
    logging.getLogger("arpwatchd").disabled = True
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
