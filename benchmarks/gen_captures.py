"""Deterministic capture generator for the arpwatchd benchmarks (classic pcap, Ethernet).

Every capture comes from a fixed seed, so two runs on any machine write byte-identical files.
Frames are packed with `struct` templates and the pcap records go straight into a large
buffer (no dpkt per frame): 5 M frames take about 10 s on one core.

Captures (sizes are the full scale; `--quick` divides them by 10):

normal   1 M ARP frames of a 2,000-host LAN on 10.20.0.0/21 with a gateway (10.20.0.1) over
         one hour (~280 frames/s, what 2,000 hosts refreshing a few neighbours each every
         ~30 s send). Each host talks to the gateway, to 8 servers and to 3 fixed peers; the
         gateway asks for every host. A request (70 % broadcast, 30 % unicast refresh) is
         answered by a unicast reply 0.1-0.6 ms later (97 % of the time); 0.3 % of exchanges
         are gratuitous announcements, 0.05 % RFC 5227 probes, and every ~20 k exchanges a
         host's address moves to a new MAC by announcement (a DHCP lease reused).
small    the same traffic from 250 hosts on one /24 (10.30.1.0/24): LBL arpwatch's best case,
         since it hashes on the first two octets of the address (DESIGN.md section 8).
flood    1 M ARP frames over 10 s (100 k frames/s), each a new random station: unique sender
         MAC (locally administered, also the Ethernet source) and unique sender IP spread over
         10.0.0.0/8, half broadcast requests for a random address, half unicast replies to a
         random victim (what a spoofing tool in a loop or a "random ARP flood" sends). Targets
         are in 172.16.0.0/12, so the flood is pure new stations (no reply-target conflicts).
mirror   5 M frames of a mirror port over 5 min, 2 % ARP (the normal mix's traffic) among
         IPv4 TCP/UDP frames (ACKs, full-size segments, DNS, QUIC). Records are cut at a
         128-byte snap length like `tcpdump -s 128` (original length kept), so the file stays
         under 700 MB; the sensor's BPF filter has to drop the other 98 % inside libpcap.
vlan     1 M ARP frames of an 802.1Q trunk: 8 VLANs (10, 20, ... 80), each a /24 with 250
         hosts reusing the same range 10.1.0.0/24 and a router-on-a-stick gateway 10.1.0.1
         with one MAC on every VLAN. LBL arpwatch ignores tagged ARP.
dualstack the normal mix's 1 M ARP frames, the very same frames at the same times, with
         the same hosts' IPv6 neighbour discovery among them (25 % of the frames, ~333 k):
         each host has its EUI-64 link-local address and fd00:20::/64 + its IPv4 address,
         and resolves the same neighbours as over ARP, as the Linux kernel does it
         (docs/ipv6.md, "Facts measured in the lab"): 40 % multicast NS from the global
         address (the gateway: from and for link-local addresses) with the source link-layer
         option, answered by NA S+O with the target option; 60 % unicast reachability probes
         from the link-local address with the option, answered by NA with S only and no
         option; 0.5 % DAD probes for a new temporary address nobody holds (RFC 8981).
         Moved IPv4 addresses keep their IPv6 on the old machine. `ndp_only` writes the NDP
         frames alone, so a benchmark can tell the cost of the ARP frames among NDP.

A manifest (`manifest.json`) beside the files records the parameters, the frame counts and
the number of distinct claims, so the benchmark can tell a stale file from a current one.

Usage: gen_captures.py [--quick] [--out DIR] [--only NAME ...] [--force]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

SEED = 20240605
GENERATOR_VERSION = 4
DEFAULT_OUT = Path(__file__).resolve().parent / "out"

_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
# Ethernet header + ARP body (Ethernet/IPv4), padded to the 60-byte minimum.
_ARP = struct.Struct("!6s6sHHHBBH6sI6sI18x")
# The same with one 802.1Q tag (64 bytes on the wire without FCS).
_ARP_TAGGED = struct.Struct("!6s6sHHHHHBBH6sI6sI18x")
_BROADCAST = b"\xff" * 6
_ZERO = b"\x00" * 6
_ETH_ARP = 0x0806
_TPID = 0x8100
_REQUEST = 1
_REPLY = 2
# Real OUIs (Intel, Dell, HP, Cisco, Apple, Supermicro, Lenovo, VMware) so vendor look-ups work.
_OUIS = (b"\x00\x1b\x21", b"\xf4\x8e\x38", b"\x3c\xd9\x2b", b"\x00\x1e\x7a", b"\x3c\x22\xfb",
         b"\xac\x1f\x6b", b"\x54\xee\x75", b"\x00\x50\x56")
_FLUSH_BYTES = 16 << 20
_ETH_IPV6 = 0x86DD
_ICMPV6 = 58
_NS, _NA = 135, 136
_NA_SOLICITED, _NA_OVERRIDE = 0x40, 0x20
_IPV6_HEAD = struct.Struct("!6s6sHIHBB16s16s")
_ULA = bytes.fromhex("fd000020000000000000")  # fd00:20::/64, the first 10 bytes
_UNSPECIFIED = bytes(16)


class PcapWriter:
    """Classic pcap (microsecond timestamps, DLT_EN10MB) written through one big buffer."""

    def __init__(self, path: Path, snaplen: int = 65535) -> None:
        self.path = path
        self.snaplen = snaplen
        self.frames = 0
        self._file = path.open("wb")
        self._buf = bytearray(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))

    def add(self, t_us: int, frame: bytes) -> None:
        size = len(frame)
        cut = frame if size <= self.snaplen else frame[: self.snaplen]
        buf = self._buf
        buf += _RECORD.pack(t_us // 1_000_000, t_us % 1_000_000, len(cut), size)
        buf += cut
        self.frames += 1
        if len(buf) >= _FLUSH_BYTES:
            self._file.write(buf)
            buf.clear()

    def close(self) -> None:
        self._file.write(self._buf)
        self._buf.clear()
        self._file.close()


def _arp(op: int, eth_dst: bytes, eth_src: bytes, sha: bytes, spa: int, tha: bytes, tpa: int,
         vlan: int | None) -> bytes:
    if vlan is None:
        return _ARP.pack(eth_dst, eth_src, _ETH_ARP, 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
    return _ARP_TAGGED.pack(eth_dst, eth_src, _TPID, vlan, _ETH_ARP, 1, 0x0800, 6, 4, op, sha,
                            spa, tha, tpa)


@dataclass
class Segment:
    """One broadcast domain: a gateway, hosts, and the ARP traffic between them.

    Frames depend only on (who, whom, kind), so a LAN repeats a bounded set of frames, as a
    real one does; the decoder's cache relies on that.
    """

    rng: random.Random
    network: int
    hosts: int
    vlan: int | None = None
    gateway_mac: bytes = b""
    servers: int = 8
    peers_per_host: int = 3
    macs: list[bytes] = field(default_factory=list)
    ips: list[int] = field(default_factory=list)
    peers: list[tuple[int, ...]] = field(default_factory=list)
    moves: int = 0

    def __post_init__(self) -> None:
        rng = self.rng
        self.ips = [self.network + 1] + [self.network + 10 + i for i in range(self.hosts)]
        self.macs = [self.gateway_mac or _random_mac(rng)]
        seen = set(self.macs)
        while len(self.macs) < len(self.ips):
            mac = _random_mac(rng)
            if mac not in seen:
                seen.add(mac)
                self.macs.append(mac)
        self.peers = [tuple(rng.randrange(1, self.hosts + 1) for _ in range(self.peers_per_host))
                      for _ in range(self.hosts + 1)]

    def exchange(self) -> list[bytes]:
        """One ARP exchange: a request and usually its reply, or a lone special frame."""
        rng = self.rng
        r = rng.random()
        if r < 0.003:
            return [self._announce(rng.randrange(1, self.hosts + 1))]
        if r < 0.0035:
            who = rng.randrange(1, self.hosts + 1)
            return [_arp(_REQUEST, _BROADCAST, self.macs[who], self.macs[who], 0, _ZERO,
                         self.ips[who], self.vlan)]
        if r < 0.00355:
            return [self._move(rng.randrange(1 + self.servers, self.hosts + 1))]
        asker, target = self.pair(rng)
        amac, aip, tmac, tip = self.macs[asker], self.ips[asker], self.macs[target], self.ips[
            target]
        dst = _BROADCAST if rng.random() < 0.7 else tmac
        frames = [_arp(_REQUEST, dst, amac, amac, aip, _ZERO, tip, self.vlan)]
        if rng.random() < 0.97:
            frames.append(_arp(_REPLY, amac, tmac, tmac, tip, amac, aip, self.vlan))
        return frames

    def pair(self, rng: random.Random) -> tuple[int, int]:
        """Who asks for whom (0 is the gateway): the gateway for a host (15 %), else a host
        for the gateway (45 %), a server (35 %) or one of its peers (20 %)."""
        if rng.random() < 0.15:
            return 0, rng.randrange(1, self.hosts + 1)
        asker = rng.randrange(1, self.hosts + 1)
        pick = rng.random()
        if pick < 0.45:
            target = 0
        elif pick < 0.80:
            target = rng.randrange(1, self.servers + 1)
        else:
            target = rng.choice(self.peers[asker])
        return asker, 0 if target == asker else target

    def _announce(self, who: int) -> bytes:
        mac, ip = self.macs[who], self.ips[who]
        return _arp(_REQUEST, _BROADCAST, mac, mac, ip, _ZERO, ip, self.vlan)

    def _move(self, who: int) -> bytes:
        """The host's lease goes to a new machine, which announces itself."""
        self.macs[who] = _random_mac(self.rng)
        self.moves += 1
        return self._announce(who)


