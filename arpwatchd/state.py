"""What the tracker keeps per address: bindings, unsettled (hold or conflict) records, the
values it hands to the store and the metrics, and the small pure rules about them.

Kept apart from `tracker` so that module holds only the state machine's transitions.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Protocol

from arpwatchd.addresses import ZERO_MAC, VirtualRouter, virtual_router
from arpwatchd.events import ConflictReason
from arpwatchd.senders import SenderStats

INF = float("inf")
MAX_PREVIOUS = 4
MAX_CONFLICT_MEMBERS = 4


new_tuple = tuple.__new__
"""Builds a NamedTuple from a tuple of all its fields in C; its own __new__ is Python code,
and a binding is rebuilt at every refresh, a record at every store write."""


class Binding(NamedTuple):
    """A binding as the tracker's rules read it (unpacked from its table entry, `pack_binding`)."""

    mac: bytes
    first_seen: float
    last_seen: float
    previous: tuple[bytes, ...] = ()


_PACKED = struct.Struct("=6sdd")
"""A binding as the tracker's table keeps it: MAC, first and last seen, then the previous
owners' MACs back to back. One bytes object of 56 bytes instead of a tuple, a MAC and a float
(136 bytes, DESIGN.md section 8): a flood's million bindings cost 76 MiB less, and no object
of the table is ever tracked by the cyclic GC."""
PACKED_SIZE = _PACKED.size
_DOUBLE = struct.Struct("=d")
_LAST_AT = 14
"""Offset of last_seen in a packed binding."""


def pack_binding(mac: bytes, first_seen: float, last_seen: float,
                 previous: tuple[bytes, ...] = ()) -> bytes:
    raw = _PACKED.pack(mac, first_seen, last_seen)
    return raw + b"".join(previous) if previous else raw


def unpack_binding(raw: bytes) -> Binding:
    mac, first_seen, last_seen = _PACKED.unpack_from(raw)
    previous = (tuple(raw[i : i + 6] for i in range(PACKED_SIZE, len(raw), 6))
                if len(raw) > PACKED_SIZE else ())
    return new_tuple(Binding, (mac, first_seen, last_seen, previous))


def packed_last_seen(raw: bytes) -> float:
    return _DOUBLE.unpack_from(raw, _LAST_AT)[0]  # type: ignore[no-any-return]


def packed_refresh(raw: bytes, last_seen: float) -> bytes:
    """`raw` with its last_seen set to `last_seen`."""
    return raw[:_LAST_AT] + _DOUBLE.pack(last_seen) + raw[PACKED_SIZE:]


class Steady:
    """What a frame that only refreshed its own claim touched, so that an identical frame can
    repeat the refresh without the slow path (`fastpath`). Valid while `Tracker.version`
    is unchanged. Slotted, not a NamedTuple: the fast path reads its fields for every repeat
    (a slot read is specialised by the interpreter, a NamedTuple field is a descriptor call)."""

    __slots__ = ("asked", "asked_any", "depends", "dom", "is_request", "key", "sha", "stats",
                 "target", "tha")

    def __init__(self, key: int, dom: int, stats: SenderStats, asked: bytes, target: int,
                 is_request: bool, depends: int, asked_any: bytes, tha: bytes,
                 sha: bytes) -> None:
        stats.share()  # the fast path reads and rolls its scan window
        self.key = key
        self.dom = dom
        self.stats = stats
        self.asked = asked
        """Request: the `ask_key(dom, tpa, sha)` it asks under. Reply: `ask_key(dom, spa, tha)`,
        the request that solicits it. Bytes, so the dict lookups reuse a cached hash."""
        self.target = target
        self.is_request = is_request
        self.depends = depends
        """The other binding whose state the outcome relied on (a reply's target), else
        `key`."""
        self.asked_any = asked_any
        """Request: `ask_key(dom, tpa)`, "someone asked for tpa"."""
        self.tha = tha
        self.sha = sha
        """The sender's MAC, the owner of its binding."""

    @classmethod
    def request(cls, dom: int, spa: int, stats: SenderStats, sha: bytes, tha: bytes,
                tpa: int) -> Steady:
        key = dom << 32 | spa
        anyone = ask_key(dom, tpa)
        return cls(key, dom, stats, anyone + sha, tpa, True, key, anyone, tha, sha)

    @classmethod
    def reply(cls, dom: int, spa: int, stats: SenderStats, sha: bytes, tha: bytes,
              tpa: int) -> Steady:
        anyone = ask_key(dom, spa)
        return cls(dom << 32 | spa, dom, stats, anyone + tha, tpa, False, dom << 32 | tpa,
                   anyone, tha, sha)


