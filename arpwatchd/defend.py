"""Defending owned addresses (DESIGN.md section 5): when to re-announce, decided purely.

The sensor re-announces an owned address when another MAC claims it: an IPv4 address with an
ARP Announcement (broadcast request, sender IP = target IP = the address, sender MAC = the
owner, target MAC zero), an IPv6 address with an unsolicited Neighbor Advertisement (RFC 4861
7.2.6: to all-nodes ff02::1 from the address, O set, S clear, R only for a router, target
link-layer option and Ethernet source = the owner; `ndpframes.neighbor_advertisement`). Both
families go through the same episodes, spacing, budget and token bucket below: one home for
each rate rule.

Theory of operation. A claim of an owned address by a MAC outside its group opens (or extends)
an *episode* for that address; an episode ends after `episode_end` of intruder silence. Two
kinds of defense are due in it:

- the **answer** to a claim: `delay` after the claim (default 0: at once), but no sooner than
  the spacing (`interval`, at least `locktime`) after the previous answer. A claim counts as
  answered only by a defense sent at least `delay` after it.
- the **last word** (mode `last-word`, the default): one more defense `locktime` after the
  intruder's latest claim, whatever the spacing held back. A defense sent at or after that
  time already is the last word.

Why, measured on Linux 6.x (tests/LAB_NOTES.md and the lab of tests/test_live_defense.py): a
neighbour entry ignores an ordinary reply for `locktime` (1 s) after it last *changed*, but an
Announcement overrides it at once. An Announcement that finds the entry already on the owner
changes nothing, so it does not move the lock either. Hence:
- an ordinary reply within `locktime` of our previous answer (which put victims back on the
  owner and locked them) is ignored by them; it draws no answer of its own (one would only
  hold back the answer to the next reply, which does win) and is left to the last word;
- any other claim (a gratuitous one overrides any lock) is answered at once, at most one
  answer per address per `locktime`;
- the last word is applied by any victim whatever it did with the frames before, and a last
  word does not hold back the next answer.
For IPv6 there is no lock to respect: Linux has none for neighbours (`neigh_update` lets a
later NA with O replace the entry at once, docs/ipv6.md), so no NDP claim is "ignored" and
every one is answered within the same spacing; the last word follows as for ARP.
Mode `rfc5227` keeps RFC 5227 section 2.4's DEFEND_INTERVAL: at most one defense per address
per 10 s, the last claim answered only when that interval allows.

Limits, so a sensor cannot be turned into a broadcast storm: after `max_defenses` in one
episode a still-claiming intruder raises `defense_failed` once, and from then on every defense
of that episode, the last word included, keeps DEFEND_INTERVAL (10 s); a global token bucket
(`rate` frames per second, burst of the same size) delays frames across all addresses.
Time is a parameter; sending is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv6Address
from typing import TYPE_CHECKING

from arpwatchd.addresses import family_of, ip6_number, ip6_value, ip_text, is_ipv6, mac_text
from arpwatchd.decode import ArpFrame
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import REPLY, announcement
from arpwatchd.policy import DomainMatch

if TYPE_CHECKING:
    from arpwatchd.ndp import NdpFrame  # the NDP modules load with the first IPv6 defense

DEFEND_INTERVAL = 10.0
"""RFC 5227 section 2.4: a host defends an address at most once per this many seconds."""
LOCKTIME = 1.0
"""Linux `net.ipv4.neigh.*.locktime` default (100 centiseconds)."""

class DefenseMode(StrEnum):
    """How often an address is defended while an intruder claims it (config `defend.mode`)."""

    LAST_WORD = "last-word"
    """Answer each claim, no sooner than `locktime` after the previous defense, and always
    once more `locktime` after the intruder's last claim."""
    RFC5227 = "rfc5227"
    """At most one defense per address per DEFEND_INTERVAL (10 s), the last word included."""


@dataclass(frozen=True, slots=True)
class OwnedAddress:
    ip: int
    mac: bytes
    interface: str
    vlan: int | None = None
    group: frozenset[bytes] = frozenset()
    router: bool = False
    """IPv6: the owner is a router, so the defense NA sets R. Clear by default; set it for a
    router's address, since a host that sees R go from set to clear removes that router from
    its default router list (RFC 4861 7.2.5)."""

    def allows(self, mac: bytes) -> bool:
        return mac == self.mac or mac in self.group

    @property
    def where(self) -> DomainMatch:
        return DomainMatch(self.interface, self.vlan or 0)


