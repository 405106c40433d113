"""Writes the synthetic captures in this folder: one pcap per behaviour DESIGN.md promises.

Why synthetic captures: the public captures in ../shared/pcaps test decoding and robustness,
but none of them shows a cluster failover, a failback, a split brain or a spoofed gateway with
known ground truth. These files do, with the timing of real software (Windows clusters,
keepalived, Pacemaker, arpspoof, nmap, RFC 5227 DHCP clients) on top of an ordinary office
LAN, so that a replay must tell failover from conflict the way an operator would.

Everything is deterministic: fixed start time (2024-03-04T09:00:00Z), fixed addresses, no
randomness (the "jitter" of periodic traffic is arithmetic), and frames are built only by
`arpwatchd.frames`, so running this twice writes byte-identical files. A scenario that needs
a config writes it as `NAME.yml` next to `NAME.pcap`. README.md in this folder tells each
story and lists the events each capture must produce; tests/test_replay_pcaps.py checks them.

Usage: python pcaps/generate.py [--out DIR]   (default: the folder this script is in)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from arpwatchd.frames import REPLY, REQUEST, announcement, arp_frame, probe, write_pcap

EPOCH = 1_709_542_800
"""2024-03-04T09:00:00Z: second 0 of every capture; scenario times are offsets from it."""
ZERO = "00:00:00:00:00:00"
BROADCAST = "ff:ff:ff:ff:ff:ff"
RTT = 0.0003
"""A host on the same switch answers an ARP request 300 us after it was sent."""


@dataclass(frozen=True)
class Station:
    """One address as one MAC uses it (a host with two addresses is two stations)."""

    ip: str
    mac: str

    def on(self, mac: str) -> Station:
        """The same address used by another MAC (a cluster VIP moving between nodes)."""
        return Station(self.ip, mac)


# The office LAN behind every scenario: a gateway and four Linux hosts (192.168.10.0/24).
GW = Station("192.168.10.1", "00:1c:7f:00:00:01")
H21 = Station("192.168.10.21", "52:54:00:00:00:21")
H22 = Station("192.168.10.22", "52:54:00:00:00:22")
H23 = Station("192.168.10.23", "52:54:00:00:00:23")
H24 = Station("192.168.10.24", "52:54:00:00:00:24")
HOSTS = (H21, H22, H23, H24)


class Capture:
    """The frames of one file; times are seconds after EPOCH, kept to the microsecond."""

    def __init__(self) -> None:
        self._frames: list[tuple[int, int, bytes]] = []

    def add(self, t: float, frame: bytes) -> None:
        self._frames.append((round(t * 1_000_000), len(self._frames), frame))

    def link(self, *, vlan: int | None = None, outer_vlan: int | None = None) -> Link:
        return Link(self, vlan, outer_vlan)

    def write(self, path: Path) -> int:
        """Writes the frames in time order (ties keep the order they were added)."""
        frames = sorted(self._frames)
        return write_pcap(path, ((EPOCH + us / 1_000_000, frame) for us, _, frame in frames))


class Link:
    """One broadcast domain of a capture (untagged, an 802.1Q VLAN, or a QinQ pair of tags).

    The helpers send what real stacks send: a request is broadcast unless it re-validates a
    cached entry (Linux sends those unicast, target MAC zero); a reply is unicast to the
    requester.
    """

    def __init__(self, capture: Capture, vlan: int | None, outer_vlan: int | None) -> None:
        self.capture = capture
        self.vlan = vlan
        self.outer_vlan = outer_vlan

    def arp(
        self,
        t: float,
        op: int,
        sha: str,
        spa: str,
        tha: str,
        tpa: str,
        *,
        eth_src: str | None = None,
        eth_dst: str | None = None,
    ) -> None:
        self.capture.add(t, arp_frame(op, sha, spa, tha, tpa, eth_src=eth_src, eth_dst=eth_dst,
                                      vlan=self.vlan, outer_vlan=self.outer_vlan))

    def request(self, t: float, asker: Station, ip: str, *, unicast_to: str | None = None) -> None:
        """`asker` asks who has `ip`: broadcast, or unicast to a cached MAC (re-validation)."""
        self.arp(t, REQUEST, asker.mac, asker.ip, ZERO, ip, eth_dst=unicast_to)

    def reply(self, t: float, sender: Station, to: Station, *, eth_src: str | None = None) -> None:
        """`sender` tells `to` (unicast) that sender.ip is at sender.mac."""
        self.arp(t, REPLY, sender.mac, sender.ip, to.mac, to.ip, eth_src=eth_src, eth_dst=to.mac)

    def resolve(
        self, t: float, asker: Station, target: Station, *, unicast: bool = False
    ) -> None:
        """A request from `asker` for target.ip and the target's reply one RTT later."""
        self.request(t, asker, target.ip, unicast_to=target.mac if unicast else None)
        self.reply(t + RTT, target, asker)

    def announce(self, t: float, station: Station, *, tha: str = ZERO) -> None:
        """A gratuitous request (spa = tpa); tha zero is RFC 5227's, ff:ff.. is keepalived's."""
        if tha == ZERO and self.outer_vlan is None:
            self.capture.add(t, announcement(station.ip, station.mac, vlan=self.vlan))
        else:
            self.arp(t, REQUEST, station.mac, station.ip, tha, station.ip)

    def probe(self, t: float, mac: str, ip: str) -> None:
        """RFC 5227 probe: is `ip` in use? (sender IP 0.0.0.0)."""
        self.capture.add(t, probe(ip, mac, vlan=self.vlan))

    def dhcp_acquire(
        self, t: float, station: Station, *, answered_by: Station | None = None
    ) -> float:
        """An RFC 5227 DHCP client checking a lease; returns when it starts using it (or -1).

        Three probes 1-2 s apart (PROBE_NUM, PROBE_MIN, PROBE_MAX), then two announcements
        2 s apart (ANNOUNCE_WAIT, ANNOUNCE_NUM, ANNOUNCE_INTERVAL). If `answered_by` owns the
        address it answers the first probe (Linux: unicast reply, target IP 0.0.0.0) and the
        client declines the lease.
        """
        self.probe(t, station.mac, station.ip)
        if answered_by is not None:
            self.arp(t + 0.0004, REPLY, answered_by.mac, answered_by.ip, station.mac, "0.0.0.0",
                     eth_dst=station.mac)
            return -1.0
        self.probe(t + 1.4, station.mac, station.ip)
        self.probe(t + 2.9, station.mac, station.ip)
        self.announce(t + 4.9, station)
        self.announce(t + 6.9, station)
        return t + 4.9

    def every(
        self, start: float, end: float, period: float, action: Callable[[float], None]
    ) -> None:
        """Calls action(t) at start, start + period, ... while t < end."""
        t = start
        while t < end:
            action(t)
            t += period