def _random_mac(rng: random.Random) -> bytes:
    return rng.choice(_OUIS) + rng.randbytes(3)


def _ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def lan_frames(
    segments: list[Segment], count: int, duration_s: float, rng: random.Random
) -> Iterator[tuple[int, bytes]]:
    """`count` frames of the segments' exchanges spread over `duration_s` (Poisson starts)."""
    per_exchange = 1.97  # mean frames per exchange (request + 97 % replies)
    mean_gap_us = duration_s * 1e6 / (count / per_exchange)
    t = 1_700_000_000 * 1_000_000
    n = 0
    pick = len(segments) > 1
    expo = rng.expovariate
    while n < count:
        segment = segments[rng.randrange(len(segments))] if pick else segments[0]
        t += 1 + int(expo(1.0 / mean_gap_us))
        at = t
        for frame in segment.exchange():
            yield at, frame
            n += 1
            if n >= count:
                return
            at += 100 + rng.randrange(500)
        t = max(t, at)


def flood_frames(count: int, duration_s: float, rng: random.Random) -> Iterator[tuple[int, bytes]]:
    """Every frame a new station: unique MAC and unique IP (bijections of the frame number)."""
    gap_us = duration_s * 1e6 / count
    t0 = 1_700_000_000 * 1_000_000
    rand = rng.getrandbits
    for i in range(count):
        # odd multipliers make i -> x a permutation of 2**40 and 2**24: never a repeat.
        m = (i * 0x9E3779B97F + 0x1234567) & 0xFF_FFFF_FFFF
        mac = b"\x02" + m.to_bytes(5, "big")
        spa = 0x0A000000 | ((i * 0x9E3779 + 0x5A5A5) & 0xFFFFFF)
        tpa = 0xAC100000 | rand(20)  # victims in 172.16.0.0/12: never a flooded address
        if i & 1:
            victim = b"\x02\xaa" + rand(32).to_bytes(4, "big")
            frame = _arp(_REPLY, victim, mac, mac, spa, victim, tpa, None)
        else:
            frame = _arp(_REQUEST, _BROADCAST, mac, mac, spa, _ZERO, tpa, None)
        yield t0 + int(i * gap_us), frame


