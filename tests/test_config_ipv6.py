"""IPv6 in the config (issue 17): protected addresses, failover groups, networks (bogons),
suppression rules and `bindings --ip` take IPv6 addresses and prefixes; errors and warnings
are the IPv4 ones; `defend.addresses` takes IPv6 addresses too (a neighbour advertisement
defends them, tests/test_defend_ipv6.py), with `router` for the NA's R flag.

Why: before, the config read IPv4 only, so no IPv6 address could be protected or a bogon,
and a rule for one was a config error with no hint that the tracker does see IPv6.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arpwatchd.addresses import ip6_number, parse_address, parse_mac
from arpwatchd.config import ConfigError, parse_config
from arpwatchd.events import Event, EventKind
from arpwatchd.ndp import NdpFrame, decode_ndp
from arpwatchd.ndpframes import neighbor_advertisement, neighbor_solicitation
from arpwatchd.tracker import Tracker

ROOT = Path(__file__).resolve().parents[1]
GW = "02:00:00:17:00:01"
BACKUP = "02:00:00:17:b0:01"
VICTIM = "02:00:00:17:00:0b"
ATTACKER = "02:00:00:17:00:66"


def feed(tracker: Tracker, *timed: tuple[float, bytes]) -> list[Event]:
    events: list[Event] = []
    for ts, raw in timed:
        frame = decode_ndp(raw, "eth0")
        assert isinstance(frame, NdpFrame), frame
        events += tracker.observe_ndp(frame, ts)
    return events


def resolve(target: str, owner: str) -> list[bytes]:
    """The victim resolving `target`: multicast NS with SLLAO, the answer S+O with TLLAO."""
    return [neighbor_solicitation("fd00:17::b", target, VICTIM),
            neighbor_advertisement(target, owner, dst="fd00:17::b", solicited=True,
                                   eth_dst=parse_mac(VICTIM))]


def test_a_protected_ipv6_address_claimed_by_another_mac_is_a_conflict() -> None:
    """Any spelling in the config; the attacker's announcement is a conflict at once, with
    the attacker as suspect, as for IPv4 (no hold: the owner is configured)."""
    config = parse_config(f"protected:\n  - {{ip: 'FD00:17:0:0::1', mac: '{GW}'}}\n")
    assert config.policy.protected[0].ip == parse_address("fd00:17::1")
    assert ip6_number(parse_address("fd00:17::1")) == 0xFD000017 << 96 | 1
    t = Tracker(config.policy)
    assert [e.kind for e in feed(t, *((1.0, raw) for raw in resolve("fd00:17::1", GW)))] == [
        EventKind.NEW_STATION, EventKind.NEW_STATION]
    lie = neighbor_advertisement("fd00:17::1", ATTACKER, override=True)
    events = feed(t, (2.0, lie))
    assert [(e.kind, e.ip, e.mac, e.reason, e.suspect, e.family) for e in events] == [
        (EventKind.CONFLICT, "fd00:17::1", ATTACKER, "owned_address_claimed", ATTACKER,
         "ipv6")]


def test_a_protected_ipv6_address_allows_its_group() -> None:
    config = parse_config(
        f"protected:\n  - {{ip: 'fd00:17::1', mac: '{GW}', group: ['{BACKUP}']}}\n")
    t = Tracker(config.policy)
    feed(t, *((1.0, raw) for raw in resolve("fd00:17::1", GW)))
    events = feed(t, (2.0, neighbor_advertisement("fd00:17::1", BACKUP, override=True)))
    assert all(e.kind is not EventKind.CONFLICT for e in events), events


def test_ipv6_networks_make_bogons_per_family() -> None:
    """A domain's IPv6 prefixes judge its IPv6 addresses; a config with IPv4 prefixes only
    (written before IPv6) makes no IPv6 address a bogon, and the reverse."""
    both = Tracker(parse_config(
        "networks:\n  - {prefixes: [192.0.2.0/24, 'fd00:17::/64']}\n").policy)
    events = feed(both, *((1.0, raw) for raw in resolve("fd00:99::1", GW)))
    assert [(e.kind, e.ip) for e in events] == [(EventKind.NEW_STATION, "fd00:17::b"),
                                                (EventKind.BOGON, "fd00:99::1")]
    ipv4_only = Tracker(parse_config("networks:\n  - {prefixes: [192.0.2.0/24]}\n").policy)
    events = feed(ipv4_only, *((1.0, raw) for raw in resolve("fd00:99::1", GW)))
    assert [e.kind for e in events] == [EventKind.NEW_STATION, EventKind.NEW_STATION]


def test_an_ipv6_failover_group_takeover_is_failover_group() -> None:
    """As for IPv4 (test_tracker): the other member claiming the address (its own NS from
    it) is a `failover` with reason `group` once the old member stays silent."""
    config = parse_config(
        f"failover_groups:\n  - {{ips: ['fd00:17::1'], macs: ['{GW}', '{BACKUP}']}}\n")
    assert config.policy.same_group("eth0", None, parse_address("fd00:17::1"),
                                    parse_mac(GW), parse_mac(BACKUP))
    t = Tracker(config.policy)
    feed(t, *((1.0, raw) for raw in resolve("fd00:17::1", GW)))
    events = feed(t, (50.0, neighbor_solicitation("fd00:17::1", "fd00:17::b", BACKUP)))
    events += t.tick(100.0)
    assert [(e.kind, e.ip, e.mac, e.previous_mac, e.reason) for e in events] == [
        (EventKind.FAILOVER, "fd00:17::1", BACKUP, GW, "group")]


def test_suppress_rules_match_ipv6_in_any_spelling() -> None:
    rule, = parse_config("suppress:\n  - {networks: ['FD00:17:0::/64'], events: [bogon]}\n"
                         ).suppress
    for spelling in ("fd00:17::5", "fd00:0017:0:0:0:0:0:5"):
        assert rule.matches(Event(1.0, EventKind.BOGON, "eth0", None, spelling, GW,
                                  family="ipv6"))
    assert not rule.matches(Event(1.0, EventKind.BOGON, "eth0", None, "fd00:18::5", GW,
                                  family="ipv6"))
    everything4, = parse_config("suppress:\n  - {networks: [0.0.0.0/0], events: [bogon]}\n"
                                ).suppress
    assert not everything4.matches(Event(1.0, EventKind.BOGON, "eth0", None, "fd00:17::5", GW,
                                         family="ipv6"))


@pytest.mark.parametrize(("text", "message"), [
    (f"protected:\n  - {{ip: 'fd00::17::1', mac: '{GW}'}}\n",
     "site.yml: protected[0].ip (line 2): not an IPv4 or IPv6 address: 'fd00::17::1'"),
    (f"protected:\n  - {{ip: 'fd00::/64', mac: '{GW}'}}\n",
     "site.yml: protected[0].ip (line 2): not an IPv4 or IPv6 address: 'fd00::/64'"),
    ("networks:\n  - prefixes:\n      - fd00::/129\n",
     "site.yml: networks[0].prefixes[0] (line 3): not an IPv4 or IPv6 network: 'fd00::/129'"),
    (f"failover_groups:\n  - {{ips: ['fe80::1%eth0x'], macs: ['{GW}', '{BACKUP}']}}\n",
     "site.yml: failover_groups[0].ips[0] (line 2): not an IPv4 or IPv6 address: "
     "'fe80::1%eth0x' (no zone index: the domain is 'interface' and 'vlan')"),
    (f"defend:\n  addresses:\n    - {{ip: 10.0.0.1, mac: '{GW}', interface: eth0, "
     "router: true}\n",
     "site.yml: defend.addresses[0].router (line 3): 'router' is the R flag of the neighbour "
     "advertisement that defends an IPv6 address; 10.0.0.1 is defended with ARP, which has "
     "none"),
    (f"defend:\n  addresses:\n    - {{ip: 'fd00:17::1', mac: '{GW}', interface: eth0, "
     "router: maybe}\n",
     "site.yml: defend.addresses[0].router (line 3): expected true or false, got 'maybe'"),
    (f"defend:\n  addresses:\n    - {{ip: 'fd00:17::1', mac: '{GW}', interface: eth0}}\n"
     f"    - {{ip: 'FD00:17:0::1', mac: '{GW}', interface: eth0}}\n",
     "site.yml: defend.addresses[1] (line 4): this address is listed twice"),
])
def test_bad_ipv6_names_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="site.yml")
    assert str(caught.value) == message


SITE6 = f"""\
networks:
  - {{interface: eth0, prefixes: ['fd00:17:0:0:0:0:0:5/64', 192.0.2.0/24]}}