def _jitter(i: int, k: int) -> float:
    """Deterministic spread of -2.5..+2.5 s so that periodic refreshes do not line up."""
    return ((i * 7 + k * 5) % 11 - 5) * 0.5


def office(
    link: Link,
    start: float,
    end: float,
    *,
    gateways: Sequence[Station] = (GW,),
    hosts: Sequence[Station] = HOSTS,
    poller: Station | None = None,
    poll: float = 20.0,
) -> None:
    """Ordinary LAN life between `start` and `end`, the background of every scenario.

    - As the capture starts the router (`poller`, default the gateway) resolves every host
      (broadcast request, unicast reply): the first new stations, in the order of `hosts`.
    - Host i re-validates its gateway entry every 31 + 7i s (+-2.5 s), 30-60 s as Linux
      hosts do, by unicast request; the gateway answers. Host i uses gateways[i % n] (GLBP
      hands out several virtual MACs).
    - The router re-validates one host every `poll` seconds (unicast), so the gateway is
      heard at least every `poll` seconds.
    Background times end in odd milliseconds (x.011, x.223, x.25 ...) so that they never
    coincide with a scenario's round-numbered frames.
    """
    router = poller or gateways[0]
    for i, host in enumerate(hosts):
        link.resolve(start + 0.2 + 0.1 * i, router, host)
    for i, host in enumerate(hosts):
        gateway = gateways[i % len(gateways)]
        t = start + 3.011 + 1.712 * i
        k = 0
        while t < end:
            link.resolve(t, host, gateway, unicast=True)
            k += 1
            t += 31.0 + 7.0 * i + _jitter(i, k)
    t = start + poll + 0.25
    k = 0
    while t < end:
        link.resolve(t, router, hosts[k % len(hosts)], unicast=True)
        k += 1
        t += poll


# ------------------------------------------------------------------------ scenarios

Scenario = Callable[[Capture], str | None]
"""Fills a capture; returns the config YAML the scenario needs, or None."""


def quiet_lan(cap: Capture) -> None:
    """Ten minutes of an office LAN: refreshes, a file share, a laptop joining by DHCP."""
    lan = cap.link()
    office(lan, 0.0, 600.0)
    lan.resolve(15.5, H21, H23)
    lan.every(62.5, 600.0, 47.0, lambda t: lan.resolve(t, H21, H23, unicast=True))
    laptop = Station("192.168.10.25", "52:54:00:00:00:25")
    lan.dhcp_acquire(300.0, laptop)
    lan.resolve(307.2, laptop, GW)
    lan.every(347.2, 600.0, 40.0, lambda t: lan.resolve(t, laptop, GW, unicast=True))