def _ipv4_pool(rng: random.Random, lan: Segment, size: int = 4096) -> list[bytes]:
    """Pre-built TCP/UDP frames between LAN hosts and the outside, of realistic sizes."""
    pool = []
    for _ in range(size):
        inside = rng.randrange(1, lan.hosts + 1)
        outside = 0x0A000000 | rng.getrandbits(24) if rng.random() < 0.3 else \
            rng.randrange(0x01000000, 0xDF000000)
        src_ip, dst_ip = lan.ips[inside], outside
        src_mac, dst_mac = lan.macs[inside], lan.macs[0]
        if rng.random() < 0.5:
            src_ip, dst_ip, src_mac, dst_mac = dst_ip, src_ip, dst_mac, src_mac
        kind = rng.random()
        if kind < 0.40:
            proto, payload = 6, 0          # TCP ACK
        elif kind < 0.75:
            proto, payload = 6, 1460       # full-size segment
        elif kind < 0.85:
            proto, payload = 17, 40 + rng.randrange(60)  # DNS
        else:
            proto, payload = 17, 1200 + rng.randrange(52)  # QUIC
        l4 = 20 if proto == 6 else 8
        total = 20 + l4 + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, rng.getrandbits(16), 0x4000, 64,
                         proto, 0, src_ip.to_bytes(4, "big"), dst_ip.to_bytes(4, "big"))
        sport, dport = rng.randrange(1024, 65536), rng.choice((443, 80, 53, 22, 8080))
        if proto == 6:
            l4h = struct.pack("!HHIIHHHH", sport, dport, rng.getrandbits(32),
                              rng.getrandbits(32), 0x5010, 502, 0, 0)
        else:
            l4h = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
        frame = dst_mac + src_mac + b"\x08\x00" + ip + l4h + bytes(payload)
        pool.append(frame.ljust(60, b"\x00"))
    return pool


