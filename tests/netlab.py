"""Network-namespace lab for live arpwatchd tests.

Why this exists
---------------
Replaying pcaps proves the parser and the tracker, but not what real Linux hosts do with ARP:
whether a victim's cache accepts a spoofed reply, whether an owner answers a probe, whether a
sensor on a bridge sees unicast frames, whether a defense frame lands. Those are facts about
the kernel, and DESIGN.md builds rules on them, so they are measured here against live kernels
in throw-away network namespaces, and every measurement is a test (tests/test_netlab.py).

Topology::

    <id>-s  (sensor namespace)                       <id>-<name>  (one per host)
    +------------------------------------------+     +----------------------------+
    | bridge <id>br  ageing_time 0, no STP     |     | <id>-<name>  veth end      |
    |   ports <id>p1 <id>p2 ...  ------------------>  | MAC + IPv4 addresses       |
    | (the sensor captures on the bridge)      |     | optional 802.1Q tagging    |
    +------------------------------------------+     +----------------------------+

* ``ageing_time 0`` makes the bridge learn nothing, so it floods every frame to every port,
  like a hub or a switch's mirror port: a sensor on any port, or on the bridge device itself,
  sees spoofed unicast replies between two other hosts (measured in test_netlab.py).
* Everything is created *inside* the lab's namespaces (``ip -n NS``; a veth is created in the
  sensor namespace with its peer born directly in the host namespace), so the root namespace and
  the machine's real interfaces are never touched. Every name starts with a per-run id (``aw`` +
  4 random hex digits) and interface names are at most 15 characters; a command that ran in the
  wrong namespace by mistake would fail on an unknown name instead of hitting a real ``eth0``.
* IPv6 is disabled in every namespace (by default) so captures hold only the traffic a test made.
  New namespaces start from the kernel's built-in sysctl defaults, not from the host's tweaks.
* VLAN hosts: this kernel has no ``CONFIG_VLAN_8021Q`` (no ``type vlan`` links) and no bridge
  VLAN filtering, so a VLAN host gets a tiny tcx eBPF program on its veth instead of a
  subinterface: egress pushes an 802.1Q tag (unless the frame already carries one), ingress pops
  the host's own VLAN and drops everything else. On the bridge the frames are exactly what a
  host behind an access port of a trunk would produce, and the host's stack sees untagged frames.
  It needs tcx (Linux >= 6.6); ``vlan_available()`` says why not otherwise.
* Teardown is guaranteed three ways: ``with Lab() as lab`` (``__exit__``), ``atexit``, and a
  registry in ``/run/arpwatchd-netlab`` naming each lab's owner process, from which the next lab
  deletes the namespaces of runs whose owner died (SIGKILL, power loss). Namespaces of a live
  owner are never touched, so parallel runs are safe.
* Subprocesses get argument lists only (never a shell), every wait has a timeout, and every frame
  sender sends a fixed count. The same file is also the small helper run *inside* namespaces
  (``python netlab.py send|vlan|poke``), because Python 3.11 has no ``os.setns``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
ARP_FILTER = "arp or (vlan and arp)"
#: MAC of the sensor's bridge device (the "sensor NIC"); labs are isolated, so all may share it.
SENSOR_MAC = "02:5e:00:00:00:01"
REGISTRY_DIR = Path(os.environ.get("ARPWATCHD_NETLAB_DIR", "/run/arpwatchd-netlab"))
_HOST_NAME = re.compile(r"[a-z][a-z0-9]{0,7}\Z")
_TOOLS = ("ip", "sysctl", "tcpdump", "arping")


class LabError(RuntimeError):
    """A lab command failed (the message carries the command and its stderr)."""


# --------------------------------------------------------------------------------------------
# Frames


def mac_bytes(mac: str) -> bytes:
    """``"02:00:00:00:00:0a"`` -> 6 bytes."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def arp_frame(
    op: int,
    eth_src: str,
    eth_dst: str,
    sha: str,
    spa: str,
    tha: str,
    tpa: str,
    vlan: int | None = None,
    *,
    pad: bool = True,
) -> bytes:
    """Build an Ethernet II ARP frame (RFC 826), optionally 802.1Q tagged, padded to 60 bytes.

    Every field is explicit so tests can build bogus frames too (mismatched Ethernet source,
    probes with spa 0.0.0.0, gratuitous replies with any target MAC).
    """
    header = mac_bytes(eth_dst) + mac_bytes(eth_src)
    if vlan is not None:
        header += struct.pack("!HH", 0x8100, vlan & 0x0FFF)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
    body += mac_bytes(sha) + socket.inet_aton(spa) + mac_bytes(tha) + socket.inet_aton(tpa)
    frame = header + struct.pack("!H", 0x0806) + body
    minimum = 64 if vlan is not None else 60
    return frame.ljust(minimum, b"\0") if pad else frame


