"""IPv6 bindings in the store (issue 17 phase 2): the journal's side column and the table's
blob keys give back what the tracker held; a schema 2 file (the journal without `ipv6`)
opens read-only and is upgraded by a writer."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from ipaddress import IPv6Address
from pathlib import Path

from arpwatchd.addresses import ip6_value, parse_mac
from arpwatchd.events import Event, EventKind
from arpwatchd.journal import pack, unpack
from arpwatchd.store import SCHEMA_VERSION, Store
from arpwatchd.tracker import BindingRecord

A = parse_mac("02:00:00:00:00:0a")
B = parse_mac("02:00:00:00:00:0b")
V6 = ip6_value(IPv6Address("fd00:17::1"))
LL = ip6_value(IPv6Address("fe80::ff:fe00:a"))
TOP = ip6_value(IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))


def test_an_entry_with_both_families_reads_back() -> None:
    upserts = [
        BindingRecord("eth0", None, 0x0A000001, A, 1.5, 2.25),
        BindingRecord("eth0", None, V6, A, 1.5, 2.25, (B,), "hold"),
        BindingRecord("eth0", 10, LL, B, 3.0, 4.0),
        BindingRecord("eth0", 10, TOP, B, 3.0, 4.0),
    ]
    removed = [("eth0", None, ip6_value(IPv6Address("::1"))), ("eth1", None, 7)]
    entry = pack(upserts, removed)
    assert entry.ipv6
    records, gone = unpack(entry)
    assert records == upserts
    assert gone == [("eth0", 0, ip6_value(IPv6Address("::1"))), ("eth1", 0, 7)]
    assert pack(upserts[:1], removed[1:]).ipv6 == ""  # IPv4 only: entries as before


def test_ipv6_bindings_survive_the_journal_and_the_fold(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.sqlite"))
    rows = [BindingRecord("eth0", None, 0x0A000001, A, 1.0, 2.0),
            BindingRecord("eth0", None, V6, A, 1.0, 2.0),
            BindingRecord("eth0", None, LL, B, 1.0, 2.0)]
    store.write(rows, [], [])
    assert store.load_bindings() == rows
    store.write([], [("eth0", None, LL)], [])
    assert store.compact() == 4
    assert sorted(store.load_bindings()) == sorted(rows[:2])
    # a whole rewrite (replace) too
    store.write(rows, [], [], replace=True)
    assert sorted(Store(store.path, readonly=True).load_bindings()) == sorted(rows)


def test_a_schema_2_file_opens_and_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    Store(str(path)).close()
    db = sqlite3.connect(path)  # make it what a schema 2 arpwatchd left: no ipv6 column
    db.executescript(
        "ALTER TABLE journal DROP COLUMN ipv6; PRAGMA user_version=2;"
        "INSERT INTO journal (records, domains, doms, ips, macs, firsts, lasts, states, "
        "previous, removed_doms, removed_ips) VALUES (0, '[]', x'', x'', x'', x'', x'', x'', "
        "'', x'', x'');")
    db.close()
    old = Store(str(path), readonly=True)
    assert old.load_bindings() == []
    old.close()
    store = Store(str(path))
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    row = BindingRecord("eth0", None, V6, A, 1.0, 2.0)
    store.write([row], [], [])
    assert store.load_bindings() == [row]


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arpwatchd", *argv], capture_output=True,
                          text=True, check=True, timeout=120)


def test_bindings_history_and_export_with_ipv6(tmp_path: Path) -> None:
    """`bindings` and `history` show IPv6; `export-arpdat` leaves it out and says how many."""
    state = str(tmp_path / "s.sqlite")
    store = Store(state)
    conflict = Event(5.0, EventKind.CONFLICT, "eth0", None, "fd00:17::1",
                     "02:00:00:00:00:0b", "02:00:00:00:00:0a", "unsolicited_takeover",
                     family="ipv6")
    store.write([BindingRecord("eth0", None, 0x0A000001, A, 1.0, 2.0),
                 BindingRecord("eth0", None, V6, B, 1.0, 5.0),
                 BindingRecord("eth0", None, LL, A, 1.0, 2.0)], [], [conflict])
    store.close()
    shown = _cli("bindings", "--state", state).stdout
    assert "fd00:17::1" in shown and "fe80::ff:fe00:a" in shown and "10.0.0.1" in shown
    history = _cli("history", "--state", state, "fd00:17:0::1").stdout  # any spelling
    assert "unsolicited_takeover" in history
    assert '"family":"ipv6"' in _cli("history", "--json", "--state", state, "fd00:17::1").stdout
    done = _cli("export-arpdat", "--state", state)
    assert [line.split("\t")[1] for line in done.stdout.splitlines()] == ["10.0.0.1"]
    assert "2 IPv6 bindings left out (arp.dat holds IPv4 only)" in done.stderr