def mirror_frames(
    count: int, duration_s: float, arp_share: float, rng: random.Random
) -> Iterator[tuple[int, bytes]]:
    lan = Segment(rng, _ip("10.20.0.0"), 2000)
    pool = _ipv4_pool(rng, lan)
    pending: list[bytes] = []
    gap_us = duration_s * 1e6 / count
    t0 = 1_700_000_000 * 1_000_000
    rand = rng.random
    bits = rng.getrandbits
    for i in range(count):
        if rand() < arp_share:
            if not pending:
                pending = lan.exchange()[::-1]
            frame = pending.pop()
        else:
            frame = pool[bits(12)]
        yield t0 + int(i * gap_us), frame


# -- IPv6 neighbour discovery (the dualstack mix) ---------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ndp(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, icmp_type: int, flags: int,
         target: bytes, option: int, lla: bytes | None) -> bytes:
    """An NS or NA with hop limit 255 and a valid ICMPv6 checksum (RFC 4861 4.3, 4.4);
    `option` 1 (source) or 2 (target link-layer address) carries `lla`, or none."""
    body = bytes([icmp_type, 0, 0, 0, flags, 0, 0, 0]) + target
    if lla is not None:
        body += bytes([option, 1]) + lla
    pseudo = src + dst + struct.pack("!I3xB", len(body), _ICMPV6)
    body = body[:2] + _checksum(pseudo + body).to_bytes(2, "big") + body[4:]
    return _IPV6_HEAD.pack(eth_dst, eth_src, _ETH_IPV6, 0x60000000, len(body), _ICMPV6, 255,
                           src, dst) + body


def _link_local(mac: bytes) -> bytes:
    """The EUI-64 link-local address of `mac` (RFC 4291 appendix A)."""
    return b"\xfe\x80" + bytes(6) + bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]


def _solicited_node(ip: bytes) -> tuple[bytes, bytes]:
    """The solicited-node group of `ip` and its Ethernet multicast address (RFC 4291 2.7.1,
    RFC 2464 7)."""
    group = bytes.fromhex("ff0200000000000000000001ff") + ip[13:]
    return group, b"\x33\x33" + group[12:]


class Ndp:
    """The IPv6 side of a `Segment`: the same hosts, their original MACs, the same choice of
    neighbours; frames depend only on (asker, target, kind), as over ARP."""

    def __init__(self, lan: Segment, rng: random.Random) -> None:
        self.rng = rng
        self.lan = lan
        self.macs = list(lan.macs)  # a moved IPv4 address leaves its IPv6 on the old machine
        self.globals = [_ULA + ip.to_bytes(4, "big")[-4:].rjust(6, b"\0") for ip in lan.ips]
        self.link_locals = [_link_local(mac) for mac in self.macs]
        self._cache: dict[tuple[int, int, bool], list[bytes]] = {}

    def exchange(self) -> list[bytes]:
        rng = self.rng
        lan = self.lan
        if rng.random() < 0.005:
            return [self._dad(rng.randrange(1, lan.hosts + 1))]
        asker, target = lan.pair(rng)
        probe = rng.random() < 0.6
        key = (asker, target, probe)
        frames = self._cache.get(key)
        if frames is None:
            frames = self._cache[key] = self._resolve(asker, target, probe)
        return frames if rng.random() < 0.97 else frames[:1]

    def _resolve(self, asker: int, target: int, probe: bool) -> list[bytes]:
        amac, tmac = self.macs[asker], self.macs[target]
        # hosts reach the gateway by its link-local address (the default route's next hop)
        router = 0 in (asker, target)
        tip = self.link_locals[target] if router else self.globals[target]
        if probe:  # NUD: unicast, from the link-local address, with the option
            src = self.link_locals[asker]
            ns = _ndp(tmac, amac, src, tip, _NS, 0, tip, 1, amac)
            na = _ndp(amac, tmac, tip, src, _NA, _NA_SOLICITED, tip, 2, None)
        else:  # resolution: to the solicited-node group, from the route's source address
            src = self.link_locals[asker] if router else self.globals[asker]
            group, eth = _solicited_node(tip)
            ns = _ndp(eth, amac, src, group, _NS, 0, tip, 1, amac)
            na = _ndp(amac, tmac, tip, src, _NA, _NA_SOLICITED | _NA_OVERRIDE, tip, 2, tmac)
        return [ns, na]

    def _dad(self, who: int) -> bytes:
        """A new temporary address: DAD probe from ::, no option, nobody answers."""
        new = _ULA[:8] + self.rng.randbytes(8)
        group, eth = _solicited_node(new)
        return _ndp(eth, self.macs[who], _UNSPECIFIED, group, _NS, 0, new, 1, None)