LAST_WORD_BUDGET = 300
"""Winning defenses cost about 1.5 frames per attack second (one answer a second and the last
word); a spoofer like arpspoof runs for minutes, and slowing to DEFEND_INTERVAL hands it the
victims again (9-10 % on the owner, measured). The budget stops a fight between two defenders
that disagree (a misconfigured owner MAC) after about 5 minutes, not a real attack."""


@dataclass(frozen=True, slots=True)
class DefensePolicy:
    addresses: tuple[OwnedAddress, ...] = ()
    mode: DefenseMode = DefenseMode.LAST_WORD
    interval: float | None = None
    """Least time between two answers for one address; None: the mode's (1 s last-word,
    10 s rfc5227). Never below `locktime` in last-word mode nor 10 s in rfc5227 mode."""
    locktime: float = LOCKTIME
    """The victims' neighbour lock time: the last word follows the last claim by this."""
    delay: float = 0.0
    max_defenses: int | None = None
    """Defenses in one episode before `defense_failed`; None: the mode's (300 last-word, about
    5 minutes of a spoofer's one reply a second; 3 rfc5227)."""
    rate: float = 10.0
    """Frames per second across all addresses (token bucket, burst of the same size)."""
    episode_end: float = 30.0
    """Intruder silence after which an episode ends and the defense count starts again."""
    announce_at_start: bool = False
    announce_num: int = 2
    announce_interval: float = 2.0
    use_owner_mac_as_source: bool = False

    @property
    def spacing(self) -> float:
        """The effective least time between two answers for one address."""
        if self.mode is DefenseMode.RFC5227:
            return max(self.interval or DEFEND_INTERVAL, DEFEND_INTERVAL)
        return max(self.interval or self.locktime, self.locktime)

    @property
    def budget(self) -> int:
        """The effective `max_defenses`."""
        if self.max_defenses is not None:
            return self.max_defenses
        return 3 if self.mode is DefenseMode.RFC5227 else LAST_WORD_BUDGET


@dataclass(frozen=True, slots=True)
class Send:
    """One frame to send on `interface`, and the event that reports it."""

    interface: str
    frame: bytes
    event: Event


