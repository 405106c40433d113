"""The I/O shell around the pure core: frames in, events out, state stored, per batch.

Live capture and replay both drive a `Sensor` with batches and ticks; only where the
batches and the clock come from differs (see `daemon`). No ARP logic lives here.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

from arpwatchd.addresses import ip6_value
from arpwatchd.batch import Batch
from arpwatchd.config import Config
from arpwatchd.decode import DLT_EN10MB, ArpFrame, ArpKind, Decoder, SkipReason
from arpwatchd.defend import Defender, Send
from arpwatchd.errors import OutputError, StoreError
from arpwatchd.events import Event, EventKind, EventLimiter
from arpwatchd.fastpath import FastPath
from arpwatchd.output import EventWriter
from arpwatchd.senders import trim_oldest
from arpwatchd.sinks import open_sinks
from arpwatchd.stats import SensorStats
from arpwatchd.suppress import Suppressor
from arpwatchd.tracker import Tracker

if TYPE_CHECKING:
    from ipaddress import IPv6Address

    from arpwatchd.store import Store  # sqlite3: the caller opens a store only when asked

log = logging.getLogger("arpwatchd")

MAX_PENDING_EVENTS = 100_000
"""Events kept for the history while the store cannot be written. Changed bindings need no
such cap: the tracker keeps them marked until a write succeeds (`Tracker.changes`)."""
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
STORE_ROWS = 65536
"""Refreshed bindings gathered before a store write between clock ticks (new, moved,
unsettled or removed ones are written with the batch that changed them)."""
STORE_CHUNK = 262_144
"""Rows per transaction when a backlog is written (memory for the rows built at once)."""
COMPACT_AT = 65_536
"""Journal records past which an idle clock tick folds into the bindings table, and how many
at a time (`Store.compact`; the rows built for a fold are transient memory)."""
JOURNAL_MAX = 1_048_576
"""Journal records past which every clock tick, idle or not, folds some, and so does every
write (a replay has no ticks), so a long flood cannot grow the state file without bound."""
WRITE_FOLD = 16_384
"""Journal records a write folds past JOURNAL_MAX: a write adds about a thousand under a flood,
so this keeps up, and the fold's rows (transient, ~450 bytes each) stay a few MiB: 65,536 at a
time made a capped flood's RSS step up by 30 MiB once the journal reached JOURNAL_MAX."""
OWN_FRAMES_KEPT = 1024
_DEFENSE_FRAME = {"ipv4": "ARP announcement", "ipv6": "neighbour advertisement"}
"""What defends an address of each family, for the log."""
_REPEATABLE_NDP = frozenset({"solicitation", "solicited_advertisement"})
"""NDP kinds whose repeats the kernel may prove (`Tracker._observe6`)."""
_KIND_FAMILY = itemgetter(1, 13)
"""An `Event`'s kind and family (its second and last fields)."""