def ndp_frames(ndp: Ndp, count: int, duration_s: float, rng: random.Random
               ) -> Iterator[tuple[int, bytes]]:
    """About `count` NDP frames over `duration_s` (Poisson starts, answers 0.1-0.6 ms
    later), from the same start as `lan_frames`."""
    mean_gap_us = duration_s * 1e6 / (count / 1.96)
    t = 1_700_000_000 * 1_000_000
    end = t + int(duration_s * 1e6)
    expo = rng.expovariate
    while True:
        t += 1 + int(expo(1.0 / mean_gap_us))
        if t >= end:
            return
        at = t
        for frame in ndp.exchange():
            yield at, frame
            at += 100 + rng.randrange(500)
        t = max(t, at)


def dualstack_frames(spec: Spec) -> Iterator[tuple[int, bytes]]:
    """The normal mix's ARP frames (its own seed: byte for byte the same) merged by time with
    the same hosts' NDP (another seed)."""
    rng = random.Random(f"{SEED}:normal:{spec.frames}")
    lan = Segment(rng, _ip("10.20.0.0"), spec.hosts)
    ndp_rng = random.Random(f"{SEED}:{spec.name}:{spec.frames}")
    ndp = Ndp(lan, ndp_rng)
    ndp_count = round(spec.frames * (1 - spec.arp_share) / spec.arp_share)
    arp = lan_frames([lan], spec.frames, spec.duration_s, rng)
    return heapq.merge(arp, ndp_frames(ndp, ndp_count, spec.duration_s, ndp_rng),
                       key=lambda tf: tf[0])


def is_arp(frame: bytes) -> bool:
    return frame[12:14] == b"\x08\x06" or frame[16:18] == b"\x08\x06"


def ndp_only(source: Path, target: Path) -> int:
    """Copies the records of a classic pcap that are not ARP (the dualstack mix's NDP) to
    `target`; returns how many."""
    data = source.read_bytes()
    out = bytearray(data[:_PCAP_HEADER.size])
    at, kept = _PCAP_HEADER.size, 0
    while at + _RECORD.size <= len(data):
        caplen = _RECORD.unpack_from(data, at)[2]
        end = at + _RECORD.size + caplen
        if not is_arp(data[at + _RECORD.size:end]):
            out += data[at:end]
            kept += 1
        at = end
    target.write_bytes(out)
    return kept


@dataclass(frozen=True)
class Spec:
    """What one capture is; the manifest stores it to detect stale files."""

    name: str
    frames: int
    duration_s: float
    hosts: int = 0
    vlans: int = 0
    arp_share: float = 1.0
    snaplen: int = 65535
    description: str = ""


def specs(scale: float) -> list[Spec]:
    def n(x: int) -> int:
        return max(1000, int(x * scale))

    return [
        Spec("normal", n(1_000_000), 3600.0 * scale, hosts=2000,
             description="2,000-host LAN (/21) with a gateway, ~280 frames/s"),
        Spec("small", n(1_000_000), 3600.0 * scale, hosts=250,
             description="250-host /24 (arpwatch's best case)"),
        Spec("flood", n(1_000_000), 10.0 * scale, description="every frame a new station"),
        Spec("mirror", n(5_000_000), 300.0 * scale, hosts=2000, arp_share=0.02, snaplen=128,
             description="mirror port, 2 % ARP among TCP/UDP"),
        Spec("vlan", n(1_000_000), 3600.0 * scale, hosts=250, vlans=8,
             description="802.1Q trunk, 8 VLANs reusing 10.1.0.0/24"),
        # frames: the ARP frames (the normal mix's); NDP comes on top, 25 % of the file
        Spec("dualstack", n(1_000_000), 3600.0 * scale, hosts=2000, arp_share=0.75,
             description="the normal mix with the same hosts' NDP as 25 % of the frames"),
    ]


