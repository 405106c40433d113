"""arp.dat import and export: the format, the merge rules, the commands, and a round trip
through files written by Debian's real arpwatch.

Why: "an operator with an arpwatch arp.dat switches with one import" (issue 7). That needs the
format read exactly as arpwatch writes it (Debian pads MACs and adds the interface, LBL 2.1a15
does not pad), bad lines reported by number without losing the rest, a store that never
loses a newer binding to an older file, and an import that makes a replay of the same traffic
report no known station as new.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from arpwatch_compare import PCAPS, SHARED, available, run_arpwatch

from arpwatchd import arpdat
from arpwatchd.addresses import parse_ip, parse_mac
from arpwatchd.arpdat import ArpDatEntry, ArpDatError, Station
from arpwatchd.cli import main
from arpwatchd.store import Store
from arpwatchd.tracker import BindingRecord

A, B, C, D, E, F = (parse_mac(f"02:00:00:00:00:0{n}") for n in range(1, 7))
IP = parse_ip("10.0.0.5")


def _entries(text: str) -> list[ArpDatEntry | ArpDatError]:
    return list(arpdat.parse(text.splitlines()))


def test_parse_debian_lbl_and_short_lines() -> None:
    found = _entries(
        "02:02:00:01:00:00\t1.0.0.1\t1671438040\t\t(from file)\n"
        "0:1b:21:a:b:c\t10.0.0.9\t1700000000\thost9\n"
        "\n# a comment\n"
        "00:1c:7f:00:00:01\t192.168.10.1\t1709543210\tgw\teth1\n"
        "00:1c:7f:00:00:02 192.168.10.2 1709543211\n"
    )
    assert found == [
        ArpDatEntry(parse_mac("02:02:00:01:00:00"), parse_ip("1.0.0.1"), 1671438040.0, "",
                    "(from file)"),
        ArpDatEntry(parse_mac("00:1b:21:0a:0b:0c"), parse_ip("10.0.0.9"), 1700000000.0,
                    "host9", ""),
        ArpDatEntry(parse_mac("00:1c:7f:00:00:01"), parse_ip("192.168.10.1"), 1709543210.0,
                    "gw", "eth1"),
        ArpDatEntry(parse_mac("00:1c:7f:00:00:02"), parse_ip("192.168.10.2"), 1709543211.0),
    ]


@pytest.mark.parametrize(("line", "problem"), [
    ("garbage", "expected MAC, IP and time"),
    ("zz:1c:7f:00:00:01\t10.0.0.1\t1", "bad MAC address"),
    ("01:00:5e:00:00:01\t10.0.0.1\t1", "not a unicast MAC address"),
    ("00:1c:7f:00:00:01\t10.0.0.256\t1", "bad IPv4 address"),
    ("00:1c:7f:00:00:01\t10.0.0.1\tyesterday", "bad time (expected epoch seconds)"),
    ("00:1c:7f:00:00:01\t10.0.0.1\tnan", "bad time (expected epoch seconds)"),
    ("00:1c:7f:00:00:01\t10.0.0.1\t-5", "bad time (expected epoch seconds)"),
])
def test_bad_lines_are_numbered_and_skipped(line: str, problem: str) -> None:
    good = "00:1c:7f:00:00:09\t10.0.0.9\t5"
    found = _entries(f"{good}\n{line}\n{good}\n")
    assert found[1] == ArpDatError(2, line, problem)
    assert isinstance(found[0], ArpDatEntry)
    assert isinstance(found[2], ArpDatEntry)
    assert str(found[1]).startswith("line 2: ")


def test_stations_newest_first_one_per_mac() -> None:
    entries = [ArpDatEntry(A, IP, 100.0, interface="(from file)"), ArpDatEntry(B, IP, 300.0),
               ArpDatEntry(A, IP, 200.0), ArpDatEntry(C, IP, 50.0, interface="eth7")]
    grouped = arpdat.stations(entries, "eth1", vlan=10)
    assert grouped == {
        ("eth1", 10, IP): [Station("eth1", 10, IP, B, 300.0), Station("eth1", 10, IP, A, 200.0)],
        ("eth7", 10, IP): [Station("eth7", 10, IP, C, 50.0)],
    }


def _found(*pairs: tuple[bytes, float]) -> list[Station]:
    return sorted((Station("eth0", None, IP, mac, t) for mac, t in pairs),
                  key=lambda s: -s.seen)


def _rec(mac: bytes, first: float, last: float, previous: tuple[bytes, ...] = ()
         ) -> BindingRecord:
    return BindingRecord("eth0", None, IP, mac, first, last, previous)


def test_merge_into_an_empty_store() -> None:
    assert arpdat.merge(None, _found((A, 100), (B, 300), (C, 200))) == _rec(B, 300, 300, (C, A))


def test_merge_keeps_a_newer_stored_owner_and_adds_history() -> None:
    stored = _rec(D, 400, 500, (E,))
    merged = arpdat.merge(stored, _found((A, 100), (B, 450)))
    # B was seen after D took over (400), so it is the most recent former owner; E held the
    # address before D, so it comes after B; A is the oldest.
    assert merged == _rec(D, 400, 500, (B, E, A))
    assert arpdat.merge(merged, _found((A, 100), (B, 450))) is None  # nothing new


def test_merge_older_file_changes_nothing() -> None:
    stored = _rec(D, 400, 500, (A,))
    assert arpdat.merge(stored, _found((D, 480), (A, 100))) is None


def test_merge_newer_file_takes_over_and_keeps_the_stored_owner_as_history() -> None:
    stored = _rec(D, 400, 500, (E,))
    assert arpdat.merge(stored, _found((A, 600))) == _rec(A, 600, 600, (D, E))


def test_merge_same_owner_moves_last_seen_keeps_first_seen() -> None:
    stored = _rec(A, 100, 200)
    assert arpdat.merge(stored, _found((A, 300))) == _rec(A, 100, 300)


def test_merge_keeps_four_previous_owners() -> None:
    merged = arpdat.merge(None, _found((A, 6), (B, 5), (C, 4), (D, 3), (E, 2), (F, 1)))
    assert merged == _rec(A, 6, 6, (B, C, D, E))


def test_export_names_vlans_and_orders_unknown_times() -> None:
    bindings = [
        BindingRecord("eth0", 10, IP, A, 1000.0, 2000.5, (B, C)),
        BindingRecord("eth0", None, IP, D, 50.0, 60.0),
    ]
    seen: dict[arpdat.SeenKey, tuple[float, str]] = {
        ("eth0", 10, IP, A): (2000.0, "printer"), ("eth0", 10, IP, C): (400.0, "old")}
    assert list(arpdat.export_lines(bindings, seen)) == [
        "02:00:00:00:00:04\t10.0.0.5\t60\t\teth0",
        "02:00:00:00:00:01\t10.0.0.5\t2000\tprinter\teth0.10",
        "02:00:00:00:00:02\t10.0.0.5\t999\t\teth0.10",  # unknown: before A took over
        "02:00:00:00:00:03\t10.0.0.5\t400\told\teth0.10",
    ]


# ------------------------------------------------------------------------------- commands

DAT = (
    "02:00:00:00:00:01\t10.0.0.5\t1000\t\t(from file)\n"
    "02:00:00:00:00:02\t10.0.0.5\t2000\t\t(from file)\n"
    "not a line\n"
    "2:0:0:0:0:3\t10.0.0.6\t1500\tnas\n"
)


def test_import_command_summary_bad_lines_and_default_interface(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dat = tmp_path / "arp.dat"
    dat.write_text(DAT)
    config = tmp_path / "site.yml"
    config.write_text("capture: {interfaces: [eth3, eth4]}\n")
    state = tmp_path / "state.sqlite"
    assert main(["import-arpdat", str(dat), "--state", str(state), "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == (f"{dat}: 4 lines: 3 read, 1 bad skipped; 2 addresses into {state}: "
                           f"2 new, 0 updated, 0 unchanged (the store knew as much or newer)")
    assert f"{dat}: line 3: bad MAC address: 'not a line' (skipped)" in err
    store = Store(str(state))
    got = {(b.interface, b.ip): (b.mac, b.previous) for b in store.load_bindings()}
    store.close()
    assert got == {("eth3", IP): (B, (A,)), ("eth3", IP + 1): (C, ())}


def test_import_unreadable_file_is_exit_1(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import-arpdat", str(tmp_path / "missing.dat"), "--state",
                 str(tmp_path / "s.sqlite")])
    assert code == 1
    assert "missing.dat: cannot read: No such file or directory" in capsys.readouterr().err


def test_import_never_overwrites_a_newer_binding(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.sqlite"
    store = Store(str(state))
    newer = BindingRecord("eth0", None, IP, D, 2500.0, 3000.0)
    store.write([newer], [], [])
    store.close()
    dat = tmp_path / "arp.dat"
    dat.write_text(DAT)
    assert main(["import-arpdat", str(dat), "--state", str(state), "--interface", "eth0"]) == 0
    assert "1 new, 1 updated, 0 unchanged" in capsys.readouterr().out
    store = Store(str(state))
    kept = next(b for b in store.load_bindings() if b.ip == IP)
    store.close()
    assert (kept.mac, kept.first_seen, kept.last_seen, kept.previous) == (D, 2500.0, 3000.0,
                                                                          (B, A))


def test_export_command_writes_atomically_and_filters_interface(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.sqlite"
    store = Store(str(state))
    store.write([BindingRecord("eth0", None, IP, A, 10.0, 20.0),
                 BindingRecord("eth1", 5, IP, B, 10.0, 30.0)], [], [])
    store.close()
    out = tmp_path / "out.dat"
    assert main(["export-arpdat", "--state", str(state), "-o", str(out),
                 "--interface", "eth1"]) == 0
    assert out.read_text() == "02:00:00:00:00:02\t10.0.0.5\t30\t\teth1.5\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".arp.dat")] == []
    capsys.readouterr()
    assert main(["export-arpdat", "--state", str(state)]) == 0
    assert capsys.readouterr().out.count("\n") == 2


# ---------------------------------------------------- the real arpwatch, both directions

ROUND_TRIP = [PCAPS / "cluster-failover.pcap", PCAPS / "reassignment.pcap",
              PCAPS / "duplicate-ip.pcap", SHARED / "arp-oobr.pcap", SHARED / "sr_ri_tlv.pcap"]
OK, WHY = available()
needs_arpwatch = pytest.mark.skipif(not OK, reason=WHY)


def _lines(text: str, interface: str) -> set[tuple[bytes, int, int, str, str]]:
    found = set()
    for entry in arpdat.parse(text.splitlines()):
        assert isinstance(entry, ArpDatEntry), entry
        name = interface if entry.interface in ("", arpdat.FROM_FILE) else entry.interface
        found.add((entry.mac, entry.ip, int(entry.seen), entry.hostname, name))
    return found


@needs_arpwatch
@pytest.mark.parametrize("capture", ROUND_TRIP, ids=lambda p: p.name)
def test_round_trip_of_a_file_written_by_arpwatch(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not capture.exists():
        pytest.skip(f"{capture} is absent")
    _, written, status = run_arpwatch(capture, tmp_path / "arpwatch")
    assert status == 0
    original = written.read_text()
    assert original.count("\n") >= 3
    state = str(tmp_path / "state.sqlite")
    assert main(["import-arpdat", str(written), "--state", state, "--interface", "eth9"]) == 0
    exported = tmp_path / "exported.dat"
    assert main(["export-arpdat", "--state", state, "-o", str(exported)]) == 0
    assert _lines(exported.read_text(), "eth9") == _lines(original, "eth9")
    # Importing the export again changes nothing.
    capsys.readouterr()
    assert main(["import-arpdat", str(exported), "--state", state]) == 0
    assert " 0 new, 0 updated," in capsys.readouterr().out


@needs_arpwatch
@pytest.mark.parametrize("capture", [PCAPS / "cluster-failover.pcap",
                                     PCAPS / "reassignment.pcap", SHARED / "sr_ri_tlv.pcap"],
                         ids=lambda p: p.name)
def test_imported_stations_are_not_new(capture: Path, tmp_path: Path) -> None:
    if not capture.exists():
        pytest.skip(f"{capture} is absent")
    _, written, _ = run_arpwatch(capture, tmp_path / "arpwatch")
    imported = {e.ip for e in arpdat.parse(written.read_text().splitlines())
                if isinstance(e, ArpDatEntry)}
    state = str(tmp_path / "state.sqlite")
    assert main(["import-arpdat", str(written), "--state", state, "--interface", "eth9"]) == 0
    events = tmp_path / "events.jsonl"
    assert main(["replay", str(capture), "-i", "eth9", "--state", state, "--events",
                 str(events), "-q"]) == 0
    new = [json.loads(line) for line in events.read_text().splitlines()
           if json.loads(line)["event"] == "new_station"]
    assert [e for e in new if parse_ip(e["ip"]) in imported] == []
    # Without the import the same replay reports every one of them as new.
    fresh = tmp_path / "fresh.jsonl"
    assert main(["replay", str(capture), "-i", "eth9", "--events", str(fresh), "-q"]) == 0
    reported = {parse_ip(json.loads(line)["ip"]) for line in fresh.read_text().splitlines()
                if json.loads(line)["event"] == "new_station"}
    assert imported <= reported


def test_export_from_a_store_without_imported_times(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A store written before the macs_seen table existed still exports (estimated times)."""
    state = tmp_path / "old.sqlite"
    store = Store(str(state))
    store.write([BindingRecord("eth0", None, IP, A, 100.0, 200.0, (B,))], [], [])
    store.close()
    with sqlite3.connect(state) as db:
        db.execute("DROP TABLE macs_seen")
    db.close()
    capsys.readouterr()
    assert main(["export-arpdat", "--state", str(state)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "02:00:00:00:00:01\t10.0.0.5\t200\t\teth0", "02:00:00:00:00:02\t10.0.0.5\t99\t\teth0"]