def announcement(
    mac: str, ip: str, *, eth_src: str | None = None, vlan: int | None = None
) -> bytes:
    """RFC 5227 ARP Announcement: broadcast request, spa = tpa = ip, tha zero."""
    return arp_frame(ARP_REQUEST, eth_src or mac, BROADCAST, mac, ip, ZERO_MAC, ip, vlan)


def probe(mac: str, ip: str, *, vlan: int | None = None) -> bytes:
    """RFC 5227 ARP Probe: broadcast request, spa 0.0.0.0, tha zero, asking for ip."""
    return arp_frame(ARP_REQUEST, mac, BROADCAST, mac, "0.0.0.0", ZERO_MAC, ip, vlan)


def reply(
    sha: str, spa: str, tha: str, tpa: str, *, eth_src: str | None = None, vlan: int | None = None
) -> bytes:
    """Unicast ARP reply "spa is-at sha" sent to (tha, tpa): how arpspoof poisons a cache."""
    return arp_frame(ARP_REPLY, eth_src or sha, tha, sha, spa, tha, tpa, vlan)


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """One captured ARP frame, decoded independently of arpwatchd's own parser."""

    ts: float
    eth_src: str
    eth_dst: str
    vlan: int | None
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str

    @property
    def gratuitous(self) -> bool:
        return self.spa == self.tpa and self.spa != "0.0.0.0"


def parse_arp(frame: bytes, ts: float = 0.0) -> ArpPacket | None:
    """Decode an Ethernet/IPv4 ARP frame (outer VLAN id kept, QinQ inner tag skipped)."""
    offset, vlan = 12, None
    while len(frame) >= offset + 2 and frame[offset : offset + 2] in (b"\x81\x00", b"\x88\xa8"):
        if vlan is None:
            vlan = struct.unpack_from("!H", frame, offset + 2)[0] & 0x0FFF
        offset += 4
    if len(frame) < offset + 30 or frame[offset : offset + 2] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, offset + 2)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    a = offset + 10
    return ArpPacket(
        ts=ts,
        eth_src=mac_str(frame[6:12]),
        eth_dst=mac_str(frame[0:6]),
        vlan=vlan,
        op=op,
        sha=mac_str(frame[a : a + 6]),
        spa=socket.inet_ntoa(frame[a + 6 : a + 10]),
        tha=mac_str(frame[a + 10 : a + 16]),
        tpa=socket.inet_ntoa(frame[a + 16 : a + 20]),
    )


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """Read a classic pcap file (either byte order, micro- or nanosecond stamps)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise LabError(f"{path}: not a pcap file")
    endian, scale = formats[magic]
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        out.append((sec + frac * scale, data[pos : pos + incl]))
        pos += incl
    return out


# --------------------------------------------------------------------------------------------
# Commands


def _run(
    argv: Sequence[str], timeout: float = 10.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout} s: {' '.join(argv)}") from exc
    if check and done.returncode != 0:
        raise LabError(f"exit {done.returncode}: {' '.join(argv)}: {done.stderr.strip()}")
    return done


def _helper(ns: str, *args: str) -> list[str]:
    """Command running this file's helper ``main`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, sys.executable, "-I", str(Path(__file__).resolve()), *args]


def _netns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


