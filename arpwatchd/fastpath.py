"""Repeats of a known claim are cheap: the same frame bytes, seen again, skip dpkt and the
tracker's slow path.

On a LAN most ARP frames repeat byte for byte (a host re-asking its gateway every minute,
the gateway's unicast answer). When the tracker says a frame only refreshed its sender's own
settled claim (`Tracker.steady`), its bytes are remembered here; an identical frame then costs
a dict lookup and a few comparisons that prove it would again change nothing but times and
counters, and its refresh is applied later, in bulk (`Tracker.apply_repeats`).

Most first sightings are a known claim to a new target (a host asking a peer it had not asked
before, the gateway answering a new host): the sender's half of the frame, the part dpkt and
the tracker judged, is byte-identical to a remembered steady frame's. Those are checked at the
target's fixed offsets (`FastPath._claimed`) instead of being decoded again; anything that is
not certain goes the slow way. Memos are per interface and link type: the same bytes on two
interfaces are two stations' frames, and under another link type they say something else.

Exactness: the bounded tables of requests and answers are written at once, as the slow
path writes them (once one is full, its order decides what is evicted). Binding refreshes are
deferred: only the slow path reads them, so the repeats of the bindings a slow frame will read
(its sender's and its target's address) are applied before it, all of them before a
deadline (a hold ending) or an eviction, and all at least every `DEFER` seconds of packet
time. Anything a repeat could change that the fast path cannot prove unchanged (a flood or
scan window rolling over or about to alarm, a reply whose request is not on record, a state
change anywhere: `Tracker.version`) sends it down the slow path. Same events as the slow
path, frame for frame (tested on every capture we have), with one known difference: once
`max_bindings` is reached, a binding refreshed only by repeats counts as seen when its
refreshes are applied, not when they happened, so it can outlive a binding created after
its last repeat (a known host keeps talking while a flood fills the table: the flood's
first stations go first). Exact LRU would mean applying every repeat before every slow frame
(+29 % instructions on the mirror mix, measured).

The whole-frame repeats run in C when the package was built with its kernel (`_kernel.c`,
`kernel.py`): it handles each run of provable repeats with the same rules on the same
objects, and hands the first frame it cannot prove back to this loop, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import attrgetter
from types import ModuleType

from arpwatchd.addresses import BROADCAST_MAC, ZERO_MAC
from arpwatchd.batch import META, Batch
from arpwatchd.decode import ArpFrame, ArpKind
from arpwatchd.events import Event
from arpwatchd.kernel import KERNEL
from arpwatchd.senders import SenderStats
from arpwatchd.tracker import Steady, Tracker

DEFER = 300.0
"""Packet-time seconds between bulk refreshes (bounds how stale last_seen can be in the store)."""
MAX_MEMOS = 200_000
HIT_WINDOW = 4096
"""Frames over which the share of hits is judged (see `FastPath._remember_new`)."""
_FIRST = attrgetter("first")
_ANY_MAC = (ZERO_MAC, BROADCAST_MAC)
_REQUEST = b"\x00\x01"
_REPLY = b"\x00\x02"


def _other_opcode(claim: bytes, at: int) -> bytes | None:
    """The claim bytes of the same sender's replies for its requests' and back (`claim` is
    frame bytes 6 to the ARP body's 18th, so the opcode sits at `at`); None for any other
    opcode, which the slow path reports as invalid (issue 15). The sender, its MAC and IP
    are what a claim vouches for (`Tracker._note_steady` gives both opcodes the same binding
    and per-MAC statistics); the opcode only says which rules the frame meets."""
    op = claim[at : at + 2]
    if op == _REQUEST:
        other = _REPLY
    elif op == _REPLY:
        other = _REQUEST
    else:
        return None
    return claim[:at] + other + claim[at + 2 :]


def _arp_at(frame: bytes) -> int:
    """Where the ARP body starts in an untagged or 802.1Q-tagged Ethernet frame long enough
    to hold it; 0 for any other frame (QinQ, other TPIDs: the slow path decodes those)."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x06":
        return 14 if len(frame) >= 42 else 0
    if ethertype == b"\x81\x00" and frame[16:18] == b"\x08\x06":
        return 18 if len(frame) >= 46 else 0
    return 0


def _nothing(frame: bytes) -> None:
    return None


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
        self._memos: dict[tuple[str, int], dict[bytes, Steady]] = {}
        """Per interface and link type: the same bytes on two interfaces are two stations'
        frames, and under another link type (one name, two replayed files) other fields."""
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
        self.claimed = 0
        """First sightings handled by their known claim (`_claimed`), among the hits."""
        self._frames = self._hits = 0
        self._remember_new = True
        """Whether new stations' first frames are remembered (not while frames rarely hit)."""
        self.enabled = True
        """False sends every frame down the slow path (to compare the two)."""
        self.kernel: ModuleType | None = KERNEL
        """The C kernel proving whole-frame repeats; None runs the same rules in Python."""
        self._kernel_hits = [0, 0]

    def run(
        self,
        batch: Batch,
        slow: Callable[[float, bytes], bool],
        events: list[Event],
        interface: str = "",
        ethernet: bool = False,
        linktype: int = 1,
    ) -> None:
        """Feeds a batch of frames of `linktype`; `slow(ts, frame)` handles a frame the fast
        path cannot, returning True when the tracker marked it steady (it is then remembered).
        With `ethernet` (the Ethernet link type), a first sighting that repeats a known steady
        claim to a new target is handled here too, without dpkt (`_claimed`)."""
        if not self.enabled:
            for ts, frame in batch.frames():
                slow(ts, frame)
            return
        data = batch.data
        tracker = self.tracker
        policy = tracker.policy
        flood_window, flood_frames = policy.flood_window, policy.flood_frames
        scan_window, scan_targets = policy.scan_window, policy.scan_targets
        solicit = policy.solicit_window
        asked = tracker.asked_times
        note_asked = tracker.note_asked
        asked_pop = asked.pop
        answers = tracker.answers
        answers_pop = answers.pop
        note_answer = tracker.note_answer
        table = (interface, linktype)
        memo = self._memos.setdefault(table, {})
        memo_get: Callable[[bytes], Steady | None] = memo.get
        claims = self._claims.setdefault(table, {})
        # under a flood of new stations (few hits) no first sighting repeats a known claim:
        # looking for one would only cost
        judge_claims = ethernet and self._remember_new
        claims_get = claims.get if judge_claims else None
        pending = self._pending
        pending_get = pending.get
        last_seen = tracker.last_seen
        inactive = policy.inactive_after
        horizon = self._horizon()
        requests = replies = 0
        records: Iterator[tuple[int, int, int, int]] = META.iter_unpack(batch.meta)
        # under a flood of new stations (few hits) each frame would cross into the kernel
        # only to come back: the crossing costs more than the Python loop's memo miss
        kernel = self.kernel if self._remember_new else None
        if kernel is not None:
            # the kernel hands back only what it cannot prove: straight to the slow path
            records = self._unproven(kernel, batch, self.kernel_context(table, judge_claims))
            memo_get = _nothing
            claims_get = None
        for sec, usec, offset, length in records:
            frame = data[offset : offset + length]
            ts = sec + usec * 1e-6
            s = memo_get(frame)
            fresh = False
            if s is None and claims_get is not None and (at := _arp_at(frame)):
                claim_bytes = frame[6 : at + 18]
                if (claim := claims_get(claim_bytes)) is not None:
                    s = self._claimed(frame, at, claim, claim.is_request)
                    fresh = True
                # the same sender's claim with the other opcode will do
                elif (other := _other_opcode(claim_bytes, at)) is not None and (
                    claim := claims_get(other)
                ) is not None:
                    s = self._claimed(frame, at, claim, not claim.is_request)
                    fresh = True
            if (
                s is not None
                and ts < horizon
                # a repeat after `inactive_after` of silence reports new activity: the slow
                # path's to do (no such gap fits inside one pending record: `_horizon`)
                and ((waiting := pending_get(s.key)) is not None
                     or ts - last_seen(s.key) < inactive)
            ):
                st = s.stats
                if s.is_request:
                    # the windows of Senders.count_frame / count_target, rolled the same way
                    if ts - st.flood_start >= flood_window:
                        if st.flood_count + st.pending <= flood_frames:
                            st.flooding = False
                        st.flood_start = ts
                        st.flood_count = st.pending = 0
                    targets = st.scan_targets
                    if targets is None or ts - st.scan_start >= scan_window:
                        if targets is not None and len(targets) <= scan_targets:
                            st.scanning = False
                        st.scan_start = ts
                        targets = st.scan_targets = set()
                    # a MAC already reported in this window cannot alarm again in it (a busy
                    # gateway), so only the frame that would raise an alarm goes the slow way
                    size = len(targets)
                    if (st.flooding or st.flood_count + st.pending < flood_frames) and (
                        s.target in targets or size != scan_targets or st.scanning
                    ):
                        if size <= scan_targets:
                            targets.add(s.target)
                        # as `Recent.note`: a refreshed request moves to the end of the
                        # table, so a full table evicts the least recently asked (a key
                        # evicted meanwhile comes back under the table's own cap)
                        if asked_pop(s.asked, None) is None:
                            note_asked(s.asked, ts)
                        else:
                            asked[s.asked] = ts
                        if asked_pop(s.asked_any, None) is None:
                            note_asked(s.asked_any, ts)
                        else:
                            asked[s.asked_any] = ts
                        st.pending += 1
                        requests += 1
                    else:
                        s = None
                else:
                    asked_at = asked.get(s.asked)
                    if asked_at is not None and ts - asked_at <= solicit:
                        # remembered at once, as the slow path does: once the table is full,
                        # its order decides which answers a racing answer still finds
                        if answers_pop(s.key, None) is None:
                            note_answer(s.key, s.sha, s.tha, ts)
                        else:
                            answers[s.key] = (s.sha, s.tha, ts)
                        replies += 1
                    else:
                        s = None
                if s is not None:  # a repeat: its refresh waits for the next flush
                    if fresh:
                        self._remember(memo, frame, s)
                        self._remember_claim(claims, claim_bytes, s)
                        self.claimed += 1
                    if waiting is None:
                        waiting = pending[s.key] = Pending(s.key, s.dom, ts)
                    elif ts > waiting.last:  # merged captures can step back: never last_seen
                        waiting.last = ts
                    continue
            if pending and ts >= horizon:
                self.flush()
            if (
                slow(ts, frame)
                and tracker.steady is not None
                and (self._remember_new or not tracker.steady_created)
            ):
                self._remember(memo, frame, tracker.steady)
                if judge_claims and (at := _arp_at(frame)):
                    self._remember_claim(claims, frame[6 : at + 18], tracker.steady)
            if tracker.version != self._version:
                self._invalidate()
            if self._flushed_at is None:  # the DEFER and inactive_after clocks start here
                self._flushed_at = ts
            horizon = self._horizon()
        if kernel is not None:
            requests += self._kernel_hits[0]
            replies += self._kernel_hits[1]
            self._kernel_hits = [0, 0]
        self.request_hits += requests
        self.reply_hits += replies
        self._frames += len(batch)
        self._hits += requests + replies
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
        memo = self._memos.setdefault(table, {})
        known = self._claims.setdefault(table, {})

        def claimed(frame: bytes, claim: bytes, steady: Steady) -> None:
            self._remember(memo, frame, steady)
            self._remember_claim(known, claim, steady)
            self.claimed += 1

        return (memo, self._pending, Pending, tracker.last_seen,
                tracker.asked_times, tracker.note_asked, tracker.answers, tracker.note_answer,
                policy.flood_window, policy.flood_frames, policy.scan_window,
                policy.scan_targets, policy.solicit_window, policy.inactive_after, Steady,
                SenderStats, known if claims else None, Steady.request, Steady.reply,
                tracker.answers_owner, claimed)

    def _unproven(
        self, kernel: ModuleType, batch: Batch, context: tuple[object, ...]
    ) -> Iterator[tuple[int, int, int, int]]:
        """The records of the frames the C kernel leaves to `run`, in order: it handles every
        whole-frame repeat it can prove up to the next one, with `run`'s rules, and leaves
        that frame untouched. Resumed after `run` handled it, so the horizon is current."""
        repeats = kernel.repeats
        data, meta = batch.data, batch.meta
        hits = self._kernel_hits
        i, n = 0, len(batch)
        while i < n:
            i, requests, replies = repeats(context, data, meta, i, self._horizon())
            hits[0] += requests
            hits[1] += replies
            if i < n:
                yield META.unpack_from(meta, i * META.size)
                i += 1

    def _claimed(self, frame: bytes, at: int, claim: Steady, request: bool) -> Steady | None:
        """The `Steady` the tracker would give `frame`, a first sighting of a known steady
        claim (same sender, MAC, IP and VLAN tag, either opcode) to another target, when that is
        certain without decoding it; None sends it down the slow path.

        The sender's half (`request`: its opcode) was decoded and judged when `claim` was;
        only the target's half is new, at fixed offsets from the ARP body at `at` (the lengths
        are in the claim bytes).
        What the tracker does with a target: announcements (sender IP = target IP) and
        answers to probes are never steady; a reply's target must be the owner of its address
        (`Tracker.answers_owner`), and a reply to the broadcast or zero MAC is never
        remembered (`Tracker._note_steady`).
        """
        tha = frame[at + 18 : at + 24]
        tpa = int.from_bytes(frame[at + 24 : at + 28], "big")
        dom = claim.dom
        spa = claim.key & 0xFFFFFFFF
        sha = claim.sha
        if spa == tpa and (tha in _ANY_MAC or tha == sha):
            return None
        if request:
            return Steady.request(dom, spa, claim.stats, sha, tha, tpa)
        if tpa == 0 or tha in _ANY_MAC:
            return None
        if tpa != spa and not tha[0] & 1 and not self.tracker.answers_owner(dom << 32 | tpa, tha):
            return None
        return Steady.reply(dom, spa, claim.stats, sha, tha, tpa)

    def _remember(self, memo: dict[bytes, Steady], frame: bytes, steady: Steady) -> None:
        if self._size >= MAX_MEMOS:
            self._forget_all()
        self._size += 1
        memo[frame] = steady
        by_key = self._by_key
        if (frames := by_key.get(steady.key)) is None:
            by_key[steady.key] = [frame]
        else:
            frames.append(frame)
        if steady.depends != steady.key:
            by_key.setdefault(steady.depends, []).append(frame)

    def _remember_claim(self, claims: dict[bytes, Steady], claim: bytes, steady: Steady) -> None:
        """Remembers `steady` as the judged sender's half `claim` (frame bytes 6 to the ARP
        body's 18th) of an interface's frames, unless that claim is remembered already."""
        if claim not in claims:
            claims[claim] = steady
            self._by_key[steady.key].append(claim)

    def _invalidate(self) -> None:
        """Forgets the frames and claims whose bindings changed since the last look."""
        tracker = self.tracker
        self._version = tracker.version
        changed = tracker.restructured
        tracker.restructured = set()
        if changed is None:
            self._forget_all()
            return
        tables = (*self._memos.values(), *self._claims.values())  # one per interface
        by_key = self._by_key
        for key in changed:
            for raw in by_key.pop(key, ()):
                for table in tables:
                    table.pop(raw, None)

    def _forget_all(self) -> None:
        for table in (*self._memos.values(), *self._claims.values()):
            table.clear()
        self._by_key.clear()
        self._size = 0

    def _horizon(self) -> float:
        """Packet time at which pending repeats must be applied: a hold or conflict ending,
        DEFER passed, or `inactive_after` (so no silence that long hides in one record)."""
        deadline = self.tracker.horizon
        if self._flushed_at is not None:
            period = min(DEFER, self.tracker.policy.inactive_after)
            deadline = min(deadline, self._flushed_at + period)
        return deadline

    def before_slow(self, frame: ArpFrame) -> None:
        """Applies the repeats a slow frame's processing will read: those of its sender's
        address, and of its target's when it is a reply or a probe (a request never reads the
        binding it asks for), or all of them when the tracker may evict (LRU order)."""
        pending = self._pending
        if not pending:
            return
        tracker = self.tracker
        if tracker.full:
            self.flush()
            return
        reads_target = frame.op != 1 or frame.kind is ArpKind.PROBE
        for ip in (frame.spa, frame.tpa) if reads_target else (frame.spa,):
            waiting = pending.pop(tracker.key_of(frame.interface, frame.vlan, ip), None)
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
