"""Defending owned addresses (RFC 5227 section 2.4): when to re-announce, decided purely.

The sensor re-announces an owned address (ARP Announcement: broadcast request, sender IP =
target IP = the address, sender MAC = the owner, target MAC zero) when another MAC claims it.

The owner has the last word. Measured on Linux 6.x (tests/LAB_NOTES.md): a neighbour entry
ignores an ordinary reply for `locktime` (1 s) after its last update, but an ARP Announcement
(a gratuitous request) overrides it at once. So the first defense goes out `delay` after the
intruder's first claim (default 0: at once), then at most one per `interval`
(DEFEND_INTERVAL, 10 s) per address while claims keep coming, and always one more after the
intruder's last claim: a claim counts as answered only by a defense sent at least `delay`
after it. For hosts that lock even against announcements, `delay: 1.5s` waits out the lock.
After `max_defenses` in one episode a still-claiming intruder raises `defense_failed` once;
defending goes on. A global token bucket caps frames per second across all addresses.
Time is a parameter; sending is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from arpwatchd.addresses import ip_text, mac_text
from arpwatchd.decode import ArpFrame
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import announcement
from arpwatchd.policy import DomainMatch


@dataclass(frozen=True, slots=True)
class OwnedAddress:
    ip: int
    mac: bytes
    interface: str
    vlan: int | None = None
    group: frozenset[bytes] = frozenset()

    def allows(self, mac: bytes) -> bool:
        return mac == self.mac or mac in self.group

    @property
    def where(self) -> DomainMatch:
        return DomainMatch(self.interface, self.vlan or 0)


@dataclass(frozen=True, slots=True)
class DefensePolicy:
    addresses: tuple[OwnedAddress, ...] = ()
    interval: float = 10.0
    delay: float = 0.0
    max_defenses: int = 3
    rate: float = 10.0
    """Frames per second across all addresses (token bucket, burst of the same size)."""
    episode_end: float = 30.0
    """Intruder silence after which an episode ends and the defense count starts again."""
    announce_at_start: bool = False
    announce_num: int = 2
    announce_interval: float = 2.0
    use_owner_mac_as_source: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    """One frame to send on `interface`, and the event that reports it."""

    interface: str
    frame: bytes
    event: Event


class _Episode:
    __slots__ = ("failed", "intruder", "last_claim", "last_sent", "sent", "unanswered")

    def __init__(self, intruder: bytes, ts: float) -> None:
        self.intruder = intruder
        self.last_claim = ts
        self.unanswered: float | None = ts
        self.last_sent: float | None = None
        self.sent = 0
        self.failed = False

    def due(self, delay: float, interval: float) -> float | None:
        if self.unanswered is None:
            return None
        due = self.unanswered + delay
        if self.last_sent is not None:
            due = max(due, self.last_sent + interval)
        return due


class Defender:
    def __init__(self, policy: DefensePolicy, nic_macs: dict[str, bytes]) -> None:
        self.policy = policy
        self._nic_macs = nic_macs
        self._owned = {(a.interface, a.vlan, a.ip): a for a in policy.addresses}
        self._episodes: dict[tuple[str, int | None, int], _Episode] = {}
        self._tokens = policy.rate
        self._tokens_at: float | None = None
        self._start: list[tuple[float, OwnedAddress]] = []

    def reconfigure(self, policy: DefensePolicy) -> None:
        """New settings (SIGHUP); episodes of addresses still owned carry on."""
        self.policy = policy
        self._owned = {(a.interface, a.vlan, a.ip): a for a in policy.addresses}
        self._episodes = {k: e for k, e in self._episodes.items() if k in self._owned}
        self._tokens = min(self._tokens, policy.rate)

    @property
    def active(self) -> bool:
        return bool(self._owned)

    def start(self, now: float) -> None:
        """Schedules the start-up announcements (ANNOUNCE_NUM, ANNOUNCE_INTERVAL)."""
        if not self.policy.announce_at_start:
            return
        for address in self.policy.addresses:
            for i in range(self.policy.announce_num):
                self._start.append((now + i * self.policy.announce_interval, address))
        self._start.sort(key=lambda item: item[0])

    def observe(self, frame: ArpFrame, ts: float) -> list[Event]:
        """Notes a claim of an owned address by a MAC that may not hold it."""
        if not frame.is_claim:
            return []
        key = (frame.interface, frame.vlan, frame.spa)
        address = self._owned.get(key)
        if address is None or address.allows(frame.sha):
            return []
        episode = self._episodes.get(key)
        if episode is None or ts - episode.last_claim > self.policy.episode_end:
            episode = self._episodes[key] = _Episode(frame.sha, ts)
        episode.last_claim = ts
        episode.intruder = frame.sha
        if episode.unanswered is None:
            episode.unanswered = ts
        if episode.sent >= self.policy.max_defenses and not episode.failed:
            episode.failed = True
            return [self._event(ts, EventKind.DEFENSE_FAILED, address, frame.sha,
                                count=episode.sent)]
        return []

    def next_due(self) -> float | None:
        """When `due` next has something to send: never earlier than a token is available,
        so a caller sleeping until then does not spin while the rate cap holds frames back."""
        times = [t for t, _ in self._start[:1]]
        for episode in self._episodes.values():
            due = episode.due(self.policy.delay, self.policy.interval)
            if due is not None:
                times.append(due)
        if not times:
            return None
        earliest = min(times)
        if self._tokens < 1.0 and self._tokens_at is not None:
            earliest = max(earliest, self._tokens_at + (1.0 - self._tokens) / self.policy.rate)
        return earliest

    def due(self, now: float) -> list[Send]:
        """The frames to send at `now`, within the per-address and global limits."""
        sends: list[Send] = []
        self._refill(now)
        while self._start and self._start[0][0] <= now and self._take():
            _, address = self._start.pop(0)
            sends.append(self._send(now, address, None, "announce_at_start", 0))
        delay = self.policy.delay
        for key, episode in list(self._episodes.items()):
            due = episode.due(delay, self.policy.interval)
            if due is None:
                if now - episode.last_claim > self.policy.episode_end:
                    del self._episodes[key]
                continue
            if now < due or not self._take():
                continue
            episode.last_sent = now
            episode.sent += 1
            # a claim less than `delay` before the defense is not answered by it
            episode.unanswered = episode.last_claim if episode.last_claim > now - delay else None
            address = self._owned[key]
            sends.append(self._send(now, address, episode.intruder, "defended", episode.sent))
        return sends

    def _send(
        self, now: float, address: OwnedAddress, intruder: bytes | None, why: str, count: int
    ) -> Send:
        source = address.mac if self.policy.use_owner_mac_as_source \
            else self._nic_macs.get(address.interface, address.mac)
        frame = announcement(address.ip, address.mac, eth_src=source, vlan=address.vlan)
        event = self._event(now, EventKind.DEFENSE_SENT, address, intruder, reason=why,
                            count=count or None)
        return Send(address.interface, frame, event)

    def _event(
        self,
        ts: float,
        kind: EventKind,
        address: OwnedAddress,
        intruder: bytes | None,
        *,
        reason: str | None = None,
        count: int | None = None,
    ) -> Event:
        return Event(ts=ts, kind=kind, interface=address.interface, vlan=address.vlan,
                     ip=ip_text(address.ip), mac=mac_text(address.mac),
                     previous_mac=mac_text(intruder) if intruder else None,
                     reason=reason, count=count)

    def _refill(self, now: float) -> None:
        if self._tokens_at is not None:
            self._tokens = min(self.policy.rate,
                               self._tokens + (now - self._tokens_at) * self.policy.rate)
        self._tokens_at = now

    def _take(self) -> bool:
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
