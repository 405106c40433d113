"""Live: real tools speak NDP in the namespace lab, and the decoder sees the kinds that
pcaps/README.md says they send (tests/make_ndp_captures.py records the same scenarios)."""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

import make_ndp_captures
import ndplab
import pytest
from netlab import read_pcap

from arpwatchd.addresses import parse_mac
from arpwatchd.ndp import NdpFrame, NdpKind, decode_ndp

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
