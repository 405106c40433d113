"""The journal store (issue 12 item 3): what a reader gets back is what the tracker held,
entry by entry or folded; a fold is all or nothing; old files still open."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from arpwatchd import sensor as sensor_module
from arpwatchd.addresses import parse_mac
from arpwatchd.batch import META, Batch
from arpwatchd.config import load_config, parse_config
from arpwatchd.daemon import replay
from arpwatchd.frames import announcement
from arpwatchd.journal import pack, unpack
from arpwatchd.output import EventWriter
from arpwatchd.sensor import Sensor
from arpwatchd.store import Store, StoreError
from arpwatchd.tracker import BindingRecord

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted([*(ROOT / "pcaps").glob("*.pcap"), *(ROOT / "tests/captures").glob("*.pcap")])
A = parse_mac("02:00:00:00:00:0a")
B = parse_mac("02:00:00:00:00:0b")


def key_order(records: list[BindingRecord]) -> list[BindingRecord]:
    return sorted(records, key=lambda r: (r.interface, r.vlan or 0, r.ip))


def test_an_entry_reads_back_every_field() -> None:
    upserts = [
        BindingRecord("eth0", None, 0x0A000001, A, 1.5, 2.25),
        BindingRecord("eth0", 10, 0x0A000001, B, 1e9 + 0.123456, 1e9 + 7.000001, (A,), "hold"),
        BindingRecord("bond0.7", 4094, 0xFFFFFFFF, A, 0.0, 3.0, (B, A), "conflict"),
    ]
    removed = [("eth1", None, 7), ("eth0", 10, 9)]
    records, gone = unpack(pack(upserts, removed))
    assert records == upserts
    assert gone == [("eth1", 0, 7), ("eth0", 10, 9)]
    assert unpack(pack([], [])) == ([], [])


def test_a_damaged_entry_is_an_error_not_wrong_bindings(tmp_path: Path) -> None:
    entry = pack([BindingRecord("eth0", None, 1, A, 1.0, 2.0)], [])
    with pytest.raises(ValueError, match="different lengths"):
        unpack(entry._replace(macs=entry.macs[:5]))
    store = Store(str(tmp_path / "s.sqlite"))
    store.write([BindingRecord("eth0", None, 1, A, 1.0, 2.0)], [], [])
    store._db.execute("UPDATE journal SET firsts = x'00'")
    with pytest.raises(StoreError, match="cannot read bindings"):
        store.load_bindings()


def replay_into(path: Path, store: Store, config_text: str = "") -> Sensor:
    yml = path.with_suffix(".yml")
    config = load_config(str(yml)) if yml.exists() else parse_config(config_text or "{}\n")
    sensor = Sensor(config, EventWriter(os.devnull), store)
    sensor.restore()
    assert replay(sensor, [str(path)], "eth0") == []
    return sensor


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.stem for c in CAPTURES])
def test_every_capture_reads_back_what_the_tracker_holds(capture: Path, tmp_path: Path
                                                         ) -> None:
    """The differential test: the bindings the row store held (one row per binding the
    tracker has at the end) are what the journal gives back, before and after folding."""
    store = Store(str(tmp_path / "s.sqlite"))
    sensor = replay_into(capture, store)
    expected = key_order(sensor.tracker.bindings())
    assert key_order(store.load_bindings()) == expected
    store.compact()
    assert store.journal_records == 0
    assert store._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    assert key_order(Store(store.path, readonly=True).load_bindings()) == expected


def test_many_small_batches_moves_and_evictions_fold_to_the_same_bindings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_robustness import fast_pcap  # noqa: PLC0415

    monkeypatch.setattr(sensor_module, "STORE_CHUNK", 1000)
    capture = tmp_path / "flood.pcap"
    fast_pcap(capture, 3000)
    store = Store(str(tmp_path / "s.sqlite"))
    sensor = replay_into(capture, store, "capture: {batch: 7}\nlimits: {max_bindings: 1000}\n")
    expected = key_order(sensor.tracker.bindings())
    assert 900 <= len(expected) <= 1000 and sensor.tracker.evicted >= 2000
    assert store.journal_records > 3000  # left for idle time: more than a final fold takes
    assert key_order(store.load_bindings()) == expected
    while store.compact(500):
        assert key_order(store.load_bindings()) == expected  # every partial fold reads the same
    assert store._db.execute("SELECT COUNT(*) FROM bindings").fetchone()[0] == len(expected)


def test_a_failed_fold_leaves_the_journal_whole(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path / "s.sqlite"))
    store.write([BindingRecord("eth0", None, 1, A, 1.0, 2.0)], [], [])
    store.compact()
    store.write([BindingRecord("eth0", None, 1, B, 3.0, 4.0, (A,))], [], [])
    store.write([BindingRecord("eth0", None, 2, A, 5.0, 6.0)], [], [])
    before = store.load_bindings()

    def disk_full(records: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_upsert", disk_full)
    with pytest.raises(StoreError, match="cannot compact the journal"):
        store.compact()
    assert store.journal_records == 2
    monkeypatch.undo()
    assert store.load_bindings() == before
    assert store.compact() == 2
    assert store.load_bindings() == before == [
        BindingRecord("eth0", None, 1, B, 3.0, 4.0, (A,)),
        BindingRecord("eth0", None, 2, A, 5.0, 6.0)]


def test_a_schema_1_file_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE bindings (interface TEXT NOT NULL, vlan INTEGER NOT NULL, ip INTEGER "
        "NOT NULL, mac TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL, "
        "previous TEXT NOT NULL DEFAULT '', state TEXT NOT NULL DEFAULT 'ok', PRIMARY KEY "
        "(interface, vlan, ip)) WITHOUT ROWID;"
        "INSERT INTO bindings VALUES ('eth0', 0, 1, '02:00:00:00:00:0a', 1.0, 2.0, '', 'ok');"
        "PRAGMA user_version=1;")
    db.close()
    old = [BindingRecord("eth0", None, 1, A, 1.0, 2.0)]
    assert Store(str(path), readonly=True).load_bindings() == old
    store = Store(str(path))
    store.write([BindingRecord("eth0", None, 2, B, 3.0, 4.0)], [], [])
    assert store.load_bindings() == [*old, BindingRecord("eth0", None, 2, B, 3.0, 4.0)]


def batch_of(frames: list[tuple[float, bytes]]) -> Batch:
    data, meta = b"", b""
    for ts, frame in frames:
        meta += META.pack(int(ts), round(ts % 1 * 1e6), len(data), len(frame))
        data += frame
    return Batch(data, meta)


def test_a_new_station_is_stored_with_its_batch_and_refreshes_wait_for_a_tick(
    tmp_path: Path
) -> None:
    """kill -9 after any batch keeps every station it made; refreshes cost no write each."""
    store = Store(str(tmp_path / "s.sqlite"))
    sensor = Sensor(parse_config("{}\n"), EventWriter(os.devnull), store)
    decoder = sensor.decoder("eth0", 1)
    hosts = [announcement(f"10.0.0.{i}", f"02:00:00:00:00:{i:02x}") for i in range(1, 4)]
    sensor.feed(decoder, batch_of([(100.0 + i, f) for i, f in enumerate(hosts)]))
    assert [b.ip & 0xFF for b in Store(store.path, readonly=True).load_bindings()] == [1, 2, 3]
    writes = sensor.stats.store_writes
    for second in range(200, 210):  # the same frames again: refreshes only
        sensor.feed(decoder, batch_of([(second + i / 10, f) for i, f in enumerate(hosts)]))
        sensor.fastpath.flush()  # the repeats reach the tracker: the next batch sees them
    assert sensor.tracker.changed_count == 3
    assert sensor.stats.store_writes == writes
    sensor.tick(1000.0)
    stored = key_order(Store(store.path, readonly=True).load_bindings())
    assert sensor.stats.store_writes == writes + 1
    assert stored == key_order(sensor.tracker.bindings())
    assert [b.last_seen for b in stored] == [209.0, 209.1, 209.2]


def test_a_long_capped_flood_keeps_the_journal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_bindings the state file must not grow with the flood's length, even in a
    replay, where no idle tick comes."""
    from test_robustness import fast_pcap  # noqa: PLC0415

    monkeypatch.setattr(sensor_module, "JOURNAL_MAX", 2000)
    monkeypatch.setattr(sensor_module, "STORE_CHUNK", 1000)
    capture = tmp_path / "flood.pcap"
    fast_pcap(capture, 8000)
    store = Store(str(tmp_path / "s.sqlite"))
    sensor = replay_into(capture, store, "limits: {max_bindings: 500}\n")
    assert sensor.tracker.evicted >= 7000
    assert store.journal_records <= 2000 + 1000
    assert key_order(store.load_bindings()) == key_order(sensor.tracker.bindings())
