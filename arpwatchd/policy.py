"""The tracker's settings: a frozen value built once from the config and passed into the core.

Only what the pure core needs lives here (windows, limits, address rules); output, storage
and capture settings stay in `config`. Lookups that the hot path makes are precomputed as
dicts keyed by IP, so a claim costs one dict probe per rule kind whatever the rule count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ANY_VLAN = -1
"""In rules: matches every VLAN. Untagged frames have VLAN 0 in rules, None in events."""


@dataclass(frozen=True, slots=True)
class DomainMatch:
    """Which (interface, VLAN) domains a rule applies to. None / ANY_VLAN match all."""

    interface: str | None = None
    vlan: int = ANY_VLAN

    def matches(self, interface: str, vlan: int | None) -> bool:
        if self.interface is not None and self.interface != interface:
            return False
        return self.vlan in (ANY_VLAN, vlan or 0)


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """Addresses expected in a domain; a claim outside them is a bogon."""

    where: DomainMatch
    prefixes: tuple[tuple[int, int], ...]  # (network, netmask) as `addresses.parse_network` values

    def contains(self, ip: int) -> bool:
        return any(ip & mask == net for net, mask in self.prefixes)


@dataclass(frozen=True, slots=True)
class FailoverGroup:
    """MACs allowed to hold the listed IPs in turn (cluster nodes, VRRP peers)."""

    name: str
    ips: frozenset[int]
    macs: frozenset[bytes]
    where: DomainMatch = DomainMatch()


@dataclass(frozen=True, slots=True)
class Protected:
    """An address whose rightful MAC is known: any other claimant is a conflict at once."""

    ip: int
    mac: bytes
    where: DomainMatch = DomainMatch()
    group: frozenset[bytes] = frozenset()

    def allows(self, mac: bytes) -> bool:
        return mac == self.mac or mac in self.group


@dataclass(frozen=True, slots=True)
class TrackerPolicy:
    hold: float = 30.0
    inactive_after: float = 180 * 86400.0
    solicit_window: float = 5.0
    answer_window: float = 2.0
    demotion_grace: float = 2.0
    repeat_after: float = 3600.0
    flood_frames: int = 100
    flood_window: float = 10.0
    scan_targets: int = 100
    scan_window: float = 10.0
    max_bindings: int = 1_000_000
    max_macs: int = 100_000
    max_pending: int = 100_000
    networks: tuple[NetworkRule, ...] = ()
    failover_groups: tuple[FailoverGroup, ...] = ()
    protected: tuple[Protected, ...] = ()
    own_macs: frozenset[bytes] = frozenset()
    _groups_by_ip: dict[int, tuple[FailoverGroup, ...]] = field(
        init=False, repr=False, compare=False
    )
    _protected_by_ip: dict[int, tuple[Protected, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        groups: dict[int, list[FailoverGroup]] = {}
        for group in self.failover_groups:
            for ip in group.ips:
                groups.setdefault(ip, []).append(group)
        protected: dict[int, list[Protected]] = {}
        for rule in self.protected:
            protected.setdefault(rule.ip, []).append(rule)
        object.__setattr__(self, "_groups_by_ip", {k: tuple(v) for k, v in groups.items()})
        object.__setattr__(self, "_protected_by_ip", {k: tuple(v) for k, v in protected.items()})

    def same_group(self, interface: str, vlan: int | None, ip: int, a: bytes, b: bytes) -> bool:
        """Whether MACs a and b are in one failover group for this address."""
        for group in self._groups_by_ip.get(ip, ()):
            if a in group.macs and b in group.macs and group.where.matches(interface, vlan):
                return True
        for rule in self._protected_by_ip.get(ip, ()):
            if rule.allows(a) and rule.allows(b) and rule.where.matches(interface, vlan):
                return True
        return False

    def protection(self, interface: str, vlan: int | None, ip: int) -> Protected | None:
        for rule in self._protected_by_ip.get(ip, ()):
            if rule.where.matches(interface, vlan):
                return rule
        return None

    def networks_for(self, interface: str, vlan: int | None) -> tuple[NetworkRule, ...]:
        return tuple(rule for rule in self.networks if rule.where.matches(interface, vlan))

    def prefixes_for(self, interface: str, vlan: int | None, *, ipv6: bool
                     ) -> tuple[tuple[int, int], ...]:
        """The expected prefixes of one family in a domain. Each family is checked on its own:
        a domain whose rules list no prefix of a family has no bogons of that family, so a
        config written before IPv6 (IPv4 prefixes only) makes no IPv6 address a bogon."""
        return tuple(prefix for rule in self.networks_for(interface, vlan)
                     for prefix in rule.prefixes if (prefix[0] > 0xFFFFFFFF) == ipv6)
