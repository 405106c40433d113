"""Real ARP attack and scanning tools run inside a netlab lab (tests/test_live_attack_tools.py).

Why real tools: the tracker's rules for spoofing and scanning (DESIGN.md section 3) were written
from what spoofers are known to send; these helpers make the tools themselves send it, against
real Linux caches, so the tests find out what arpspoof, ettercap, bettercap, arp-scan, nmap and
arping really put on the wire and whether the sensor names the right MAC.

The lab (``build``): a gateway, a victim that pings the gateway (so its cache entry for the
gateway is in use, as on a real LAN), an attacker, all in 192.0.2.0/24 inside the lab's own
namespaces; the sensor runs on the lab bridge, which floods every frame to every port (a hub),
so it sees the spoofed unicast replies. Every tool is bounded: a long-running spoofer is a
``Tool`` that the test stops (SIGTERM, then SIGKILL after a timeout; the lab also stops it at
teardown), a scanner or prober runs to its own end under a timeout.

Tool facts found on the way (Debian 12: dsniff 2.4, ettercap 0.8.3.1, bettercap 2.32.0,
arp-scan 1.10.0, nmap 7.93, iputils arping 20221126):

* bettercap finds MACs by parsing ``ip neigh`` with a device pattern of ``\\w+``: netlab's
  ``<id>-<name>`` devices never match, and it reports "could not find spoof targets" for
  ever. ``build`` gives the attacker a device name without a hyphen. It also needs the
  gateway's and the targets' MACs in the attacker's own neighbour table (``resolve`` first),
  and a gateway (``-gateway-override``: the lab has no default route).
* ettercap's ``-n`` is ``--netmask``, not "no DNS" (it resolves nothing unless ``-d``); ``-o``
  (only the attack, no sniffing) keeps it light. It ARPs for both targets, poisons each with
  one unsolicited reply a second for its warm-up and then every 10 s, and re-ARPs both with the
  true MACs when stopped (SIGTERM) for about 3 s.
* arpspoof asks for the victim's MAC, then sends one unsolicited reply every 2 s; on SIGTERM
  it re-ARPs for about 5 s, with the true sender MAC in the ARP body and its own MAC as the
  Ethernet source (an ethernet mismatch).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from netlab import Host, Lab, LabError, stop_process

GW_MAC, VICTIM_MAC, ATTACKER_MAC = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:01:66"
GW_IP, VICTIM_IP, ATTACKER_IP = "192.0.2.1", "192.0.2.2", "192.0.2.66"
SUBNET = "192.0.2.0/24"


@dataclass(frozen=True)
class AttackLab:
    """The hosts of one attack scenario (see ``build``)."""

    lab: Lab
    gateway: Host
    victim: Host
    attacker: Host


def build(lab: Lab) -> AttackLab:
    """Gateway, victim and attacker on the lab bridge; the attacker's device has no hyphen."""
    gateway = lab.add_host("gw", GW_MAC, [GW_IP])
    victim = lab.add_host("v", VICTIM_MAC, [VICTIM_IP])
    attacker = lab.add_host("m", ATTACKER_MAC, [ATTACKER_IP])
    plain_device_name(attacker)
    return AttackLab(lab, gateway, victim, attacker)


def plain_device_name(host: Host) -> None:
    """Renames the host's device ``<id><name>`` (no hyphen; still unique to this lab run)."""
    name = f"{host.lab.id}{host.name}"
    host.run(["ip", "link", "set", "dev", host.dev, "name", name])
    host.dev = name


def available(binary: str) -> tuple[bool, str]:
    """Whether a tool is installed: (True, "") or (False, reason for ``pytest.skip``)."""
    if shutil.which(binary) is None:
        return False, f"{binary} is not installed (./dev.sh test installs it)"
    return True, ""


def bettercap_available() -> tuple[bool, str]:
    """bettercap is installed and starts here (it needs nothing from the network to start)."""
    ok, reason = available("bettercap")
    if not ok:
        return ok, reason
    try:
        done = subprocess.run(["bettercap", "-version"], capture_output=True, text=True,
                              timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return False, "bettercap -version did not finish within 20 s"
    if done.returncode != 0:
        return False, f"bettercap does not run here: {done.stderr.strip() or done.stdout}"
    return True, ""


def ping(host: Host, ip: str, count: int = 200, interval: float = 0.2) -> subprocess.Popen[bytes]:
    """``ping`` from ``host`` (bounded by ``count`` and a deadline); stopped at lab teardown."""
    deadline = int(count * interval) + 5
    argv = ["ping", "-n", "-q", "-i", str(interval), "-c", str(count), "-w", str(deadline), ip]
    return host.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)


