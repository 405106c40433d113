"""End to end with the real tools: spoofers, scanners and probes against live Linux hosts
(issue 13, items 2 and 3).

Each test builds a namespace lab (tests/attacklab.py: gateway, victim pinging it, attacker in
192.0.2.0/24, all inside the lab), runs ``arpwatchd run`` with the default settings on the lab
bridge (a hub: it sees every frame), runs the real tool, and asserts what an operator would
expect to read: a ``conflict`` naming the tool's MAC as ``suspect`` for arpspoof, ettercap and
bettercap; an ``arp_scan`` naming the scanner for arp-scan and nmap; ``probe_in_use`` for
``arping -D`` of a used address and nothing for a free one; a ``conflict`` for two hosts
configured with one address. tcpdump records the bridge meanwhile (a 32 MiB buffer, kernel
receive timestamps shared with the sensor), and ``arpwatchd replay`` of that capture must give
the same events as the live sensor.

Detection latency (first offending frame on the wire to the event line in the sensor's file)
is printed (``pytest -s``) and appended to ``$ARPWATCHD_LATENCY_LOG`` when set
(benchmarks/detection_latency.py reads it); it is never asserted, the machines are shared.
Every wait has a deadline; the one computed sleep waits out the sensor's 5 s
``solicit_window`` after the victim's request, as an attacker who starts later would.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import attacklab
import netlab
import pytest
from attacklab import (
    ATTACKER_MAC,
    GW_IP,
    GW_MAC,
    VICTIM_IP,
    VICTIM_MAC,
    AttackLab,
    Tool,
)
from netlab import (
    ArpPacket,
    Capture,
    Lab,
    SensorEvent,
    SensorProcess,
    event_ts,
    having,
    pick,
    pin_neigh,
    replay_events,
    wait_until,
)
from realtools import EventClock, record_latency

pytestmark = pytest.mark.live

CONFIG = "# the defaults: hold 30 s, solicit_window 5 s, scan 100 targets in 10 s\n"
SOLICIT_WINDOW = 5.0
SCAN_TARGETS = 100
BUFFER_KIB = 32768
#: Events that end a state carry its deadline: replay ends every open hold at the end of the
#: file, the live sensor only those whose time came. Every other event is due to a frame.
DEADLINE_EVENTS = frozenset({"changed_mac", "failover", "reused_mac", "conflict_resolved"})
FREE_IP = "192.0.2.99"
DUP_IP = "192.0.2.50"
DUP_A_MAC, DUP_B_MAC = "02:00:00:00:02:0a", "02:00:00:00:02:0b"
PROBER_MAC = "02:00:00:00:03:01"


@pytest.fixture(autouse=True)
def _ping_installed() -> None:
    """Every scenario has a host ping another (iputils-ping, which ./dev.sh test installs)."""
    skip_unless(attacklab.available("ping"))


@dataclass
class Watch:
    """One scenario's live sensor, event clock and capture; ``live`` once the sensor stopped."""

    lab: Lab
    sensor: SensorProcess
    clock: EventClock
    cap: Capture
    stopped_at: float = 0.0
    live: list[SensorEvent] = field(default_factory=list)

    def wait_for(self, check: Callable[[list[SensorEvent]], bool], timeout: float, what: str,
                 tool: Tool | None = None) -> list[SensorEvent]:
        try:
            return self.sensor.wait_for(check, timeout, what)
        except AssertionError as exc:
            if tool is None:
                raise
            raise AssertionError(f"{exc}\n{tool.name} said:\n{tool.log()}") from None

    def latency(self, scenario: str, first: Callable[[ArpPacket], bool], event: str,
                **fields: object) -> float:
        """Records the time from the first captured frame matching ``first`` to the line of
        ``event`` with ``fields``; returns that frame's time."""
        frame_ts = next((p.ts for p in self.cap.arps() if first(p)), None)
        assert frame_ts is not None, f"no offending frame in the capture:\n{self.cap.text()}"
        seen = self.clock.first(event, **fields)
        assert seen is not None, f"the event clock missed {event} {fields}"
        record_latency(scenario, event, seen - frame_ts, self.cap.path)
        print(f"\n{scenario}: {event} {fields} {1000 * (seen - frame_ts):.1f} ms after the "
              f"first offending frame")
        return frame_ts

    def replay_agrees(self) -> list[SensorEvent]:
        """Replays the capture with the sensor's config; asserts it gives the live events."""
        assert self.cap.frames, "tcpdump captured nothing"
        replayed = replay_events(self.sensor.config_path, self.cap.path, self.lab.bridge,
                                 self.lab.workdir / "replay-events.jsonl")

        def due_to_frames(events: list[SensorEvent]) -> list[SensorEvent]:
            return [e for e in events if e["event"] not in DEADLINE_EVENTS
                    and event_ts(e) <= self.stopped_at]

        live = due_to_frames(self.live)
        assert due_to_frames(replayed) == live, (
            f"live:\n{lines(live)}\nreplay:\n{lines(due_to_frames(replayed))}\n"
            f"capture:\n{frames(self.cap)}")
        return replayed