def cluster_failover(cap: Capture) -> None:
    """Windows failover cluster (KB Q168567): node B registers the VIP with 3 gratuitous ARPs."""
    lan = cap.link()
    office(lan, 0.0, 420.0)
    node_a = Station("192.168.10.51", "02:00:00:00:50:01")
    node_b = Station("192.168.10.52", "02:00:00:00:50:02")
    vip_a = Station("192.168.10.50", node_a.mac)
    vip_b = vip_a.on(node_b.mac)
    lan.resolve(3.0, node_a, GW)
    lan.resolve(3.5, node_b, GW)
    lan.every(43.0, 150.0, 40.0, lambda t: lan.resolve(t, node_a, GW, unicast=True))
    lan.every(43.5, 420.0, 40.0, lambda t: lan.resolve(t, node_b, GW, unicast=True))
    for t in (10.0, 11.0, 12.0):  # the VIP comes online on node A
        lan.announce(t, vip_a)
    lan.resolve(20.0, H22, vip_a)
    lan.resolve(25.0, H23, vip_a)
    for t in (60.0, 100.0, 140.0):
        lan.resolve(t, H22, vip_a, unicast=True)
        lan.resolve(t + 5.0, H23, vip_a, unicast=True)
    # 149.5: node A crashes. 156.4: the cluster brings the VIP online on node B.
    for t in (156.4, 157.4, 158.4):
        lan.announce(t, vip_b)
    for t in (180.0, 220.0, 260.0, 300.0, 340.0, 380.0):
        lan.resolve(t, H22, vip_b, unicast=True)
        lan.resolve(t + 5.0, H23, vip_b, unicast=True)


def _keepalived_master(lan: Link, t: float, vip: Station) -> None:
    """keepalived entering MASTER: 5 gratuitous requests, 5 more after garp_master_delay 5 s."""
    for burst in (t, t + 5.0):
        for n in range(5):
            lan.announce(burst + 0.0002 * n, vip, tha=BROADCAST)


def keepalived_failback(cap: Capture) -> None:
    """keepalived VRRP pair: A master, A dies, B takes over, A returns and preempts."""
    lan = cap.link()
    office(lan, 0.0, 480.0)
    node_a = Station("192.168.10.61", "02:00:00:00:60:01")
    node_b = Station("192.168.10.62", "02:00:00:00:60:02")
    vip_a = Station("192.168.10.60", node_a.mac)
    vip_b = vip_a.on(node_b.mac)
    lan.resolve(3.0, node_a, GW)
    lan.resolve(3.5, node_b, GW)
    lan.every(43.0, 119.0, 40.0, lambda t: lan.resolve(t, node_a, GW, unicast=True))
    lan.every(43.5, 480.0, 40.0, lambda t: lan.resolve(t, node_b, GW, unicast=True))
    _keepalived_master(lan, 8.0, vip_a)
    lan.resolve(20.0, H21, vip_a)
    lan.resolve(24.0, H23, vip_a)
    for t in (60.0, 100.0):
        lan.resolve(t, H21, vip_a, unicast=True)
        lan.resolve(t + 4.0, H23, vip_a, unicast=True)
    # 119: node A powers off; B misses 3 adverts (advert_int 1 s + skew) and becomes MASTER.
    _keepalived_master(lan, 123.6, vip_b)
    for t in (140.0, 180.0, 220.0, 260.0):
        lan.resolve(t, H21, vip_b, unicast=True)
        lan.resolve(t + 4.0, H23, vip_b, unicast=True)
    lan.resolve(300.0, H21, vip_b, unicast=True)
    # 300: node A is back (its cache is empty); with the higher priority it preempts at 303.
    lan.resolve(300.5, node_a, GW)
    lan.every(340.5, 480.0, 40.0, lambda t: lan.resolve(t, node_a, GW, unicast=True))
    _keepalived_master(lan, 303.0, vip_a)
    lan.resolve(304.0, H23, vip_a, unicast=True)
    for t in (340.0, 380.0, 420.0, 460.0):
        lan.resolve(t, H21, vip_a, unicast=True)
        lan.resolve(t + 4.0, H23, vip_a, unicast=True)