def _frames_for(spec: Spec, rng: random.Random) -> tuple[Iterator[tuple[int, bytes]], dict[str,
                                                                                     int]]:
    info: dict[str, int] = {}
    if spec.name == "flood":
        info["distinct_claims"] = spec.frames
        return flood_frames(spec.frames, spec.duration_s, rng), info
    if spec.name == "mirror":
        return mirror_frames(spec.frames, spec.duration_s, spec.arp_share, rng), info
    if spec.name == "dualstack":
        return dualstack_frames(spec), info
    if spec.name == "vlan":
        gateway = _random_mac(rng)
        segments = [Segment(rng, _ip("10.1.0.0"), spec.hosts, vlan=10 * (i + 1),
                            gateway_mac=gateway) for i in range(spec.vlans)]
    elif spec.name == "small":
        segments = [Segment(rng, _ip("10.30.1.0"), spec.hosts)]
    else:
        segments = [Segment(rng, _ip("10.20.0.0"), spec.hosts)]
    return lan_frames(segments, spec.frames, spec.duration_s, rng), info


def generate(spec: Spec, out: Path) -> dict[str, object]:
    """Writes one capture; returns its manifest entry."""
    rng = random.Random(f"{SEED}:{spec.name}:{spec.frames}")
    path = out / f"{spec.name}.pcap"
    tmp = path.with_suffix(".pcap.part")
    frames, info = _frames_for(spec, rng)
    writer = PcapWriter(tmp, spec.snaplen)
    add = writer.add
    arp = 0
    distinct: set[int] = set()
    for t_us, frame in frames:
        add(t_us, frame)
        if is_arp(frame):
            arp += 1
            distinct.add(hash(frame))
    writer.close()
    tmp.replace(path)
    return {"file": path.name, "frames": writer.frames, "arp_frames": arp,
            "distinct_arp_frames": len(distinct), "bytes": path.stat().st_size,
            "spec": asdict(spec), **info}


def _manifest_path(out: Path) -> Path:
    return out / "manifest.json"


def load_manifest(out: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_manifest_path(out).read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != GENERATOR_VERSION or data.get("seed") != SEED:
        return {}
    captures: dict[str, dict[str, object]] = data.get("captures", {})
    return captures


def ensure(out: Path, scale: float, only: list[str] | None = None, force: bool = False,
           log: Callable[[str], None] = print) -> dict[str, dict[str, object]]:
    """Generates the captures that are missing or stale; returns the manifest entries."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    for spec in specs(scale):
        if only and spec.name not in only:
            continue
        entry = manifest.get(spec.name)
        current = (entry is not None and entry.get("spec") == asdict(spec)
                   and (out / f"{spec.name}.pcap").exists())
        if current and not force:
            continue
        started = time.perf_counter()
        manifest[spec.name] = generate(spec, out)
        log(f"generated {out / (spec.name + '.pcap')}: {manifest[spec.name]['frames']:,} frames in "
            f"{time.perf_counter() - started:.1f} s")
        _manifest_path(out).write_text(json.dumps(
            {"version": GENERATOR_VERSION, "seed": SEED, "captures": manifest}, indent=2))
    return manifest


QUICK_SCALE = 0.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"captures at {QUICK_SCALE:g}x the full size (into OUT/quick)")
    parser.add_argument("--scale", type=float, help="any size factor (into OUT/scale-X)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--only", action="append", metavar="NAME",
                        choices=[s.name for s in specs(1.0)], help="only this capture")
    parser.add_argument("--force", action="store_true", help="regenerate even if current")
    args = parser.parse_args(argv)
    scale, folder = scale_folder(args.out, args.quick, args.scale)
    ensure(folder, scale, args.only, args.force)
    return 0


def scale_folder(out: Path, quick: bool, scale: float | None) -> tuple[float, Path]:
    """The size factor and the folder its captures live in."""
    if scale is not None:
        return scale, out / f"scale-{scale:g}"
    if quick:
        return QUICK_SCALE, out / "quick"
    return 1.0, out / "full"


if __name__ == "__main__":
    sys.exit(main())