protected:
  - {{ip: 'FD00:17::1', mac: '{GW}'}}
  - {{ip: 'fd00:17:0::1', mac: '{ATTACKER}'}}
failover_groups:
  - {{ips: ['fd00:17:0:0::10'], macs: ['{GW}', '{BACKUP}']}}
suppress:
  - {{networks: ['FD00:17::/64'], events: [new_station]}}
"""


def test_check_config_prints_rfc_5952_and_warns(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text(SITE6)
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "check-config", str(site)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["networks"][0]["prefixes"] == ["fd00:17::/64", "192.0.2.0/24"]
    assert [p["ip"] for p in printed["protected"]] == ["fd00:17::1", "fd00:17::1"]
    assert printed["failover_groups"][0]["ips"] == ["fd00:17::10"]
    assert printed["suppress"][0]["networks"] == ["fd00:17::/64"]
    prefix = f"arpwatchd: warning: {site}: "
    assert [line for line in done.stderr.splitlines() if "state.path" not in line] == [
        f"{prefix}networks[0].prefixes[0] (line 2): fd00:17:0:0:0:0:0:5/64 has host bits "
        "set: it means fd00:17::/64 (write that, or fd00:17::5 for the address alone)",
        f"{prefix}protected[1] (line 5): fd00:17::1 already has the owner {GW} "
        "(protected[0], line 4): this entry never applies there; list both MACs in one entry "
        "(mac and group)",
    ]


def test_bindings_ip_takes_an_ipv6_prefix(tmp_path: Path) -> None:
    """On a store made by replaying the dual-stack capture (pcaps/README.md)."""
    state = str(tmp_path / "s.sqlite")

    def cli(*argv: str) -> str:
        return subprocess.run([sys.executable, "-m", "arpwatchd", *argv], capture_output=True,
                              text=True, check=True, timeout=120).stdout

    cli("replay", "-q", "--events", "/dev/null", "--state", state,
        str(ROOT / "pcaps" / "ndp" / "dual-stack.pcap"))
    everything = cli("bindings", "--state", state)
    assert "192.0.2.10" in everything and "fd00:17::a" in everything
    shown = cli("bindings", "--state", state, "--ip", "FD00:17:0::/64")
    assert {"fd00:17::a", "fd00:17::b", "fd00:17::1c", "fd00:17::1d"} <= set(shown.split())
    assert "192.0.2.10" not in shown and "fe80::" not in shown
    one = cli("bindings", "--state", state, "--ip", "fd00:17::1c")
    assert "fd00:17::1c" in one and "fd00:17::1d" not in one
    assert "fd00:17" not in cli("bindings", "--state", state, "--ip", "0.0.0.0/0")


def test_defended_ipv6_in_any_spelling_is_protected_and_printed(tmp_path: Path) -> None:
    """A defended IPv6 address is read in any spelling, is protected too (other MACs' claims
    are conflicts), and check-config prints it in RFC 5952 text with its R flag."""
    site = tmp_path / "site.yml"
    site.write_text(f"""\
