"""SQLite state: bindings and event history; the only module that imports sqlite3.

WAL mode and one transaction per batch: a crash loses at most the batch being written and
never leaves a half-written one, and readers (`arpwatchd bindings`, `history`) can open the
file while the sensor writes. The schema version lives in `PRAGMA user_version`.

Changed bindings go to an append-only `journal` table, one packed entry per batch (see
`journal`); `compact` folds entries into the `bindings` table, oldest first, each fold and the
deletion of what it folded in one transaction, so a crash leaves the binding in one place or
the other. Every reader sees the table with the journal applied.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from arpwatchd.addresses import ip6_from_number, ip6_number, mac_text, parse_mac
from arpwatchd.errors import StoreError
from arpwatchd.events import Event
from arpwatchd.files import UnsafeFileError, check_existing, make_directories, open_file
from arpwatchd.journal import Entry, fold, pack, replay
from arpwatchd.tracker import BindingRecord

T = TypeVar("T")

SCHEMA_VERSION = 3
"""2: the journal (an arpwatchd that knows only 1 would not read it, so it refuses the file).
3: IPv6 bindings: `bindings.ip` holds an IPv6 address as a 16-byte blob (`_db_ip`) and the
journal has an `ipv6` side column; a schema 2 file gains the column when a writer opens it."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    interface TEXT NOT NULL,
    vlan INTEGER NOT NULL,          -- 0 for untagged
    ip INTEGER NOT NULL,            -- IPv4 as an unsigned 32-bit number, IPv6 as a blob
    mac TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    previous TEXT NOT NULL DEFAULT '',  -- earlier owners, newest first, space separated
    state TEXT NOT NULL DEFAULT 'ok',
    PRIMARY KEY (interface, vlan, ip)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    severity TEXT NOT NULL,
    interface TEXT,
    vlan INTEGER,
    ip TEXT,
    mac TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ip ON events (ip, ts);
