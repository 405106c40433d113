"""IPv6 in the namespace lab: hosts with ULA addresses, NDP captures and the real tools of
issue 17 (thc-ipv6, ndisc6, keepalived), for tests/make_ndp_captures.py and
tests/test_live_ndp.py.

Why this exists
---------------
Phase 2 maps NDP onto the ARP rules of DESIGN.md section 3. Which rule fits a message depends
on what real stacks and tools put on the wire: whether keepalived's unsolicited NA carries
Override and the target link-layer option, whether the kernel's solicitations carry the source
link-layer option, which flags an attack tool sets. Those are measured here, as netlab.py
measures ARP, and the recorded captures (pcaps/ndp/) keep the answers.

Everything runs in a `netlab.Lab(ipv6=True)`: the lab's own namespaces, a flooding bridge
(a mirror port), addresses in the ULA prefix `PREFIX` and link-local addresses only. The
bridge itself and its ports in the sensor namespace get no IPv6 (`quiet_sensor`), so a capture
holds only what the hosts send. Every wait is on a condition with a timeout; every tool runs
for a bounded count or is stopped by the lab at teardown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from netlab import Host, Lab, _run, read_pcap, stop_process, wait_until
from vrrplab import keepalived_config

from arpwatchd.decode import DLT_EN10MB, ArpFrame, Decoder
from arpwatchd.ndp import NdpFrame, NdpInvalid, arp_and_ndp_filter, decode_ndp

PREFIX = "fd00:17::"
"""The lab's ULA /64 (RFC 4193 space; never routed)."""
TOOLS = ("ndisc6", "atk6-fake_advertise6", "atk6-parasite6", "atk6-dos-new-ip6", "keepalived",
         "tcpdump")
CAPTURE_FILTER = arp_and_ndp_filter()
"""What a dual-stack sensor would capture (ARP and NDP, untagged and tagged)."""


