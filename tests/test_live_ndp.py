"""Live: real tools speak NDP in the namespace lab, and the decoder sees the kinds that
pcaps/README.md says they send (tests/make_ndp_captures.py records the same scenarios)."""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

import make_ndp_captures
import ndplab
import pytest
from netlab import Lab, SensorProcess, read_pcap, vlan_available

from arpwatchd.addresses import parse_mac
from arpwatchd.decode import DLT_EN10MB, ArpFrame, Decoder
from arpwatchd.ndp import NdpFrame, NdpInvalid, NdpKind, decode_ndp

pytestmark = pytest.mark.live


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = ndplab.tools_missing()
    if missing:
        pytest.skip(f"missing tools: {' '.join(missing)} (./dev.sh test installs them)")


def _decoded(path: Path) -> list[NdpFrame]:
    return [f for _, raw in read_pcap(path) if isinstance(f := decode_ndp(raw), NdpFrame)]


def test_fake_advertise6_is_seen_as_unsolicited_override_advertisements(tmp_path: Path) -> None:
    notes = make_ndp_captures.record("fake-advertise6", tmp_path)
    assert notes[1].endswith(make_ndp_captures.ATTACKER_MAC)  # the victim was poisoned
    found = _decoded(tmp_path / "fake-advertise6.pcap")
    gateway = IPv6Address("fd00:17::1")
    spoofed = [f for f in found if f.claim == (gateway, parse_mac(make_ndp_captures.ATTACKER_MAC))]
    assert [f.kind for f in spoofed] == [NdpKind.UNSOLICITED_ADVERTISEMENT] * 3
    assert all(f.override for f in spoofed)
    owner = [f for f in found if f.claim == (gateway, parse_mac(make_ndp_captures.GATEWAY_MAC))]
    assert owner and owner[0].kind is NdpKind.SOLICITED_ADVERTISEMENT


def test_dos_new_ip6_denies_duplicate_address_detection(tmp_path: Path) -> None:
    notes = make_ndp_captures.record("dos-new-ip6", tmp_path)
    assert notes == ["DAD of fd00:17::c: dadfailed"]
    kinds = [f.kind for f in _decoded(tmp_path / "dos-new-ip6.pcap")
             if f.target == IPv6Address("fd00:17::c")]
    assert kinds[0] is NdpKind.DAD_PROBE
    assert NdpKind.UNSOLICITED_ADVERTISEMENT in kinds[1:]


def test_the_filter_passes_every_ndp_and_arp_frame_on_the_wire() -> None:
    """tcpdump with the sensor's filter and tcpdump with none, side by side on the bridge:
    every NDP and ARP frame of untagged and VLAN 10 hosts is in the first, nothing else."""
    ok, why = vlan_available()
    if not ok:
        pytest.skip(why)
    with Lab(ipv6=True) as lab6:
        ndplab.quiet_sensor(lab6)
        with lab6.capture(ndplab.CAPTURE_FILTER) as sensor, lab6.capture("") as everything:
            a = ndplab.add_host(lab6, "a", "02:00:00:17:00:0a", ["fd00:17::a"], ["192.0.2.10"])
            ndplab.add_host(lab6, "b", "02:00:00:17:00:0b", ["fd00:17::b"], ["192.0.2.11"])
            c = ndplab.add_host(lab6, "c", "02:00:00:17:00:1c", ["fd00:17::1c"], vlan=10)
            ndplab.add_host(lab6, "d", "02:00:00:17:00:1d", ["fd00:17::1d"], vlan=10)
            assert ndplab.ping6(a, "fd00:17::b", count=1) == 1
            assert ndplab.ping6(c, "fd00:17::1d", count=1) == 1
            a.run(["ping", "-4", "-n", "-c", "1", "-W", "1", "192.0.2.11"], check=False)
    arp = Decoder("lab", DLT_EN10MB)

    def wanted(raw: bytes) -> bool:
        return isinstance(decode_ndp(raw), NdpFrame | NdpInvalid) or isinstance(
            arp.decode(raw), ArpFrame)

    # the two captures stop one after the other, and hosts keep sending router solicitations
    # at random times: compare what both were capturing, up to a moment well before either
    # stopped (the same frame may be stamped microseconds apart by the two sockets)
    end = min(max(ts for ts, _ in sensor.frames), max(ts for ts, _ in everything.frames)) - 0.2
    passed = [raw for ts, raw in sensor.frames if ts <= end]
    assert passed == [raw for ts, raw in everything.frames if ts <= end and wanted(raw)]
    assert all(wanted(raw) for raw in passed)
    assert len(everything.frames) > len(passed)  # pings and MLD reports stayed out
    assert {f.vlan for raw in passed if isinstance(f := decode_ndp(raw), NdpFrame)} == {None, 10}


def test_the_sensor_reports_fake_advertise6_as_a_conflict_naming_the_attacker() -> None:
    """`arpwatchd run` on the lab bridge (the capture filter passes NDP): the attacker's
    unicast unsolicited NAs for the gateway's address are a conflict at once, reason
    unsolicited_takeover, suspect the attacker, with IPv6 in RFC 5952 text."""
    attacker_mac = make_ndp_captures.ATTACKER_MAC
    with Lab(ipv6=True) as lab:
        ndplab.quiet_sensor(lab)
        sensor = SensorProcess(lab, "{}\n").start()
        _, victim, attacker = make_ndp_captures._gateway_victim_attacker(lab)
        gateway_ip, victim_ip = ndplab.address(0x1), ndplab.address(0xB)
        ndplab.ping6(victim, gateway_ip, count=2)
        sensor.wait_for(lambda events: any(e["ip"] == gateway_ip for e in events), 20.0,
                        "the gateway's new_station")
        attacker.run(["atk6-fake_advertise6", "-n", "3", "-w", "1", attacker.dev, gateway_ip,
                      victim_ip], timeout=15.0, check=False)
        events = sensor.wait_for(
            lambda events: any(e["event"] == "conflict" for e in events), 20.0, "the conflict")
        sensor.stop()
    conflict = next(e for e in events if e["event"] == "conflict")
    assert (conflict["ip"], conflict["family"], conflict["mac"], conflict["previous_mac"],
            conflict["reason"], conflict["suspect"]) == (
        "fd00:17::1", "ipv6", attacker_mac, make_ndp_captures.GATEWAY_MAC,
        "unsolicited_takeover", attacker_mac)
    assert [e["ip"] for e in events if e["event"] == "conflict"] == ["fd00:17::1"]