def _kill_namespace(ns: str) -> None:
    """Kill what still runs in one of our namespaces, then delete it (idempotent)."""
    if not _netns_exists(ns):
        return
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run(["ip", "netns", "del", ns], check=False)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 2.0) -> int:
    """SIGTERM, wait ``timeout``, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
    return proc.returncode


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def reap_stale_labs() -> list[str]:
    """Delete the namespaces of labs whose owner process is gone; returns their names."""
    reaped: list[str] = []
    if not REGISTRY_DIR.is_dir():
        return reaped
    for entry in REGISTRY_DIR.glob("*.json"):
        try:
            record = json.loads(entry.read_text())
            pid, start = int(record["pid"]), str(record["start"])
            namespaces = [str(ns) for ns in record["namespaces"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written right now, or not ours: leave it
        if _proc_start(pid) == start:
            continue
        for ns in namespaces:
            if _netns_exists(ns):
                _kill_namespace(ns)
                reaped.append(ns)
        entry.unlink(missing_ok=True)
    return reaped


@functools.cache
def lab_available() -> tuple[bool, str]:
    """(True, "") if live labs can run here, else (False, reason) for ``pytest.skip``."""
    if not sys.platform.startswith("linux"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "live lab needs root (network namespaces, raw sockets)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            False,
            f"live lab needs {', '.join(missing)} (iproute2, procps, tcpdump, iputils-arping)",
        )
    ns = f"aw{secrets.token_hex(2)}-probe"
    try:
        _run(["ip", "netns", "add", ns], timeout=5)
        _run(["ip", "-n", ns, "link", "add", "name", "b0", "type", "bridge", "ageing_time", "0"])
        _run(["ip", "-n", ns, "link", "add", "name", "v0", "type", "veth", "peer", "name", "v1"])
    except LabError as exc:
        return False, f"no usable network namespaces, bridges or veths: {exc}"
    finally:
        _kill_namespace(ns)
    return True, ""


@functools.cache
def vlan_available() -> tuple[bool, str]:
    """Whether VLAN hosts work (tcx eBPF attach on a veth inside a namespace)."""
    ok, reason = lab_available()
    if not ok:
        return ok, reason
    ns = f"aw{secrets.token_hex(2)}-probe"
    try:
        _run(["ip", "netns", "add", ns], timeout=5)
        _run(["ip", "-n", ns, "link", "add", "name", "v0", "type", "veth", "peer", "name", "v1"])
        _run(_helper(ns, "vlan", "v0", "10"))
    except LabError as exc:
        return False, f"VLAN hosts need tcx eBPF (Linux >= 6.6): {exc}"
    finally:
        _kill_namespace(ns)
    return True, ""


# --------------------------------------------------------------------------------------------
# Capture


class Capture:
    """tcpdump running in a namespace, writing pcap to a file; use as a context manager.

    Entering returns once tcpdump says it is listening (the filter is attached). Leaving waits
    ``settle`` seconds for frames in flight, stops tcpdump and loads what it captured.
    ``buffer_kib`` sets tcpdump's capture buffer (``-B``): its default (2 MiB) dropped frames
    of a scan on this loaded machine, and a replay compared with a live sensor must see every
    frame the sensor saw.
    """

    def __init__(
        self, ns: str, iface: str, path: Path, bpf: str = ARP_FILTER, *, promisc: bool = True,
        buffer_kib: int | None = None,
    ) -> None:
        self.ns, self.iface, self.path, self.bpf, self.promisc = ns, iface, path, bpf, promisc
        self.buffer_kib = buffer_kib
        self.settle = 0.3
        self.frames: list[tuple[float, bytes]] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        argv = ["ip", "netns", "exec", self.ns, "tcpdump", "-i", self.iface, "-n", "-U"]
        argv += ["--immediate-mode", "-s", "0", "-w", "-"] + ([] if self.promisc else ["-p"])
        argv += ["-B", str(self.buffer_kib)] if self.buffer_kib else []
        with self.path.open("wb") as out:
            self._proc = subprocess.Popen([*argv, self.bpf], stdout=out, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None
        deadline, seen = time.monotonic() + 5.0, b""
        while b"listening on" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                stop_process(self._proc)
                raise LabError(f"tcpdump did not start on {self.ns}/{self.iface}: {seen!r}")
            if select.select([self._proc.stderr], [], [], left)[0]:
                seen += os.read(self._proc.stderr.fileno(), 4096)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        time.sleep(self.settle)
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(3.0)
        except subprocess.TimeoutExpired:
            stop_process(self._proc)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None  # stopping twice (a test that reads the capture early) is a no-op
        self.frames = read_pcap(self.path)

    def arps(self) -> list[ArpPacket]:
        """The captured ARP frames, decoded, in capture order."""
        return [p for ts, f in self.frames if (p := parse_arp(f, ts)) is not None]

    def text(self) -> str:
        """``tcpdump -e -xx`` rendering of the capture, for evidence in notes and failures."""
        return _run(["tcpdump", "-r", str(self.path), "-e", "-n", "-xx"], check=False).stdout


# --------------------------------------------------------------------------------------------
# Lab


class Host:
    """A namespace with one veth into the lab bridge. Create with ``Lab.add_host``."""

    def __init__(self, lab: Lab, name: str, index: int, mac: str, vlan: int | None) -> None:
        self.lab, self.name, self.mac, self.vlan = lab, name, mac, vlan
        self.ns = f"{lab.id}-{name}"
        self.dev = f"{lab.id}-{name}"  # the host's interface (carries its MAC and addresses)
        self.port = f"{lab.id}p{index}"  # the bridge end of the veth, in the sensor namespace

    def __repr__(self) -> str:
        return f"Host({self.name!r}, mac={self.mac}, vlan={self.vlan}, ips={self.ips})"

    @property
    def ips(self) -> list[str]:
        """Current IPv4 addresses of ``dev`` (primary first)."""
        out = _run(["ip", "-n", self.ns, "-j", "addr", "show", "dev", self.dev]).stdout
        return [
            a["local"]
            for link in json.loads(out)
            for a in link["addr_info"]
            if a["family"] == "inet"
        ]

    @property
    def ip(self) -> str:
        return self.ips[0]

    def run(
        self, argv: Sequence[str], timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside this host's namespace (no shell)."""
        return _run(["ip", "netns", "exec", self.ns, *argv], timeout, check)

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the namespace; the lab stops it at teardown if still running."""
        return self.lab.spawn(self.ns, argv, **kwargs)

    def sysctl(self, **settings: str | int) -> None:
        """``host.sysctl(**{"net.ipv4.conf.all.arp_accept": 1})``."""
        self.lab.sysctl(self.ns, settings)

    def add_ip(self, ip: str) -> None:
        iface = ipaddress.ip_interface(ip if "/" in ip else f"{ip}/24")
        _run(["ip", "-n", self.ns, "addr", "add", str(iface), "dev", self.dev])

    def del_ip(self, ip: str) -> None:
        iface = ipaddress.ip_interface(ip if "/" in ip else f"{ip}/24")
        _run(["ip", "-n", self.ns, "addr", "del", str(iface), "dev", self.dev])

    def link_down(self) -> None:
        _run(["ip", "-n", self.ns, "link", "set", "dev", self.dev, "down"])

    def link_up(self) -> None:
        _run(["ip", "-n", self.ns, "link", "set", "dev", self.dev, "up"])

    def _arping(self, mode: str, ip: str, count: int) -> None:
        # iputils arping takes whole-second intervals only and waits ~1 s after the last frame.
        argv = ["arping", "-q", mode, "-c", str(count), "-I", self.dev, "-s", ip, ip]
        self.run(argv, timeout=count + 5.0, check=False)

    def arping_announce(self, ip: str | None = None, count: int = 1) -> None:
        """``arping -U``: gratuitous requests for an address this host owns (~count seconds)."""
        self._arping("-U", ip or self.ip, count)

    def arping_reply(self, ip: str | None = None, count: int = 1) -> None:
        """``arping -A``: gratuitous replies for an address this host owns (~count seconds)."""
        self._arping("-A", ip or self.ip, count)

    def arping_request(self, target: str, count: int = 1, source: str | None = None) -> int:
        """``arping`` requests for ``target``; returns how many replies came back.

        arping reads replies on a packet socket: the host's own neighbour table learns nothing
        from them (no entry is created by an unrequested reply). Use ``resolve`` for that.
        """
        argv = ["arping", "-c", str(count), "-w", str(count + 1), "-I", self.dev]
        argv += ["-s", source] if source else []
        done = self.run([*argv, target], timeout=count + 5.0, check=False)
        found = re.search(r"Received (\d+) response", done.stdout)
        return int(found.group(1)) if found else 0

    def resolve(self, ip: str, timeout: float = 3.0) -> str | None:
        """Make the kernel resolve ``ip`` (a UDP datagram to port 9); returns the MAC learnt."""
        _run(_helper(self.ns, "poke", ip))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.neigh_entry(ip)
            if entry and entry[0] and "INCOMPLETE" not in entry[1]:
                return entry[0]
            time.sleep(0.02)
        return None

    def neigh_entry(self, ip: str) -> tuple[str | None, list[str]] | None:
        """(MAC or None, states) of the neighbour entry for ``ip``, or None if there is none."""
        out = _run(["ip", "-n", self.ns, "-j", "neigh", "show", "to", ip, "dev", self.dev]).stdout
        for entry in json.loads(out or "[]"):
            if entry.get("dst") == ip:
                return entry.get("lladdr"), list(entry.get("state", []))
        return None

    def neigh(self, ip: str) -> str | None:
        """The MAC this host's kernel currently has for ``ip`` (None: no usable entry)."""
        entry = self.neigh_entry(ip)
        return entry[0] if entry and "FAILED" not in entry[1] else None

    def flush_neigh(self) -> None:
        _run(["ip", "-n", self.ns, "neigh", "flush", "dev", self.dev])

    def send_frames(self, frames: Iterable[bytes], count: int = 1, interval: float = 0.0) -> None:
        """Send raw Ethernet frames from this host ``count`` times, ``interval`` s apart.

        On a VLAN host, untagged frames leave tagged with the host's VLAN; frames that already
        carry a tag are sent as they are (so tests can inject into other VLANs or send QinQ).
        """
        self.lab.send_frames(self.ns, self.dev, frames, count, interval)

    def capture(self, bpf: str = ARP_FILTER, *, promisc: bool = True) -> Capture:
        """Capture on this host's interface (what a sensor on an ordinary port would see)."""
        return self.lab.capture(bpf, ns=self.ns, iface=self.dev, promisc=promisc)


