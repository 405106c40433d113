"""The fast path against the slow path on hostile frames: a frame may skip dpkt only when the
slow path would give exactly the same result (events, counters, bindings).

The fast path proves repeats from raw bytes at fixed offsets, so every field it does not
compare is a way for a crafted frame to be taken for a repeat (issue 15: an opcode 3 frame
was bound as a reply). Sequences here are mutations of a small LAN's valid frames, so that
steady claims form and mutated frames meet them: opcode, hardware and protocol types and
lengths, Ethernet type and VLAN tag stacks, truncation, padding, mismatched Ethernet source,
invalid sender addresses; and packet time steps back as well as forward. Each sequence runs
two ways: the slow path (every frame decoded and tracked, as without the kernel) and the C
kernel's repeats. Bounded (`max_examples`) so it runs in CI in about 30 s.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arpwatchd.addresses import BROADCAST_MAC, ZERO_MAC
from arpwatchd.batch import META, Batch
from arpwatchd.config import Config, parse_config
from arpwatchd.decode import DLT_EN10MB, DLT_LINUX_SLL
from arpwatchd.kernel import KERNEL
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.tracker import BindingRecord

HOSTS = [(bytes.fromhex(f"02000000000{i}"), 0x0A000001 + i) for i in range(1, 4)]
OTHER_MAC = bytes.fromhex("020000000099")
CONFIGS = [
    parse_config("hold: 5s\n"),
    # small windows and tables: alarms, evictions and rolled windows among the repeats
    parse_config("hold: 5s\ninactive_after: 60s\nflood: {frames: 12, window: 10s}\n"
                 "scan: {targets: 4, window: 10s}\nlimits: {max_pending: 8, max_senders: 6}\n"),
]
EPOCH = 1_700_000_000


@dataclass(frozen=True)
class Arp:
    """One frame's fields, each free to be wrong."""

    op: int = 1
    htype: int = 1
    ptype: int = 0x0800
    hlen: int = 6
    plen: int = 4
    sha: bytes = HOSTS[0][0]
    spa: int = HOSTS[0][1]
    tha: bytes = ZERO_MAC
    tpa: int = HOSTS[1][1]
    eth_src: bytes | None = None
    eth_dst: bytes = BROADCAST_MAC
    tags: tuple[tuple[int, int], ...] = ()
    ethertype: int = 0x0806
    cut: int | None = None
    pad: int = 18

    def ethernet(self) -> bytes:
        src = self.sha if self.eth_src is None else self.eth_src
        tags = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in self.tags)
        return self.eth_dst + src + tags + struct.pack("!H", self.ethertype) + self.body()

    def sll(self) -> bytes:
        """The Linux cooked (v1) header: type, ARPHRD_ETHER, address length, source."""
        src = self.sha if self.eth_src is None else self.eth_src
        tags = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in self.tags)
        head = struct.pack("!HHH", 0 if self.eth_dst != BROADCAST_MAC else 1, 1, 6)
        return head + src + b"\0\0" + tags + struct.pack("!H", self.ethertype) + self.body()

    def body(self) -> bytes:
        arp = struct.pack("!HHBBH", self.htype, self.ptype, self.hlen, self.plen, self.op)
        arp += self.sha + struct.pack("!I", self.spa) + self.tha + struct.pack("!I", self.tpa)
        body = arp + b"\0" * self.pad
        return body if self.cut is None else body[: self.cut]


def _valid() -> st.SearchStrategy[list[Arp]]:
    """What hosts of the LAN send: a request, alone or answered, or an unasked reply."""
    def build(shape: int, sender: int, target: int, tha: int, vid: int | None) -> list[Arp]:
        (sha, spa), (mac, tpa) = HOSTS[sender], HOSTS[target]
        tags = () if vid is None else ((0x8100, vid),)
        ask = Arp(sha=sha, spa=spa, tha=(ZERO_MAC, BROADCAST_MAC, mac)[tha], tpa=tpa,
                  tags=tags)
        answer = Arp(op=2, sha=mac, spa=tpa, tha=sha, tpa=spa, eth_dst=sha, tags=tags)
        return [[ask], [ask, answer], [answer]][shape]

    n = len(HOSTS) - 1
    return st.builds(build, st.sampled_from([0, 1, 1, 2]), st.integers(0, n),
                     st.integers(0, n), st.sampled_from([0, 0, 2]),
                     st.sampled_from([None, None, None, None, None, 7, 0]))


TAG_STACKS = st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100, 0x9200]),
                                st.sampled_from([0, 7, 300, 0xF007])), min_size=1, max_size=6)
MACS = st.sampled_from([ZERO_MAC, BROADCAST_MAC, bytes.fromhex("01005e000001"), OTHER_MAC,
                        *(mac for mac, _ in HOSTS)])