def duplicate_ip(cap: Capture) -> None:
    """Two hosts configured with one static address both answer for it."""
    lan = cap.link()
    office(lan, 0.0, 480.0)
    server = Station("192.168.10.70", "02:00:00:00:70:01")
    clone = server.on("02:00:00:00:70:02")
    lan.resolve(12.5, server, GW)
    lan.every(52.5, 480.0, 40.0, lambda t: lan.resolve(t, server, GW, unicast=True))
    lan.resolve(20.0, H22, server)
    lan.resolve(25.0, H23, server)
    for t in (60.0, 100.0):
        lan.resolve(t, H22, server, unicast=True)
        lan.resolve(t + 5.0, H23, server, unicast=True)
    # 120: a VM cloned from the server boots with the same static address (no gratuitous ARP).
    lan.resolve(120.0, clone, GW)
    lan.every(160.0, 290.0, 40.0, lambda t: lan.resolve(t, clone, GW, unicast=True))
    # Clients' entries now flip between the two; they re-resolve by broadcast every 20 s
    # and both hosts answer. The clone is shut down at 290.
    both_answer(lan, range(131, 480, 20), server, clone, until=290)


def both_answer(lan: Link, times: range, owner: Station, other: Station, until: int) -> None:
    """H22 and H23 take turns asking for `owner`'s address by broadcast at `times`; the owner
    answers every time, `other` (claiming the same address) too, before `until`."""
    for n, t in enumerate(times):
        client = (H22, H23)[n % 2]
        lan.request(float(t), client, owner.ip)
        lan.reply(t + 0.0002, owner, client)
        if t < until:
            lan.reply(t + 0.0005, other, client)


def announcement_answered(cap: Capture) -> None:
    """A new VM announces an address a NAS already uses; the NAS answers the announcement."""
    lan = cap.link()
    office(lan, 0.0, 360.0)
    nas = Station("192.168.10.80", "02:00:00:00:80:01")
    newvm = nas.on("02:00:00:00:80:02")
    lan.resolve(6.0, nas, GW)
    lan.every(51.0, 360.0, 45.0, lambda t: lan.resolve(t, nas, GW, unicast=True))
    lan.resolve(30.0, H23, nas)
    for t in (75.0, 120.0):
        lan.resolve(t, H23, nas, unicast=True)
    # 150: `arping -U -c 2` on the new VM; the NAS's stack answers each request for its address.
    for t in (150.0, 151.0):
        lan.announce(t, newvm, tha=BROADCAST)
        lan.reply(t + 0.0009, nas, newvm)
    lan.resolve(153.0, newvm, GW)
    for t in (183.0, 213.0):
        lan.resolve(t, newvm, GW, unicast=True)
    lan.resolve(165.0, H23, newvm, unicast=True)  # H23's cache followed the announcement
    # Clients re-resolve by broadcast every 20 s; both answer until the VM is stopped at 225.
    both_answer(lan, range(160, 360, 20), nas, newvm, until=225)


def owner_defended(cap: Capture) -> None:
    """A lab device takes a PC's address; the PC (Windows) defends it with an announcement."""
    lan = cap.link()
    office(lan, 0.0, 360.0)
    owner = Station("192.168.10.90", "02:00:00:00:90:01")
    intruder = owner.on("02:00:00:00:90:02")
    lan.resolve(7.0, owner, GW)
    lan.every(57.0, 360.0, 50.0, lambda t: lan.resolve(t, owner, GW, unicast=True))
    lan.resolve(35.0, H24, owner)
    for t in (85.0, 135.0):
        lan.resolve(t, H24, owner, unicast=True)
    # 140: the device, statically configured with .90, resolves the gateway; the PC sees a
    # request from its own address and defends with one announcement 1.2 ms later.
    lan.resolve(140.0, intruder, GW)
    lan.announce(140.0012, owner)
    for t in (170.0, 200.0):
        lan.resolve(t, intruder, GW, unicast=True)
    # Clients re-resolve by broadcast every 20 s; both answer until the device goes at 215.
    for n, t in enumerate(range(150, 360, 20)):
        client = (H22, H24)[n % 2]
        lan.request(float(t), client, owner.ip)
        lan.reply(t + 0.0002, owner, client)
        if t < 215:
            lan.reply(t + 0.0005, intruder, client)


def gateway_spoof(cap: Capture) -> None:
    """arpspoof poisons H21's entry for the gateway for 3 minutes, then re-ARPs on exit."""
    lan = cap.link()
    office(lan, 0.0, 420.0, poll=20.0)
    attacker = _arpspoof(lan, 241.0, 420.0)
    # Ctrl-C: 5 re-ARP replies 1 s apart naming the real gateway, sent from the attacker's NIC.
    for t in (241.0, 242.0, 243.0, 244.0, 245.0):
        lan.reply(t, GW, H21, eth_src=attacker.mac)


