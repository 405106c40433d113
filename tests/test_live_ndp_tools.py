"""Live, issue 17's Proof: `arpwatchd run` on the namespace lab's bridge while the real tools
of pcaps/README.md (the `ndp/` rows) act, and what an operator reads in its events file.

* keepalived VRRPv3 with an IPv6 virtual address fails over to the backup and back: two
  `failover` events (a `hold` of 10 s here, so that both moves end within the test), never a
  `conflict`.
* `atk6-parasite6` answers a victim's solicitation for the gateway after the gateway did: a
  `conflict` (`both_active`) between the gateway's MAC and the attacker's.
* `atk6-dos-new-ip6` answers a host's duplicate address detection from a made-up MAC:
  `probe_in_use` for the address, and the made-up MAC is bound to nothing.
* `ndisc6` and `ping -6` between two hosts (with fast reachability probes): `new_station`
  for each host's link-local and global address, nothing else.

tcpdump records the bridge with the sensor's filter meanwhile (kernel receive timestamps
shared with the sensor, a 32 MiB buffer), and `arpwatchd replay` of that capture with the
same config must give the same events (kind, address, family, MACs, reason, suspect; times
aside) as the live sensor up to the moment it stopped. The hosts are created after the sensor
and tcpdump run and the lab's own bridge sends nothing (`ndplab.quiet_sensor`), so both see
every frame from the first. Every wait is on a condition (the events file, the kernel's
address flags, keepalived's log) with a generous deadline; the tools are the ones
tests/make_ndp_captures.py recorded with.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ndplab
import netlab
import pytest
from make_ndp_captures import ATTACKER_MAC, GATEWAY_MAC, VICTIM_MAC, _gateway_victim_attacker
from netlab import (
    Capture,
    Lab,
    SensorEvent,
    SensorProcess,
    event_ts,
    having,
    pick,
    read_pcap,
    replay_events,
    wait_until,
)

pytestmark = pytest.mark.live

DEFAULTS = "# the defaults: hold 30 s, solicit_window 5 s, answer_window 2 s\n"
BUFFER_KIB = 32768
#: What the replay is compared on: everything but the times.
COMPARED = ("event", "ip", "family", "mac", "previous_mac", "reason", "suspect", "vlan")


@pytest.fixture(autouse=True)
def _tools() -> None:
    ok, why = netlab.lab_available()
    if not ok:
        pytest.skip(why)
    missing = ndplab.tools_missing()
    if missing:
        pytest.skip(f"missing tools: {' '.join(missing)} (./dev.sh test installs them)")


@dataclass
class Watch:
    """One scenario's live sensor and capture; ``live`` once the sensor stopped."""

    lab: Lab
    sensor: SensorProcess
    cap: Capture
    stopped_at: float = 0.0
    live: list[SensorEvent] = field(default_factory=list)

    def wait_for(self, check: Callable[[list[SensorEvent]], bool], timeout: float,
                 what: str) -> list[SensorEvent]:
        return self.sensor.wait_for(check, timeout, what)

    def replayed(self) -> list[SensorEvent]:
        """``arpwatchd replay`` of the capture with the sensor's config, up to the moment the
        live sensor stopped: replay ends every hold still open at the end of the file (a
        `conflict_resolved` 30 s later), the live sensor only those whose time came."""
        assert self.cap.frames, "tcpdump captured nothing"
        replayed = replay_events(self.sensor.config_path, self.cap.path, self.lab.bridge,
                                 self.lab.workdir / "replay-events.jsonl")
        return [e for e in replayed if event_ts(e) <= self.stopped_at]

    def assert_replay_agrees(self) -> None:
        replayed = self.replayed()
        assert _fields(replayed) == _fields(self.live), (
            f"live:\n{_lines(self.live)}\nreplay:\n{_lines(replayed)}\ncapture:\n"
            + "\n".join(ndplab.describe(read_pcap(self.cap.path))))


def _fields(events: list[SensorEvent]) -> list[tuple[object, ...]]:
    return [tuple(e.get(k) for k in COMPARED) for e in events]


def _lines(events: list[SensorEvent]) -> str:
    return "\n".join(f"  {json.dumps(e)}" for e in events)