IPS = st.sampled_from([0, 0xFFFFFFFF, 0xE0000001, 0x7F000001, 0x00000005,
                       *(ip for _, ip in HOSTS)])

MUTATIONS: dict[str, st.SearchStrategy[object]] = {
    "op": st.sampled_from([0, 3, 4, 0x0101, 0x0102, 0x0201, 0x0202, 0xFFFF]),
    "htype": st.sampled_from([0, 6, 0x0100, 0xFFFF]),
    "ptype": st.sampled_from([0x86DD, 0x0806, 0x0008, 0x0801]),
    "hlen": st.sampled_from([0, 4, 8, 0x60]),
    "plen": st.sampled_from([0, 6, 16, 0x40]),
    "sha": MACS,
    "spa": IPS,
    "tha": MACS,
    "tpa": IPS,
    "eth_src": MACS,
    "eth_dst": MACS,
    "tags": TAG_STACKS.map(tuple),
    "ethertype": st.sampled_from([0x0800, 0x8035, 0x8100, 0x88A8, 0x0608]),
    "cut": st.integers(0, 28),
    "pad": st.sampled_from([0, 1, 100]),
}

FIELDS = sorted(MUTATIONS)
"""The ARP header's fields come up more often: their checks are the ones a fast path skips."""
FIELDS += ["op", "op", "op", "op", "htype", "ptype", "hlen", "plen"]


STEPS = [0.0, 0.001, 0.001, 0.3, 1.0, 3.0, 6.0, 12.0, 70.0, -0.5, -30.0, -3600.0]
"""Packet time between steps. It steps back too: two taps merged (a little), captures merged
or replayed out of order, a live clock stepped back by NTP (an hour: past every window, so
a binding first seen after the step meets deferred refreshes and `inactive_after`)."""


@st.composite
def frames(draw: st.DrawFn) -> list[tuple[float, Arp]]:
    """A sequence of valid frames, repeats of earlier ones, and mutations of both; time
    steps back now and then (`STEPS`)."""
    out: list[tuple[float, Arp]] = []
    ts = float(EPOCH)
    for _ in range(draw(st.integers(1, 30))):
        ts += draw(st.sampled_from(STEPS))
        roll = draw(st.integers(0, 9))
        group = [out[draw(st.integers(0, len(out) - 1))][1]] if out and roll < 3 else draw(
            _valid())
        if roll >= 6 or (out and roll == 0):
            index = draw(st.integers(0, len(group) - 1))
            fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True))
            group[index] = replace(group[index], **{f: draw(MUTATIONS[f]) for f in fields})
        out.extend((ts + 0.0001 * i, frame) for i, frame in enumerate(group))
    return out


def _batches(raws: list[tuple[float, bytes]], splits: list[int]) -> Iterator[Batch]:
    cuts = sorted({0, len(raws), *(s % (len(raws) + 1) for s in splits)})
    for start, end in pairwise(cuts):
        data, meta, offset = b"", b"", 0
        for ts, raw in raws[start:end]:
            sec = int(ts)
            meta += META.pack(sec, round((ts - sec) * 1e6), offset, len(raw))
            data += raw
            offset += len(raw)
        yield Batch(data, meta)


def run(raws: list[tuple[float, bytes]], linktype: int, splits: list[int], fast: bool,
        config: Config = CONFIGS[0]) -> tuple[object, ...]:
    """Events, counters and bindings after feeding `raws` in batches, then the end (`fast`
    False: every frame down the slow path)."""
    sensor = Sensor(config, EventWriter(os.devnull))
    sensor.fastpath.enabled = fast
    sensor.emitted = []
    decoder = sensor.decoder("eth0", linktype)
    for batch in _batches(raws, splits):
        sensor.feed(decoder, batch)
    sensor.finish()
    assert sensor.stats.frame_errors == 0
    def key(b: BindingRecord) -> tuple[int, int]:
        return (b.vlan or 0, b.ip)

    return (sensor.emitted, dict(sensor.stats.packets), dict(sensor.stats.skipped),
            sorted(sensor.tracker.bindings(), key=key))


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.getLogger("arpwatchd").disabled = True
    yield
    logging.getLogger("arpwatchd").disabled = False


def compare(steps: list[tuple[float, Arp]], linktype: int = DLT_EN10MB,
            splits: tuple[int, ...] = (), config: Config = CONFIGS[0]) -> None:
    build = Arp.ethernet if linktype == DLT_EN10MB else Arp.sll
    raws = [(ts, build(frame)) for ts, frame in steps]
    slow = run(raws, linktype, list(splits), False, config)
    if KERNEL is not None:
        assert run(raws, linktype, list(splits), True, config) == slow