def spoof_in_progress(cap: Capture) -> None:
    """The same attack, still running when the capture ends: a conflict left open, which
    `replay --serve` keeps active (the alert demo replays this file)."""
    lan = cap.link()
    office(lan, 0.0, 181.0, poll=20.0)
    _arpspoof(lan, 181.0, 181.0)


def _arpspoof(lan: Link, stop: float, end: float) -> Station:
    """Attacker .66 joins at 30 s and runs `arpspoof -t 192.168.10.21 192.168.10.1` from 60 s
    until `stop`: an unsolicited reply to the victim every 2 s. Returns the attacker."""
    attacker = Station("192.168.10.66", "02:00:00:00:66:01")
    spoofed_gw = GW.on(attacker.mac)
    lan.resolve(30.0, attacker, GW)
    lan.resolve(31.0, attacker, H21)
    lan.every(70.0, end, 40.0, lambda t: lan.resolve(t, attacker, GW, unicast=True))
    lan.every(60.0, stop, 2.0, lambda t: lan.reply(t, spoofed_gw, H21))
    return attacker


def probe_in_use(cap: Capture) -> None:
    """Two DHCP clients are offered a printer's static address; the printer answers probes."""
    lan = cap.link()
    office(lan, 0.0, 360.0)
    printer = Station("192.168.10.40", "02:00:00:00:40:01")
    for t in (5.0, 50.0, 95.0, 140.0, 250.0, 295.0):
        lan.resolve(t, printer, GW, unicast=t > 5.0)
    laptop = "02:00:00:00:40:02"
    phone = "02:00:00:00:40:03"
    # 100: the printer was heard 5 s ago; its reply makes the laptop decline the lease.
    lan.dhcp_acquire(100.0, printer.on(laptop), answered_by=printer)
    laptop_st = Station("192.168.10.41", laptop)
    lan.dhcp_acquire(111.0, laptop_st)
    lan.resolve(118.2, laptop_st, GW)
    lan.every(158.2, 360.0, 40.0, lambda t: lan.resolve(t, laptop_st, GW, unicast=True))
    # 200: the printer has been silent for 60 s; only its reply shows the address is in use.
    lan.dhcp_acquire(200.0, printer.on(phone), answered_by=printer)
    phone_st = Station("192.168.10.42", phone)
    lan.dhcp_acquire(211.0, phone_st)
    lan.resolve(218.4, phone_st, GW)


def reassignment(cap: Capture) -> None:
    """An address moves to a new PC hours after the old one left, then back to the old PC."""
    lan = cap.link()
    office(lan, 0.0, 11100.0, hosts=(H21, H22), poll=60.0)
    old = Station("192.168.10.30", "02:00:00:00:30:01")
    new = old.on("02:00:00:00:30:02")
    lan.resolve(9.0, old, GW)
    lan.every(57.0, 600.0, 48.0, lambda t: lan.resolve(t, old, GW, unicast=True))
    # 9600 (2 h 40 min later): the replacement PC, static address, no gratuitous ARP.
    lan.resolve(9600.0, new, GW)
    lan.every(9640.0, 10201.0, 40.0, lambda t: lan.resolve(t, new, GW, unicast=True))
    # 10800: the replacement is gone and the old PC is back on its old address.
    lan.resolve(10800.0, old, GW)
    lan.every(10848.0, 11100.0, 48.0, lambda t: lan.resolve(t, old, GW, unicast=True))


def vlan_trunk(cap: Capture) -> None:
    """An 802.1Q trunk: two VLANs reuse 192.168.100.0/24; .10 is a different host in each."""
    router = "00:1c:7f:00:01:00"  # one router, one MAC, a subinterface per VLAN (VRF-lite)
    v10 = cap.link(vlan=10)
    v20 = cap.link(vlan=20)
    gw = Station("192.168.100.1", router)
    a10 = Station("192.168.100.10", "02:00:00:10:00:10")
    b10 = Station("192.168.100.11", "02:00:00:10:00:11")
    a20 = Station("192.168.100.10", "02:00:00:20:00:10")
    b20 = Station("192.168.100.12", "02:00:00:20:00:12")
    office(v10, 0.0, 300.0, gateways=(gw,), hosts=(a10, b10))
    office(v20, 1.0, 300.0, gateways=(gw,), hosts=(a20, b20))
    v10.resolve(30.5, a10, b10)
    v20.resolve(31.5, b20, a20)


