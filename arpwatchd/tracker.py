"""The ownership tracker: who holds each address, and whether a change is failover or conflict.

Sans-IO: it takes decoded frames with their packet time and returns events; time advances
only through those timestamps and `tick(now)`. It never reads a clock, a socket or a file.

Theory of operation (DESIGN.md section 3)
-----------------------------------------
Each (domain, ip) has a binding: the owner MAC with first/last seen and up to four previous
owners. An address is *settled* (the common case, a binding and nothing else), in HOLD, or in
CONFLICT; only unsettled addresses have an `_Unsettled` record, so the table of millions of
settled addresses stays a dict of tuples.

  settled, claim by owner          -> refresh (new_activity after `inactive_after` of silence)
  settled, claim by another MAC B  -> binding moves to B, then by the claim:
      protected address, B not allowed          -> CONFLICT owned_address_claimed
      virtual-router IP claimed by a plain MAC  -> CONFLICT both_active
      unsolicited reply (no request in window)  -> CONFLICT unsolicited_takeover, suspect B
      reply racing the owner's reply to one ask -> CONFLICT both_active
      anything else                             -> HOLD for `hold` seconds
  HOLD, claim by the new owner     -> refresh (an announcement is remembered); its
                                      unsolicited reply (not after a failback, not in a
                                      failover group) -> CONFLICT unsolicited_takeover
  HOLD, announcement by the old owner A -> failback: binding back to A, a new HOLD with B
                                      displaced (a second announcement by B's side in that
                                      hold is not a failback again)
  HOLD begun by an announcement (takeover or failback), a solicited reply by the displaced
      side to a third party within `demotion_grace` of it -> nothing: that side's stack still
                                      answers until its demotion removes the address (ucarp's
                                      down script runs after the announcement)
  HOLD, claim by any other MAC     -> CONFLICT: split_brain (one failover group),
                                      owner_defended (the displaced MAC claims after a
                                      failback), announcement_answered (reply soon after B
                                      announced), both_active otherwise
  HOLD ends (old owner silent)     -> failover (announced or group), reused_mac (B held it
                                      before), changed_mac otherwise
  CONFLICT, claims by members      -> remembered; no new event
  CONFLICT ends (all but one silent for `hold`) -> conflict_resolved, binding to the survivor

A reply is also evidence about its target (tpa at tha): if that contradicts a live binding it
is a CONFLICT with reason reply_target. Events that end a state carry the time the state
ended (the deadline), not the time it was noticed, so replay and live agree.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING

from arpwatchd.addresses import (
    BROADCAST_MAC,
    V6,
    ZERO_MAC,
    family_of,
    ip6_value,
    ip_text,
    mac_text,
    virtual_router,
)
from arpwatchd.decode import ArpFrame, ArpKind
from arpwatchd.events import ConflictReason, Event, EventKind, EventLimiter
from arpwatchd.policy import TrackerPolicy
from arpwatchd.senders import PyRecent, Senders, SenderStats, recent, trim_oldest
from arpwatchd.state import (
    INF,
    MAX_CONFLICT_MEMBERS,
    MAX_PREVIOUS,
    ActiveConflict,
    Binding,
    BindingRecord,
    Phase,
    RepeatRecord,
    Steady,
    StoreChanges,
    Takeover,
    TrackerStats,
    Unsettled,
    ask_key,
    conflict_deadline,
    glbp_pair,
    new_tuple,
    pack_binding,
    packed_last_seen,
    packed_refresh,
    rhythm,
    unpack_binding,
)

if TYPE_CHECKING:
    from arpwatchd.ndp import NdpFrame, NdpInvalid

__all__ = ["ActiveConflict", "Binding", "BindingRecord", "Steady", "StoreChanges", "Tracker",
           "TrackerStats"]

_BARE = (None,) * 9
"""An event's fields after vlan up to `family`, for one the limiter will drop (it reads kind,
time, interface, vlan and family)."""

_DOM_BITS = 0xFFFFFFFF << 32
"""A binding's key is `dom << 32 | ip` in both families: an IPv4 value has 32 bits, an IPv6
value (`addresses.ip6_value`) leaves bits 0-63 clear and sets bit 200, so IPv6 keys are at
least 2**200, IPv4 keys below 2**64, one table holds both, and the IPv4 path computes its keys
as it always did (no test of the family)."""


def _station6(dom: int, mac: bytes, ip: int) -> bytes:
    """Key of an IPv6 station: the MAC in a domain, per /64 (privacy addresses come and go
    inside one prefix: one `new_station` per host and prefix, docs/ipv6.md)."""
    return dom.to_bytes(4, "big") + mac + (ip >> 128 & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def split_key(key: int) -> tuple[int, int]:
    """(domain id, address value) of a binding key of either family."""
    if key < V6:
        return key >> 32, key & 0xFFFFFFFF
    return key >> 32 & 0xFFFFFFFF, key & ~_DOM_BITS

MAX_REMOVALS_KEPT = 200_000
"""Evicted keys remembered for the store; beyond, it is rewritten whole. Writes come every
65,536 changes or half a second, so only a store that keeps failing under a flood gets here."""


class Tracker:
    def __init__(self, policy: TrackerPolicy) -> None:
        self.policy = policy
        self._domain_ids: dict[tuple[str, int | None], int] = {}
        self._domains: list[tuple[str, int | None]] = []
        self._networks: list[tuple[tuple[int, int], ...]] = []
        """Per domain, the expected IPv4 prefixes (`TrackerPolicy.prefixes_for`)."""
        self._networks6: list[tuple[tuple[int, int], ...]] = []
        self._counts: list[int] = []
        self._bindings: dict[int, bytes] = {}
        """Key -> packed binding (`state.pack_binding`), least recently seen first."""
        self._unsettled: dict[int, Unsettled] = {}
        self._heap: list[tuple[float, int]] = []
        self._next_deadline = INF
        self._asked = recent(policy.max_pending)
        """Requests on record, `ask_key` -> time; the fast path refreshes repeats."""
        self._replied = recent(policy.max_pending)
        """Answers on record, binding key -> (sender MAC, target MAC, time): two answers to
        one request within answer_window are two live owners."""
        self._probes = recent(policy.max_pending)
        self._dad: dict[int, tuple[bytes, float]] = {}
        """IPv6 duplicate address detection probes on record: key -> (prober MAC, time)."""
        self._stations6 = recent(policy.max_macs)
        """(domain, MAC, /64 prefix) that had their IPv6 `new_station` (`_station6`)."""
        self._reported = recent(policy.max_pending)
        self._senders = Senders(
            policy.max_macs,
            policy.flood_frames,
            policy.flood_window,
            policy.scan_targets,
            policy.scan_window,
            self._senders_evicted,
        )
        self._changed: set[int] = set()
        self._refreshed: set[int] = set()
        """Bindings whose only change is a later last_seen (kept apart: the store may write
        them less often than new, moved and unsettled ones)."""
        self._removed: set[int] = set()
        self._rewrite = False
        """The store is to be replaced by every binding: more evictions waited for it than
        `MAX_REMOVALS_KEPT`, and remembering each would grow without bound."""
        self.evicted = 0
        self.version = 0
        """Bumped when a binding changes owner, becomes unsettled or goes (see `Steady`)."""
        self.restructured: set[int] | None = set()
        """Keys changed since the fast path last looked; None means anything may have."""
        self._steady: Steady | None = None
        self._steady_of: tuple[bool, int, int, SenderStats, bytes, bytes, int] | None = None
        """What `steady` is built from: (is a request, then `Steady.request`'s arguments)."""
        self.steady_created = False
        self._created = False
        self.gate: EventLimiter | None = None
        """The limiter every event of `observe` will meet, if the caller gives it: an event
        it will surely drop is built bare (no addresses formatted, `EventLimiter.surely_drops`)."""
        self._latest = -INF
        """The latest packet time observed (no event of `observe` is later)."""

    # ----------------------------------------------------------------- public API

    def observe(self, frame: ArpFrame, ts: float, unsolicited: bool = False) -> list[Event]:
        """Feeds one decoded frame seen at packet time `ts`; returns the events it causes.

        `unsolicited` says that a reply answers nothing whatever was asked before (an IPv6
        advertisement with S clear says so itself, `observe_ndp`); an ARP reply cannot, so
        for ARP the request table decides."""
        events: list[Event] = []
        self._steady = self._steady_of = None
        self.steady_created = False
        if ts > self._latest:  # noqa: PLR1730  (max() is a call: once per frame)
            self._latest = ts
        if ts >= self._next_deadline:
            self._expire(ts, events)
        dom = self._domain_ids.get((frame.interface, frame.vlan))
        if dom is None:
            dom = self._domain(frame.interface, frame.vlan)
        kind = frame.kind
        mismatch = frame.eth_src is not None and frame.eth_src != frame.sha
        # Replies to requests are a host's normal workload (a gateway answers hundreds), so
        # only frames a MAC sends on its own initiative count towards a flood.
        solicited = kind is not ArpKind.REPLY or (
            not unsolicited and self._solicited(frame, dom, ts))
        if kind is not ArpKind.REPLY or not solicited:
            sender = frame.eth_src if frame.eth_src is not None else frame.sha
            alarm = self._senders.count_frame(sender, ts)
            if alarm is not None:
                events.append(self._event(ts, EventKind.ARP_FLOOD, dom, None, sender,
                                          count=alarm.count, since=alarm.since,
                                          family=family_of(frame.spa)))
        if kind is ArpKind.INVALID:
            self._invalid(frame, dom, ts, events)
            return events
        if mismatch:
            self._mismatch(frame, dom, ts, events)
        if frame.op == 1:  # requests, probes and gratuitous requests all ask for tpa
            self._asked.note(ask_key(dom, frame.tpa, frame.sha), ts)
            self._asked.note(ask_key(dom, frame.tpa), ts)
        if kind is ArpKind.ANNOUNCEMENT:
            self._asked.note(ask_key(dom, frame.spa, frame.sha, announced=True), ts)
        if kind is ArpKind.PROBE or kind is ArpKind.REQUEST:
            scan = self._senders.count_target(frame.sha, frame.tpa, ts)
            if scan is not None:
                events.append(self._event(ts, EventKind.ARP_SCAN, dom, None, frame.sha,
                                          count=scan.count, since=scan.since,
                                          family=family_of(frame.tpa)))
            if kind is ArpKind.PROBE:
                self._probe(frame, dom, ts, events)
                return events
        quiet = not events  # no alarm, nothing expired
        self._created = False
        refreshed = self._claim(frame, dom, ts, solicited, events)
        stable = True
        if kind is ArpKind.REPLY:
            stable = self._reply_evidence(frame, dom, ts, solicited, events)
        # a new station's own report aside, nothing else may have happened
        quiet = quiet and len(events) == int(self._created)
        if refreshed and stable and solicited and quiet and not mismatch:
            self._note_steady(frame, dom, kind)
            self.steady_created = self._created
        return events

    def _note_steady(self, frame: ArpFrame, dom: int, kind: ArpKind) -> None:
        if kind is ArpKind.REQUEST:
            sender = frame.eth_src if frame.eth_src is not None else frame.sha
            stats = self._senders.peek(sender)
            if stats is None or stats is not self._senders.peek(frame.sha):
                return
            self._steady_of = (True, dom, frame.spa, stats, frame.sha, frame.tha, frame.tpa)
        elif kind is ArpKind.REPLY and frame.tha not in (ZERO_MAC, BROADCAST_MAC):
            stats = self._senders.peek(frame.sha)
            if stats is not None:
                self._steady_of = (False, dom, frame.spa, stats, frame.sha, frame.tha, frame.tpa)

    def observe_ndp(self, frame: NdpFrame | NdpInvalid, ts: float) -> list[Event]:
        """Feeds one neighbour discovery message (docs/ipv6.md); returns the events it causes.

        The message is read as the ARP frame that says the same, and `observe`'s rules judge
        it, so each rule has one home; the IPv6 address values (`addresses.ip6_value`) keep
        the families apart in every table. What only NDP can say is decided here:

          NS from an address, with a source link-layer option -> request (a claim by the
                                      sender, asking for the target)
          NS from ::                  -> probe (duplicate address detection, claims nothing)
          NA with S set               -> reply to the solicitation on record (none on record:
                                      an unsolicited reply, as for ARP)
          NA with S clear, to a multicast group -> announcement (failover, as gratuitous ARP)
          NA with S clear, to one host -> unsolicited reply whatever was asked (the NA says
                                      itself that it answers nothing): a takeover is a
                                      conflict at once, unsolicited_takeover
          NA with S clear answering a DAD probe of another MAC within `answer_window`
                                      -> probe_in_use; it binds nothing when nobody holds
                                      the address (atk6-dos-new-ip6 answers every probe from
                                      a made-up MAC)
          RS, RA with a source link-layer option -> a claim of the source address
          anything without a link-layer address to bind -> only asks (NS) or nothing
        """
        # imported here: a sensor that never sees IPv6 never pays for the module (start-up)
        from arpwatchd.ndp import NdpInvalid, NdpKind  # noqa: PLC0415

        # the fast path replays ARP frames only: an NDP frame is never a steady one, and the
        # last ARP frame's verdict must not stand for it (paths below that observe nothing)
        self._steady = self._steady_of = None
        self.steady_created = False
        if isinstance(frame, NdpInvalid):
            src = ip6_value(frame.src)
            return self._observe6(ArpFrame(frame.interface, frame.vlan, 0, ArpKind.INVALID,
                                           frame.eth_src, None, frame.eth_src, src, ZERO_MAC,
                                           0, frame.problem.value), ts)
        kind = frame.kind
        src = ip6_value(frame.src)
        claim = frame.claim
        if kind is NdpKind.DAD_PROBE:
            assert frame.target is not None  # an NS always has a target
            target = ip6_value(frame.target)
            self._note_dad(frame, target, ts)
            return self._observe6(ArpFrame(frame.interface, frame.vlan, 1, ArpKind.PROBE,
                                           frame.eth_src, frame.eth_dst, frame.eth_src, 0,
                                           ZERO_MAC, target), ts)
        if claim is None:
            if kind is NdpKind.SOLICITATION and frame.target is not None:
                dom = self._domain(frame.interface, frame.vlan)
                target = ip6_value(frame.target)
                self._asked.note(ask_key(dom, target, frame.eth_src), ts)
                self._asked.note(ask_key(dom, target), ts)
            return []
        ip = ip6_value(claim[0])
        mac = claim[1]
        if kind is NdpKind.SOLICITATION or kind is NdpKind.ROUTER_SOLICITATION or (
                kind is NdpKind.ROUTER_ADVERTISEMENT):
            target = ip if frame.target is None else ip6_value(frame.target)
            return self._observe6(ArpFrame(frame.interface, frame.vlan, 1, ArpKind.REQUEST,
                                           frame.eth_src, frame.eth_dst, mac, ip, ZERO_MAC,
                                           target), ts, repeatable=kind is NdpKind.SOLICITATION)
        if frame.solicited:
            return self._observe6(ArpFrame(frame.interface, frame.vlan, 2, ArpKind.REPLY,
                                           frame.eth_src, frame.eth_dst, mac, ip,
                                           frame.eth_dst, ip6_value(frame.dst)), ts,
                                  repeatable=True)
        events, bind = self._dad_answer(frame, ip, mac, ts)
        if not bind:
            return events  # answered a probe for an address nobody holds: bind nothing
        if frame.dst.is_multicast:
            return events + self._observe6(ArpFrame(
                frame.interface, frame.vlan, 2, ArpKind.ANNOUNCEMENT, frame.eth_src,
                frame.eth_dst, mac, ip, BROADCAST_MAC, ip), ts)
        return events + self._observe6(ArpFrame(
            frame.interface, frame.vlan, 2, ArpKind.REPLY, frame.eth_src, frame.eth_dst, mac,
            ip, frame.eth_dst, ip6_value(frame.dst)), ts, unsolicited=True)

    def _observe6(self, frame: ArpFrame, ts: float, unsolicited: bool = False,
                  repeatable: bool = False) -> list[Event]:
        """`observe` of the ARP frame an NDP message stands for. Only an NS with a source
        link-layer option and a solicited NA are `repeatable`: their ARP frame is all they
        do, so a steady one's repeats are that ARP frame's repeats (the fast path remembers
        the NDP bytes with its `Steady`); every other NDP message does more than its ARP
        frame (probes, DAD answers, unsolicited NAs), so it is never steady."""
        events = self.observe(frame, ts, unsolicited)
        if not repeatable:
            self._steady = self._steady_of = None
            self.steady_created = False
        return events

    def _note_dad(self, frame: NdpFrame, target: int, ts: float) -> None:
        dom = self._domain(frame.interface, frame.vlan)
        key = dom << 32 | target
        dad = self._dad
        if key in dad:
            del dad[key]
        elif len(dad) >= self.policy.max_pending:
            trim_oldest(dad, self.policy.max_pending)
        dad[key] = (frame.eth_src, ts)

    def _dad_answer(self, frame: NdpFrame, ip: int, mac: bytes, ts: float
                    ) -> tuple[list[Event], bool]:
        """An unsolicited NA answering another MAC's DAD probe (RFC 4862 5.4.5: the prober
        gives the address up) is `probe_in_use`. Returns the events and whether the NA may
        still claim its target: not when nobody holds it (the answer is all it says)."""
        dom = self._domain(frame.interface, frame.vlan)
        key = dom << 32 | ip
        probe = self._dad.get(key)
        events: list[Event] = []
        if probe is None or probe[0] == mac or ts - probe[1] > self.policy.answer_window:
            return events, True
        self._probe_in_use(dom, ip, probe[0], mac, ts, events)
        return events, key in self._bindings

    @property
    def steady(self) -> Steady | None:
        """Set by `observe` when an identical frame would only refresh its sender's own
        settled claim: this frame refreshed it, or created it (`steady_created`). Built when
        first asked for: under a flood of new stations nobody asks (`fastpath` remembers
        none), and building it readies its sender's scan window for the fast path."""
        if self._steady is None and self._steady_of is not None:
            request, dom, spa, stats, sha, tha, tpa = self._steady_of
            make = Steady.request if request else Steady.reply
            self._steady = make(dom, spa, stats, sha, tha, tpa)
        return self._steady

    def tick(self, now: float) -> list[Event]:
        """Advances time on a quiet network (or to +inf at the end of a replay)."""
        events: list[Event] = []
        if now > self._latest:  # noqa: PLR1730  (as in observe)
            self._latest = now
        if now >= self._next_deadline:
            self._expire(now, events)
        return events

    def key_of(self, interface: str, vlan: int | None, ip: int) -> int:
        dom = self._domain(interface, vlan)
        return dom << 32 | ip

    @property
    def full(self) -> bool:
        """The next new binding evicts the least recently seen one."""
        return len(self._bindings) >= self.policy.max_bindings

    @property
    def horizon(self) -> float:
        """The next deadline (a hold or conflict to end); +inf when none."""
        return self._next_deadline

    def last_seen(self, key: int) -> float:
        """When the binding `key` was last refreshed (-inf when there is none)."""
        raw = self._bindings.get(key)
        return packed_last_seen(raw) if raw is not None else -INF

    def answers_owner(self, key: int, mac: bytes) -> bool:
        """Whether a reply to `mac` for address `key` goes to its owner (or a MAC that may
        share the address with it): what a reply says about its target agrees."""
        raw = self._bindings.get(key)
        if raw is None:
            return False
        owner = raw[:6]
        if owner == mac or glbp_pair(owner, mac):
            return True
        dom, ip = split_key(key)
        interface, vlan = self._domains[dom]
        return self.policy.same_group(interface, vlan, ip, owner, mac)

    @property
    def tables(self) -> tuple[PyRecent, PyRecent]:
        """The requests and answers on record (`_asked`, `_replied`), which the fast path
        refreshes for repeats at once, as the slow path does."""
        return self._asked, self._replied

    def apply_repeats(self, repeats: Iterable[RepeatRecord]) -> None:
        """Applies repeats of steady frames recorded by `fastpath`, oldest first: what the slow
        path would have done for each, given that none of them changed anything else (a
        repeat ending `inactive_after` of silence is not one: `fastpath` leaves it to
        `observe`, which reports the new activity)."""
        bindings = self._bindings
        refreshed = self._refreshed
        for repeat in repeats:
            key = repeat.key
            raw = bindings[key]
            if repeat.last > packed_last_seen(raw):
                del bindings[key]  # re-inserted at the end: dict order is least recently seen
                bindings[key] = packed_refresh(raw, repeat.last)  # first
                refreshed.add(key)

    def reconfigure(self, policy: TrackerPolicy) -> None:
        """Swaps in new settings (SIGHUP) keeping every binding and pending state."""
        self._restructured(None)
        self.policy = policy
        self._networks = [policy.prefixes_for(i, v, ipv6=False) for i, v in self._domains]
        self._networks6 = [policy.prefixes_for(i, v, ipv6=True) for i, v in self._domains]
        self._senders.reconfigure(policy.flood_frames, policy.flood_window,
                                  policy.scan_targets, policy.scan_window)

    def next_deadline(self) -> float | None:
        return None if self._next_deadline == INF else self._next_deadline

    def restore(self, records: Iterable[BindingRecord]) -> None:
        """Rebuilds bindings from the store without reporting anything."""
        self._restructured(None)
        for rec in records:
            dom = self._domain(rec.interface, rec.vlan)
            ip = rec.ip
            key = dom << 32 | ip
            if ip > 0xFFFFFFFF:
                self._stations6.note(_station6(dom, rec.mac, ip), rec.last_seen)
            if key not in self._bindings:
                self._counts[dom] += 1
            self._bindings[key] = pack_binding(rec.mac, rec.first_seen, rec.last_seen,
                                               rec.previous)
            self._senders.get(rec.mac, rec.last_seen).owned += 1
        if len(self._bindings) > self.policy.max_bindings:
            self._evict(len(self._bindings) - self.policy.max_bindings)

    def changes(self, limit: int | None = None, refreshed: bool = True) -> StoreChanges:
        """What the store lacks, at most `limit` rows (all when a whole rewrite is due):
        bindings changed and removed and not yet `changes_stored`; with `refreshed` False,
        not those only refreshed. The marks stay until then, so a failed write loses nothing
        and the backlog of a full disk costs no more memory than the bindings themselves."""
        if self._rewrite:
            return StoreChanges(self.bindings(), [], True)
        bindings = self._bindings
        changed = list(islice(self._changed, limit))
        left = None if limit is None else max(0, limit - len(changed))
        if refreshed and left != 0:
            fresh = list(islice(self._refreshed, left))
            changed.extend(fresh)
            left = None if left is None else max(0, left - len(fresh))
        gone = list(islice(self._removed, left))
        upserts = [self._record(key, raw) for key in changed
                   if (raw := bindings.get(key)) is not None]
        removed = [(*self._domains[dom], ip)
                   for key in gone if key not in bindings for dom, ip in (split_key(key),)]
        return StoreChanges(upserts, removed, False, changed, gone)

    def changes_stored(self, changes: StoreChanges) -> None:
        """`changes` are safely stored: their marks go (no frame observed since `changes`)."""
        if changes.replace:
            self.drop_changes()
        else:
            self._changed.difference_update(changes.changed_keys)
            self._refreshed.difference_update(changes.changed_keys)
            self._removed.difference_update(changes.removed_keys)

    def drop_changes(self) -> None:
        """Forgets every mark (a sensor without a store)."""
        self._changed.clear()
        self._refreshed.clear()
        self._removed.clear()
        self._rewrite = False

    @property
    def changed_count(self) -> int:
        """Rows the store lacks (every binding while a whole rewrite is due)."""
        if self._rewrite:
            return len(self._bindings)
        return len(self._changed) + len(self._refreshed) + len(self._removed)

    @property
    def unrefreshed_count(self) -> int:
        """Rows the store lacks apart from bindings only refreshed."""
        if self._rewrite:
            return len(self._bindings)
        return len(self._changed) + len(self._removed)

    def bindings(self) -> list[BindingRecord]:
        return [self._record(key, raw) for key, raw in self._bindings.items()]

    def snapshot(self, max_conflict_series: int = 200) -> TrackerStats:
        conflicts: list[ActiveConflict] = []
        holds = 0
        active = 0
        for key, u in self._unsettled.items():
            if u.phase is Phase.HOLD:
                holds += 1
                continue
            active += 1
            if len(conflicts) < max_conflict_series:
                dom, ip = split_key(key)
                interface, vlan = self._domains[dom]
                conflicts.append(ActiveConflict(interface, vlan, ip_text(ip),
                                                mac_text(u.macs[0]), mac_text(u.macs[1])))
        return TrackerStats(
            bindings=dict(zip(self._domains, self._counts, strict=True)),
            active_conflicts=tuple(sorted(conflicts, key=lambda c: (c[0], c[1] or 0, c[2]))),
            conflicts_active_total=active,
            holds_active=holds,
            bindings_evicted=self.evicted,
            senders_tracked=len(self._senders),
        )

    def __len__(self) -> int:
        return len(self._bindings)

    # ----------------------------------------------------------------- claims

    def _claim(
        self, frame: ArpFrame, dom: int, ts: float, solicited: bool, events: list[Event]
    ) -> bool:
        """Applies a claim; True when it only refreshed the claimant's own settled binding."""
        key = dom << 32 | frame.spa
        sha = frame.sha
        raw = self._bindings.get(key)
        if raw is None:
            self._new_binding(frame, dom, key, ts, events)
            return self._created
        b = unpack_binding(raw)
        u = self._unsettled.get(key) if self._unsettled else None
        if u is not None:
            self._claim_unsettled(frame, dom, key, b, u, ts, solicited, events)
        elif b.mac == sha or glbp_pair(b.mac, sha):
            if ts - b.last_seen >= self.policy.inactive_after:
                events.append(self._event(ts, EventKind.NEW_ACTIVITY, dom, frame.spa, b.mac,
                                          since=b.last_seen))
            self._touch(key, b, ts)
            return b.mac == sha
        else:
            self._takeover(frame, dom, key, b, ts, solicited, events)
        return False

    def _new_binding(
        self, frame: ArpFrame, dom: int, key: int, ts: float, events: list[Event]
    ) -> None:
        sha, ip = frame.sha, frame.spa
        if len(self._bindings) >= self.policy.max_bindings:
            self._evict(max(1, self.policy.max_bindings // 64))
        # no version bump: see _reply_evidence
        self._bindings[key] = pack_binding(sha, ts, ts)
        self._counts[dom] += 1
        self._changed.add(key)
        self._senders.get(sha, ts).owned += 1
        if self.policy.protected:
            interface, vlan = self._domains[dom]
            rule = self.policy.protection(interface, vlan, ip)
            if rule is not None and not rule.allows(sha):
                self._start_conflict(key, dom, ts, {rule.mac: INF, sha: ts}, sha, rule.mac,
                                     ConflictReason.OWNED_ADDRESS_CLAIMED, sha, events)
                return
        networks = self._networks6[dom] if ip >= V6 else self._networks[dom]
        if networks and not any(ip & mask == net for net, mask in networks):
            events.append(self._event(ts, EventKind.BOGON, dom, ip, sha))
        elif ip >= V6:
            # the station is the MAC, once per /64 (privacy addresses, docs/ipv6.md)
            if self._stations6.first_in(_station6(dom, sha, ip), ts, INF):
                events.append(self._event(ts, EventKind.NEW_STATION, dom, ip, sha))
        else:
            events.append(self._event(ts, EventKind.NEW_STATION, dom, ip, sha))
        self._created = True  # settled at once: the same frame again would only refresh it

    def _takeover(
        self,
        frame: ArpFrame,
        dom: int,
        key: int,
        b: Binding,
        ts: float,
        solicited: bool,
        events: list[Event],
    ) -> None:
        old, new, ip = b.mac, frame.sha, frame.spa
        interface, vlan = self._domains[dom]
        self._move(key, b, new, ts)
        new_stats = self._senders.get(new, ts)
        if frame.kind is not ArpKind.ANNOUNCEMENT:
            new_stats.unannounced += 1
        rule = self.policy.protection(interface, vlan, ip)
        if rule is not None and not rule.allows(new):
            self._start_conflict(key, dom, ts, {rule.mac: INF, new: ts}, new, rule.mac,
                                 ConflictReason.OWNED_ADDRESS_CLAIMED, new, events)
            return
        if virtual_router(old) is not None and virtual_router(new) is None:
            members = {old: max(b.last_seen, ts), new: ts}
            self._start_conflict(key, dom, ts, members, new, old,
                                 ConflictReason.BOTH_ACTIVE, new, events)
            return
        if frame.kind is ArpKind.REPLY:
            window = self.policy.answer_window
            announced = ask_key(dom, ip, old, announced=True)
            if frame.tha == old and self._asked.within(announced, ts, window):
                # the owner just announced its own address and B answers, claiming it
                self._start_conflict(key, dom, ts, {old: b.last_seen, new: ts}, new, old,
                                     ConflictReason.ANNOUNCEMENT_ANSWERED,
                                     self._suspect(key, old, new), events)
                return
            if not solicited:
                self._start_conflict(key, dom, ts, {old: ts, new: ts}, new, old,
                                     ConflictReason.UNSOLICITED_TAKEOVER, new, events)
                return
            answered = self._replied.get(key)
            if (
                answered is not None
                and answered[0] == old
                and answered[1] == frame.tha
                and ts - answered[2] <= self.policy.answer_window
            ):
                self._start_conflict(key, dom, ts, {old: answered[2], new: ts}, new, old,
                                     ConflictReason.BOTH_ACTIVE,
                                     self._suspect(key, old, new), events)
                return
        u = Unsettled(Phase.HOLD, ts, ts + self.policy.hold)
        u.old_mac = old
        u.old_last = b.last_seen
        u.reused = new in b.previous
        u.announced_move = frame.kind is ArpKind.ANNOUNCEMENT
        if self.policy.same_group(interface, vlan, ip, old, new):
            u.takeover = Takeover.GROUP
        elif u.announced_move:
            u.takeover = Takeover.ANNOUNCED
            u.announced_at = ts
        self._unsettle(key, u)

    def _claim_unsettled(
        self,
        frame: ArpFrame,
        dom: int,
        key: int,
        b: Binding,
        u: Unsettled,
        ts: float,
        solicited: bool,
        events: list[Event],
    ) -> None:
        sha = frame.sha
        if u.phase is Phase.CONFLICT:
            u.claims += 1
            previous = u.members.get(sha)
            if previous is not None:
                if previous != INF:
                    u.gap = rhythm(u.gap, ts - previous, self.policy.hold)
                    u.members[sha] = ts
            elif len(u.members) < MAX_CONFLICT_MEMBERS:
                u.members[sha] = ts
            if sha == b.mac:
                self._touch(key, b, ts)
            return
        if sha == b.mac or glbp_pair(b.mac, sha):
            if frame.kind is ArpKind.ANNOUNCEMENT:
                u.announced_at = ts
                if u.takeover is Takeover.PLAIN and ts - u.since <= self.policy.demotion_grace:
                    # it answered a request between adding the address and announcing it
                    u.takeover = Takeover.ANNOUNCED
                    u.announced_move = True
            self._touch(key, b, ts)
            if (
                frame.kind is ArpKind.REPLY
                and not solicited
                and sha == b.mac
                and not u.failback
                and u.takeover is not Takeover.GROUP
            ):
                # The takeover looked harmless (an announcement, a late answer), but the new
                # holder now poisons with unasked replies: the same verdict as a takeover
                # made by one, without waiting for the hold (the owner may stay silent).
                del self._unsettled[key]
                self._start_conflict(key, dom, ts, {u.old_mac: ts, sha: ts}, sha, u.old_mac,
                                     ConflictReason.UNSOLICITED_TAKEOVER, sha, events)
            return
        if sha == u.old_mac and frame.kind is ArpKind.ANNOUNCEMENT and not u.failback:
            self._fail_back(key, b, sha, ts)
            return
        if self._demotion_overlap(frame, b, u, ts, solicited):
            u.old_last = ts
            return
        reason = self._hold_conflict_reason(frame, dom, b, u, ts)
        if self._may_fail_back(frame, b, u, solicited):
            if u.pending is None:
                u.pending, u.pending_reason = ts, reason
                u.deadline = min(u.deadline, ts + self.policy.demotion_grace)
                self._push(u.deadline, key)
            return
        self._hold_to_conflict(key, dom, b, u, sha, ts, reason, events)

    def _hold_conflict_reason(
        self, frame: ArpFrame, dom: int, b: Binding, u: Unsettled, ts: float
    ) -> ConflictReason:
        interface, vlan = self._domains[dom]
        if self.policy.same_group(interface, vlan, frame.spa, b.mac, frame.sha):
            return ConflictReason.SPLIT_BRAIN
        if u.failback and frame.sha == u.old_mac:
            return ConflictReason.OWNER_DEFENDED
        if (
            frame.kind is ArpKind.REPLY
            and u.announced_at is not None
            and ts - u.announced_at <= self.policy.answer_window
        ):
            return ConflictReason.ANNOUNCEMENT_ANSWERED
        return ConflictReason.BOTH_ACTIVE

    def _may_fail_back(self, frame: ArpFrame, b: Binding, u: Unsettled, solicited: bool
                       ) -> bool:
        """Whether a claim by the side an announced move displaced may be the first frame of
        its failback: a node taking an address back adds it, and its stack answers requests
        before the announcement goes out (Pacemaker IPaddr2 runs `ip addr add`, then
        arping: 23-250 ms apart in the namespace lab beside stress-ng, and a client asking
        in between got the node's answer first). So its solicited reply to a third party is
        judged `demotion_grace` later: a conflict at the reply's time, unless it announced
        (a failback) by then."""
        return (
            u.announced_move
            and not u.failback
            and frame.sha == u.old_mac
            and frame.kind is ArpKind.REPLY
            and solicited
            and frame.tha != b.mac
            and self.policy.demotion_grace > 0
        )

    def _demotion_overlap(
        self, frame: ArpFrame, b: Binding, u: Unsettled, ts: float, solicited: bool
    ) -> bool:
        """Whether a claim by the side an announcement displaced is its stack answering while
        it demotes itself. ucarp's node runs its down script only once it has read the
        other's advertisement (0.75 s later: libpcap, 1 s timeout); measured in the namespace
        lab, its stack kept answering a client's requests for the address for 0.3-0.9 s after
        the other's announcement (failback, and takeover back after a hold). So a
        *solicited* reply to a third party (a stack answers whoever asks) within
        `demotion_grace` of the announcement is routine. A reply to the announcer contests
        the announcement; an announcement, an unsolicited reply or a request by it, or any
        claim after the grace, is a host still asserting the address: those stay conflicts."""
        return (
            u.announced_move
            and frame.sha == u.old_mac
            and frame.kind is ArpKind.REPLY
            and solicited
            and frame.tha != b.mac
            and ts - u.since <= self.policy.demotion_grace
        )

    def _fail_back(self, key: int, b: Binding, owner: bytes, ts: float) -> None:
        """The old owner announced the address inside the hold: a failback (a VRRP master
        back from a restart preempts and announces; the backup falls silent), not a conflict.
        The binding returns at once and a new hold starts with the other side displaced."""
        self._move(key, b, owner, ts)
        back = Unsettled(Phase.HOLD, ts, ts + self.policy.hold)
        back.old_mac = b.mac
        back.old_last = b.last_seen
        back.takeover = Takeover.ANNOUNCED
        back.announced_at = ts
        back.announced_move = True
        back.failback = True
        self._unsettle(key, back)

    def _hold_to_conflict(
        self,
        key: int,
        dom: int,
        b: Binding,
        u: Unsettled,
        other: bytes,
        ts: float,
        reason: ConflictReason,
        events: list[Event],
    ) -> None:
        del self._unsettled[key]
        suspect = self._suspect(key, b.mac, other)
        gap = rhythm(0.0, ts - u.old_last, self.policy.hold) if other == u.old_mac else 0.0
        self._start_conflict(key, dom, ts, {b.mac: b.last_seen, other: ts}, other, b.mac,
                             reason, suspect, events, gap=gap)

    # ----------------------------------------------------------------- other frames

    def _probe(self, frame: ArpFrame, dom: int, ts: float, events: list[Event]) -> None:
        key = dom << 32 | frame.tpa
        raw = self._bindings.get(key)
        if raw is None:
            return
        b = unpack_binding(raw)
        if b.mac == frame.sha or glbp_pair(b.mac, frame.sha):
            return
        if ts - b.last_seen <= self.policy.hold:
            self._probe_in_use(dom, frame.tpa, frame.sha, b.mac, ts, events)
        else:
            self._probes.note((key, frame.sha), ts)

    def _probe_in_use(
        self, dom: int, ip: int, prober: bytes, owner: bytes, ts: float, events: list[Event]
    ) -> None:
        if self._reported.first_in((EventKind.PROBE_IN_USE, dom, ip, prober), ts,
                                   self.policy.hold):
            events.append(self._event(ts, EventKind.PROBE_IN_USE, dom, ip, prober,
                                      previous_mac=mac_text(owner)))

    def _reply_evidence(
        self, frame: ArpFrame, dom: int, ts: float, solicited: bool, events: list[Event]
    ) -> bool:
        """Weighs what a reply says about its target; True when the outcome cannot change
        while the tracker's version stays the same."""
        key = dom << 32 | frame.spa
        tha, tpa = frame.tha, frame.tpa
        if not solicited:
            self._senders.get(frame.sha, ts).unsolicited += 1
        self._replied.note(key, (frame.sha, tha, ts))
        if tpa == 0:
            if self._probes.within((key, tha), ts, self.policy.solicit_window):
                self._probe_in_use(dom, frame.spa, tha, frame.sha, ts, events)
            return False
        if tpa == frame.spa or tha in (ZERO_MAC, BROADCAST_MAC) or tha[0] & 1:
            return True
        tkey = dom << 32 | tpa
        raw = self._bindings.get(tkey)
        if raw is None:
            return False  # a binding may appear for tpa: new bindings do not bump the version
        if self.answers_owner(tkey, tha):
            return True
        bt = unpack_binding(raw)
        u = self._unsettled.get(tkey)
        if u is None and ts - bt.last_seen <= self.policy.hold:
            self._start_conflict(tkey, dom, ts, {bt.mac: bt.last_seen, tha: ts}, bt.mac, tha,
                                 ConflictReason.REPLY_TARGET,
                                 self._suspect(tkey, bt.mac, tha), events)
        elif u is not None and u.phase is Phase.HOLD and tha == u.old_mac:
            self._hold_to_conflict(tkey, dom, bt, u, tha, ts, ConflictReason.REPLY_TARGET,
                                   events)
        return False

    def _invalid(self, frame: ArpFrame, dom: int, ts: float, events: list[Event]) -> None:
        """Sampled: one report per sender and problem per `repeat_after` (all are counted)."""
        kind = EventKind.INVALID_ARP if frame.spa < V6 else EventKind.INVALID_NDP
        if self._reported.first_in((kind, dom, frame.problem, frame.sha,
                                    frame.eth_src), ts, self.policy.repeat_after):
            events.append(self._event(ts, kind, dom, frame.spa or None,
                                      frame.sha, reason=frame.problem))

    def _suspect(self, key: int, a: bytes, b: bytes) -> bytes | None:
        """`Senders.suspect`, not counting the contested address as "another IP of its own"."""
        raw = self._bindings.get(key)
        holder = raw[:6] if raw is not None else None
        return self._senders.suspect(a, b, holder)

    def _mismatch(self, frame: ArpFrame, dom: int, ts: float, events: list[Event]) -> None:
        src = frame.eth_src
        assert src is not None
        if src in self.policy.own_macs:
            return
        self._senders.get(frame.sha, ts).mismatches += 1
        if self._reported.first_in((EventKind.ETHERNET_MISMATCH, dom, src, frame.sha), ts,
                                   self.policy.repeat_after):
            events.append(self._event(ts, EventKind.ETHERNET_MISMATCH, dom, frame.spa or None,
                                      frame.sha, previous_mac=mac_text(src),
                                      reason="ethernet_source_differs"))

    def _solicited(self, frame: ArpFrame, dom: int, ts: float) -> bool:
        window = self.policy.solicit_window
        if frame.tha in (ZERO_MAC, BROADCAST_MAC):
            return self._asked.within(ask_key(dom, frame.spa), ts, window)
        return self._asked.within(ask_key(dom, frame.spa, frame.tha), ts, window)

    # ----------------------------------------------------------------- states and time

    def _start_conflict(
        self,
        key: int,
        dom: int,
        ts: float,
        members: dict[bytes, float],
        mac: bytes,
        other: bytes,
        reason: ConflictReason,
        suspect: bytes | None,
        events: list[Event],
        gap: float = 0.0,
    ) -> None:
        u = Unsettled(Phase.CONFLICT, ts, ts)
        u.members = members
        u.macs = (mac, other)
        u.reason = reason
        u.suspect = suspect
        u.claims = 1
        u.gap = gap
        u.deadline = conflict_deadline(members, self._silence(u))
        self._unsettle(key, u)
        events.append(self._event(ts, EventKind.CONFLICT, dom, split_key(key)[1], mac,
                                  previous_mac=mac_text(other), reason=reason.value,
                                  suspect=mac_text(suspect) if suspect else None))

    def _unsettle(self, key: int, u: Unsettled) -> None:
        self._restructured(key)
        self._unsettled[key] = u
        self._changed.add(key)
        self._push(u.deadline, key)

    def _push(self, deadline: float, key: int) -> None:
        heapq.heappush(self._heap, (deadline, key))
        self._next_deadline = min(self._next_deadline, deadline)

    def _expire(self, now: float, events: list[Event]) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            u = self._unsettled.get(key)
            if u is None or u.deadline != deadline:
                continue
            if u.phase is Phase.HOLD and u.pending is not None:
                self._hold_to_conflict(key, split_key(key)[0], self._binding(key), u, u.old_mac,
                                       u.pending, u.pending_reason, events)
            elif u.phase is Phase.HOLD:
                self._end_hold(key, u, events)
            else:
                self._check_conflict(key, u, now, events)
        self._next_deadline = heap[0][0] if heap else INF

    def _end_hold(self, key: int, u: Unsettled, events: list[Event]) -> None:
        del self._unsettled[key]
        self._changed.add(key)
        b = self._binding(key)
        if u.takeover is not Takeover.PLAIN:
            kind = EventKind.FAILOVER
        elif u.reused:
            kind = EventKind.REUSED_MAC
        else:
            kind = EventKind.CHANGED_MAC
        how = None if u.takeover is Takeover.PLAIN else u.takeover.value
        events.append(self._event(u.deadline, kind, *split_key(key), b.mac,
                                  previous_mac=mac_text(u.old_mac), since=u.since, reason=how))

    def _silence(self, u: Unsettled) -> float:
        """How long a conflict member must be silent to count as gone: `hold`, or 1.5 times
        the longest pause seen between its members' claims, so two quiet hosts that ARP
        every 40 s are one long conflict rather than a new alert every minute."""
        return max(self.policy.hold, 1.5 * u.gap)

    def _check_conflict(self, key: int, u: Unsettled, now: float, events: list[Event]) -> None:
        hold = self._silence(u)
        deadline = conflict_deadline(u.members, hold)
        if deadline > now:
            u.deadline = deadline
            self._push(deadline, key)
            return
        ranked = sorted(u.members.items(), key=lambda item: item[1], reverse=True)
        survivor = ranked[0][0]
        silent = ranked[1][0]
        ended = ranked[1][1] + hold
        del self._unsettled[key]
        b = self._binding(key)
        if b.mac != survivor:
            self._move(key, b, survivor, b.last_seen)
        else:
            self._changed.add(key)
        events.append(self._event(ended, EventKind.CONFLICT_RESOLVED, *split_key(key),
                                  survivor, previous_mac=mac_text(silent),
                                  reason=u.reason.value, since=u.since,
                                  duration=ended - u.since, count=u.claims))

    # ----------------------------------------------------------------- table upkeep

    def _senders_evicted(self) -> None:
        """Some MACs' statistics went (a full table), on whatever path: an invalid frame's or
        a probe's sender, a takeover, a conflict ending on a tick. A remembered `Steady`
        holds its sender's statistics, and must not count on the evicted ones."""
        self._restructured(None)

    def _restructured(self, key: int | None) -> None:
        self.version += 1
        if key is None or self.restructured is None or len(self.restructured) > 10_000:
            self.restructured = None
        else:
            self.restructured.add(key)

    def _domain(self, interface: str, vlan: int | None) -> int:
        domain = (interface, vlan)
        dom = self._domain_ids.get(domain)
        if dom is None:
            dom = self._domain_ids[domain] = len(self._domains)
            self._domains.append(domain)
            self._networks.append(self.policy.prefixes_for(interface, vlan, ipv6=False))
            self._networks6.append(self.policy.prefixes_for(interface, vlan, ipv6=True))
            self._counts.append(0)
        return dom

    def _touch(self, key: int, b: Binding, ts: float) -> None:
        bindings = self._bindings
        del bindings[key]  # re-insert at the end: dict order is least-recently-seen first
        # a capture merged from two taps can step back a little: last_seen never does
        bindings[key] = pack_binding(b.mac, b.first_seen, max(ts, b.last_seen), b.previous)
        self._refreshed.add(key)

    def _move(self, key: int, b: Binding, mac: bytes, ts: float) -> None:
        previous = (b.mac, *tuple(m for m in b.previous if m != mac))[:MAX_PREVIOUS]
        del self._bindings[key]
        self._bindings[key] = pack_binding(mac, ts, ts, previous)
        self._restructured(key)
        self._changed.add(key)
        old_stats = self._senders.peek(b.mac)
        if old_stats is not None and old_stats.owned > 0:
            old_stats.owned -= 1
        self._senders.get(mac, ts).owned += 1

    def _evict(self, count: int) -> None:
        """Drops the `count` least recently seen settled bindings, in one slice (see
        `trim_oldest` for why not one at a time)."""
        unsettled = self._unsettled
        victims = list(islice((k for k in self._bindings if k not in unsettled), count))
        for key in victims:
            owner = self._bindings.pop(key)[:6]
            self._restructured(key)
            self._counts[key >> 32 & 0xFFFFFFFF] -= 1
            self._changed.discard(key)
            self._refreshed.discard(key)
            if not self._rewrite:
                self._removed.add(key)
            stats = self._senders.peek(owner)
            if stats is not None and stats.owned > 0:
                stats.owned -= 1
        self.evicted += len(victims)
        if len(self._removed) > MAX_REMOVALS_KEPT:
            self._rewrite = True
            self._removed.clear()

    def _binding(self, key: int) -> Binding:
        return unpack_binding(self._bindings[key])

    def _record(self, key: int, raw: bytes) -> BindingRecord:
        dom, ip = split_key(key)
        interface, vlan = self._domains[dom]
        u = self._unsettled.get(key)
        return new_tuple(BindingRecord, (interface, vlan, ip, *unpack_binding(raw),
                                         u.phase.value if u else "ok"))

    def _event(
        self,
        ts: float,
        kind: EventKind,
        dom: int,
        ip: int | None,
        mac: bytes | None,
        *,
        previous_mac: str | None = None,
        reason: str | None = None,
        suspect: str | None = None,
        count: int | None = None,
        since: float | None = None,
        duration: float | None = None,
        family: str | None = None,
    ) -> Event:
        interface, vlan = self._domains[dom]
        if family is None:
            family = "ipv4" if ip is None or ip <= 0xFFFFFFFF else "ipv6"
        gate = self.gate
        if gate is not None and gate.surely_drops(kind, self._latest):
            return new_tuple(Event, (ts, kind, interface, vlan, *_BARE, family))
        # Event's fields in order (one event per new station under a flood)
        return new_tuple(Event, (
            ts, kind, interface, vlan, ip_text(ip) if ip is not None else None,
            mac_text(mac) if mac is not None else None, previous_mac, reason, suspect, count,
            since, duration, None, family,
        ))
