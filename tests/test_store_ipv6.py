"""IPv6 bindings in the store (issue 17 phase 2): the journal's side column and the table's
blob keys give back what the tracker held; a schema 2 file (the journal without `ipv6`)
opens read-only and is upgraded by a writer."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv6Address
from pathlib import Path

from arpwatchd.addresses import ip6_value, parse_mac
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
