"""End to end: the sensor defending an IPv6 address against thc-ipv6's fake_advertise6, with
real Linux neighbour caches (issue 17; docs/defense.md, "IPv6 addresses").

Four hosts on the lab bridge (tests/ndplab.py: ULA fd00:17::/64, a flooding bridge): an owner
holding fd00:17::1, a victim that has talked to it (its kernel resolved the owner, so ``ip -6
neigh`` has an entry to poison: Linux creates no entry from an unsolicited NA, it only updates
one; a bystander that never talked to it shows that), and an attacker running
``atk6-fake_advertise6``, which tells the victim by unicast NAs (O set, S clear) that
fd00:17::1 is at the attacker's MAC. The sensor runs ``arpwatchd run`` on the bridge with
fd00:17::1 under ``defend.addresses``.

First, with no sensor, one lie poisons the victim and nothing puts it back (the control).
Then, with the sensor, three lies a second apart: each is answered by the sensor's NA, and the
victim ends on the owner's MAC. What is asserted is what the victim's kernel ends up with
(``ip -6 neigh``), what reached the victim (tcpdump in its namespace: the defense NA's fields,
read by ``ndp.decode_ndp``, which checks hop limit 255 and the ICMPv6 checksum) and the
sensor's events. Every wait is on a condition with a timeout; the timeouts are generous, for
a 2-core machine running the whole suite in parallel.

The owner's neighbour entry for the victim is pinned (``pin_neigh``): otherwise the owner's
kernel would probe the victim by unicast NS, whose source link-layer option rewrites the
victim's entry for fd00:17::1 back to the owner by itself (RFC 4861 7.2.3), crediting the
sensor with a recovery it did not make.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv6Address

import ndplab
import pytest
from netlab import Host, Lab, SensorEvent, SensorProcess, pick, pin_neigh, wait_until

from arpwatchd.addresses import parse_mac
from arpwatchd.ndp import NdpFrame, NdpKind, decode_ndp

pytestmark = pytest.mark.live

OWNER, VICTIM, ATTACKER = "02:00:00:17:00:01", "02:00:00:17:00:0b", "02:00:00:17:00:66"
BYSTANDER = "02:00:00:17:00:77"
OWNED_IP, VICTIM_IP, ATTACKER_IP = ndplab.address(0x1), ndplab.address(0xB), ndplab.address(0x66)
LIES = 3
WAIT = 20.0
"""Seconds any one condition may take on a loaded machine (each returns as soon as it holds)."""


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [t for t in ("atk6-fake_advertise6", "tcpdump") if t in ndplab.tools_missing()]
    if missing:
        pytest.skip(f"missing tools: {' '.join(missing)} (./dev.sh test installs them)")


def lie(attacker: Host, count: int) -> None:
    """`count` unsolicited NAs "fd00:17::1 is at the attacker", unicast to the victim, 1 s
    apart (fake_advertise6 with a target: O set, S and R clear, pcaps/ndp/fake-advertise6)."""
    attacker.run(["atk6-fake_advertise6", "-n", str(count), "-w", "1", attacker.dev, OWNED_IP,
                  VICTIM_IP], timeout=count + WAIT, check=False)


def last_word_after(lies: int) -> Callable[[list[SensorEvent]], bool]:
    """A `wait_for` check: `lies` answers, and the latest defense is a last word."""
    def check(events: list[SensorEvent]) -> bool:
        sent = pick(events, "defense_sent", ip=OWNED_IP)
        return (len(pick(sent, reason="defended")) >= lies
                and sent[-1]["reason"] == "last_word")
    return check


def neighbour_advertisements(frames: list[tuple[float, bytes]]) -> list[tuple[float, NdpFrame]]:
    """The NAs for fd00:17::1 among captured frames, decoded (invalid ones are left out)."""
    out = []
    for ts, raw in frames:
        frame = decode_ndp(raw, "victim")
        if isinstance(frame, NdpFrame) and frame.target == IPv6Address(OWNED_IP) and (
                frame.kind in (NdpKind.SOLICITED_ADVERTISEMENT,
                               NdpKind.UNSOLICITED_ADVERTISEMENT)):
            out.append((ts, frame))
    return out


def test_sensor_restores_a_victim_poisoned_by_fake_advertise6_with_an_na() -> None:
    with Lab(ipv6=True) as lab:
        ndplab.quiet_sensor(lab)
        owner = ndplab.add_host(lab, "o", OWNER, [OWNED_IP])
        victim = ndplab.add_host(lab, "v", VICTIM, [VICTIM_IP])
        attacker = ndplab.add_host(lab, "m", ATTACKER, [ATTACKER_IP])
        bystander = ndplab.add_host(lab, "w", BYSTANDER, [ndplab.address(0x77)])
        pin_neigh(owner, VICTIM_IP, VICTIM)
        assert ndplab.ping6(victim, OWNED_IP, count=1) == 1
        assert victim.neigh(OWNED_IP) == OWNER

        # the control: without a sensor, one lie poisons the victim and it stays poisoned
        lie(attacker, 1)
        wait_until(lambda: victim.neigh(OWNED_IP) == ATTACKER, WAIT, "the victim poisoned")
        steady_until = time.monotonic() + 1.5  # a sensor's defense would have landed by now
        while time.monotonic() < steady_until:
            assert victim.neigh(OWNED_IP) == ATTACKER, "something else restored the victim"
            time.sleep(0.1)

        config = ("hold: 3s\ndefend:\n  addresses:\n"
                  f"    - {{ip: 'FD00:17:0::1', mac: '{OWNER}', interface: {lab.bridge}}}\n")
        sensor = SensorProcess(lab, config).start(timeout=WAIT + 10)
        with lab.capture(ndplab.CAPTURE_FILTER, ns=victim.ns, iface=victim.dev) as cap:
            lie(attacker, LIES)  # returns after the last lie
            restored = wait_until(lambda: victim.neigh(OWNED_IP) == OWNER, WAIT,
                                  "the victim back on the owner", step=0.02)
            sensor.wait_for(last_word_after(LIES), WAIT,
                            "an answer to each lie, then the last word")
        sensor.stop()
        events = sensor.events()
        log = sensor.log()
        final = victim.neigh(OWNED_IP)
        # a host with no entry gets none from the NAs (Linux: accept_untracked_na 0), and
        # the owner keeps its address (the NAs carry it; only a tentative one would fail DAD)
        bystander_entry = bystander.neigh_entry(OWNED_IP)
        owner_flags = ndplab.address_flags(owner, OWNED_IP)

    assert final == OWNER, log
    assert bystander_entry is None, bystander_entry
    assert owner_flags == [], owner_flags
    conflicts = pick(events, "conflict", ip=OWNED_IP)
    assert conflicts, events
    assert (conflicts[0]["family"], conflicts[0]["mac"], conflicts[0]["reason"]) == (
        "ipv6", ATTACKER, "owned_address_claimed")
    sent = pick(events, "defense_sent", ip=OWNED_IP)
    assert all((e["family"], e["mac"], e["previous_mac"]) == ("ipv6", OWNER, ATTACKER)
               for e in sent), sent
    # lies 1 s apart: each answered at once (the spacing is 1 s); a last word a second after
    # a lie may come just before the next lie, and one always follows the last
    reasons = [e["reason"] for e in sent]
    assert reasons.count("defended") == LIES and reasons[-1] == "last_word", reasons

    seen = neighbour_advertisements(cap.frames)
    lies = [(ts, f) for ts, f in seen if f.claim == (IPv6Address(OWNED_IP), parse_mac(ATTACKER))]
    defenses = [(ts, f) for ts, f in seen if f.claim == (IPv6Address(OWNED_IP), parse_mac(OWNER))
                and not f.solicited]
    assert len(lies) == LIES, cap.text()
    # what reached the victim: exactly the sensor's NAs (the owner sends none unsolicited)
    assert len(defenses) == len(sent), cap.text()
    for _, na in defenses:
        assert (na.kind, na.src, na.dst, na.target) == (
            NdpKind.UNSOLICITED_ADVERTISEMENT, IPv6Address(OWNED_IP), IPv6Address("ff02::1"),
            IPv6Address(OWNED_IP))
        assert (na.router, na.solicited, na.override) == (False, False, True)
        assert (na.target_lla, na.eth_src, na.vlan) == (parse_mac(OWNER), parse_mac(OWNER), None)
    # every lie is followed by a defense, and the owner has the last word
    for lie_ts, _ in lies:
        assert any(ts > lie_ts for ts, _ in defenses), cap.text()
    assert max(ts for ts, _ in defenses) > max(ts for ts, _ in lies)
    print(f"\nvictim back on the owner {restored - max(ts for ts, _ in lies):.2f} s after the "
          f"last lie; {len(defenses)} NAs for {len(lies)} lies")