def tools_missing() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def address(host_part: int) -> str:
    """`PREFIX` + a host part: address(0xa) == "fd00:17::a"."""
    return str(ipaddress.IPv6Address(PREFIX) + host_part)


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with `mac` (RFC 4291
    appendix A; the lab's default addr_gen_mode)."""
    raw = bytearray(bytes.fromhex(mac.replace(":", "")))
    raw[0] ^= 0x02
    eui = bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def quiet_sensor(lab: Lab) -> None:
    """No IPv6 on the bridge and on the ports added later: the sensor side sends nothing."""
    lab.sysctl(lab.sensor_ns, {f"net.ipv6.conf.{lab.bridge}.disable_ipv6": 1,
                               "net.ipv6.conf.default.disable_ipv6": 1})


def add_host(
    lab: Lab,
    name: str,
    mac: str,
    ips6: Sequence[str] = (),
    ips4: Sequence[str] = (),
    vlan: int | None = None,
    *,
    fast_nud: bool = False,
) -> Host:
    """A lab host with IPv6 addresses (a /64 each) besides IPv4 ones, DAD done on each.

    `fast_nud`: neighbour entries go stale after 0.5-1.5 s and are probed 1 s later
    (defaults: 15-45 s and 5 s), so a few seconds of traffic show the kernel's unicast
    reachability probes. (A namespace has no `net.ipv6.neigh.default`: set per device.)
    """
    host = lab.add_host(name, mac, ips4, vlan, up=False)
    if fast_nud:
        host.sysctl(**{f"net.ipv6.neigh.{host.dev}.base_reachable_time_ms": 1000,
                       f"net.ipv6.neigh.{host.dev}.delay_first_probe_time": 1})
    for ip in ips6:
        add_ip6(host, ip)
    host.link_up()
    for ip in [link_local(mac), *ips6]:
        wait_dad(host, ip, 10.0)
    return host


def add_ip6(host: Host, ip: str, *, nodad: bool = False) -> None:
    _run(["ip", "-n", host.ns, "-6", "addr", "add", f"{ip}/64", "dev", host.dev,
          *(["nodad"] if nodad else [])])


def del_ip6(host: Host, ip: str) -> None:
    _run(["ip", "-n", host.ns, "-6", "addr", "del", f"{ip}/64", "dev", host.dev])


def address_flags(host: Host, ip: str) -> list[str] | None:
    """The kernel's flags of `ip` on the host's interface (`tentative`, `dadfailed`, ...), or
    None if the address is not there."""
    out = _run(["ip", "-n", host.ns, "-j", "-6", "addr", "show", "dev", host.dev]).stdout
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            if info.get("local") == ip:
                return [key for key in ("tentative", "dadfailed", "optimistic", "deprecated")
                        if info.get(key)]
    return None


def wait_dad(host: Host, ip: str, timeout: float) -> str:
    """Waits until duplicate address detection of `ip` is over: "ok" or "dadfailed"."""
    result: list[str] = []

    def done() -> bool:
        flags = address_flags(host, ip)
        if flags is not None and "dadfailed" in flags:  # the kernel keeps "tentative" too
            result.append("dadfailed")
        elif flags is not None and "tentative" not in flags:
            result.append("ok")
        return bool(result)

    wait_until(done, timeout, f"DAD of {ip} on {host.name}")
    return result[0]


def capturing(pid: int) -> bool:
    """Whether process `pid` has a packet socket for every protocol (ETH_P_ALL: libpcap's).

    thc-ipv6 tools print "Started" before they open their capture, so what they say is no
    sign that they will see the next frame; the socket is (libpcap drains what arrived
    before its filter was set, a window of microseconds).
    """
    try:
        inodes = {os.readlink(fd.path)[8:-1] for fd in os.scandir(f"/proc/{pid}/fd")
                  if os.readlink(fd.path).startswith("socket:[")}
        rows = Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(row.split()[3] == "0003" and row.split()[-1] in inodes for row in rows)


@contextlib.contextmanager
def running(host: Host, argv: Sequence[str], timeout: float = 5.0) -> Iterator[None]:
    """A thc-ipv6 tool on the host's interface (`argv` + the interface) while the block runs:
    entered once it captures, stopped on leaving."""
    proc = host.popen([*argv, host.dev], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: capturing(proc.pid), timeout, f"{argv[0]} capturing on {host.name}")
        yield
    finally:
        stop_process(proc)


def ping6(host: Host, target: str, count: int = 3, interval: float = 0.2) -> int:
    """`ping -6`; returns how many replies came back."""
    done = host.run(["ping", "-6", "-n", "-c", str(count), "-i", str(interval), "-W", "1",
                     target], timeout=count * interval + 5.0, check=False)
    for line in done.stdout.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


def ndisc6(host: Host, target: str) -> str:
    """ndisc6 one solicitation (`-1`: stop at the first answer); its output, the MAC it
    learnt in upper case, or an empty string."""
    done = host.run(["ndisc6", "-1", "-r", "1", "-w", "1000", target, host.dev], timeout=5.0,
                    check=False)
    for line in done.stdout.splitlines():
        if "link-layer address" in line:
            return line.split(":", 1)[1].strip()
    return ""


class Keepalived6Pair:
    """keepalived VRRPv3 pair with one IPv6 virtual address (keepalived's IPv6 VRRP is v3).

    Master `a` priority 150, backup `b` 100, `advert_int 1`, preemption on, the nodes' own
    MACs (no `use_vmac`). Configuration and pid files in the lab's work directory.
    """

    def __init__(self, lab: Lab, master: Host, backup: Host, vip: str, vrid: int) -> None:
        self.lab, self.master, self.backup, self.vip, self.vrid = lab, master, backup, vip, vrid
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, host: Host) -> str:
        return keepalived_config(host, f"v6{self.vrid}", self.vrid, f"{self.vip}/64",
                                 master=host is self.master)

    def start(self, host: Host) -> None:
        conf = self.lab.workdir / f"{host.name}.keepalived.conf"
        conf.write_text(self.config(host))
        run = self.lab.workdir / f"{host.name}.run"
        run.mkdir(exist_ok=True)
        log = (self.lab.workdir / f"{host.name}.keepalived.log").open("ab")
        self.procs[host.name] = host.popen(
            ["keepalived", "-n", "-l", "-D", "-P", "-G", "-f", str(conf),
             "-p", str(run / "keepalived.pid"), "-r", str(run / "vrrp.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def holds(self, host: Host) -> bool:
        flags = address_flags(host, self.vip)
        return flags is not None and "tentative" not in flags

    def wait_holding(self, host: Host, timeout: float) -> None:
        wait_until(lambda: self.holds(host), timeout, f"{host.name} holding {self.vip}")

    def stop(self, host: Host, timeout: float = 10.0) -> None:
        """SIGTERM (keepalived sends a priority-0 advert and removes the VIP), then waits."""
        proc = self.procs.pop(host.name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)

    def log(self, host: Host) -> str:
        path = self.lab.workdir / f"{host.name}.keepalived.log"
        return path.read_text(errors="replace") if path.exists() else ""


def describe(frames: list[tuple[float, bytes]]) -> list[str]:
    """One line per frame, times from the first frame: what the NDP and ARP decoders say
    (the evidence written into pcaps/README.md and checked by the tests)."""
    arp = Decoder("lab", DLT_EN10MB)
    lines = []
    start = frames[0][0] if frames else 0.0
    for ts, raw in frames:
        at = f"+{ts - start:7.3f}"
        ndp = decode_ndp(raw, "lab")
        if isinstance(ndp, NdpFrame):
            flags = "".join(f for f, on in zip("RSO", (ndp.router, ndp.solicited, ndp.override),
                                                strict=True) if on)
            options = []
            if ndp.source_lla:
                options.append(f"sllao={ndp.source_lla.hex(':')}")
            if ndp.target_lla:
                options.append(f"tllao={ndp.target_lla.hex(':')}")
            target = f" target={ndp.target}" if ndp.target else ""
            vlan = f" vlan={ndp.vlan}" if ndp.vlan is not None else ""
            lines.append(f"{at} {ndp.kind} {ndp.src} > {ndp.dst}{target} [{flags}] "
                         f"{' '.join(options)} eth={ndp.eth_src.hex(':')}{vlan}".rstrip())
        elif isinstance(ndp, NdpInvalid):
            lines.append(f"{at} invalid_ndp {ndp.problem} type={ndp.icmp_type} src={ndp.src} "
                         f"eth={ndp.eth_src.hex(':')}")
        else:
            out = arp.decode(raw)
            if isinstance(out, ArpFrame):
                ip = ipaddress.IPv4Address
                lines.append(f"{at} arp {out.kind} {ip(out.spa)} at {out.sha.hex(':')} "
                             f"asks {ip(out.tpa)}")
            else:
                lines.append(f"{at} other {out}")
    return lines


def kinds(path: Path) -> list[str]:
    """The NDP kinds (or invalid reasons) of a capture, in order."""
    out = []
    for _, raw in read_pcap(path):
        ndp = decode_ndp(raw)
        if isinstance(ndp, NdpFrame):
            out.append(str(ndp.kind))
        elif isinstance(ndp, NdpInvalid):
            out.append(f"invalid:{ndp.problem}")
    return out