class _Episode:
    __slots__ = ("failed", "intruder", "last_answer", "last_claim", "last_sent", "sent",
                 "unanswered", "word_due")

    def __init__(self, intruder: bytes, ts: float) -> None:
        self.intruder = intruder
        self.last_claim = ts
        self.unanswered: float | None = ts
        self.word_due: float | None = None
        """When the last word is due (last-word mode); None: said, or not this mode."""
        self.last_sent: float | None = None
        self.last_answer: float | None = None
        self.sent = 0
        self.failed = False

    def answer_due(self, policy: DefensePolicy) -> float | None:
        if self.unanswered is None:
            return None
        due = self.unanswered + policy.delay
        slowed = self.sent >= policy.budget
        previous = self.last_sent if slowed else self.last_answer
        if previous is not None:
            due = max(due, previous + self._spacing(policy))
        return due

    def word(self, policy: DefensePolicy) -> float | None:
        if self.word_due is None:
            return None
        if self.last_sent is not None and self.sent >= policy.budget:
            return max(self.word_due, self.last_sent + DEFEND_INTERVAL)
        return self.word_due

    def due(self, policy: DefensePolicy) -> float | None:
        times = [t for t in (self.answer_due(policy), self.word(policy)) if t is not None]
        return min(times) if times else None

    def _spacing(self, policy: DefensePolicy) -> float:
        if self.sent >= policy.budget:
            return max(policy.spacing, DEFEND_INTERVAL)
        return policy.spacing


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
        """Notes an ARP claim of an owned address by a MAC that may not hold it."""
        if not frame.is_claim:
            return []
        # an ordinary reply: not gratuitous in Linux's sense (spa = tpa and tha = sha)
        ordinary = frame.op == REPLY and not (frame.spa == frame.tpa and frame.tha == frame.sha)
        return self._claimed((frame.interface, frame.vlan, frame.spa), frame.sha, ts, ordinary)

    def observe_ndp(self, frame: NdpFrame, ts: float) -> list[Event]:
        """Notes an NDP claim (`NdpFrame.claim`: an NA's target, the source of an NS, RS or
        RA with a link-layer option) of an owned IPv6 address by a MAC that may not hold it.
        Linux keeps no lock time for IPv6 neighbours, so no such claim is ever ignored."""
        claim = frame.claim
        if claim is None:
            return []
        return self._claimed((frame.interface, frame.vlan, ip6_value(claim[0])), claim[1], ts,
                             ordinary_reply=False)

    def _claimed(self, key: tuple[str, int | None, int], mac: bytes, ts: float,
                 ordinary_reply: bool) -> list[Event]:
        """Opens or extends the episode of `key` for a claim by `mac`, of either family."""
        address = self._owned.get(key)
        if address is None or address.allows(mac):
            return []
        episode = self._episodes.get(key)
        if episode is None or ts - episode.last_claim > self.policy.episode_end:
            episode = self._episodes[key] = _Episode(mac, ts)
        episode.last_claim = ts
        episode.intruder = mac
        if episode.unanswered is None and not (
                ordinary_reply and self._ignored(ts, episode)):
            episode.unanswered = ts
        if self.policy.mode is DefenseMode.LAST_WORD:
            episode.word_due = ts + max(self.policy.locktime, self.policy.delay)
        if episode.sent >= self.policy.budget and not episode.failed:
            episode.failed = True
            return [self._event(ts, EventKind.DEFENSE_FAILED, address, mac,
                                count=episode.sent)]
        return []

    def _ignored(self, ts: float, episode: _Episode) -> bool:
        """Whether victims ignore an ordinary ARP reply at `ts`: one within `locktime` of the
        previous answer, which put their entries back on the owner and locked them (LAB_NOTES
        row 1). Answering it only re-announces what victims have, and such an announcement
        does not move their lock: the intruder's next reply after it would win, and its answer
        be held back. The last word still follows it."""
        if self.policy.mode is not DefenseMode.LAST_WORD or episode.last_answer is None:
            return False
        return ts < episode.last_answer + self.policy.locktime

    def next_due(self) -> float | None:
        """When `due` next has something to send: never earlier than a token is available,
        so a caller sleeping until then does not spin while the rate cap holds frames back."""
        times = [t for t, _ in self._start[:1]]
        for episode in self._episodes.values():
            due = episode.due(self.policy)
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
        for key, episode in list(self._episodes.items()):
            due = episode.due(self.policy)
            if due is None:
                if now - episode.last_claim > self.policy.episode_end:
                    del self._episodes[key]
                continue
            if now < due or not self._take():
                continue
            sends.append(self._defend(now, key, episode))
        return sends

    def _defend(self, now: float, key: tuple[str, int | None, int], episode: _Episode) -> Send:
        """The defense due now for `episode`, and what it answers."""
        answer = episode.answer_due(self.policy)
        why = "defended" if answer is not None and answer <= now else "last_word"
        episode.last_sent = now
        if why == "defended":
            episode.last_answer = now
        episode.sent += 1
        # a claim less than `delay` before the defense is not answered by it
        delay = self.policy.delay
        episode.unanswered = episode.last_claim if episode.last_claim > now - delay else None
        if episode.word_due is not None and now >= episode.word_due:
            episode.word_due = None
        return self._send(now, self._owned[key], episode.intruder, why, episode.sent)

    def _send(
        self, now: float, address: OwnedAddress, intruder: bytes | None, why: str, count: int
    ) -> Send:
        if is_ipv6(address.ip):
            frame = _advertisement(address)
        else:
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
                     reason=reason, count=count, family=family_of(address.ip))

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


def _advertisement(address: OwnedAddress) -> bytes:
    """The IPv6 defense: an unsolicited NA (RFC 4861 7.2.6) to all-nodes ff02::1 from the
    address, hop limit 255, O set (RFC 4861 7.2.5: a receiver with an entry for the address
    replaces its link-layer address and marks it STALE), S clear (it answers no
    solicitation), R as configured, target = the address, target link-layer option = the
    owner MAC, in the domain's 802.1Q tag. The Ethernet source is the owner MAC too, whatever
    `ethernet_source` says for ARP: an NA whose option names another MAC than its Ethernet
    source is what an NDP monitor (this sensor's `ethernet_mismatch`) or a switch's ND
    inspection takes for a spoofer, and it is what the owner itself (and keepalived) sends."""
    # imported here: an IPv4-only defender never loads the NDP modules (start-up)
    from arpwatchd.ndpframes import neighbor_advertisement  # noqa: PLC0415

    return neighbor_advertisement(IPv6Address(ip6_number(address.ip)), address.mac,
                                  router=address.router, vlan=address.vlan)