def qinq(cap: Capture) -> None:
    """A provider trunk (802.1ad): two customers in S-VLANs 300 and 301, both in C-VLAN 10."""
    cust_a = cap.link(outer_vlan=300, vlan=10)
    cust_b = cap.link(outer_vlan=301, vlan=10)
    gw_a = Station("172.16.10.1", "02:0a:00:00:00:01")
    host_a = Station("172.16.10.10", "02:0a:00:00:00:10")
    gw_b = Station("172.16.10.1", "02:0b:00:00:00:01")
    host_b = Station("172.16.10.10", "02:0b:00:00:00:10")
    office(cust_a, 0.0, 240.0, gateways=(gw_a,), hosts=(host_a,))
    office(cust_b, 1.0, 240.0, gateways=(gw_b,), hosts=(host_b,))


BOGON_CONFIG = """\
# bogon.pcap: this segment is 192.168.10.0/24; any other sender address is a bogon.
networks:
  - prefixes: [192.168.10.0/24]
"""


def bogon(cap: Capture) -> str:
    """A laptop from another site keeps its static 10.99.0.5, then switches to DHCP."""
    lan = cap.link()
    office(lan, 0.0, 300.0)
    laptop_old = Station("10.99.0.5", "02:00:00:00:99:01")
    for burst in (60.0, 90.0, 120.0):  # Linux: 3 broadcast tries 1 s apart, unanswered
        for n in range(3):
            lan.request(burst + n, laptop_old, "10.99.0.1")
    laptop = Station("192.168.10.31", laptop_old.mac)
    lan.dhcp_acquire(150.0, laptop)
    lan.resolve(157.2, laptop, GW)
    lan.every(197.2, 300.0, 40.0, lambda t: lan.resolve(t, laptop, GW, unicast=True))
    return BOGON_CONFIG


def nlb_unicast(cap: Capture) -> None:
    """Microsoft NLB, unicast mode: ARP says 02:bf:.., each node's frames come from 02:0N:.."""
    lan = cap.link()
    office(lan, 0.0, 300.0)
    vip = Station("192.168.10.120", "02:bf:c0:a8:0a:78")  # 02:bf + the VIP's four bytes
    node_src = ("02:01:c0:a8:0a:78", "02:02:c0:a8:0a:78")
    for t, client in ((20.0, H22), (80.0, H23), (140.0, H24), (200.0, H22)):
        lan.request(t, client, vip.ip)
        lan.reply(t + 0.0003, vip, client, eth_src=node_src[0])
        lan.reply(t + 0.0005, vip, client, eth_src=node_src[1])


def invalid_sender(cap: Capture) -> None:
    """Sender MACs no station can have: zero, multicast (NLB multicast mode), broadcast."""
    lan = cap.link()
    office(lan, 0.0, 240.0)
    camera = Station("192.168.10.33", "02:00:00:00:33:01")
    # 30: the camera's boot loader announces before its MAC is programmed (sender MAC zero).
    lan.arp(30.0, REQUEST, ZERO, camera.ip, ZERO, camera.ip, eth_src=camera.mac)
    lan.resolve(32.0, camera, GW)
    lan.every(72.0, 240.0, 40.0, lambda t: lan.resolve(t, camera, GW, unicast=True))
    # 60: an NLB cluster in multicast mode answers with its multicast cluster MAC (03:bf:..).
    lan.request(60.0, H22, "192.168.10.34")
    lan.arp(60.0004, REPLY, "03:bf:c0:a8:0a:22", "192.168.10.34", H22.mac, H22.ip,
            eth_src="02:00:00:00:34:01", eth_dst=H22.mac)
    # 90: a broken device sends a gratuitous reply with a broadcast sender MAC for .35.
    lan.arp(90.0, REPLY, BROADCAST, "192.168.10.35", BROADCAST, "192.168.10.35",
            eth_src="02:00:00:00:35:09")
    # 150: the real .35 shows up: its first valid claim.
    host35 = Station("192.168.10.35", "02:00:00:00:35:01")
    lan.resolve(150.0, host35, GW)


FAILOVER_GROUP_CONFIG = """\
# {name}.pcap: the two Pacemaker nodes may hold the cluster address 192.168.10.45 in turn.
failover_groups:
  - name: pacemaker-db
    ips: [192.168.10.45]
    macs: ["02:00:00:00:45:01", "02:00:00:00:45:02"]
"""
NODE1 = Station("192.168.10.46", "02:00:00:00:45:01")
NODE2 = Station("192.168.10.47", "02:00:00:00:45:02")
PCMK_VIP = Station("192.168.10.45", NODE1.mac)


def _ipaddr2_start(lan: Link, t: float, vip: Station) -> None:
    """Pacemaker IPaddr2 start: send_arp, 5 gratuitous requests 1 s apart."""
    for n in range(5):
        lan.announce(t + n, vip)


