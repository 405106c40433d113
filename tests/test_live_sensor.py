"""End to end: `arpwatchd run` on a lab bridge with real Linux hosts (issue 2, item 8).

Each test builds a fresh namespace lab (tests/netlab.py: a flooding bridge, so the sensor sees
every frame like a mirror port), starts the installed sensor as an operator would
(``arpwatchd run -i <bridge> -c <config with hold: 3s> --events ... --state ...
--metrics-address 0``, inside the sensor namespace) and makes real kernels do what clusters,
duplicate addresses and spoofers do: ``ip addr add/del``, ``arping -U``, neighbour resolution,
raw spoofed replies. Then it asserts the events the sensor wrote.

Timing: every wait polls with a deadline (``SensorProcess.wait_for``); the only computed
sleep waits out the sensor's 5 s ``solicit_window`` in the spoofing test. Addresses are
192.0.2.0/24 and 10.99.0.0/16 inside the lab's namespaces only. Kernel facts relied on are in
tests/LAB_NOTES.md.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import netlab
import pytest
from netlab import (
    Lab,
    SensorProcess,
    event_ts,
    having,
    pick,
    pin_neigh,
    replay_events,
    reply,
)

pytestmark = pytest.mark.live

HOLD = 3.0
CONFIG = "hold: 3s\n"
SOLICIT_WINDOW = 5.0  # the sensor's default: a reply with no request this recent is unsolicited

A_MAC, B_MAC, C_MAC, D_MAC = (f"02:00:00:00:00:{n:02x}" for n in (0x0A, 0x0B, 0x0C, 0x0D))
A_IP, B_IP, C_IP, D_IP = "192.0.2.11", "192.0.2.12", "192.0.2.50", "192.0.2.51"
CLUSTER_IP = "192.0.2.100"
GW_MAC, VICTIM_MAC, ATTACKER_MAC = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:01:66"
GW_IP, VICTIM_IP, ATTACKER_IP = "192.0.2.1", "192.0.2.2", "192.0.2.66"


def cluster_hosts(lab: Lab) -> tuple[netlab.Host, netlab.Host, netlab.Host]:
    """Cluster nodes A and B (own primary addresses) and a client C."""
    a = lab.add_host("a", A_MAC, [A_IP])
    b = lab.add_host("b", B_MAC, [B_IP])
    c = lab.add_host("c", C_MAC, [C_IP])
    return a, b, c


def test_failover_announced_by_arping_is_failover_not_conflict(lab: Lab) -> None:
    """A holds the cluster IP and answers a client; A drops it, B takes it and announces it with
    three gratuitous requests (``arping -U``): after the hold, ``failover`` A -> B, no conflict."""
    a, b, c = cluster_hosts(lab)
    sensor = SensorProcess(lab, CONFIG).start()
    a.add_ip(CLUSTER_IP)
    assert c.resolve(CLUSTER_IP) == A_MAC
    sensor.wait_for(having("new_station", ip=CLUSTER_IP, mac=A_MAC), 5, "A's new_station")
    a.del_ip(CLUSTER_IP)
    b.add_ip(CLUSTER_IP)
    b.arping_announce(CLUSTER_IP, count=3)  # ~3 s: 3 requests 1 s apart
    events = sensor.wait_for(having("failover", ip=CLUSTER_IP), HOLD + 5, "failover")
    [failover] = pick(events, "failover", ip=CLUSTER_IP)
    assert (failover["mac"], failover["previous_mac"]) == (B_MAC, A_MAC), failover
    assert failover["reason"] == "announced" and failover["vlan"] is None
    assert event_ts(failover) - event_ts(failover, "since") == pytest.approx(HOLD, abs=1e-5)
    assert not pick(events, "conflict") and not pick(events, "changed_mac"), events
    assert pick(events, "new_station", ip=C_IP, mac=C_MAC)


def test_two_live_owners_conflict_then_resolved(lab: Lab) -> None:
    """A and B both hold the IP and both answer the client's requests: one ``conflict``
    (both_active) naming both MACs; A drops the IP: ``conflict_resolved`` (B kept it) after
    A was silent for the hold."""
    a, b, c = cluster_hosts(lab)
    a.add_ip(CLUSTER_IP)
    b.add_ip(CLUSTER_IP)
    sensor = SensorProcess(lab, CONFIG).start()
    for _ in range(3):  # bounded: three rounds of flush + resolve
        c.flush_neigh()
        assert c.resolve(CLUSTER_IP) in (A_MAC, B_MAC)
        time.sleep(0.3)
    events = sensor.wait_for(having("conflict", ip=CLUSTER_IP), 5, "conflict")
    [conflict] = pick(events, "conflict", ip=CLUSTER_IP)  # one event, however many replies
    assert {conflict["mac"], conflict["previous_mac"]} == {A_MAC, B_MAC}, conflict
    assert conflict["reason"] == "both_active" and conflict["severity"] == "critical"
    a.del_ip(CLUSTER_IP)
    c.flush_neigh()
    assert c.resolve(CLUSTER_IP) == B_MAC
    quiet_since = time.time()
    events = sensor.wait_for(having("conflict_resolved", ip=CLUSTER_IP), HOLD + 5,
                             "conflict_resolved")
    [resolved] = pick(events, "conflict_resolved", ip=CLUSTER_IP)
    assert (resolved["mac"], resolved["previous_mac"]) == (B_MAC, A_MAC), resolved
    assert event_ts(resolved) <= quiet_since + HOLD + 0.5  # A's last answer came before quiet_since
    assert len(pick(events, "conflict")) == 1, events


def test_spoofed_gateway_is_unsolicited_takeover_with_attacker_as_suspect(lab: Lab) -> None:
    """An attacker sends unsolicited replies "gateway is-at attacker" to a victim (arpspoof),
    while the real gateway keeps answering others: ``conflict`` at once, reason
    ``unsolicited_takeover``, suspect the attacker."""
    gw = lab.add_host("gw", GW_MAC, [GW_IP])
    victim = lab.add_host("v", VICTIM_MAC, [VICTIM_IP])
    attacker = lab.add_host("m", ATTACKER_MAC, [ATTACKER_IP])
    other = lab.add_host("c", C_MAC, [C_IP])
    pin_neigh(gw, VICTIM_IP, VICTIM_MAC)  # no re-probe of the victim to undo the poisoning
    sensor = SensorProcess(lab, CONFIG).start()
    asked = time.time()
    assert victim.resolve(GW_IP) == GW_MAC
    sensor.wait_for(having("new_station", ip=GW_IP, mac=GW_MAC), 5, "the gateway's new_station")
    # A reply within solicit_window of the victim's own request would count as an answer.
    time.sleep(max(0.0, asked + SOLICIT_WINDOW + 0.3 - time.time()))
    attacker.send_frames([reply(ATTACKER_MAC, GW_IP, VICTIM_MAC, VICTIM_IP)], count=3,
                         interval=0.3)
    assert other.resolve(GW_IP) == GW_MAC  # the real gateway still answers
    events = sensor.wait_for(having("conflict", ip=GW_IP), 5, "conflict for the gateway")
    [conflict] = pick(events, "conflict", ip=GW_IP)
    assert conflict["reason"] == "unsolicited_takeover", conflict
    assert conflict["suspect"] == ATTACKER_MAC, conflict
    assert (conflict["mac"], conflict["previous_mac"]) == (ATTACKER_MAC, GW_MAC), conflict
    assert victim.neigh(GW_IP) == ATTACKER_MAC  # the attack was real: the victim is poisoned
    time.sleep(0.5)  # the gateway's answer to the other client is in; still one conflict
    assert len(pick(sensor.events(), "conflict", ip=GW_IP)) == 1, sensor.events()


def test_same_ip_in_two_vlans_is_two_stations_not_a_conflict(lab: Lab) -> None:
    """A trunk: 10.99.0.1 in VLAN 10 and in VLAN 20 (different MACs) are two addresses."""
    ok, reason = netlab.vlan_available()
    if not ok:
        pytest.skip(reason)
    lab.add_host("a10", "02:00:00:00:10:01", ["10.99.0.1"], vlan=10)
    lab.add_host("a20", "02:00:00:00:20:01", ["10.99.0.1"], vlan=20)
    b10 = lab.add_host("b10", "02:00:00:00:10:02", ["10.99.0.2"], vlan=10)
    b20 = lab.add_host("b20", "02:00:00:00:20:02", ["10.99.0.2"], vlan=20)
    sensor = SensorProcess(lab, CONFIG).start()
    assert b10.resolve("10.99.0.1") == "02:00:00:00:10:01"
    assert b20.resolve("10.99.0.1") == "02:00:00:00:20:01"
    events = sensor.wait_for(having("new_station", 2, ip="10.99.0.1"), 5, "two new_station")
    stations = {(e["vlan"], e["mac"]) for e in pick(events, "new_station", ip="10.99.0.1")}
    assert stations == {(10, "02:00:00:00:10:01"), (20, "02:00:00:00:20:01")}, events
    requesters = {(e["vlan"], e["mac"]) for e in pick(events, "new_station", ip="10.99.0.2")}
    assert requesters == {(10, "02:00:00:00:10:02"), (20, "02:00:00:00:20:02")}, events
    time.sleep(0.5)
    assert not pick(sensor.events(), "conflict"), sensor.events()


def test_arp_behind_three_and_four_tags_is_captured(lab: Lab) -> None:
    """The kernel's filter passes QinQ ARP as deep as the decoder reads (issue 15 item 7):
    the kernel takes the outer tag off into metadata, so libpcap's filter checks it there and
    the inner tags in the frame. 3 and 4 tags: stations of the outer VLAN; 2 tags still work."""
    host = lab.add_host("q", "02:00:00:00:30:01")
    sensor = SensorProcess(lab, CONFIG).start()
    frames = []
    for depth in (2, 3, 4):
        mac = f"02:00:00:00:30:0{depth}"
        frame = netlab.arp_frame(1, mac, netlab.BROADCAST, mac, f"10.99.{depth}.1",
                                 netlab.ZERO_MAC, f"10.99.{depth}.2")
        stack = b"".join(struct.pack("!HH", 0x88A8 if i == 0 else 0x8100, depth * 100 + i)
                         for i in range(depth))
        frames.append(frame[:12] + stack + frame[12:])
    host.send_frames(frames)
    events = sensor.wait_for(having("new_station", 3), 5, "three new_station")
    stations = {(e["ip"], e["vlan"]) for e in pick(events, "new_station")}
    assert stations == {("10.99.2.1", 200), ("10.99.3.1", 300), ("10.99.4.1", 400)}, events


COMPARED = ("ts", "event", "ip", "mac", "previous_mac", "reason", "vlan")


def test_live_events_equal_replay_of_the_same_traffic(lab: Lab) -> None:
    """A failover (arping -U) and a conflict (two owners answer) captured by tcpdump on the
    bridge while the sensor runs; once every hold has ended live (clock ticks on a quiet
    network), the sensor stops, and ``arpwatchd replay`` of the capture with the same config
    gives the same events, to the microsecond. Requests come from ``arping`` (no IP traffic,
    so no kernel re-probes that could fall between stopping the sensor and the capture)."""
    a, b, c = cluster_hosts(lab)
    failover_ip, conflict_ip = CLUSTER_IP, "192.0.2.101"
    a.add_ip(failover_ip)
    a.add_ip(conflict_ip)
    b.add_ip(conflict_ip)
    with netlab.kernel_rx_timestamps(), lab.capture() as cap:
        sensor = SensorProcess(lab, CONFIG).start()
        assert c.arping_request(failover_ip) == 1
        assert c.arping_request(conflict_ip) >= 1  # arping stops at the first of two replies
        sensor.wait_for(having("conflict", ip=conflict_ip), 5, "conflict")
        a.del_ip(conflict_ip)
        assert c.arping_request(conflict_ip) == 1
        a.del_ip(failover_ip)
        b.add_ip(failover_ip)
        b.arping_announce(failover_ip, count=3)
        done = having("failover", ip=failover_ip)
        live = sensor.wait_for(
            lambda ev: done(ev) and bool(pick(ev, "conflict_resolved", ip=conflict_ip)),
            HOLD + 5, "failover and conflict_resolved (holds ended by the clock tick)")
        rc, _ = sensor.stop()
        assert rc == 0, sensor.log()
    assert cap.frames, "tcpdump captured nothing"
    replayed = replay_events(sensor.config_path, cap.path, lab.bridge,
                             lab.workdir / "replay-events.jsonl")
    assert [(e["event"], e["ip"]) for e in live] == [
        ("new_station", C_IP), ("new_station", failover_ip), ("new_station", conflict_ip),
        ("conflict", conflict_ip), ("conflict_resolved", conflict_ip),
        ("failover", failover_ip),
    ], live
    assert [tuple(e.get(k) for k in COMPARED) for e in replayed] == [
        tuple(e.get(k) for k in COMPARED) for e in live
    ], f"live:\n{live}\nreplay:\n{replayed}\ncapture:\n{cap.text()}"
    assert replayed == live  # every field, vendor, since, duration and count included


def test_sigterm_stops_the_sensor_by_itself_and_state_reloads(lab: Lab, tmp_path: Path) -> None:
    """SIGTERM: exit 0 within ~1.5 s, state saved; a second run on the same state file, over
    the same traffic, reports no new_station for the known hosts (only for a new one)."""
    *_, c = cluster_hosts(lab)
    state = tmp_path / "state.sqlite"
    known = {(A_IP, A_MAC), (B_IP, B_MAC), (C_IP, C_MAC)}

    first = SensorProcess(lab, CONFIG, tag="first", state=state).start()
    assert c.arping_request(A_IP) == 1 and c.arping_request(B_IP) == 1
    events = first.wait_for(having("new_station", 3), 5, "three new_station")
    assert {(e["ip"], e["mac"]) for e in pick(events, "new_station")} == known, events
    rc, took = first.stop()
    print(f"\nSIGTERM to exit: {took:.3f} s")
    assert rc == 0, first.log()
    # It exits by itself (stop() would SIGKILL it after 5 s); how fast is the benchmarks' job.
    assert took < 5.0, f"took {took:.2f} s to stop"
    assert "stopped (SIGTERM)" in first.log(), first.log()

    second = SensorProcess(lab, CONFIG, tag="second", state=state).start()
    assert "3 bindings restored" in second.log(), second.log()
    d = lab.add_host("d", D_MAC, [D_IP])
    assert c.arping_request(A_IP) == 1 and c.arping_request(B_IP) == 1
    assert d.arping_request(A_IP) == 1  # a host the first run never saw
    events = second.wait_for(having("new_station", ip=D_IP), 5, "new_station for the new host")
    time.sleep(0.3)
    events = second.events()
    assert [(e["ip"], e["mac"]) for e in pick(events, "new_station")] == [(D_IP, D_MAC)], events
    rc, took = second.stop()
    assert rc == 0 and took < 5.0, (rc, took, second.log())