CREATE INDEX IF NOT EXISTS events_mac ON events (mac, ts);
CREATE TABLE IF NOT EXISTS macs_seen (  -- per-MAC times and hostnames imported from arp.dat
    interface TEXT NOT NULL,
    vlan INTEGER NOT NULL,
    ip INTEGER NOT NULL,
    mac TEXT NOT NULL,
    seen REAL NOT NULL,
    hostname TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (interface, vlan, ip, mac)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (  -- changed bindings not yet folded in: see journal.py
    seq INTEGER PRIMARY KEY,
    records INTEGER NOT NULL,
    domains TEXT NOT NULL,
    doms BLOB NOT NULL,
    ips BLOB NOT NULL,
    macs BLOB NOT NULL,
    firsts BLOB NOT NULL,
    lasts BLOB NOT NULL,
    states BLOB NOT NULL,
    previous TEXT NOT NULL,
    removed_doms BLOB NOT NULL,
    removed_ips BLOB NOT NULL,
    ipv6 TEXT NOT NULL DEFAULT ''
);
"""
_ENTRY_COLUMNS = ", ".join(Entry._fields)
_BINDING_COLUMNS = "interface, vlan, ip, mac, first_seen, last_seen, previous, state"


_COMPANIONS = ("-wal", "-shm", "-journal")
"""Files SQLite opens beside the state file. Running as root, it writes through a hard link
there and chowns it to the state file's owner, even for a read-only connection."""


def state_files(path: str) -> list[Path]:
    """The state file and its WAL-mode companions: what a sensor run with --user keeps
    writing."""
    return [Path(path + suffix) for suffix in ("", "-wal", "-shm")]


class Store:
    PRUNE_EVERY = 256
    """Writes between trims of the event history to `max_events` rows."""

    def __init__(self, path: str, *, readonly: bool = False, max_events: int = 1_000_000) -> None:
        self.path = path
        self.max_events = max_events
        self._writes = 0
        self.created_directories: list[Path] = []
        """Directories made for the state file (0700): the sensor's own, so --user gets them."""
        try:
            for suffix in ("", *_COMPANIONS):  # never a link: SQLite would follow it as root
                check_existing(path + suffix)
            if readonly:
                uri = Path(path).resolve().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self.created_directories = make_directories(Path(path).parent)
                # SQLite would create it with the umask's mode and give -wal and -shm that mode
                os.close(open_file(path, os.O_RDWR | os.O_CREAT, 0o600))
                self._db = sqlite3.connect(path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                # a flood writes a million random keys: keep more of the B-tree's pages in
                # memory and checkpoint the WAL in larger steps (measured: less time per row)
                self._db.execute("PRAGMA cache_size=-8192")
                self._db.execute("PRAGMA wal_autocheckpoint=10000")
                self._migrate()
            self._db.execute("PRAGMA busy_timeout=5000")
            self.journal_records = self._journal_size()
            """Records in the journal, not yet folded into the bindings table."""
        except (sqlite3.Error, OSError, UnsafeFileError) as exc:
            raise StoreError(f"{path}: cannot open state store: {exc}") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: state store schema {version} is newer than this arpwatchd "
                f"({SCHEMA_VERSION}); upgrade arpwatchd or use another state file"
            )
        self._db.executescript(_SCHEMA)
        if not self._journal_has_ipv6():  # schema 2: the journal predates IPv6
            self._db.execute("ALTER TABLE journal ADD COLUMN ipv6 TEXT NOT NULL DEFAULT ''")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _journal_has_ipv6(self) -> bool:
        return any(row[1] == "ipv6" for row in self._db.execute("PRAGMA table_info(journal)"))

    def _entry_columns(self) -> str:
        """The journal's columns as `Entry` has them (a schema 2 file opened read-only has
        no `ipv6` column: its entries hold no IPv6 address)."""
        if self._journal_has_ipv6():
            return _ENTRY_COLUMNS
        return _ENTRY_COLUMNS.replace("ipv6", "'' AS ipv6")

    def _has_journal(self) -> bool:
        """False for a schema 1 file opened read-only (a writer adds the table)."""
        return self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'journal'").fetchone() is not None

    def _journal_size(self) -> int:
        if not self._has_journal():
            return 0
        return int(self._db.execute("SELECT total(records) FROM journal").fetchone()[0])

    def load_bindings(self) -> list[BindingRecord]:
        """Every binding: the table with the journal applied (`journal.replay`'s order)."""
        try:
            with self._reading():
                rows = self._db.execute(f"SELECT {_BINDING_COLUMNS} FROM bindings").fetchall()
                entries = self._db.execute(
                    f"SELECT {self._entry_columns()} FROM journal ORDER BY seq").fetchall() \
                    if self._has_journal() else []
            return replay(map(_record, rows), entries)
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"{self.path}: cannot read bindings: {exc}") from None

    def write(
        self,
        upserts: list[BindingRecord],
        removed: list[tuple[str, int | None, int]],
        events: Iterable[Event],
        vendor_of: dict[str, str | None] | None = None,
        replace: bool = False,
    ) -> None:
        """One transaction for one batch of changes: one journal entry, or with `replace` a
        bindings table holding exactly `upserts` and an empty journal.

        Raises:
            StoreError: the write failed (disk full, file removed, permissions); nothing of
                this batch was stored, the caller keeps its state in memory.
        """
        entry = pack(upserts, removed) if (upserts or removed) and not replace else None
        try:
            with self._transaction():
                if replace:
                    self._db.execute("DELETE FROM bindings")
                    self._db.execute("DELETE FROM journal")
                    self._upsert(upserts)
                elif entry is not None:
                    self._db.execute(
                        f"INSERT INTO journal ({_ENTRY_COLUMNS}) "
                        f"VALUES ({', '.join('?' * len(entry))})", entry)
                self._writes += 1
                if self._writes % self.PRUNE_EVERY == 0:
                    self._prune()
                self._db.executemany(
                    "INSERT INTO events (ts, event, severity, interface, vlan, ip, mac, json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (e.ts, e.kind.value, e.severity.value, e.interface, e.vlan, e.ip, e.mac,
                         e.to_json((vendor_of or {}).get(e.mac or "")))
                        for e in events
                    ),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write state: {_reason(exc)}") from None
        if replace:
            self.journal_records = 0
        elif entry is not None:
            self.journal_records += entry.records

    def compact(self, budget: int | None = None) -> int:
        """Folds the oldest journal entries into the bindings table, in one transaction:
        entries until `budget` records are folded (at least one), all without a budget.
        Returns the records folded.

        Raises:
            StoreError: nothing was folded (the journal still holds it all).
        """
        if not self.journal_records:
            return 0
        try:
            with self._transaction():
                folded = self._fold(budget)
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"{self.path}: cannot compact the journal: {_reason(exc)}"
                             ) from None
        self.journal_records = max(0, self.journal_records - folded)
        return folded

    def _fold(self, budget: int | None) -> int:
        cursor = self._db.execute(
            f"SELECT seq, {self._entry_columns()} FROM journal ORDER BY seq")
        entries: list[tuple[object, ...]] = []
        last, folded = None, 0
        for seq, *entry in cursor:
            entries.append(tuple(entry))
            last, folded = seq, folded + entry[0]
            if budget is not None and folded >= budget:
                break
        cursor.close()
        if last is None:
            return 0
        changes = fold(entries)
        self._db.executemany(
            "DELETE FROM bindings WHERE interface = ? AND vlan = ? AND ip = ?",
            ((i, v, _db_ip(ip)) for (i, v, ip), record in changes.items() if record is None))
        self._upsert(record for record in changes.values() if record is not None)
        self._db.execute("DELETE FROM journal WHERE seq <= ?", (last,))
        return folded

    def merge_bindings(
        self,
        found: Mapping[tuple[str, int | None, int], T],
        merge: Callable[[BindingRecord | None, T], BindingRecord | None],
        seen: Iterable[tuple[str, int | None, int, bytes, float, str]] = (),
    ) -> list[tuple[BindingRecord | None, BindingRecord | None]]:
        """Imports in one transaction: each address's stored binding and what was found for
        it go through `merge` (None keeps the stored one); `seen` rows (interface, vlan, ip,
        mac, time, hostname) keep their latest time. Returns (stored, written) per address.

        Raises:
            StoreError: nothing was imported.
        """
        outcome: list[tuple[BindingRecord | None, BindingRecord | None]] = []
        try:
            with self._transaction():
                self.journal_records -= self._fold(None)
                for (interface, vlan, ip), item in found.items():
                    row = self._db.execute(
                        "SELECT interface, vlan, ip, mac, first_seen, last_seen, previous, "
                        "state FROM bindings WHERE interface = ? AND vlan = ? AND ip = ?",
                        (interface, vlan or 0, ip)).fetchone()
                    stored = _record(row) if row else None
                    written = merge(stored, item)
                    if written is not None:
                        self._upsert([written])
                    outcome.append((stored, written))
                self._db.executemany(
                    "INSERT INTO macs_seen VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (interface, vlan, ip, mac) DO UPDATE SET seen = excluded.seen, "
                    "hostname = excluded.hostname WHERE excluded.seen >= macs_seen.seen",
                    ((i, v or 0, ip, mac_text(m), t, h) for i, v, ip, m, t, h in seen))
        except (sqlite3.Error, ValueError) as exc:
            with contextlib.suppress(sqlite3.Error):
                self.journal_records = self._journal_size()
            raise StoreError(f"{self.path}: cannot import: {_reason(exc)}") from None
        return outcome

    def _upsert(self, records: Iterable[BindingRecord]) -> None:
        rows = [(r.interface, r.vlan or 0, r.ip, mac_text(r.mac), r.first_seen, r.last_seen,
                 " ".join(mac_text(m) for m in r.previous), r.state) for r in records]
        # in key order: a flood's random addresses then touch each B-tree page once,
        # in order, instead of at random (3x fewer page writes measured at 1M rows)
        rows.sort()
        stored: Sequence[tuple[object, ...]] = rows
        if any(row[2] > 0xFFFFFFFF for row in rows):  # IPv6 (sorted as numbers, after IPv4)
            stored = [(*row[:2], _db_ip(row[2]), *row[3:]) for row in rows]
        self._db.executemany("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             stored)

    def macs_seen(self) -> dict[tuple[str, int | None, int, bytes], tuple[float, str]]:
        """(interface, vlan, ip, mac) -> (last seen, hostname) of imported arp.dat lines."""
        try:
            rows = self._db.execute(
                "SELECT interface, vlan, ip, mac, seen, hostname FROM macs_seen").fetchall()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):  # a store no newer arpwatchd has written yet
                return {}
            raise StoreError(f"{self.path}: cannot read imported times: {exc}") from None
        return {(r[0], r[1] or None, r[2], parse_mac(r[3])): (r[4], r[5]) for r in rows}

    def events_naming(self, mac: str) -> list[str]:
        """JSON of the events whose mac, previous_mac or suspect is `mac`, oldest first."""
        try:
            return [row[0] for row in self._db.execute(
                "SELECT json FROM events WHERE mac = ? OR instr(json, ?) > 0 ORDER BY ts, id",
                (mac, f'"{mac}"'))]
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read events: {exc}") from None

    def _prune(self) -> None:
        """Keeps the newest `max_events` events, so a flood cannot fill the disk."""
        self._db.execute(
            "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.max_events,)
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """One snapshot for several reads: a compaction between them would otherwise show a
        reader the folded entries twice or not at all."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("COMMIT")

    def events_for(self, ip: str | None = None, mac: str | None = None) -> list[str]:
        """JSON of the events about an IP or a MAC, oldest first."""
        if ip is not None:
            query, arg = "SELECT json FROM events WHERE ip = ? ORDER BY ts, id", ip
        else:
            query, arg = "SELECT json FROM events WHERE mac = ? ORDER BY ts, id", mac or ""
        try:
            return [row[0] for row in self._db.execute(query, (arg,))]
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read events: {exc}") from None

    def all_events(self) -> Iterator[str]:
        for row in self._db.execute("SELECT json FROM events ORDER BY ts, id"):
            yield row[0]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def _reason(exc: Exception) -> str:
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
        return "disk full"
    return str(exc)


def _db_ip(ip: int) -> int | bytes:
    """An address as the bindings table keeps it: IPv4 as a number, IPv6 (beyond SQLite's
    64-bit integers) as its 16 bytes (blobs never equal numbers)."""
    return ip if ip <= 0xFFFFFFFF else ip6_number(ip).to_bytes(16, "big")


def _record(row: tuple[Any, ...]) -> BindingRecord:
    return BindingRecord(
        interface=row[0],
        vlan=row[1] or None,
        ip=ip6_from_number(int.from_bytes(row[2], "big")) if isinstance(row[2], bytes)
        else row[2],
        mac=parse_mac(row[3]),
        first_seen=row[4],
        last_seen=row[5],
        previous=tuple(parse_mac(m) for m in row[6].split()),
        state=row[7],
    )


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")  # fails too when the WAL cannot grow
            except sqlite3.Error:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        # SQLite has already rolled back after some errors (SQLITE_FULL): a second ROLLBACK
        # would fail and hide the error that matters under "no transaction is active"
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