class Sensor:
    def __init__(
        self,
        config: Config,
        writer: EventWriter,
        store: Store | None = None,
        stats: SensorStats | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock` (monotonic seconds) paces store retries; without one a failed store is
        retried only at clock ticks and at the end."""
        self.config = config
        self.tracker = Tracker(config.policy)
        self.fastpath = FastPath(self.tracker)
        self.limiter = EventLimiter(config.output.events_per_window, config.output.event_window)
        self.suppressor = Suppressor(config.suppress)
        self._gate()
        self.writer = writer
        self.store = store
        self.stats = stats or SensorStats()
        self.stats.outputs = writer.counters
        self.defender: Defender | None = None
        self._own_frames: dict[bytes, None] = {}
        self._pending_events: list[Event] = []
        self._clock = clock
        self._retry_at = 0.0
        self._retry_wait = RETRY_FIRST
        self._dropped_unlogged = 0
        self.events_dropped = 0
        self.store_error: str | None = None
        """Why the last store write failed; None once one succeeds."""
        self._seen_errors: set[str] = set()
        self._fed = False
        """Frames arrived since the last clock tick (a tick without is idle time)."""
        self.emitted: list[Event] | None = None
        """When a list, every emitted event is also appended to it (tests, benchmarks)."""

    def restore(self) -> int:
        """Loads bindings from the store silently; returns how many."""
        if self.store is None:
            return 0
        self._compact_small()
        records = self.store.load_bindings()
        self.tracker.restore(records)
        self._publish()
        return len(records)

    def reconfigure(self, config: Config) -> None:
        """Applies a reloaded config between batches; bindings and holds are kept, and new
        syslog or hook settings take over from the old sinks."""
        old = self.config.output
        if (config.output.syslog, config.output.hook) != (old.syslog, old.hook):
            self.writer.replace_sinks(open_sinks(config.output))
        self.config = config
        self.flush()
        self.tracker.reconfigure(config.policy)
        self.limiter.limit = config.output.events_per_window
        self.limiter.window = config.output.event_window
        self.suppressor = Suppressor(config.suppress)
        self._gate()
        if self.defender is not None:
            self.defender.reconfigure(config.defense)

    def _gate(self) -> None:
        """Lets the tracker ask the limiter before building an event, when every event it
        makes meets the limiter in order: suppression rules come first and read addresses."""
        self.tracker.gate = None if self.suppressor.rules else self.limiter

    def decoder(self, interface: str, linktype: int) -> Decoder:
        decoder = Decoder(interface, linktype)
        if not decoder.supported:
            log.warning("%s: link type %d is not supported (Ethernet, Linux cooked v1/v2 are); "
                        "its frames are counted and skipped", interface, linktype)
        self.stats.capture(interface)
        return decoder

    def feed(self, decoder: Decoder, batch: Batch) -> None:
        """Decodes and tracks every frame of a batch, then emits and stores once.

        Repeats of known steady frames go through the fast path (`fastpath`); the rest are
        decoded (dpkt) and tracked one by one here.
        """
        observe = self.tracker.observe
        decode = decoder.decode_cached
        ndp = self._ndp
        defender = self.defender if self.defender and self.defender.active else None
        own = self._own_frames
        own_macs = self.config.policy.own_macs
        fast = self.fastpath
        events: list[Event] = []
        kinds: dict[str, int] = {}
        skipped: dict[str, int] = {}

        def slow(ts: float, frame: bytes) -> bool:
            try:
                if own and frame in own:  # our own defense frame coming back: never react
                    skipped["own_frame"] = skipped.get("own_frame", 0) + 1
                    return False
                result = decode(frame)
                if not isinstance(result, ArpFrame):
                    if result is SkipReason.NOT_ARP:  # IPv6 neighbour discovery?
                        return ndp(frame, ts, decoder, events, skipped)
                    skipped[result] = skipped.get(result, 0) + 1
                    return False
                if own_macs and result.eth_src in own_macs and self._is_defense(result):
                    skipped["own_frame"] = skipped.get("own_frame", 0) + 1
                    return False
                kinds[result.kind] = kinds.get(result.kind, 0) + 1
                if result.problem is not None:  # invalid ARP: also counted by reason
                    skipped[result.problem] = skipped.get(result.problem, 0) + 1
                fast.before_slow(result)
                found = observe(result, ts)
                if found:
                    events.extend(found)
                if defender is not None:
                    events.extend(defender.observe(result, ts))
                return True
            except Exception:  # a bug must not stop the sensor; report each distinct one once
                self._frame_error(frame)
                return False

        requests, replies = fast.request_hits, fast.reply_hits
        solicitations, advertisements = fast.solicitation_hits, fast.advertisement_hits
        try:
            # a defender must see every first sighting, so no frame skips dpkt by its claim
            fast.run(batch, slow, events, decoder.interface,
                     ethernet=decoder.linktype == DLT_EN10MB and defender is None,
                     linktype=decoder.linktype)
        except Exception:
            self._frame_error(b"")
        kinds[ArpKind.REQUEST] = kinds.get(ArpKind.REQUEST, 0) + fast.request_hits - requests
        kinds[ArpKind.REPLY] = kinds.get(ArpKind.REPLY, 0) + fast.reply_hits - replies
        interface = decoder.interface
        self._fed = True
        with self.stats.lock:
            for kind, n in kinds.items():
                if n:
                    self.stats.packets[(interface, kind)] += n
            for reason, n in skipped.items():
                self.stats.skipped[(interface, reason)] += n
            # NDP repeats the kernel proved (an NS, a solicited NA: `Tracker._observe6`)
            if fast.solicitation_hits != solicitations:
                self.stats.ndp_packets[(interface, "solicitation")] += (
                    fast.solicitation_hits - solicitations)
            if fast.advertisement_hits != advertisements:
                self.stats.ndp_packets[(interface, "solicited_advertisement")] += (
                    fast.advertisement_hits - advertisements)
            if any(kinds.values()):
                self.stats.capture(interface).last_arp = batch.last_ts()
        self._emit(events)

    def _ndp(self, frame: bytes, ts: float, decoder: Decoder, events: list[Event],
             skipped: dict[str, int]) -> bool:
        """An IPv6 frame (EtherType 0x86DD after the VLAN walk, `decode_ndp`) to the tracker's
        IPv6 rules and, when it defends addresses, to the defender (a claim of a defended
        IPv6 address is answered with an NA, docs/defense.md); anything else is skipped by
        reason. True when the fast path may remember it: an NS or a solicited NA, which the
        tracker judges as the ARP frame it stands for (`Tracker._observe6`: only those leave
        a steady verdict, so no other NDP frame is remembered with the last ARP one's)."""
        # imported here: a sensor that never sees IPv6 never pays for the module (start-up)
        from arpwatchd.ndp import NdpFrame, NdpInvalid, decode_ndp  # noqa: PLC0415

        result = decode_ndp(frame, decoder.interface, decoder.linktype)
        if isinstance(result, NdpInvalid):
            skipped[result.problem] = skipped.get(result.problem, 0) + 1
        elif not isinstance(result, NdpFrame):
            skipped[result] = skipped.get(result, 0) + 1
            return False
        read: tuple[IPv6Address | None, ...] = (result.src,)
        if isinstance(result, NdpFrame):
            claim = result.claim
            read = (result.src, result.dst, result.target, claim[0] if claim else None)
        self.fastpath.before_reading(decoder.interface, result.vlan,
                                     [ip6_value(a) for a in read if a is not None])
        found = self.tracker.observe_ndp(result, ts)
        if found:
            events.extend(found)
        defender = self.defender
        if defender is not None and defender.active and isinstance(result, NdpFrame):
            events.extend(defender.observe_ndp(result, ts))
        with self.stats.lock:
            kind = "invalid" if isinstance(result, NdpInvalid) else result.kind.value
            self.stats.ndp_packets[(decoder.interface, kind)] += 1
        return kind in _REPEATABLE_NDP

    def _is_defense(self, frame: ArpFrame) -> bool:
        """An announcement of a defended address by its owner, sent from the sensor's NIC: the
        sensor's own defense (recognised by bytes live, by this rule in a replay)."""
        if frame.kind is not ArpKind.ANNOUNCEMENT:
            return False
        return any(a.ip == frame.spa and a.mac == frame.sha
                   for a in self.config.defense.addresses)

    def defense_due(self, now: float) -> list[Send]:
        """Defense frames to send now (the caller sends them, then calls `defense_done`)."""
        if self.defender is None:
            return []
        return self.defender.due(now)

    def defense_done(self, sent: list[Send], failed: list[tuple[Send, str]],
                     dry_run: bool = False) -> None:
        events = []
        for send in sent:
            if dry_run:
                log.warning("dry run: would send on %s (%s %s): %s", send.interface,
                            _DEFENSE_FRAME[send.event.family], send.event.ip, send.frame.hex())
                events.append(send.event._replace(reason="dry_run"))
                continue
            self._own_frames[send.frame] = None
            if len(self._own_frames) > OWN_FRAMES_KEPT:
                trim_oldest(self._own_frames, OWN_FRAMES_KEPT)
            events.append(send.event)
            where = (send.interface, send.event.family)
            with self.stats.lock:
                self.stats.defense_sent[where] += 1
                if send.event.reason == "last_word":
                    self.stats.defense_last_word[where] += 1
        for send, reason in failed:
            self._once(reason)
            with self.stats.lock:
                self.stats.defense_send_errors[(send.interface, send.event.family)] += 1
        self._emit(events)

    def tick(self, now: float) -> None:
        if self.fastpath.due(now):
            self.fastpath.flush()
        events = self.tracker.tick(now)
        events.extend(self.limiter.flush(now))
        clock = now != float("inf")  # not the end of a replay (`finish`)
        self._emit(events, store_now=clock)
        if clock and self.store is not None and self.store_error is None and (
                self.store.journal_records > (COMPACT_AT if not self._fed else JOURNAL_MAX)):
            self._compact()
        self._fed = False

    def finish(self) -> None:
        """End of a replay: every hold and conflict runs to its end, as if silence followed."""
        self.tick(float("inf"))
        self.flush()

    def flush(self) -> None:
        """Applies pending repeats and writes the store (a replay's end, a clean stop)."""
        self.fastpath.flush()
        self._emit([])
        self._write_store([], final=True)
        self._compact_small()

    def _compact_small(self) -> None:
        """At start and stop: a small journal is folded now, a flood's in idle time (folding
        a million records takes seconds)."""
        if (self.store is not None and self.store_error is None
                and 0 < self.store.journal_records <= STORE_CHUNK):
            self._compact(STORE_CHUNK)

    def _compact(self, budget: int = COMPACT_AT) -> None:
        """Folds about `budget` journal records into the bindings table; a failure costs
        nothing (the journal keeps them) and is logged once."""
        assert self.store is not None
        try:
            self.store.compact(budget)
        except StoreError as exc:
            self._once(str(exc))

    def _emit(self, events: list[Event], store_now: bool = False) -> None:
        if events:
            # a flood's events are of one or two kinds and one family
            counted = Counter(map(_KIND_FAMILY, events))
            kinds = {kind for kind, _ in counted}
            with self.stats.lock:
                for (kind, family), n in counted.items():
                    self.stats.events[(kind.value, kind.severity.value, family)] += n
                if EventKind.FAILOVER in kinds or EventKind.DEFENSE_FAILED in kinds:
                    for event in events:
                        if event.kind is EventKind.FAILOVER:
                            self.stats.failovers[(event.interface, str(event.vlan or ""))] += 1
                        elif event.kind is EventKind.DEFENSE_FAILED:
                            self.stats.defense_failures[(event.interface, event.family)] += 1
            events, silenced = self.suppressor.split(events)
            if silenced:
                with self.stats.lock:
                    for event in silenced:
                        self.stats.suppressed[(event.kind.value, "rule")] += 1
            events = self.limiter.filter(events)
            if self.limiter.dropped_now:
                with self.stats.lock:
                    for kind, n in self.limiter.dropped_now.items():
                        self.stats.suppressed[(kind.value, "rate_limit")] += n
            try:
                self.writer.write(events)
            except OutputError as exc:
                self._once(str(exc))
            if self.emitted is not None:
                self.emitted.extend(events)
        self._write_store(events, now=store_now)
        self._publish()

    def _write_store(self, events: list[Event], now: bool = False, final: bool = False) -> None:
        """Stores changed bindings and events: one journal entry for each batch that made,
        moved, unsettled or dropped a binding or has events (a crash loses at most the batch
        in hand); mere refreshes wait for STORE_ROWS, a clock tick or the end. After a
        failure, retries wait for the backoff (but the final write is always tried)."""
        if self.store is None:
            self.tracker.drop_changes()
            return
        self._queue_events(events)
        if self.store_error is not None and not final and not (
                now if self._clock is None else self._clock() >= self._retry_at):
            return
        every = (final or now or self.store_error is not None
                 or self.tracker.changed_count >= STORE_ROWS)
        if not every and not self._pending_events and not self.tracker.unrefreshed_count:
            return
        self._log_dropped()
        stored = 0
        while True:  # in chunks: a backlog's retry costs one chunk until the disk has room
            changes = self.tracker.changes(STORE_CHUNK, refreshed=every)
            if not (changes.changed_keys or changes.removed_keys or changes.replace
                    or self._pending_events):
                break
            try:
                self.store.write(changes.upserts, changes.removed, self._pending_events,
                                 replace=changes.replace)
            except StoreError as exc:
                self._store_failed(str(exc), self.tracker.changed_count)
                return
            self.tracker.changes_stored(changes)
            self._pending_events.clear()
            stored += len(changes.upserts) + len(changes.removed)
            with self.stats.lock:
                self.stats.store_writes += 1
        if self.store.journal_records > JOURNAL_MAX and not now:  # ticks fold their own
            self._compact(WRITE_FOLD)
        if self.store_error is not None:
            log.warning("%s: state store writable again; the %d changes that waited are "
                        "stored", self.store.path, stored)
            self.store_error = None
            self._retry_wait = RETRY_FIRST

    def _queue_events(self, events: list[Event]) -> None:
        """Keeps events for the store's history, at most MAX_PENDING_EVENTS (the oldest go
        first, as the store's own pruning does); each one dropped is counted and logged."""
        pending = self._pending_events
        pending.extend(events)
        over = len(pending) - MAX_PENDING_EVENTS
        if over > 0:
            del pending[:over]
            self._dropped_unlogged += over
            self.events_dropped += over
            with self.stats.lock:
                self.stats.store_events_dropped += over

    def _log_dropped(self) -> None:
        if self._dropped_unlogged:
            log.error("%s: %d events dropped from the history waiting for the store (%d in "
                      "all); the events output has them", self.store.path if self.store else "",
                      self._dropped_unlogged, self.events_dropped)
            self._dropped_unlogged = 0

    def _store_failed(self, error: str, changes: int) -> None:
        with self.stats.lock:
            self.stats.store_write_errors += 1
        if self.store_error is None:
            log.error("%s; keeping %d changes and %d events in memory and retrying, first in "
                      "%g s", error, changes, len(self._pending_events), self._retry_wait)
        else:
            log.debug("%s; retrying in %g s", error, self._retry_wait)
        self.store_error = error
        self._retry_at = (self._clock() if self._clock else 0.0) + self._retry_wait
        self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)

    def unstored(self) -> str:
        """What the store lacks after a failed final write, for the exit message."""
        text = (f"{self.tracker.changed_count} binding changes and "
                f"{len(self._pending_events)} events are not stored")
        if self.events_dropped:
            text += f" ({self.events_dropped} more events were dropped)"
        return text

    def _publish(self) -> None:
        snapshot = self.tracker.snapshot(self.config.metrics.max_conflict_series)
        self.stats.tracker = snapshot

    def _frame_error(self, frame: bytes) -> None:
        with self.stats.lock:
            self.stats.frame_errors += 1
        text = traceback.format_exc()
        if text not in self._seen_errors and len(self._seen_errors) < 100:
            self._seen_errors.add(text)
            log.error("internal error on a frame (%s); skipped it and carrying on:\n%s",
                      frame[:64].hex(), text)

    def _once(self, message: str) -> None:
        if message not in self._seen_errors:
            self._seen_errors.add(message)
            log.error("%s", message)