@contextlib.contextmanager
def observed(config: str = DEFAULTS, state: Path | None = None) -> Iterator[Watch]:
    """A dual-stack lab whose bridge is captured (tcpdump, the sensor's filter) and watched
    by `arpwatchd run`; the sensor stops (SIGTERM) at the end of the block, before the
    capture does, so the capture holds every frame the sensor saw."""
    with Lab(ipv6=True) as lab:
        ndplab.quiet_sensor(lab)
        with netlab.kernel_rx_timestamps(), lab.capture(ndplab.CAPTURE_FILTER,
                                                         buffer_kib=BUFFER_KIB) as cap:
            sensor = SensorProcess(lab, config, state=state).start()
            watch = Watch(lab, sensor, cap)
            yield watch
            watch.stopped_at = time.time()
            status, _ = sensor.stop()
            assert status == 0, sensor.log()
            watch.live = sensor.events()
        watch.assert_replay_agrees()


def _bound_macs(state: Path) -> set[str]:
    """The MACs of every binding in the sensor's state file (`arpwatchd bindings`)."""
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "bindings", "--state", str(state),
                           "--json"], capture_output=True, text=True, timeout=120, check=True)
    return {json.loads(line)["mac"] for line in done.stdout.splitlines() if line}


def test_keepalived_ipv6_failover_and_failback_are_failovers_never_conflicts() -> None:
    """VRRPv3 master and backup share fd00:17::100 while a client pings it (fast NUD). The
    master's keepalived stops: the backup takes the address (unsolicited NAs to all-nodes with
    O set); once the master has been silent for the hold, `failover` to the backup. The master
    comes back and preempts: `failover` back once the backup has been silent for the hold."""
    vip = ndplab.address(0x100)
    with observed("hold: 10s\n") as watch:
        lab = watch.lab
        master = ndplab.add_host(lab, "ka", "02:00:00:17:a0:01", [ndplab.address(0x1)])
        backup = ndplab.add_host(lab, "kb", "02:00:00:17:b0:01", [ndplab.address(0x2)])
        client = ndplab.add_host(lab, "kc", "02:00:00:17:c0:01", [ndplab.address(0xC)],
                                 fast_nud=True)
        pair = ndplab.Keepalived6Pair(lab, master, backup, vip, vrid=17)
        pair.start(master)
        pair.wait_holding(master, 30.0)
        watch.wait_for(having("new_station", ip=vip, mac=master.mac), 30.0,
                       "the VIP's new_station on the master")
        pair.start(backup)
        wait_until(lambda: "Entering BACKUP STATE" in pair.log(backup), 30.0,
                   f"the backup's keepalived in BACKUP state: {pair.log(backup)[-2000:]}")
        pinger = client.popen(["ping", "-6", "-n", "-i", "0.5", "-c", "240", vip],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            watch.wait_for(having("new_station", ip=ndplab.address(0xC)), 30.0,
                           "the client resolving the VIP")
            pair.stop(master)
            pair.wait_holding(backup, 30.0)
            watch.wait_for(having("failover", ip=vip, mac=backup.mac), 60.0,
                           "the failover to the backup (hold 10 s)")
            pair.start(master)
            wait_until(lambda: not pair.holds(backup), 60.0, "the backup giving the VIP back")
            watch.wait_for(having("failover", ip=vip, mac=master.mac), 60.0,
                           "the failover back to the master (hold 10 s)")
        finally:
            netlab.stop_process(pinger)
    # keepalived runs on until the lab goes: stopping a master would make the backup move
    assert {e["event"] for e in watch.live} == {"new_station", "failover"}, _lines(watch.live)
    failovers = pick(watch.live, "failover")
    assert [(e["ip"], e["family"], e["mac"], e["previous_mac"], e["reason"]) for e in failovers] \
        == [(vip, "ipv6", backup.mac, master.mac, "announced"),
            (vip, "ipv6", master.mac, backup.mac, "announced")], _lines(failovers)
    assert not pick(watch.live, "conflict"), _lines(watch.live)


def test_parasite6_answering_after_the_gateway_is_a_conflict_with_the_attacker() -> None:
    """parasite6 answers every solicitation on the link with the attacker's MAC, a few ms
    after the real owner: two answers to one solicitation from different MACs, a `conflict`
    `both_active` for the gateway's address. Every conflict names the attacker's MAC."""
    gateway_ip = ndplab.address(0x1)
    with observed() as watch:
        _, victim, attacker = _gateway_victim_attacker(watch.lab)
        with ndplab.running(attacker, ["atk6-parasite6"]):
            ndplab.ping6(victim, gateway_ip, count=3, interval=0.5)
            watch.wait_for(having("conflict", ip=gateway_ip), 30.0,
                           "the conflict for the gateway's address")
            poisoned = victim.neigh(gateway_ip)
    print(f"\nvictim's entry for the gateway: {poisoned} (attacker {ATTACKER_MAC})")
    assert {e["event"] for e in watch.live} <= {"new_station", "conflict"}, _lines(watch.live)
    (conflict, *_) = pick(watch.live, "conflict", ip=gateway_ip)
    assert (conflict["family"], {conflict["mac"], conflict["previous_mac"]},
            conflict["reason"]) == ("ipv6", {GATEWAY_MAC, ATTACKER_MAC}, "both_active"), conflict
    for e in pick(watch.live, "conflict"):
        assert ATTACKER_MAC in (e["mac"], e["previous_mac"]), _lines(watch.live)
    assert pick(watch.live, "new_station", ip=ndplab.address(0xB), mac=VICTIM_MAC)


def test_dos_new_ip6_is_probe_in_use_and_its_random_macs_are_never_bound(tmp_path: Path) -> None:
    """A host adds fd00:17::c while dos-new-ip6 runs: the tool answers the DAD probe from a
    random MAC, the host marks the address `dadfailed`, and the sensor reports `probe_in_use`
    (the prober as mac, the random MAC as previous_mac). The random MAC gets no station and no
    binding: nobody held the address, so an NA that only answers a DAD probe binds nothing."""
    new_ip = ndplab.address(0xC)
    new_mac = "02:00:00:17:00:0c"
    state = tmp_path / "state.sqlite"  # outlives the lab's work directory
    with observed(state=state) as watch:
        attacker = ndplab.add_host(watch.lab, "atk", ATTACKER_MAC, [ndplab.address(0x66)])
        host = ndplab.add_host(watch.lab, "new", new_mac, [])
        with ndplab.running(attacker, ["atk6-dos-new-ip6"]):
            ndplab.add_ip6(host, new_ip)
            assert ndplab.wait_dad(host, new_ip, 30.0) == "dadfailed"
            watch.wait_for(having("probe_in_use", ip=new_ip), 30.0, "probe_in_use")
    # the hosts' router solicitations claim their link-local addresses: new_station
    assert {e["event"] for e in watch.live} <= {"new_station", "probe_in_use"}, _lines(watch.live)
    probes = pick(watch.live, "probe_in_use")
    assert {(e["ip"], e["family"], e["mac"]) for e in probes} == {(new_ip, "ipv6", new_mac)}
    made_up = {str(e["previous_mac"]) for e in probes}
    assert not made_up & {new_mac, ATTACKER_MAC}, made_up
    assert not [e for e in watch.live if e["event"] != "probe_in_use" and e["mac"] in made_up]
    bound = _bound_macs(state)
    assert new_mac in bound and not bound & made_up, (bound, made_up)


def test_ndisc6_and_ping6_between_two_hosts_are_only_new_stations() -> None:
    """ndisc6 on a asks for b's global and link-local addresses, then a pings b for 6 s with
    fast reachability probes (the unicast NS and the S-only answers of pcaps/README.md): one
    `new_station` per host and /64, nothing else."""
    with observed() as watch:
        a = ndplab.add_host(watch.lab, "a", "02:00:00:17:00:0a", [ndplab.address(0xA)],
                            fast_nud=True)
        b = ndplab.add_host(watch.lab, "b", "02:00:00:17:00:0b", [ndplab.address(0xB)])
        # what the tools learnt is printed, not asserted: under load ndisc6 may give up after
        # its 1 s before the answer reaches it, and the sensor sees the answer all the same
        learnt = [ndplab.ndisc6(a, ndplab.address(0xB)),
                  ndplab.ndisc6(a, ndplab.link_local(b.mac)),
                  ndplab.ping6(a, ndplab.address(0xB), count=6, interval=1.0)]
        print(f"\nndisc6 learnt {learnt[0]} and {learnt[1]}; ping6 replies: {learnt[2]}")
        stations = {(ndplab.address(0xA), a.mac), (ndplab.link_local(a.mac), a.mac),
                    (ndplab.address(0xB), b.mac), (ndplab.link_local(b.mac), b.mac)}
        watch.wait_for(
            lambda events: {(e["ip"], e["mac"]) for e in pick(events, "new_station")}
            >= stations, 30.0, "a new_station for each host's link-local and global address")
    assert [e["event"] for e in watch.live] == ["new_station"] * 4, _lines(watch.live)
    assert {(e["ip"], e["mac"], e["family"]) for e in watch.live} == {
        (ip, mac, "ipv6") for ip, mac in stations}