class RepeatRecord(Protocol):
    """Repeats of one binding's steady frames (`fastpath.Pending`)."""

    key: int
    dom: int
    first: float
    last: float


class Phase(Enum):
    HOLD = "hold"
    CONFLICT = "conflict"


class Takeover(Enum):
    ANNOUNCED = "announced"
    GROUP = "group"
    PLAIN = "plain"


class Unsettled:
    __slots__ = (
        "announced_at",
        "announced_move",
        "claims",
        "deadline",
        "failback",
        "gap",
        "macs",
        "members",
        "old_last",
        "old_mac",
        "pending",
        "pending_reason",
        "phase",
        "reason",
        "reused",
        "since",
        "suspect",
        "takeover",
    )

    def __init__(self, phase: Phase, since: float, deadline: float) -> None:
        self.phase = phase
        self.since = since
        self.deadline = deadline
        self.old_mac = ZERO_MAC
        self.old_last = since
        self.gap = 0.0
        self.takeover = Takeover.PLAIN
        self.announced_at: float | None = None
        self.announced_move = False
        """The hold began with an announcement (a takeover or a failback): the displaced
        side's stack may still answer requests for a moment while it demotes itself."""
        self.failback = False
        """The hold began with the old owner announcing the address back: a claim by the
        displaced MAC (`old_mac`) is then proof that both are alive (owner_defended)."""
        self.pending: float | None = None
        """When the displaced side answered a request inside a hold begun by an announcement:
        the conflict waits `demotion_grace` for that side's own announcement (a failback)."""
        self.pending_reason = ConflictReason.BOTH_ACTIVE
        self.reused = False
        self.members: dict[bytes, float] = {}
        self.macs = (ZERO_MAC, ZERO_MAC)
        """A conflict's (mac, previous_mac) as its `conflict` event named them: fixed for its
        life, so the metric series (and the alert keyed on its labels) stays one."""
        self.reason = ConflictReason.BOTH_ACTIVE
        self.suspect: bytes | None = None
        self.claims = 0


class BindingRecord(NamedTuple):
    """A binding as the store keeps it (a NamedTuple: built for every changed binding)."""

    interface: str
    vlan: int | None
    ip: int
    mac: bytes
    first_seen: float
    last_seen: float
    previous: tuple[bytes, ...] = ()
    state: str = "ok"


class StoreChanges(NamedTuple):
    """What one store transaction must write: `replace` means the bindings table is to hold
    exactly `upserts` (removals too many to list)."""

    upserts: list[BindingRecord]
    removed: list[tuple[str, int | None, int]]
    replace: bool
    changed_keys: Sequence[int] = ()
    removed_keys: Sequence[int] = ()
    """The tracker's own keys of these rows, for `Tracker.changes_stored`."""


class ActiveConflict(NamedTuple):
    """One active conflict as the metrics show it; `mac` and `previous_mac` are those of its
    `conflict` event (the MAC whose claim revealed it, and the other one)."""

    interface: str
    vlan: int | None
    ip: str
    mac: str
    previous_mac: str


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """An immutable snapshot for the metrics thread; never a view of live dicts."""

    bindings: dict[tuple[str, int | None], int]
    active_conflicts: tuple[ActiveConflict, ...]
    conflicts_active_total: int
    holds_active: int
    bindings_evicted: int
    senders_tracked: int


_ASK = struct.Struct("!IIc")


def ask_key(dom: int, ip: int, asker: bytes = b"", announced: bool = False) -> bytes:
    """Key of the request memory: who asked for which address (bytes: their hash is cached).
    `ask_key(dom, ip, asker)` is `ask_key(dom, ip) + asker` (`Steady` builds both so)."""
    try:
        return _ASK.pack(dom, ip, b"A" if announced else b"Q") + asker
    except struct.error:  # IPv6 (addresses.V6; no cost to IPv4 while nothing is raised)
        return (dom.to_bytes(4, "big") + ip.to_bytes(26, "big")
                + (b"A" if announced else b"Q") + asker)


def rhythm(gap: float, pause: float, hold: float) -> float:
    """The longest pause between claims, counting only pauses up to 2 * hold (rhythm, not
    idleness: a host silent for an hour says nothing about how often it talks)."""
    return max(gap, pause) if pause <= 2 * hold else gap


def conflict_deadline(members: dict[bytes, float], hold: float) -> float:
    """When all members but the most recent will have been silent for `hold`."""
    times = sorted(members.values(), reverse=True)
    return times[1] + hold if len(times) > 1 else INF


def glbp_pair(a: bytes, b: bytes) -> bool:
    """GLBP forwarders share a virtual IP at once: up to four MACs, not a conflict."""
    return virtual_router(a) is VirtualRouter.GLBP and virtual_router(b) is VirtualRouter.GLBP