@settings(max_examples=int(os.environ.get("FASTPATH_FUZZ_EXAMPLES", "600")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frames(), st.sampled_from([DLT_EN10MB, DLT_EN10MB, DLT_EN10MB, DLT_LINUX_SLL]),
       st.lists(st.integers(0, 60), max_size=3), st.sampled_from(CONFIGS))
def test_fast_and_slow_paths_agree_on_mutated_frames(
    steps: list[tuple[float, Arp]], linktype: int, splits: list[int], config: Config
) -> None:
    compare(steps, linktype, tuple(splits), config)


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("op", 3, "bad_opcode"),  # issue 15: bound as a reply by the fast path
    ("op", 0, "bad_opcode"),
    ("op", 0x0102, "bad_opcode"),
    ("htype", 0x0100, "not_ethernet_ipv4"),
    ("ptype", 0x86DD, "not_ethernet_ipv4"),
    ("hlen", 8, "not_ethernet_ipv4"),
    ("plen", 16, "not_ethernet_ipv4"),
    ("cut", 27, "truncated"),
    ("eth_src", OTHER_MAC, None),
])
def test_a_known_claims_wrong_frame_is_not_taken_for_a_repeat(
    field: str, value: object, problem: str | None
) -> None:
    """A host with a settled claim, asked by the gateway, answers with one field wrong: the
    frame is the slow path's to judge (invalid_arp, or an ethernet mismatch), never a refresh
    of the host's binding, though its sender's half matches a remembered claim's bytes."""
    (gw, gw_ip), (host, host_ip), (_, other_ip) = HOSTS
    steps = [
        (EPOCH, Arp(sha=host, spa=host_ip, tpa=other_ip)),  # the host's claim, remembered
        (EPOCH + 1.0, Arp(sha=gw, spa=gw_ip, tpa=host_ip)),
        (EPOCH + 1.001, replace(Arp(op=2, sha=host, spa=host_ip, tha=gw, tpa=gw_ip,
                                    eth_dst=gw), **{field: value})),
    ]
    compare(steps)
    events, _, skipped, bindings = run(
        [(ts, frame.ethernet()) for ts, frame in steps], DLT_EN10MB, [], fast=True)
    assert isinstance(events, list) and isinstance(bindings, list)
    if problem is not None:
        assert [e.reason for e in events if e.kind == "invalid_arp"] == [problem]
        assert skipped == {("eth0", problem): 1}
        assert next(b.last_seen for b in bindings if b.ip == host_ip) == EPOCH
    else:
        assert [e.kind.value for e in events][-1] == "ethernet_mismatch"


def test_the_same_bytes_under_another_link_type_are_decoded_again() -> None:
    """One interface name, two link types (`arpwatchd replay -i NAME` of a Linux cooked and
    an Ethernet file): bytes that are a steady request as Linux cooked are, read as Ethernet,
    an ARP header with hardware type 0x0806 (invalid). The second reading must be the slow
    path's, not a repeat of the first."""
    (host, host_ip), (_, other_ip) = HOSTS[0], HOSTS[1]
    # the cooked header's two spare address bytes hold 0x0806: the Ethernet type when the
    # same bytes are read as Ethernet (destination 00:00:00:01:00:06, source the host's MAC)
    sll = Arp(sha=host, spa=host_ip, tpa=other_ip).sll()
    raw = sll[:12] + b"\x08\x06" + sll[14:]
    sensor = Sensor(CONFIGS[0], EventWriter(os.devnull))
    sensor.emitted = []
    for i, linktype in enumerate((DLT_LINUX_SLL, DLT_LINUX_SLL, DLT_EN10MB)):
        sensor.feed(sensor.decoder("eth0", linktype), next(_batches([(EPOCH + i, raw)], [])))
    sensor.finish()
    assert [e.kind.value for e in sensor.emitted] == ["new_station", "invalid_arp"]
    assert dict(sensor.stats.skipped) == {("eth0", "not_ethernet_ipv4"): 1}


def test_a_repeat_stepping_back_in_time_does_not_lower_last_seen() -> None:
    """A capture merged from two taps can step back a little. The slow path keeps a binding's
    last_seen at the latest time seen; a repeat recorded by the fast path after a later
    frame of the same binding must not pull it back (found by the fuzzer above)."""
    (a, a_ip), (b, b_ip) = HOSTS[0], HOSTS[1]
    steps = [
        (EPOCH, Arp(sha=a, spa=a_ip, tpa=b_ip)),
        (EPOCH, Arp(sha=b, spa=b_ip, tpa=a_ip)),
        (EPOCH + 0.5, Arp(op=2, sha=b, spa=b_ip, tha=a, tpa=a_ip, eth_dst=a)),
        (EPOCH + 0.2, Arp(sha=b, spa=b_ip, tpa=a_ip)),
    ]
    compare(steps)
    *_, bindings = run([(ts, f.ethernet()) for ts, f in steps], DLT_EN10MB, [], fast=True)
    assert isinstance(bindings, list)
    assert next(x.last_seen for x in bindings if x.ip == b_ip) == EPOCH + 0.5