@contextlib.contextmanager
def observed(lab: Lab) -> Iterator[Watch]:
    """Capture and sensor on the bridge for the block; the sensor stops (SIGTERM) at its end,
    before the capture does, so the capture holds every frame the sensor saw."""
    with netlab.kernel_rx_timestamps(), lab.capture(buffer_kib=BUFFER_KIB) as cap:
        sensor = SensorProcess(lab, CONFIG).start()
        with EventClock(sensor.events_path) as clock:
            watch = Watch(lab, sensor, clock, cap)
            yield watch
            watch.stopped_at = time.time()
            status, _ = sensor.stop()
            assert status == 0, sensor.log()
            watch.live = sensor.events()


def lines(events: list[SensorEvent]) -> str:
    return "\n".join(json.dumps(e) for e in events)


def frames(cap: Capture) -> str:
    """The captured ARP frames, one short line each, for failure messages."""
    ops = {netlab.ARP_REQUEST: "who-has", netlab.ARP_REPLY: "reply"}
    return "\n".join(f"{p.ts:.6f} {p.eth_src}>{p.eth_dst} {ops.get(p.op, p.op)} "
                     f"{p.spa} at {p.sha} to {p.tpa} at {p.tha}" for p in cap.arps())


def skip_unless(ok_reason: tuple[bool, str]) -> None:
    ok, reason = ok_reason
    if not ok:
        pytest.skip(reason)


def spoofed(ip: str) -> Callable[[ArpPacket], bool]:
    """A reply sent by the attacker claiming ``ip`` for its own MAC."""
    return lambda p: (p.op == netlab.ARP_REPLY and p.eth_src == ATTACKER_MAC
                      and p.sha == ATTACKER_MAC and p.spa == ip)


def wait_out_solicit_window(watch: Watch) -> None:
    """A reply within solicit_window of the victim's request is an answer to it; start the
    attack after it, as an attacker who arrives later would."""
    events = watch.wait_for(having("new_station", ip=VICTIM_IP), 10, "the victim's request")
    [asked] = pick(events, "new_station", ip=VICTIM_IP)
    time.sleep(max(0.0, event_ts(asked) + SOLICIT_WINDOW + 0.3 - time.time()))


SPOOFERS: dict[str, tuple[Callable[[AttackLab], Tool], frozenset[str]]] = {
    # scenario: (tool, addresses it poisons)
    "arpspoof": (attacklab.arpspoof, frozenset({GW_IP})),
    "arpspoof -r": (lambda net: attacklab.arpspoof(net, both_ways=True),
                    frozenset({GW_IP, VICTIM_IP})),
    "ettercap": (attacklab.ettercap, frozenset({GW_IP, VICTIM_IP})),
    "bettercap": (attacklab.bettercap, frozenset({GW_IP})),
}


@pytest.mark.parametrize("scenario", list(SPOOFERS))
def test_spoofer_is_a_conflict_naming_the_tool_as_suspect(lab: Lab, scenario: str) -> None:
    """The victim pings its gateway; the tool poisons it (and with ``-r`` or ettercap's
    arp:remote the gateway too): one ``conflict`` per poisoned address, at the tool's first
    spoofed reply, reason ``unsolicited_takeover``, ``suspect`` the tool's MAC."""
    binary = scenario.split(maxsplit=1)[0]
    skip_unless(attacklab.bettercap_available() if binary == "bettercap"
                else attacklab.available(binary))
    make_tool, poisoned = SPOOFERS[scenario]
    net = attacklab.build(lab)
    with observed(lab) as watch:
        pinger = attacklab.ping(net.victim, GW_IP)
        wait_out_solicit_window(watch)
        with make_tool(net) as tool:
            watch.wait_for(lambda ev: all(pick(ev, "conflict", ip=ip) for ip in poisoned), 30,
                           f"{scenario}: a conflict for each of {sorted(poisoned)}", tool)
            wait_until(lambda: net.victim.neigh(GW_IP) == ATTACKER_MAC, 10,
                       "the victim's cache poisoned (the attack was real)")
            tool.stop()  # it restores the caches it poisoned
        netlab.stop_process(pinger)
    owners = {GW_IP: GW_MAC, VICTIM_IP: VICTIM_MAC}
    conflicts = pick(watch.live, "conflict")
    story = f"{lines(watch.live)}\n{frames(watch.cap)}"
    assert sorted(c["ip"] for c in conflicts) == sorted(poisoned), story
    for conflict in conflicts:
        ip = str(conflict["ip"])
        assert conflict["suspect"] == ATTACKER_MAC, story
        assert {conflict["mac"], conflict["previous_mac"]} == {ATTACKER_MAC, owners[ip]}, story
        side = "gateway" if ip == GW_IP else "victim"
        first = watch.latency(f"{scenario} ({side} address)", spoofed(ip), "conflict", ip=ip)
        if ip == GW_IP:  # the victim asked long ago: the first spoofed reply is the conflict
            assert conflict["reason"] == "unsolicited_takeover", story
            assert event_ts(conflict) == pytest.approx(first, abs=2e-6), story
        else:
            # The gateway re-probes the victim 5 s after first using its entry: a spoofed
            # "victim is-at" reply soon after passes for an answer (a hold); the tool's next
            # reply to the victim then contradicts what its target said (reply_target).
            assert conflict["reason"] in ("unsolicited_takeover", "reply_target"), story
    watch.replay_agrees()