def group_failover(cap: Capture) -> str:
    """Pacemaker fails the VIP over to node 2, whose gratuitous ARPs were lost (link not up)."""
    lan = cap.link()
    office(lan, 0.0, 360.0)
    vip1, vip2 = PCMK_VIP, PCMK_VIP.on(NODE2.mac)
    lan.resolve(3.0, NODE1, GW)
    lan.resolve(3.5, NODE2, GW)
    lan.every(43.0, 149.0, 40.0, lambda t: lan.resolve(t, NODE1, GW, unicast=True))
    lan.every(43.5, 360.0, 40.0, lambda t: lan.resolve(t, NODE2, GW, unicast=True))
    _ipaddr2_start(lan, 10.0, vip1)
    lan.resolve(20.0, H21, vip1)
    lan.resolve(22.0, H22, vip1)
    for t in (60.0, 100.0, 140.0):
        lan.resolve(t, H21, vip1, unicast=True)
        lan.resolve(t + 2.0, H22, vip1, unicast=True)
    # 149: node 1 dies. H21's unicast probes to node 1 go unanswered (ucast_solicit 3, 1 s
    # apart), then it broadcasts and node 2, now holding the VIP, answers.
    for t in (160.0, 161.0, 162.0):
        lan.request(t, H21, vip1.ip, unicast_to=vip1.mac)
    lan.resolve(163.0, H21, vip2)
    lan.resolve(182.0, H22, vip2)
    for t in (203.0, 243.0, 283.0, 323.0):
        lan.resolve(t, H21, vip2, unicast=True)
        lan.resolve(t + 19.0, H22, vip2, unicast=True)
    return FAILOVER_GROUP_CONFIG.format(name="group-failover")


def group_split_brain(cap: Capture) -> str:
    """The cluster partitions: node 2 starts the VIP while node 1 still runs it."""
    lan = cap.link()
    office(lan, 0.0, 360.0)
    vip1, vip2 = PCMK_VIP, PCMK_VIP.on(NODE2.mac)
    lan.resolve(3.0, NODE1, GW)
    lan.resolve(3.5, NODE2, GW)
    lan.every(43.0, 360.0, 40.0, lambda t: lan.resolve(t, NODE1, GW, unicast=True))
    lan.every(43.5, 360.0, 40.0, lambda t: lan.resolve(t, NODE2, GW, unicast=True))
    _ipaddr2_start(lan, 10.0, vip1)
    lan.resolve(20.0, H21, vip1)
    lan.resolve(22.0, H22, vip1)
    for t in (60.0, 100.0):
        lan.resolve(t, H21, vip1, unicast=True)
        lan.resolve(t + 2.0, H22, vip1, unicast=True)
    # 120: the heartbeat link fails. 126: node 2 (no quorum policy: ignore) starts the VIP.
    _ipaddr2_start(lan, 126.0, vip2)
    # 133: node 1's monitor restarts its copy of the VIP: it announces too.
    _ipaddr2_start(lan, 133.0, vip1)
    # Clients re-resolve by broadcast every 15 s and get two answers, until 222 when the
    # partition heals and Pacemaker stops the VIP on node 2.
    for n, t in enumerate(range(140, 360, 15)):
        client = (H21, H22)[n % 2]
        lan.request(float(t), client, vip1.ip)
        lan.reply(t + 0.0002, vip1, client)
        if t < 222:
            lan.reply(t + 0.0005, vip2, client)
    return FAILOVER_GROUP_CONFIG.format(name="group-split-brain")


PROTECTED_CONFIG = """\
# protected-address.pcap: the PBX owns 192.168.10.5; any other MAC claiming it is a conflict.
protected:
  - ip: 192.168.10.5
    mac: "02:00:00:00:05:01"
"""


def protected_address(cap: Capture) -> str:
    """A printer with a factory static address takes the (idle, silent) PBX's address."""
    lan = cap.link()
    office(lan, 0.0, 300.0)
    printer = Station("192.168.10.5", "02:00:00:00:05:02")
    lan.announce(90.0, printer)
    lan.announce(92.0, printer)
    lan.resolve(93.0, printer, GW)
    for t in (133.0, 173.0):
        lan.resolve(t, printer, GW, unicast=True)
    # Print jobs from H22 and H23: the printer resolves them (to send status) every 20 s.
    for n, t in enumerate((100.0, 120.0, 140.0, 160.0, 180.0)):
        lan.resolve(t, printer, (H22, H23)[n % 2], unicast=n >= 2)
    # 190: the printer is unplugged.
    return PROTECTED_CONFIG


VRRP_GW = Station("192.168.10.1", "00:00:5e:00:01:0a")  # VRRP VRID 10
ROUTER1 = Station("192.168.10.2", "02:00:00:00:02:01")
ROUTER2 = Station("192.168.10.3", "02:00:00:00:03:01")