class Lab:
    """A sensor namespace with a flooding bridge, plus hosts; a context manager.

    Attributes:
        id: per-run prefix of every name, ``aw`` + 4 hex digits.
        sensor_ns: namespace holding the bridge; run the sensor there (``sensor_cmd``).
        bridge: the bridge device to capture on (``arpwatchd run -i <bridge>``).
        hosts: hosts by name.
    """

    def __init__(self, *, ageing_time: int = 0, ipv6: bool = False) -> None:
        self.ageing_time = ageing_time  # centiseconds; 0 = flood everything (mirror port)
        self.ipv6 = ipv6
        self.id = ""
        self.sensor_ns = ""
        self.bridge = ""
        self.sensor_mac = SENSOR_MAC
        self.hosts: dict[str, Host] = {}
        self.workdir = Path()
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._registry = Path()
        self._started = self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except LabError:
            if exc_type is None:
                raise  # otherwise keep the test's own failure visible

    def start(self) -> None:
        """Reap dead runs, reserve an id, build the sensor namespace and its bridge."""
        if self._started:
            return
        ok, reason = lab_available()
        if not ok:
            raise LabError(reason)
        reap_stale_labs()
        REGISTRY_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        for _ in range(100):
            self.id = f"aw{secrets.token_hex(2)}"
            self._registry = REGISTRY_DIR / f"{self.id}.json"
            if any(Path("/run/netns").glob(f"{self.id}-*")):
                continue
            try:
                fd = os.open(self._registry, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            break
        else:
            raise LabError("no free lab id")
        self._started = True
        atexit.register(self.close)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        self.sensor_ns, self.bridge = f"{self.id}-s", f"{self.id}br"
        try:
            self._add_namespace(self.sensor_ns)
            ns = ["ip", "-n", self.sensor_ns]
            options = f"ageing_time {self.ageing_time} stp_state 0 forward_delay 0 mcast_snooping 0"
            _run([*ns, "link", "add", "name", self.bridge, "type", "bridge", *options.split()])
            _run([*ns, "link", "set", "dev", self.bridge, "address", self.sensor_mac, "up"])
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ fails
            raise

    def close(self) -> None:
        """Stop our processes, delete our namespaces (and so every veth). Idempotent."""
        if not self._started or self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in reversed(self._procs):
            stop_process(proc)
        for ns in reversed(self._namespaces):
            _kill_namespace(ns)
        left = [ns for ns in self._namespaces if _netns_exists(ns)]
        if left:
            raise LabError(f"could not delete namespaces {left}; see {self._registry}")
        self._registry.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _save_registry(self) -> None:
        record = {
            "pid": os.getpid(),
            "start": _proc_start(os.getpid()),
            "namespaces": self._namespaces,
        }
        tmp = self._registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self._registry)

    def _add_namespace(self, ns: str) -> None:
        self._namespaces.append(ns)
        self._save_registry()  # recorded before it exists, so a crash right after is reaped
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
        if not self.ipv6:
            self.sysctl(
                ns, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}
            )

    # -- building ----------------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        mac: str,
        ips: Sequence[str] = (),
        vlan: int | None = None,
        *,
        up: bool = True,
        sysctls: dict[str, str | int] | None = None,
    ) -> Host:
        """Add a host namespace whose veth (MAC ``mac``, addresses ``ips``) is a bridge port.

        Args:
            name: 1-8 of ``[a-z0-9]``, starting with a letter.
            mac: the host interface's MAC.
            ips: ``"192.0.2.10"`` (taken as /24) or ``"192.0.2.10/24"``; the first is primary.
            vlan: 802.1Q VLAN id: the host's frames carry this tag on the bridge (access host
                of a trunk); it sees only frames of its VLAN.
            up: bring the interface up (False: call ``host.link_up()`` later, e.g. to watch
                what a host sends when its link comes up).
            sysctls: applied in the host namespace before the link comes up, e.g.
                ``{"net.ipv4.conf.all.arp_accept": 1}``.
        """
        if not self._started:
            raise LabError("use the lab as a context manager (or call start()) first")
        if not _HOST_NAME.match(name) or name in self.hosts or name == "s":
            raise ValueError(f"bad or duplicate host name {name!r} (1-8 of [a-z0-9])")
        if vlan is not None and not 1 <= vlan <= 4094:
            raise ValueError(f"VLAN id {vlan} out of range")
        mac_bytes(mac)
        host = Host(self, name, len(self.hosts) + 1, mac.lower(), vlan)
        self._add_namespace(host.ns)
        if sysctls:
            self.sysctl(host.ns, sysctls)
        sensor = ["ip", "-n", self.sensor_ns, "link"]
        # the peer is born in the host namespace: nothing ever appears in the root namespace
        veth = ["type", "veth", "peer", "name", host.dev, "netns", host.ns]
        _run([*sensor, "add", "name", host.port, *veth])
        _run([*sensor, "set", "dev", host.port, "master", self.bridge, "up"])
        _run(["ip", "-n", host.ns, "link", "set", "dev", host.dev, "address", host.mac])
        for ip in ips:
            host.add_ip(ip)
        if vlan is not None:
            _run(_helper(host.ns, "vlan", host.dev, str(vlan)))
        if up:
            host.link_up()
        self.hosts[name] = host
        return host

    def sysctl(self, ns: str, settings: dict[str, str | int]) -> None:
        pairs = [f"{key}={value}" for key, value in settings.items()]
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *pairs])

    # -- running -----------------------------------------------------------------------------

    def sensor_cmd(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside the sensor namespace, e.g.
        ``lab.sensor_cmd([sys.executable, "-m", "arpwatchd", "run", "-i", lab.bridge, ...])``."""
        return ["ip", "netns", "exec", self.sensor_ns, *argv]

    def sensor_popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the sensor namespace; stopped at teardown if still running."""
        return self.spawn(self.sensor_ns, argv, **kwargs)

    def sensor_run(
        self, argv: Sequence[str], timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(self.sensor_cmd(argv), timeout, check)

    def spawn(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        if ns not in self._namespaces:
            raise LabError(f"{ns} is not a namespace of this lab")
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            **kwargs,  # type: ignore[call-overload]
        )
        self._procs.append(proc)
        return proc

    def send_frames(
        self, ns: str, dev: str, frames: Iterable[bytes], count: int = 1, interval: float = 0.0
    ) -> None:
        """Send raw frames on ``dev`` in ``ns``: ``count`` rounds, ``interval`` s apart."""
        hexes = [f.hex() for f in frames]
        if not hexes or count < 1:
            return
        if ns not in self._namespaces:
            raise LabError(f"{ns} is not a namespace of this lab")
        argv = _helper(ns, "send", dev, str(count), str(interval), *hexes)
        _run(argv, timeout=10.0 + count * interval)

    def sensor_send(self, frames: Iterable[bytes], count: int = 1, interval: float = 0.0) -> None:
        """Send raw frames out of the bridge device (as a sensor's defense would leave)."""
        self.send_frames(self.sensor_ns, self.bridge, frames, count, interval)

    def capture(
        self,
        bpf: str = ARP_FILTER,
        *,
        ns: str | None = None,
        iface: str | None = None,
        promisc: bool = True,
        buffer_kib: int | None = None,
    ) -> Capture:
        """A ``Capture`` on the bridge (default) or on ``iface`` in ``ns``."""
        fd, name = tempfile.mkstemp(suffix=".pcap", dir=self.workdir)
        os.close(fd)
        path = Path(name)
        return Capture(ns or self.sensor_ns, iface or self.bridge, path, bpf, promisc=promisc,
                       buffer_kib=buffer_kib)


# --------------------------------------------------------------------------------------------
# Helper run inside a namespace: python netlab.py send|vlan|poke ...


def _bpf_insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def _vlan_programs(vid: int) -> tuple[list[bytes], list[bytes]]:
    """eBPF (SCHED_CLS) programs: egress pushes 802.1Q ``vid``, ingress pops it or drops."""
    i = _bpf_insn
    egress = [
        i(0xBF, 6, 1),  # r6 = skb (LD_ABS needs it)
        i(0x28, imm=12),  # r0 = ntohs(ethertype)
        i(0x15, 0, off=5, imm=0x8100),  # already tagged: pass as is
        i(0x15, 0, off=4, imm=0x88A8),
        i(0xBF, 1, 6),
        i(0xB7, 2, imm=0x0081),  # htons(ETH_P_8021Q)
        i(0xB7, 3, imm=vid),
        i(0x85, imm=18),  # bpf_skb_vlan_push(skb, proto, vid)
        i(0xB7, 0, imm=0),  # TCX_PASS
        i(0x95),
    ]
    ingress = [
        i(0xBF, 6, 1),
        i(0x61, 2, 6, off=20),  # r2 = skb->vlan_present
        i(0x15, 2, off=7, imm=0),  # untagged: drop
        i(0x61, 2, 6, off=24),  # r2 = skb->vlan_tci
        i(0x57, 2, imm=0x0FFF),
        i(0x55, 2, off=4, imm=vid),  # another VLAN: drop
        i(0xBF, 1, 6),
        i(0x85, imm=19),  # bpf_skb_vlan_pop(skb)
        i(0xB7, 0, imm=0),  # TCX_PASS
        i(0x95),
        i(0xB7, 0, imm=2),  # TCX_DROP
        i(0x95),
    ]
    return egress, ingress


def _bpf(cmd: int, attr: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 144)
    result = int(libc.syscall(321, cmd, buf, 144))  # __NR_bpf on x86_64
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _attach_vlan(dev: str, vid: int) -> None:
    if os.uname().machine != "x86_64":
        raise OSError("the VLAN helper knows the bpf syscall number of x86_64 only")
    ifindex = socket.if_nametoindex(dev)
    licence = ctypes.create_string_buffer(b"GPL")
    for code, attach_type in zip(_vlan_programs(vid), (47, 46), strict=True):  # TCX_EGRESS/INGRESS
        insns = ctypes.create_string_buffer(b"".join(code))
        # union bpf_attr for BPF_PROG_LOAD: prog_type (SCHED_CLS), insn_cnt, insns, license,
        # then log_level, log_size, log_buf, kern_version, prog_flags (all 0), prog_name.
        load = struct.pack(
            "<IIQQ", 3, len(code), ctypes.addressof(insns), ctypes.addressof(licence)
        )
        load += bytes(24) + b"awvlan".ljust(16, b"\0")
        fd = _bpf(5, load)  # BPF_PROG_LOAD
        _bpf(8, struct.pack("<IIIIIIQ", ifindex, fd, attach_type, 0, 0, 0, 0))  # BPF_PROG_ATTACH
        os.close(fd)  # the attachment keeps the program; it dies with the device


def _send(dev: str, count: int, interval: float, frames: list[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:  # protocol 0: send only
        sock.bind((dev, 0))
        for n in range(count):
            for frame in frames:
                sock.send(frame)
            if n + 1 < count:
                time.sleep(interval)


def _poke(ip: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"netlab", (ip, 9))


def main(argv: list[str]) -> int:
    """Entry point of the in-namespace helper (not for tests to call directly)."""
    match argv:
        case ["send", dev, count, interval, *hexes]:
            _send(dev, min(int(count), 10_000), float(interval), [bytes.fromhex(h) for h in hexes])
        case ["vlan", dev, vid]:
            _attach_vlan(dev, int(vid))
        case ["poke", ip]:
            _poke(ip)
        case ["reap"]:
            print("\n".join(reap_stale_labs()))
        case _:
            print(
                "usage: netlab.py send DEV COUNT INTERVAL HEX... | vlan DEV VID | poke IP | reap",
                file=sys.stderr,
            )
            return 2
    return 0


# ============================================================================================
# Live sensor helpers: `arpwatchd run` / `arpwatchd replay` in a lab, for the end-to-end tests
# tests/test_live_sensor.py and tests/test_live_defense.py. A self-contained section (its own
# imports below): nothing above depends on it.

from collections.abc import Callable, Iterator  # noqa: E402  (this section's own imports)
from datetime import datetime  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
#: ``SO_TIMESTAMP`` (Python's socket module does not export it); 29 on x86 and most ports.
SO_TIMESTAMP = 29
SensorEvent = dict[str, object]
"""One JSON object of the sensor's events file, as loaded by ``json.loads``."""


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Polls ``check`` every ``step`` s until it is true; returns the ``time.time()`` it was.

    Raises:
        AssertionError: naming ``what`` when ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.time()
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


@contextlib.contextmanager
def kernel_rx_timestamps() -> Iterator[None]:
    """Makes the kernel stamp every received frame once (``skb->tstamp``) while it lasts.

    Each packet socket otherwise reads the clock itself when a frame reaches it, so the sensor's
    libpcap and a tcpdump on the same bridge see one frame at times a few microseconds apart
    (measured here: 1-20 us). One socket with ``SO_TIMESTAMP`` turns on the kernel's receive
    timestamps system-wide (a static key, enabled from a work queue, hence the short wait), and
    then every packet socket reports the frame's one timestamp. Needed to compare a live run
    with a replay of a separate capture to the microsecond.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        time.sleep(0.1)
        yield


def pin_neigh(host: Host, ip: str, mac: str) -> None:
    """A permanent neighbour entry on ``host``: it will never ARP for ``ip`` (no re-probes).

    After ``resolve`` the peer answers with an ICMP port unreachable, and its kernel re-probes
    the resolver by unicast ARP 5 s later; a request addressed to the victim rewrites the
    victim's entry (LAB_NOTES row 1), which would undo a poisoning without any defense.
    """
    host.run(["ip", "neigh", "replace", ip, "lladdr", mac, "dev", host.dev, "nud", "permanent"])


def pick(events: Iterable[SensorEvent], event: str | None = None, **fields: object
         ) -> list[SensorEvent]:
    """The events named ``event`` (any if None) whose ``fields`` have the given values."""
    return [
        e for e in events
        if (event is None or e.get("event") == event)
        and all(e.get(k) == v for k, v in fields.items())
    ]


def event_ts(event: SensorEvent, key: str = "ts") -> float:
    """An event's RFC 3339 UTC time (``ts``, or ``since``) as epoch seconds."""
    return datetime.fromisoformat(str(event[key]).replace("Z", "+00:00")).timestamp()


def having(event: str, n: int = 1, **fields: object) -> Callable[[list[SensorEvent]], bool]:
    """A ``SensorProcess.wait_for`` check: at least ``n`` events ``event`` with ``fields``."""
    return lambda events: len(pick(events, event, **fields)) >= n


def read_events(path: Path) -> list[SensorEvent]:
    """Complete JSON lines of an events file (a line still being written is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


class SensorProcess:
    """``arpwatchd run`` on the lab bridge, in the sensor namespace, with its own files.

    ``start()`` returns once the sensor logged ``capturing on`` (its capture is open);
    ``events()`` / ``wait_for()`` read the JSON lines file; ``stop()`` sends SIGTERM and times
    the exit. The config is written to ``<workdir>/<tag>.yml``; metrics are off (``0``). If a
    test fails first, the lab stops the process at teardown.
    """

    def __init__(
        self,
        lab: Lab,
        config: str,
        *,
        tag: str = "sensor",
        state: Path | None = None,
        args: Sequence[str] = (),
        interfaces: Sequence[str] | None = None,
    ) -> None:
        self.lab = lab
        self.config_path = lab.workdir / f"{tag}.yml"
        self.config_path.write_text(config, encoding="utf-8")
        self.events_path = lab.workdir / f"{tag}-events.jsonl"
        self.log_path = lab.workdir / f"{tag}-stderr.log"
        self.state_path = state or lab.workdir / f"{tag}.sqlite"
        argv = [sys.executable, "-m", "arpwatchd", "run"]
        for iface in interfaces or [lab.bridge]:
            argv += ["-i", iface]
        argv += ["-c", str(self.config_path), "--events", str(self.events_path)]
        argv += ["--state", str(self.state_path), "--metrics-address", "0", *args]
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, timeout: float = 15.0) -> SensorProcess:
        with self.log_path.open("wb") as log:
            self.proc = self.lab.sensor_popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                cwd=str(REPO_ROOT),
            )
        proc = self.proc

        def capturing() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"arpwatchd exited {proc.returncode} before capturing: "
                                     f"{self.log()}")
            return "capturing on" in self.log()

        self.started_at = wait_until(capturing, timeout, f"arpwatchd to capture: {self.log()}")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def events(self) -> list[SensorEvent]:
        return read_events(self.events_path)

    def wait_for(
        self, check: Callable[[list[SensorEvent]], bool], timeout: float, what: str
    ) -> list[SensorEvent]:
        """Polls the events file until ``check(events)``; returns the events then.

        Raises:
            AssertionError: with the events and the sensor's log, when ``timeout`` passes or
                the sensor exits.
        """
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if check(events):
                return events
            exited = self.proc is not None and self.proc.poll() is not None
            if exited or time.monotonic() >= deadline:
                lines = "\n  ".join(json.dumps(e) for e in events)
                why = "arpwatchd exited" if exited else f"timed out after {timeout} s"
                raise AssertionError(f"{why} waiting for {what}; events:\n  {lines}\n"
                                     f"log:\n{self.log()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time the sensor process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds until it exited). SIGKILL after ``timeout``."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        begin = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)
        return self.proc.returncode, time.monotonic() - begin


def replay_events(
    config: Path, pcap: Path, interface: str, out: Path, timeout: float = 60.0
) -> list[SensorEvent]:
    """``arpwatchd replay -i interface -c config pcap`` (no namespace needed); its events.

    Raises:
        LabError: when replay exits non-zero.
    """
    argv = [sys.executable, "-m", "arpwatchd", "replay", "-i", interface, "-c", str(config)]
    argv += ["--events", str(out), str(pcap)]
    _run(argv, timeout=timeout)
    return read_events(out)


# --- end of live sensor helpers -------------------------------------------------------------


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
