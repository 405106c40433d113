"""Records pcaps/ndp/*.pcap: real tools and kernels speaking NDP in the namespace lab.

Each scenario builds a fresh `netlab.Lab(ipv6=True)`, captures on the flooding bridge with the
sensor's ARP-and-NDP filter (`tcpdump`, as every lab capture) and writes NAME.pcap plus
NAME.txt (one line per frame, `ndplab.describe`: what the decoder made of it, for
pcaps/README.md). Needs root, the lab (tests/netlab.py) and Debian's thc-ipv6, ndisc6 and
keepalived (dev.sh TEST_PACKAGES).

Usage: .venv/bin/python tests/make_ndp_captures.py [--out DIR] [SCENARIO ...]
(default: pcaps/ndp, every scenario). Real timing: a re-run writes other bytes; the tests
check kinds and claims, not bytes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import ndplab  # noqa: E402
from ndplab import CAPTURE_FILTER, Keepalived6Pair, add_host, address, quiet_sensor  # noqa: E402
from netlab import Host, Lab, read_pcap, vlan_available, wait_until  # noqa: E402

OUT = HERE.parent / "pcaps" / "ndp"
GATEWAY_MAC = "02:00:00:17:00:01"
VICTIM_MAC = "02:00:00:17:00:0b"
ATTACKER_MAC = "02:00:00:17:00:66"


def keepalived_failover(lab: Lab, out: Path) -> list[str]:
    """keepalived master and backup share fd00:17::100; master stopped, back 6 s later."""
    master = add_host(lab, "ka", "02:00:00:17:a0:01", [address(0x1)])
    backup = add_host(lab, "kb", "02:00:00:17:b0:01", [address(0x2)])
    client = add_host(lab, "kc", "02:00:00:17:c0:01", [address(0xC)], fast_nud=True)
    pair = Keepalived6Pair(lab, master, backup, address(0x100), vrid=17)
    notes = []
    with lab.capture(CAPTURE_FILTER, buffer_kib=4096) as cap:
        t0 = time.time()
        pair.start(master)
        pair.wait_holding(master, 20.0)
        notes.append(f"+{time.time() - t0:.1f} master holds the VIP")
        pair.start(backup)
        time.sleep(2.0)  # the backup reads two adverts and stays BACKUP
        pinger = client.popen(["ping", "-6", "-n", "-i", "0.5", "-c", "40", address(0x100)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3.0)
        pair.stop(master)
        notes.append(f"+{time.time() - t0:.1f} master stopped (SIGTERM)")
        pair.wait_holding(backup, 10.0)
        notes.append(f"+{time.time() - t0:.1f} backup holds the VIP")
        time.sleep(6.0)
        pair.start(master)
        notes.append(f"+{time.time() - t0:.1f} master started again")
        wait_until(lambda: not pair.holds(backup), 20.0, "the backup giving the VIP back")
        notes.append(f"+{time.time() - t0:.1f} backup released the VIP")
        time.sleep(6.0)  # the master's second burst comes 5 s after its first
        pinger.terminate()
    # stopped outside the capture: the backup would take over again when the master stops
    pair.stop(backup)
    pair.stop(master)
    _save(cap.path, out)
    return notes


def _gateway_victim_attacker(lab: Lab) -> tuple[Host, Host, Host]:
    return (add_host(lab, "gw", GATEWAY_MAC, [address(0x1)]),
            add_host(lab, "vic", VICTIM_MAC, [address(0xB)]),
            add_host(lab, "atk", ATTACKER_MAC, [address(0x66)]))


def fake_advertise(lab: Lab, out: Path) -> list[str]:
    """thc-ipv6 fake_advertise6 tells a victim that the gateway's address is at the attacker."""
    gateway, victim, attacker = _gateway_victim_attacker(lab)
    notes = []
    with lab.capture(CAPTURE_FILTER) as cap:
        ndplab.ping6(victim, address(0x1), count=2)
        notes.append(f"victim's entry for the gateway: {victim.neigh(address(0x1))}")
        attacker.run(["atk6-fake_advertise6", "-n", "3", "-w", "1", attacker.dev, address(0x1),
                      address(0xB)], timeout=15.0, check=False)
        notes.append(f"after the attack: {victim.neigh(address(0x1))}")
        ndplab.ping6(gateway, address(0xB), count=2)
        notes.append(f"after 2 pings from the gateway: {victim.neigh(address(0x1))}")
    _save(cap.path, out)
    return notes