def vrrp_vip_claimed(cap: Capture) -> None:
    """VRRP gateway: a master switch (no event), then a device configured with the VIP."""
    lan = cap.link()
    office(lan, 0.0, 360.0, gateways=(VRRP_GW,), poller=ROUTER1)
    lan.resolve(5.0, ROUTER2, H24)
    lan.every(65.0, 360.0, 60.0, lambda t: lan.resolve(t, ROUTER2, H24, unicast=True))
    # 100: router 1's priority is lowered for maintenance (it keeps routing); router 2 becomes
    # master and announces the VIP on the same virtual MAC (RFC 5798: source and sender MAC
    # are the virtual MAC).
    lan.announce(103.6, VRRP_GW)
    # 200: a lab controller with the factory address 192.168.10.1 is plugged in; it announces
    # it and looks for its peer .30 every 20 s, until it is unplugged at 270.
    lab = VRRP_GW.on("02:00:00:00:01:99")
    lan.announce(200.0, lab)
    for t in (201.0, 221.0, 241.0, 261.0):
        lan.request(t, lab, "192.168.10.30")


def glbp(cap: Capture) -> None:
    """GLBP gateway: the AVG answers with two forwarders' virtual MACs in turn."""
    lan = cap.link()
    forwarders = (Station("192.168.10.1", "00:07:b4:00:01:01"),
                  Station("192.168.10.1", "00:07:b4:00:01:02"))
    office(lan, 0.0, 300.0, gateways=forwarders, poller=ROUTER1)
    lan.resolve(5.0, ROUTER2, H24)


NEW_ACTIVITY_CONFIG = """\
# new-activity.pcap: report an address coming back after one hour of silence.
inactive_after: 1h
"""


def new_activity(cap: Capture) -> str:
    """A meeting-room PC is used for 5 minutes, then comes back two hours later."""
    lan = cap.link()
    office(lan, 0.0, 7800.0, hosts=(H21, H22), poll=60.0)
    room_pc = Station("192.168.10.32", "02:00:00:00:32:01")
    lan.resolve(8.0, room_pc, GW)
    lan.every(56.0, 300.0, 48.0, lambda t: lan.resolve(t, room_pc, GW, unicast=True))
    # 7500: it boots again and announces its address (Windows does at start-up).
    lan.announce(7500.0, room_pc)
    lan.resolve(7500.5, room_pc, GW)
    lan.every(7548.5, 7800.0, 48.0, lambda t: lan.resolve(t, room_pc, GW, unicast=True))
    return NEW_ACTIVITY_CONFIG


def nmap_sweep(cap: Capture) -> None:
    """`nmap -sn 192.168.10.0/24`: 253 requests 2 ms apart; the live hosts answer."""
    lan = cap.link()
    office(lan, 0.0, 240.0)
    scanner = Station("192.168.10.77", "02:00:00:00:77:01")
    alive = {s.ip: s for s in (GW, *HOSTS)}
    targets = [f"192.168.10.{n}" for n in range(1, 255) if n != 77]
    for k, ip in enumerate(targets):
        t = 60.0 + 0.002 * k
        lan.request(t, scanner, ip)
        if ip in alive:
            lan.reply(t + RTT, alive[ip], scanner)


SCENARIOS: dict[str, Scenario] = {
    "quiet-lan": quiet_lan,
    "cluster-failover": cluster_failover,
    "keepalived-failback": keepalived_failback,
    "duplicate-ip": duplicate_ip,
    "announcement-answered": announcement_answered,
    "owner-defended": owner_defended,
    "gateway-spoof": gateway_spoof,
    "spoof-in-progress": spoof_in_progress,
    "probe-in-use": probe_in_use,
    "reassignment": reassignment,
    "vlan-trunk": vlan_trunk,
    "qinq": qinq,
    "bogon": bogon,
    "nlb-unicast": nlb_unicast,
    "invalid-sender": invalid_sender,
    "group-failover": group_failover,
    "group-split-brain": group_split_brain,
    "protected-address": protected_address,
    "vrrp-vip-claimed": vrrp_vip_claimed,
    "glbp": glbp,
    "new-activity": new_activity,
    "nmap-sweep": nmap_sweep,
}


def generate(out: Path) -> list[Path]:
    """Writes every scenario's pcap (and config, if any) into `out`; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, scenario in SCENARIOS.items():
        cap = Capture()
        config = scenario(cap)
        pcap = out / f"{name}.pcap"
        cap.write(pcap)
        written.append(pcap)
        if config is not None:
            yml = out / f"{name}.yml"
            yml.write_text(config, encoding="utf-8")
            written.append(yml)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write into (default: the folder of this script)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
