"""Bookkeeping around the C kernel (`_kernel.c`), which proves repeats: frames that would
change nothing but times and counters skip dpkt and the tracker's slow path.

On a LAN most ARP frames repeat byte for byte (a host re-asking its gateway every minute, the
gateway's unicast answer), and most first sightings are a known claim to a new target (a host
asking a peer it had not asked before): the sender's half of the frame, the part dpkt and the
tracker judged, is byte-identical to a remembered steady frame's. The rules of what such a
frame may skip (flood and scan windows, solicitation, inactivity, the target's half of a
claim) are written once, in the kernel, and documented there. IPv6 neighbour discovery
repeats the same way: an NS with a source link-layer option and a solicited NA are judged as
the ARP request and reply they stand for (`Tracker._observe6`), so a steady one is
remembered with that ARP frame's `Steady` and its repeats take the same path. This module
keeps what is bookkeeping, on the same objects the kernel reads:

- the memos: when the tracker says a slow frame only refreshed its sender's own settled claim
  (`Tracker.steady`), its bytes and its sender's half are remembered, per interface and link
  type (the same bytes on two interfaces are two stations' frames; under another link type
  they say something else), and forgotten when the binding changes (`Tracker.version`);
- the deferred refreshes: a repeat's refresh of its binding is recorded (`Pending`, one per
  binding) and applied later, in bulk (`Tracker.apply_repeats`). Only the slow path reads
  them, so the repeats of the bindings a slow frame will read (its sender's and its target's
  address) are applied before it, all of them before a deadline (a hold ending) or an
  eviction, and all at least every `DEFER` seconds of packet time.

Exactness: the kernel writes the bounded tables of requests and answers at once, as the slow
path does (once one is full, its order decides what is evicted), and hands back, in order,
every frame it cannot prove. Same events as the slow path, frame for frame (tested on every
capture we have), with one known difference: once `max_bindings` is reached, a binding
refreshed only by repeats counts as seen when its refreshes are applied, not when they
happened, so it can outlive a binding created after its last repeat (a known host keeps
talking while a flood fills the table: the flood's first stations go first). Exact LRU would
mean applying every repeat before every slow frame (+29 % instructions on the mirror mix,
measured).

Without the kernel (not built, or `ARPWATCHD_KERNEL=off`) every frame takes the slow path:
nothing is remembered and nothing deferred (`kernel.py` says so at start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from operator import attrgetter
from types import ModuleType

from arpwatchd.batch import Batch
from arpwatchd.decode import ArpFrame, ArpKind
from arpwatchd.events import Event
from arpwatchd.kernel import KERNEL
from arpwatchd.senders import PyRecent, SenderStats, recent
from arpwatchd.tracker import Steady, Tracker

DEFER = 300.0
"""Packet-time seconds between bulk refreshes (bounds how stale last_seen can be in the store)."""
MAX_MEMOS = 200_000
HIT_WINDOW = 4096
"""Frames over which the share of hits is judged (see `FastPath._remember_new`)."""
_FIRST = attrgetter("first")


def _arp_at(frame: bytes) -> int:
    """Where the ARP body starts in an untagged or 802.1Q-tagged Ethernet frame long enough
    to hold it; 0 for any other frame (QinQ, other TPIDs: the slow path decodes those). Cuts
    the claim keys remembered here: it must agree with `arp_at` in `_kernel.c`, which cuts
    the keys it looks up (a disagreement only loses hits: the tests count them)."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x06":
        return 14 if len(frame) >= 42 else 0
    if ethertype == b"\x81\x00" and frame[16:18] == b"\x08\x06":
        return 18 if len(frame) >= 46 else 0
    return 0


class Pending:
    """The repeats of one binding's steady frames since they were last applied: one record
    per binding, not per frame, so a gateway answering thousands of hosts is applied once."""

    __slots__ = ("dom", "first", "key", "last")

    def __init__(self, key: int, dom: int, ts: float) -> None:
        self.key = key
        self.dom = dom
        self.first = ts
        self.last = ts