def parasite(lab: Lab, out: Path) -> list[str]:
    """thc-ipv6 parasite6 answers every solicitation on the link with the attacker's MAC."""
    gateway, victim, attacker = _gateway_victim_attacker(lab)
    notes = []
    with lab.capture(CAPTURE_FILTER) as cap, ndplab.running(attacker, ["atk6-parasite6"]):
        ndplab.ping6(victim, address(0x1), count=3, interval=0.5)
        notes.append(f"victim's entry for the gateway: {victim.neigh(address(0x1))}")
        notes.append(f"gateway's entry for the victim: {gateway.neigh(address(0xB))}")
    _save(cap.path, out)
    return notes


def dos_new_ip(lab: Lab, out: Path) -> list[str]:
    """thc-ipv6 dos-new-ip6 answers every DAD probe: a host adding an address gives it up."""
    attacker = add_host(lab, "atk", ATTACKER_MAC, [address(0x66)])
    host = add_host(lab, "new", "02:00:00:17:00:0c", [])
    notes = []
    with lab.capture(CAPTURE_FILTER) as cap, ndplab.running(attacker, ["atk6-dos-new-ip6"]):
        ndplab.add_ip6(host, address(0xC))
        notes.append(f"DAD of {address(0xC)}: {ndplab.wait_dad(host, address(0xC), 10.0)}")
    _save(cap.path, out)
    return notes


def ndisc_and_ping(lab: Lab, out: Path) -> list[str]:
    """ndisc6 and ping6 between two hosts, with fast reachability probes: nothing alarming."""
    a = add_host(lab, "a", "02:00:00:17:00:0a", [address(0xA)], fast_nud=True)
    b = add_host(lab, "b", "02:00:00:17:00:0b", [address(0xB)])
    notes = []
    with lab.capture(CAPTURE_FILTER) as cap:
        notes.append(f"ndisc6 {address(0xB)} from a: {ndplab.ndisc6(a, address(0xB))}")
        notes.append(f"ndisc6 {ndplab.link_local(b.mac)} from a: "
                     f"{ndplab.ndisc6(a, ndplab.link_local(b.mac))}")
        notes.append(f"ping6 replies: {ndplab.ping6(a, address(0xB), count=6, interval=1.0)}")
    _save(cap.path, out)
    return notes


def dual_stack(lab: Lab, out: Path) -> list[str]:
    """ARP and NDP together, untagged and (where the lab can) in VLAN 10."""
    tagged = vlan_available()[0]
    a = add_host(lab, "a", "02:00:00:17:00:0a", [address(0xA)], ["192.0.2.10"])
    add_host(lab, "b", "02:00:00:17:00:0b", [address(0xB)], ["192.0.2.11"])
    notes = [f"VLAN host: {tagged}"]
    with lab.capture(CAPTURE_FILTER) as cap:
        ndplab.ping6(a, address(0xB), count=1)
        a.run(["ping", "-4", "-n", "-c", "1", "-W", "1", "192.0.2.11"], check=False)
        if tagged:
            c = add_host(lab, "c", "02:00:00:17:00:1c", [address(0x1C)], ["192.0.2.12"],
                         vlan=10)
            add_host(lab, "d", "02:00:00:17:00:1d", [address(0x1D)], ["192.0.2.13"],
                         vlan=10)
            ndplab.ping6(c, address(0x1D), count=1)
            c.run(["ping", "-4", "-n", "-c", "1", "-W", "1", "192.0.2.13"], check=False)
            notes.append(f"c learnt d at {c.neigh(address(0x1D))}")
        notes.append(f"a learnt b at {a.neigh(address(0xB))} and {a.neigh('192.0.2.11')}")
    _save(cap.path, out)
    return notes


SCENARIOS: dict[str, Callable[[Lab, Path], list[str]]] = {
    "keepalived-ipv6-failover": keepalived_failover,
    "fake-advertise6": fake_advertise,
    "parasite6": parasite,
    "dos-new-ip6": dos_new_ip,
    "ndisc6-ping6": ndisc_and_ping,
    "dual-stack": dual_stack,
}

def _save(path: Path, out: Path) -> None:
    shutil.copyfile(path, out)


def record(name: str, out_dir: Path) -> list[str]:
    """Runs one scenario in a fresh lab; writes NAME.pcap and NAME.txt; returns the notes."""
    out = out_dir / f"{name}.pcap"
    with Lab(ipv6=True) as lab:
        quiet_sensor(lab)
        notes = SCENARIOS[name](lab, out)
    lines = ndplab.describe(read_pcap(out))
    (out_dir / f"{name}.txt").write_text("\n".join([*notes, "", *lines]) + "\n")
    return notes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario: {', '.join(sorted(unknown))}")
    missing = ndplab.tools_missing()
    if missing:
        print(f"missing tools: {' '.join(missing)} (./dev.sh test installs them)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios or SCENARIOS:
        notes = record(name, args.out)
        print(f"{name}: " + "; ".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