class Tool:
    """A long-running attack tool in a host; a context manager that starts and stops it.

    Its output goes to ``<lab workdir>/<name>.log`` (``log()``), for failure messages.
    """

    def __init__(self, host: Host, name: str, argv: list[str], stop_timeout: float = 15.0
                 ) -> None:
        self.host, self.name, self.argv = host, name, argv
        self.stop_timeout = stop_timeout
        self.log_path = host.lab.workdir / f"{name.replace(' ', '_')}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Tool:
        with self.log_path.open("wb") as log:
            # stdin stays an open pipe: ettercap and bettercap read commands from it and
            # bettercap quits at end of input
            self.proc = self.host.popen(self.argv, stdin=subprocess.PIPE, stdout=log,
                                        stderr=subprocess.STDOUT)
        return self

    def stop(self) -> int:
        """SIGTERM (each tool then restores the caches it poisoned); SIGKILL after the timeout.

        Raises:
            LabError: the tool had exited before it was stopped (it failed to start).
        """
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise LabError(f"{self.name} exited {self.proc.returncode} early: {self.log()}")
        status = stop_process(self.proc, self.stop_timeout)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return status

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Tool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running():
            assert self.proc is not None
            stop_process(self.proc, self.stop_timeout)


def arpspoof(net: AttackLab, *, both_ways: bool = False) -> Tool:
    """dsniff's ``arpspoof -i IF -t VICTIM GATEWAY`` (``-r``: poison the gateway too)."""
    argv = ["arpspoof", "-i", net.attacker.dev, "-t", VICTIM_IP]
    argv += ["-r"] if both_ways else []
    return Tool(net.attacker, "arpspoof -r" if both_ways else "arpspoof", [*argv, GW_IP])


def ettercap(net: AttackLab) -> Tool:
    """``ettercap -T -q -o -i IF -M arp:remote /VICTIM// /GATEWAY//``: text interface, quiet,
    the man-in-the-middle attack only, both targets poisoned with each other's address."""
    argv = ["ettercap", "-T", "-q", "-o", "-i", net.attacker.dev, "-M", "arp:remote",
            f"/{VICTIM_IP}//", f"/{GW_IP}//"]
    return Tool(net.attacker, "ettercap", argv)


def bettercap(net: AttackLab) -> Tool:
    """bettercap's ``arp.spoof`` against the victim (the gateway's address, one way).

    The attacker resolves both hosts first: bettercap takes MACs from its own neighbour table.
    """
    for ip in (GW_IP, VICTIM_IP):
        if net.attacker.resolve(ip) is None:
            raise LabError(f"the attacker could not resolve {ip}")
    argv = ["bettercap", "-no-colors", "-no-history", "-env-file", "", "-iface", net.attacker.dev,
            "-gateway-override", GW_IP, "-eval", f"set arp.spoof.targets {VICTIM_IP}; arp.spoof on"]
    return Tool(net.attacker, "bettercap", argv)


def arp_scan(host: Host, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``arp-scan --localnet -I IF``: one request to each address of the subnet (and retries)."""
    return host.run(["arp-scan", "--localnet", "--quiet", "-I", host.dev], timeout=timeout)


def nmap_sweep(host: Host, subnet: str = SUBNET, timeout: float = 120.0
               ) -> subprocess.CompletedProcess[str]:
    """``nmap -sn -n SUBNET``: host discovery only, no DNS; as root on Ethernet it sends ARP."""
    return host.run(["nmap", "-sn", "-n", "-e", host.dev, subnet], timeout=timeout)


def arping_dad(host: Host, ip: str, count: int = 2) -> bool:
    """``arping -D``: RFC 5227 probes (sender 0.0.0.0) for ``ip``; True when it is in use.

    arping -D exits 0 when nothing answered and 1 when the address is in use.
    """
    argv = ["arping", "-D", "-q", "-c", str(count), "-w", str(count + 1), "-I", host.dev, ip]
    done = host.run(argv, timeout=count + 10.0, check=False)
    if done.returncode not in (0, 1):
        raise LabError(f"arping -D failed ({done.returncode}): {done.stderr.strip()}")
    return done.returncode == 1