class FastPath:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._memos: dict[tuple[str, int], PyRecent] = {}
        """Per interface and link type, frame bytes -> `Steady`: the same bytes on two
        interfaces are two stations' frames, and under another link type (one name, two
        replayed files) other fields. A `Recent` table, which the kernel reads without
        making a bytes object of each frame; never full (`MAX_MEMOS` forgets all first)."""
        self._claims: dict[tuple[str, int], dict[bytes, Steady]] = {}
        """Per interface and link type: a steady frame of each claim (Ethernet bytes 6-31:
        source, ARP header, sender MAC and IP), for frames that repeat a claim to a new
        target."""
        self._by_key: dict[int, list[bytes]] = {}
        self._size = 0
        self._version = tracker.version
        self._pending: dict[int, Pending] = {}
        self._flushed_at: float | None = None
        self.request_hits = 0
        self.reply_hits = 0
        self.solicitation_hits = 0
        self.advertisement_hits = 0
        """NDP repeats proven by the kernel: NSs and solicited NAs remembered with the
        `Steady` of the ARP frame each stands for (`Tracker._observe6`)."""
        self.claimed = 0
        """First sightings proven by their known claim (in the kernel), among the hits."""
        self._frames = self._hits = 0
        self._remember_new = True
        """Whether new stations' first frames are remembered (not while frames rarely hit)."""
        self.enabled = True
        """False sends every frame down the slow path (to compare the two)."""
        self.kernel: ModuleType | None = KERNEL
        """The C kernel proving repeats; None sends every frame down the slow path."""

    def run(
        self,
        batch: Batch,
        slow: Callable[[float, bytes], bool],
        events: list[Event],
        interface: str = "",
        ethernet: bool = False,
        linktype: int = 1,
    ) -> None:
        """Feeds a batch of frames of `linktype`; `slow(ts, frame)` handles a frame the kernel
        cannot prove, returning True when the tracker marked it steady (it is then remembered).
        With `ethernet` (the Ethernet link type), the kernel also judges first sightings that
        repeat a known steady claim to a new target. Without the kernel (or not `enabled`)
        every frame takes the slow path."""
        kernel = self.kernel
        if kernel is None or not self.enabled:
            for ts, frame in batch.frames():
                slow(ts, frame)
            return
        tracker = self.tracker
        table = (interface, linktype)
        memo = self._memo(table)
        claims = self._claims.setdefault(table, {})
        # under a flood of new stations (few hits) no first sighting repeats a known claim:
        # looking for one would only cost
        judge_claims = ethernet and self._remember_new
        pending = self._pending
        if tracker.version != self._version:  # since the last batch: a tick, a new policy
            self._invalidate()

        def handle(ts: float, frame: bytes) -> float:
            """A frame the kernel cannot prove: the slow path, then the bookkeeping."""
            if pending and ts >= self._horizon():
                self.flush()
            if (
                slow(ts, frame)
                and (self._remember_new or not tracker.steady_created)
                and tracker.steady is not None  # built when asked for: not under a flood
            ):
                at = _arp_at(frame) if judge_claims else 0
                self._remember(memo, claims, frame, tracker.steady,
                               frame[6 : at + 18] if at else None)
            if tracker.version != self._version:
                self._invalidate()
            if self._flushed_at is None:  # the DEFER and inactive_after clocks start here
                self._flushed_at = ts
            return self._horizon()

        context = self.kernel_context(table, judge_claims)
        requests, replies, claimed, solicitations, advertisements = kernel.run(
            context, batch.data, batch.meta, self._horizon(), handle)
        self.request_hits += requests
        self.reply_hits += replies
        self.solicitation_hits += solicitations
        self.advertisement_hits += advertisements
        self.claimed += claimed
        self._frames += len(batch)
        self._hits += requests + replies + solicitations + advertisements
        if self._frames >= HIT_WINDOW:
            # a flood of new stations never repeats: remembering each one only costs memory
            self._remember_new = self._hits * 8 >= self._frames
            self._frames = self._hits = 0

    def kernel_context(self, table: tuple[str, int], claims: bool = False
                       ) -> tuple[object, ...]:
        """What the C kernel reads and writes for frames of `table` (interface, link type),
        in the order `_kernel.c` expects: the same objects `run` uses. With `claims`, first
        sightings of a known claim to a new target are judged by it too."""
        tracker = self.tracker
        policy = tracker.policy
        memo = self._memo(table)
        known = self._claims.setdefault(table, {})
        return (memo, self._pending, Pending, tracker.last_seen, *tracker.tables,
                policy.flood_window, policy.flood_frames, policy.scan_window,
                policy.scan_targets, policy.solicit_window, policy.inactive_after, Steady,
                SenderStats, known if claims else None, tracker.answers_owner,
                partial(self._remember, memo, known))

    def _memo(self, table: tuple[str, int]) -> PyRecent:
        memo = self._memos.get(table)
        if memo is None:
            memo = self._memos[table] = recent(MAX_MEMOS)
        return memo

    def _remember(self, memo: PyRecent, claims: dict[bytes, Steady], frame: bytes,
                  steady: Steady, claim: bytes | None = None) -> None:
        """Remembers `frame` as steady in `memo`, and its sender's half `claim` (frame bytes 6
        to the ARP body's 18th) in `claims` unless that claim is remembered already. Called
        by the kernel too, for the first sightings it proved by their claim."""
        if self._size >= MAX_MEMOS:
            self._forget_all()
        self._size += 1
        memo.note(frame, steady)
        by_key = self._by_key
        if (frames := by_key.get(steady.key)) is None:
            frames = by_key[steady.key] = [frame]
        else:
            frames.append(frame)
        if steady.depends != steady.key:
            by_key.setdefault(steady.depends, []).append(frame)
        if claim is not None and claim not in claims:
            claims[claim] = steady
            frames.append(claim)

    def _invalidate(self) -> None:
        """Forgets the frames and claims whose bindings changed since the last look."""
        tracker = self.tracker
        self._version = tracker.version
        changed = tracker.restructured
        tracker.restructured = set()
        if changed is None:
            self._forget_all()
            return
        tables: list[PyRecent | dict[bytes, Steady]] = [
            *self._memos.values(), *self._claims.values()]  # one per interface
        by_key = self._by_key
        for key in changed:
            for raw in by_key.pop(key, ()):
                for table in tables:
                    table.pop(raw, None)

    def _forget_all(self) -> None:
        for memo in self._memos.values():
            memo.clear()
        for claims in self._claims.values():
            claims.clear()
        self._by_key.clear()
        self._size = 0

    def _horizon(self) -> float:
        """Packet time at which pending repeats must be applied: a hold or conflict ending,
        DEFER passed, or `inactive_after`. This bounds how long records wait; it does not
        bound a silence (time can step back to before the last flush): the kernel measures
        each repeat's silence from its binding's record."""
        deadline = self.tracker.horizon
        if self._flushed_at is not None:
            period = min(DEFER, self.tracker.policy.inactive_after)
            deadline = min(deadline, self._flushed_at + period)
        return deadline

    def before_slow(self, frame: ArpFrame) -> None:
        """Before a slow ARP frame: its sender's address, and its target's when it is a reply
        or a probe (a request never reads the binding it asks for)."""
        if self._pending:
            reads_target = frame.op != 1 or frame.kind is ArpKind.PROBE
            self.before_reading(frame.interface, frame.vlan,
                                (frame.spa, frame.tpa) if reads_target else (frame.spa,))

    def before_reading(self, interface: str, vlan: int | None, addresses: Iterable[int]
                       ) -> None:
        """Applies the repeats of the bindings a slow frame's processing will read
        (`addresses`, address values of either family: for NDP its source, target, claim and
        destination), or all of them when the tracker may evict (LRU order)."""
        pending = self._pending
        if not pending:
            return
        tracker = self.tracker
        if tracker.full:
            self.flush()
            return
        for ip in addresses:
            waiting = pending.pop(tracker.key_of(interface, vlan, ip), None)
            if waiting is not None:
                tracker.apply_repeats((waiting,))

    def flush(self) -> None:
        """Applies every recorded repeat (a deadline, a tick, DEFER passed, the end)."""
        pending = self._pending
        if not pending:
            return
        waiting = sorted(pending.values(), key=_FIRST)
        pending.clear()
        self.tracker.apply_repeats(waiting)
        self._flushed_at = max(p.last for p in waiting)

    def due(self, now: float) -> bool:
        """Whether a tick at `now` must flush first (a deadline or DEFER passed)."""
        return bool(self._pending) and now >= self._horizon()