defend:
  addresses:
    - {{ip: 'FD00:17:0:0:0:0:0:1', mac: '{GW}', interface: eth0, vlan: 10, router: true}}
    - {{ip: 'fe80:0::0:1', mac: '{GW}', interface: eth0}}
    - {{ip: 10.0.0.1, mac: '{GW}', interface: eth0}}
capture: {{interfaces: [eth0]}}
""")
    config = parse_config(site.read_text())
    gw6, ll, _ = config.defense.addresses
    assert (gw6.ip, gw6.vlan, gw6.router) == (parse_address("fd00:17::1"), 10, True)
    assert (ll.ip, ll.vlan, ll.router) == (parse_address("fe80::1"), None, False)
    assert config.policy.protection("eth0", 10, parse_address("fd00:17::1")) is not None
    done = subprocess.run([sys.executable, "-m", "arpwatchd", "check-config", str(site)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["defend"]["addresses"] == [
        {"ip": "fd00:17::1", "mac": GW, "interface": "eth0", "vlan": 10, "group": [],
         "router": True},
        {"ip": "fe80::1", "mac": GW, "interface": "eth0", "vlan": None, "group": [],
         "router": False},
        {"ip": "10.0.0.1", "mac": GW, "interface": "eth0", "vlan": None, "group": []},
    ]
    assert [p["ip"] for p in printed["protected"]] == ["fd00:17::1", "fe80::1", "10.0.0.1"]
