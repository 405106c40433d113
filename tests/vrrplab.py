"""Real failover software in the namespace lab: keepalived and ucarp pairs, and Pacemaker
IPaddr2-style address moves, for tests/test_live_failover_tools.py.

Why this exists
---------------
DESIGN.md section 3 says a VRRP/CARP failover and failback is routine and must never be a
``conflict``. Synthetic captures (pcaps/keepalived-failback.pcap) encode what we believe the
tools send; these pairs run the tools themselves, so the timing of their announcements, of
their demotion and of their kernels' answers is whatever the real software does.

Each pair is two lab hosts (``<tag>a`` the master, ``<tag>b`` the backup; tests/netlab.py)
running the real daemon in the foreground inside its namespace, with a configuration generated
into the lab's temporary directory: nothing under /etc or /run is read or written.

* keepalived (``-n -l -D -P -G -f CONF -p PID -r VRRP_PID``): VRRP v2 with the nodes' own
  MACs (no ``use_vmac``), the master ``state MASTER`` priority 150, the backup 100,
  ``advert_int 1``, preemption on, gratuitous ARP as shipped (5 at once, 5 more
  ``garp_master_delay`` 5 s later). Stopped by SIGTERM: it sends a priority-0 advert and
  removes the VIP, so the backup takes over at once.
* ucarp (``-i DEV -s IP -v VHID -p PASS -a VIP -u UP -d DOWN -P -z -n -b 1 -k SKEW``): CARP
  with preemption, advertisements every second, the backup's skew 100; the up/down scripts add
  and remove the VIP with ``ip addr`` as Debian's examples do, ``-z`` runs the down script at
  exit. A stopped master sends nothing: the backup takes over after 3 silent adverts.
* IPaddr2-style (what Pacemaker's IPaddr2 does when the resource moves): the old node removes
  the address (the resource stops), then the new node adds it and announces it with
  ``arping -U`` (5 gratuitous requests 1 s apart).

Every pair has a ``stop_master()`` (the master's daemon stops, or the resource moves away) and
a ``restore_master()`` (the daemon starts again and preempts, or the resource moves back).
VRIDs/VHIDs must differ between the pairs of a lab: they share one multicast group and bridge.
``Clients`` asks for every VIP by broadcast ARP request at a steady rate, so that the holder's
kernel answers and the answers are on the wire, as on a LAN in use.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import netlab
from netlab import ARP_REQUEST, BROADCAST, ZERO_MAC, Host, Lab, arp_frame, wait_until

SUBNET = "192.0.2"
PASSWORD = "arpwatch"  # keepalived's PASS authentication keeps 8 characters


class Pair:
    """Two hosts sharing a virtual address (VIP); the master holds it first.

    Addresses from ``index`` (1..29, unique in a lab): master 192.0.2.INDEX, backup
    .30+INDEX, VIP .100+INDEX, the pair's client .200+INDEX; MACs 02:00:00:{a0,b0,c0}:00:INDEX.
    """

    kind = "pair"

    def __init__(self, lab: Lab, tag: str, index: int) -> None:
        if not 1 <= index <= 29:
            raise ValueError("index is 1..29")
        self.lab, self.tag, self.index = lab, tag, index
        self.vip = f"{SUBNET}.{100 + index}"
        self.master = lab.add_host(f"{tag}a", f"02:00:00:a0:00:{index:02x}", [f"{SUBNET}.{index}"])
        self.backup = lab.add_host(f"{tag}b", f"02:00:00:b0:00:{index:02x}",
                                   [f"{SUBNET}.{30 + index}"])
        self.client_mac = f"02:00:00:c0:00:{index:02x}"
        self.client_ip = f"{SUBNET}.{200 + index}"
        self.workdir = lab.workdir / tag
        self.workdir.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tag!r}, vip={self.vip})"

    def request(self) -> bytes:
        """The client's broadcast ARP request for the VIP (what its kernel sends to resolve it)."""
        return arp_frame(ARP_REQUEST, self.client_mac, BROADCAST, self.client_mac,
                         self.client_ip, ZERO_MAC, self.vip)

    def holds_vip(self, host: Host) -> bool:
        return self.vip in host.ips

    def start_master(self) -> None:
        self.start_node(self.master)

    def wait_master(self, timeout: float) -> None:
        """Waits until the master holds the VIP."""
        self.wait_holding(self.master, timeout)

    def start_backup(self) -> None:
        self.start_node(self.backup)

    def wait_holding(self, host: Host, timeout: float) -> float:
        """Waits until ``host`` has the VIP; returns when (``time.time()``)."""
        return wait_until(lambda: self.holds_vip(host), timeout,
                          f"{host.name} to hold {self.vip}: {self.log(host)[-2000:]}", 0.05)

    def wait_backup_ready(self, timeout: float) -> None:
        """Waits until the backup's daemon runs as a backup (nothing to wait for here)."""

    def start_node(self, host: Host) -> None:
        raise NotImplementedError

    def stop_master(self) -> None:
        """Starts stopping the master (``stopped()`` waits for it)."""
        raise NotImplementedError

    def restore_master(self) -> None:
        raise NotImplementedError

    def stopped(self, timeout: float) -> None:
        """Waits for what ``stop_master`` started (a daemon's exit); SIGKILL after ``timeout``."""
        proc = self.procs.pop(self.master.name, None)
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
        # A stopped node answers for nothing. A daemon killed (or starved) before it removed
        # the VIP leaves the node's kernel answering clients: a real duplicate on the wire
        # (seen on a loaded CI run), which the scenario does not mean to stage.
        if self.vip in self.master.ips:
            self.master.del_ip(self.vip)

    def _spawn(self, host: Host, argv: Sequence[str]) -> None:
        # Each node of a real pair has a machine of its own; here twenty daemons share two
        # cores with the test suite and a CPU hog. Starved of CPU, a ucarp backup missed its
        # master's adverts (1 s apart, dead after 3) and took the address too: a split brain
        # made by the lab, not by the tool. Their share is tiny; nice keeps their timers true.
        with self._log_path(host).open("ab") as log:
            self.procs[host.name] = host.popen(["nice", "-n", "-10", *argv],
                                               stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT)

    def _terminate(self, host: Host) -> None:
        proc = self.procs.get(host.name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def _log_path(self, host: Host) -> Path:
        return self.workdir / f"{host.name}.log"

    def log(self, host: Host) -> str:
        path = self._log_path(host)
        return path.read_text(errors="replace") if path.exists() else ""


class DaemonPair(Pair):
    """A failover daemon on each node: the master's daemon stops, and starts again."""

    backup_says = ""
    """What the daemon logs once it runs as a backup."""

    def __init__(self, lab: Lab, tag: str, index: int, vid: int) -> None:
        super().__init__(lab, tag, index)
        self.vid = vid
        """The VRRP VRID or CARP VHID (1-255), unique in the lab."""

    def wait_backup_ready(self, timeout: float) -> None:
        wait_until(lambda: self.backup_says in self.log(self.backup), timeout,
                   f"{self.backup.name} in BACKUP state: {self.log(self.backup)[-2000:]}")

    def stop_master(self) -> None:
        self._terminate(self.master)

    def restore_master(self) -> None:
        self.start_node(self.master)


def keepalived_config(
    host: Host, instance: str, vrid: int, vip: str, *, master: bool, extra: str = ""
) -> str:
    """One VRRP instance on the host's interface: the master priority 150, the backup 100,
    adverts every second, `vip` (with its prefix length) on the interface; `extra` lines
    go inside the instance (authentication for VRRPv2; IPv6's VRRPv3 has none)."""
    return (
        f"global_defs {{\n  router_id {host.name}\n}}\n"
        f"vrrp_instance {instance} {{\n"
        f"  state {'MASTER' if master else 'BACKUP'}\n"
        f"  interface {host.dev}\n"
        f"  virtual_router_id {vrid}\n"
        f"  priority {150 if master else 100}\n"
        "  advert_int 1\n"
        f"{extra}"
        f"  virtual_ipaddress {{\n    {vip} dev {host.dev}\n  }}\n"
        "}\n"
    )


class KeepalivedPair(DaemonPair):
    """keepalived VRRP (v2, physical MACs); the master preempts when it returns."""

    kind = "keepalived"
    backup_says = "Entering BACKUP STATE"

    def config(self, host: Host) -> str:
        auth = f"  authentication {{\n    auth_type PASS\n    auth_pass {PASSWORD}\n  }}\n"
        return keepalived_config(host, self.tag, self.vid, f"{self.vip}/24",
                                 master=host is self.master, extra=auth)

    def start_node(self, host: Host) -> None:
        conf = self.workdir / f"{host.name}.conf"
        conf.write_text(self.config(host))
        run = self.workdir / host.name
        run.mkdir(exist_ok=True)
        self._spawn(host, ["keepalived", "-n", "-l", "-D", "-P", "-G", "-f", str(conf),
                           "-p", str(run / "keepalived.pid"), "-r", str(run / "vrrp.pid")])


class UcarpPair(DaemonPair):
    """ucarp (CARP) with preemption; up/down scripts add and remove the VIP."""

    kind = "ucarp"
    backup_says = "state: BACKUP"

    def __init__(self, lab: Lab, tag: str, index: int, vid: int) -> None:
        super().__init__(lab, tag, index, vid)
        self.up = self.workdir / "vip-up"
        self.down = self.workdir / "vip-down"
        # ucarp runs SCRIPT <interface> <vip>, as /usr/share/doc/ucarp/examples
        self.up.write_text('#!/bin/sh\nexec ip addr add "$2"/24 dev "$1"\n')
        self.down.write_text('#!/bin/sh\nexec ip addr del "$2"/24 dev "$1"\n')
        self.up.chmod(0o755)
        self.down.chmod(0o755)

    def start_node(self, host: Host) -> None:
        skew = 0 if host is self.master else 100
        self._spawn(host, ["ucarp", "-i", host.dev, "-s", host.ip, "-v", str(self.vid),
                           "-p", PASSWORD, "-a", self.vip, "-u", str(self.up),
                           "-d", str(self.down), "-P", "-z", "-n", "-b", "1", "-k", str(skew)])



class Ipaddr2Pair(Pair):
    """Pacemaker IPaddr2's move: stop on the old node (address removed), start on the new
    node (address added, 5 gratuitous requests 1 s apart with ``arping -U``)."""

    kind = "ipaddr2"

    def start_node(self, host: Host) -> None:
        host.add_ip(self.vip)
        self.procs[f"arping-{host.name}"] = host.popen(
            ["arping", "-q", "-U", "-c", "5", "-I", host.dev, "-s", self.vip, self.vip],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_backup(self) -> None:
        """Nothing runs on the backup until the resource moves there."""

    def wait_master(self, timeout: float) -> None:
        """Waits until the master holds the VIP and has sent its announcements (Pacemaker's
        start operation is over)."""
        self.wait_holding(self.master, timeout)
        self._announced(self.master, timeout)

    def _announced(self, host: Host, timeout: float) -> None:
        proc = self.procs.get(f"arping-{host.name}")
        if proc is not None:
            proc.wait(timeout)

    def _move(self, old: Host, new: Host) -> None:
        self._announced(old, 10.0)  # a start is over before the resource can move
        old.del_ip(self.vip)
        self.start_node(new)

    def stop_master(self) -> None:
        self._move(self.master, self.backup)

    def restore_master(self) -> None:
        self._move(self.backup, self.master)


def start_pairs(pairs: Sequence[Pair], timeout: float = 30.0) -> None:
    """Starts every pair: all masters, then, once each holds its VIP, all backups (two ucarp
    nodes starting together race for the address, and the first owner must not be in
    doubt). In parallel: a keepalived master takes ~3 s to enter MASTER state."""
    for pair in pairs:
        pair.start_master()
    for pair in pairs:
        pair.wait_master(timeout)
    for pair in pairs:
        pair.start_backup()
    for pair in pairs:
        pair.wait_backup_ready(timeout)


def stop_masters(pairs: Iterable[Pair], timeout: float = 15.0) -> None:
    """Stops every pair's master at once (keepalived takes about a second to exit)."""
    pairs = list(pairs)
    for pair in pairs:
        pair.stop_master()
    for pair in pairs:
        pair.stopped(timeout)


class Clients:
    """One host behind which each pair has a client (its own MAC and IP, as behind a
    downstream switch) asking for the pair's VIP every ``interval`` s; at most ``duration``
    s (a bounded count). Each client stays under the sensor's flood threshold (100 frames in
    10 s per MAC) at intervals above 0.1 s."""

    def __init__(self, lab: Lab, pairs: Sequence[Pair], interval: float, duration: float
                 ) -> None:
        self.host = lab.add_host("c", "02:00:00:c0:00:00", [f"{SUBNET}.200"])
        self.pairs = pairs
        self.interval = interval
        self.count = max(1, int(duration / interval))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        frames = [pair.request().hex() for pair in self.pairs]
        argv = [sys.executable, "-I", str(Path(netlab.__file__).resolve()), "send",
                self.host.dev, str(self.count), str(self.interval), *frames]
        self.proc = self.host.popen(argv, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            netlab.stop_process(self.proc)
            self.proc = None
