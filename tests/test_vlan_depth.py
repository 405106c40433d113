"""VLAN tag stacks: the capture filter and the decoder agree on what is ARP (issue 15 item 7).

A frame the BPF filter drops is never seen, so it is never counted: the filter must pass ARP
behind every tag stack the decoder reads (`MAX_TAGS` of libpcap's `vlan` types), and pass
deeper stacks so that the decoder counts them as skipped (`too_many_vlan_tags`).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pcapy
import pytest
from arpbuild import replay_quietly

from arpwatchd.addresses import ZERO_MAC
from arpwatchd.capture import ARP_FILTER, FileCapture
from arpwatchd.config import Config
from arpwatchd.decode import DLT_EN10MB, MAX_TAGS, VLAN_TPIDS, ArpFrame, Decoder, SkipReason
from arpwatchd.events import EventKind
from arpwatchd.frames import REQUEST, arp_frame, write_pcap

EPOCH = 1_700_000_000.0


def tagged(tags: list[tuple[int, int]], ethertype: int = 0x0806, n: int = 1) -> bytes:
    """An ARP request (or, with another `ethertype`, the same bytes as another protocol)
    from host `n` behind `tags`, outermost first, as (TPID, VLAN id)."""
    plain = arp_frame(REQUEST, f"02:00:00:00:00:{n:02x}", f"10.0.0.{n}", ZERO_MAC, "10.0.0.254")
    stack = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags)
    return plain[:12] + stack + struct.pack("!H", ethertype) + plain[14:]


def stack(depth: int, tpid: int = 0x8100) -> list[tuple[int, int]]:
    return [(0x88A8 if i == 0 else tpid, 100 + i) for i in range(depth)]


@pytest.mark.parametrize("tpid", sorted(VLAN_TPIDS | {0x9200}), ids=hex)
@pytest.mark.parametrize("depth", range(MAX_TAGS + 3))
@pytest.mark.parametrize("ethertype", [0x0806, 0x0800], ids=["arp", "ipv4"])
def test_the_filter_passes_what_the_decoder_reads_or_counts(
    tpid: int, depth: int, ethertype: int
) -> None:
    """For every tag type and depth, the filter never drops a frame the decoder reads as
    ARP, and passes every frame it counts as too deep unless that is surely not ARP (a
    protocol other than ARP right behind the tags)."""
    frame = tagged([(tpid, 100 + i) for i in range(depth)], ethertype)
    passed = bool(pcapy.compile(DLT_EN10MB, 256, ARP_FILTER, 1, 0).filter(frame))
    decoded = Decoder("eth0", DLT_EN10MB).decode(frame)
    readable = tpid in VLAN_TPIDS or depth == 0
    assert passed == (readable and (ethertype == 0x0806 or depth > MAX_TAGS + 1))
    if passed:
        assert decoded is SkipReason.TOO_MANY_TAGS if depth > MAX_TAGS else (
            isinstance(decoded, ArpFrame) and decoded.vlan == (100 if depth else None))
    else:
        assert not isinstance(decoded, ArpFrame)


def test_deep_qinq_through_a_real_capture_file(tmp_path: Path) -> None:
    """Through libpcap with the sensor's own filter (as `arpwatchd replay` reads a file): ARP
    behind 3 and 4 tags is a station of the outer VLAN; 5 tags are counted as skipped, and so
    is a 6-deep stack whatever it carries. Non-ARP traffic is filtered away, uncounted."""
    capture = tmp_path / "deep-qinq.pcap"
    frames = [
        tagged(stack(3), n=3),
        tagged(stack(4, tpid=0x9100), n=4),
        tagged(stack(5), n=5),
        tagged(stack(6), ethertype=0x0800, n=6),
        tagged(stack(2), ethertype=0x0800, n=7),
        tagged(stack(5), ethertype=0x0800, n=8),
    ]
    write_pcap(capture, [(EPOCH + i, frame) for i, frame in enumerate(frames)])
    reader = FileCapture(str(capture))
    assert reader.read_batch(100).__len__() == 4  # both ARP frames and both deep stacks
    reader.close()
    sensor = replay_quietly(capture, Config())
    assert sensor.emitted is not None
    stations = [(e.ip, e.vlan) for e in sensor.emitted if e.kind is EventKind.NEW_STATION]
    assert stations == [("10.0.0.3", 100), ("10.0.0.4", 100)]
    assert dict(sensor.stats.skipped) == {("replay", SkipReason.TOO_MANY_TAGS): 2}