ANSWER_WINDOW = 2.0  # the sensor's default: a second answer to one request this soon races


def test_spoofer_starting_inside_the_victims_solicit_window_is_still_a_conflict() -> None:
    """arpspoof starts 2-5 s after the victim resolved its gateway: its first reply falls
    within ``solicit_window`` of the victim's request (too late to race the gateway's answer),
    so it passes for an answer and only starts a hold. Its next reply past the window is
    unsolicited: the ``unsolicited_takeover`` conflict comes then, not when the hold (30 s)
    ends. The gateway's entry for the victim and the attacker's entries are pinned, so neither
    the gateway nor arpspoof ARPs (a router with a long ARP timeout, an attacker that already
    knows both): nothing else would reveal the attack during the hold. When load moves the
    first reply out of that 2-5 s slot, the scenario runs again (3 tries)."""
    skip_unless(attacklab.available("arpspoof"))
    for _ in range(3):
        with Lab() as lab:
            outcome = _spoof_inside_the_solicit_window(lab)
        if outcome is not None:
            return
    pytest.fail("arpspoof's first reply never fell 2-5 s after the victim's request")


def _spoof_inside_the_solicit_window(lab: Lab) -> SensorEvent | None:
    """One try; None when the first spoofed reply missed the slot."""
    net = attacklab.build(lab)
    pin_neigh(net.gateway, VICTIM_IP, VICTIM_MAC)
    pin_neigh(net.attacker, VICTIM_IP, VICTIM_MAC)
    pin_neigh(net.attacker, GW_IP, GW_MAC)
    with observed(lab) as watch:
        pinger = attacklab.ping(net.victim, GW_IP)
        events = watch.wait_for(having("new_station", ip=VICTIM_IP), 10, "the victim's request")
        [asked] = pick(events, "new_station", ip=VICTIM_IP)
        time.sleep(max(0.0, event_ts(asked) + ANSWER_WINDOW + 0.5 - time.time()))
        with attacklab.arpspoof(net) as tool:
            events = watch.wait_for(having("conflict", ip=GW_IP), 20, "a conflict", tool)
            tool.stop()
        netlab.stop_process(pinger)
    replies = [p for p in watch.cap.arps() if spoofed(GW_IP)(p)]
    if not ANSWER_WINDOW < replies[0].ts - event_ts(asked) <= SOLICIT_WINDOW - 0.5:
        return None
    story = f"{lines(watch.live)}\n{frames(watch.cap)}"
    [conflict] = pick(events, "conflict", ip=GW_IP)
    assert (conflict["mac"], conflict["suspect"]) == (ATTACKER_MAC, ATTACKER_MAC), story
    assert conflict["reason"] == "unsolicited_takeover", story
    unsolicited = next(p for p in replies if p.ts - event_ts(asked) > SOLICIT_WINDOW)
    assert event_ts(conflict) == pytest.approx(unsolicited.ts, abs=2e-6), story
    watch.latency("arpspoof inside the solicit window", spoofed(GW_IP), "conflict", ip=GW_IP)
    watch.replay_agrees()
    return conflict


SCANNERS: dict[str, Callable[[netlab.Host], object]] = {
    "arp-scan": attacklab.arp_scan,
    "nmap -sn": attacklab.nmap_sweep,
}


@pytest.mark.parametrize("scenario", list(SCANNERS))
def test_scanner_is_an_arp_scan_naming_the_scanner(lab: Lab, scenario: str) -> None:
    """A sweep of the /24 asks for ~254 addresses within a second or two: one ``arp_scan``
    with the scanner's MAC, at its 101st distinct target (``scan.targets`` 100 in 10 s), and
    no conflict."""
    skip_unless(attacklab.available(scenario.split(maxsplit=1)[0]))
    net = attacklab.build(lab)
    with observed(lab) as watch:
        pinger = attacklab.ping(net.victim, GW_IP)
        watch.wait_for(having("new_station", ip=VICTIM_IP), 10, "the victim's request")
        SCANNERS[scenario](net.attacker)
        watch.wait_for(having("arp_scan", mac=ATTACKER_MAC), 20, "arp_scan")
        netlab.stop_process(pinger)
    [scan] = pick(watch.live, "arp_scan")
    assert scan["mac"] == ATTACKER_MAC and scan["count"] == SCAN_TARGETS + 1, scan
    assert not pick(watch.live, "conflict"), watch.live
    asked: set[str] = set()

    def scanning(p: ArpPacket) -> bool:
        return p.op == netlab.ARP_REQUEST and p.sha == ATTACKER_MAC and p.tpa != p.spa

    def nth_target(p: ArpPacket) -> bool:
        if scanning(p):
            asked.add(p.tpa)
        return len(asked) > SCAN_TARGETS

    watch.latency(scenario, scanning, "arp_scan", mac=ATTACKER_MAC)
    first = watch.latency(f"{scenario} (from the {SCAN_TARGETS + 1}st target)", nth_target,
                          "arp_scan", mac=ATTACKER_MAC)
    assert event_ts(scan) == pytest.approx(first, abs=2e-6), "not at the 101st target"
    watch.replay_agrees()


def test_arping_dad_reports_a_used_address_and_not_a_free_one(lab: Lab) -> None:
    """A new host probes (``arping -D``, sender 0.0.0.0) the victim's address, which is in use
    (the victim answers): ``probe_in_use`` naming the prober and the owner. Then it probes a
    free address, nobody answers, it takes the address and announces it (``arping -U``): the
    only event for that address is its ``new_station``."""
    skip_unless(attacklab.available("arping"))
    net = attacklab.build(lab)
    prober = lab.add_host("p", PROBER_MAC)
    with observed(lab) as watch:
        pinger = attacklab.ping(net.victim, GW_IP)
        watch.wait_for(having("new_station", ip=VICTIM_IP), 10, "the victim's request")
        assert attacklab.arping_dad(prober, VICTIM_IP, count=1)
        watch.wait_for(having("probe_in_use", ip=VICTIM_IP), 10, "probe_in_use")
        assert not attacklab.arping_dad(prober, FREE_IP)
        prober.add_ip(FREE_IP)
        prober.arping_announce(FREE_IP)
        watch.wait_for(having("new_station", ip=FREE_IP), 10, "the prober's new_station")
        netlab.stop_process(pinger)
    [used] = pick(watch.live, "probe_in_use")
    assert (used["ip"], used["mac"], used["previous_mac"]) == (VICTIM_IP, PROBER_MAC,
                                                                VICTIM_MAC), used
    assert [e["event"] for e in pick(watch.live, ip=FREE_IP)] == ["new_station"], watch.live
    assert not pick(watch.live, "conflict"), watch.live
    first = watch.latency("arping -D", lambda p: p.spa == "0.0.0.0" and p.tpa == VICTIM_IP,
                          "probe_in_use", ip=VICTIM_IP)
    assert event_ts(used) == pytest.approx(first, abs=2e-6), "not at the probe"
    watch.replay_agrees()


def test_two_hosts_with_one_address_are_a_conflict(lab: Lab) -> None:
    """Two hosts configured with the same address both answer the gateway's request for it
    (the gateway pings it): ``conflict`` (both_active) naming both MACs, at the second
    answer."""
    net = attacklab.build(lab)
    lab.add_host("a", DUP_A_MAC, [DUP_IP])
    lab.add_host("b", DUP_B_MAC, [DUP_IP])
    with observed(lab) as watch:
        pinger = attacklab.ping(net.gateway, DUP_IP, count=10)
        watch.wait_for(having("conflict", ip=DUP_IP), 10, "conflict")
        netlab.stop_process(pinger)
    [conflict] = pick(watch.live, "conflict")
    assert {conflict["mac"], conflict["previous_mac"]} == {DUP_A_MAC, DUP_B_MAC}, conflict
    assert conflict["ip"] == DUP_IP and conflict["reason"] == "both_active", conflict
    answers: set[str] = set()

    def second_owner(p: ArpPacket) -> bool:
        if p.spa == DUP_IP and p.sha in (DUP_A_MAC, DUP_B_MAC):
            answers.add(p.sha)
        return len(answers) == 2

    first = watch.latency("two owners", second_owner, "conflict", ip=DUP_IP)
    assert event_ts(conflict) == pytest.approx(first, abs=2e-6), "not at the second answer"
    watch.replay_agrees()
