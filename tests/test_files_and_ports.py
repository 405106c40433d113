"""Files the sensor creates as root, and the port it listens on (issue #15, item 6, and the
file side of item 1).

Why these tests: the state store and the events hold every address on the LAN, so they are
private whatever the umask the sensor was started with; a link planted where the sensor
writes as root must never be followed (SQLite itself writes through a hard-linked -wal or
-shm and chowns it); the metrics endpoint must answer only what it serves, and must not be
opened to the whole network by an address that names no host.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpwatchd import tools
from arpwatchd.cli import main
from arpwatchd.config import Config, ConfigError, load_config, parse_config
from arpwatchd.events import Event, EventKind
from arpwatchd.frames import announcement, write_pcap
from arpwatchd.metrics import MetricsServer, parse_metrics_address, start_metrics
from arpwatchd.output import EventWriter, OutputError
from arpwatchd.stats import SensorStats
from arpwatchd.store import Store, StoreError
from arpwatchd.tracker import BindingRecord

ROOT = Path(__file__).parents[1]
MAC = "02:00:00:00:00:0a"
IS_ROOT = os.geteuid() == 0
NEW = Event(1709542800.2, EventKind.NEW_STATION, "eth0", None, "10.0.0.1", MAC)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def secret(path: Path) -> Path:
    """A private file of someone else's (root's, when run as root) that must stay as it is."""
    path.write_text("root:secret:19000::::::\n")
    path.chmod(0o600)
    return path


def untouched(path: Path) -> bool:
    st = os.lstat(path)
    return (path.read_text() == "root:secret:19000::::::\n" and stat.S_IMODE(st.st_mode) == 0o600
            and st.st_uid == os.geteuid())


# ------------------------------------------------------------------ modes, whatever the umask

@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_state_files_and_directory_are_private_whatever_the_umask(tmp_path: Path,
                                                                  mask: int) -> None:
    state = tmp_path / "made" / "by" / "sensor" / "s.sqlite"
    with umask(mask):
        store = Store(str(state))
        store.write([BindingRecord("eth0", None, 0x0A000001, bytes(6), 1.0, 1.0)], [], [])
        files = [state, Path(f"{state}-wal"), Path(f"{state}-shm")]
        assert [mode(f) for f in files] == [0o600] * 3
        store.close()
    made = [tmp_path / "made", tmp_path / "made" / "by", tmp_path / "made" / "by" / "sensor"]
    assert [mode(d) for d in made] == [0o700] * 3
    assert store.created_directories == made


def test_an_existing_state_directory_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    store = Store(str(tmp_path / "s.sqlite"))
    store.close()
    assert mode(tmp_path) == 0o755
    assert store.created_directories == []


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_events_file_is_created_0640_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    events = tmp_path / "e.jsonl"
    with umask(mask):
        EventWriter(str(events)).close()
    assert mode(events) == 0o640


# ---------------------------------------------------------------- links where root writes

def test_state_file_that_is_a_symlink_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "a.pcap"
    write_pcap(capture, [(1.0, announcement("10.0.0.1", MAC))])
    planted = tmp_path / "s.sqlite"
    planted.symlink_to(tmp_path / "cron-job")
    assert main(["replay", "--state", str(planted), "--events", os.devnull, str(capture)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"arpwatchd: {planted}: cannot open state store: ")
    assert "symbolic link" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cron-job").exists()  # SQLite would have created it as root


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
@pytest.mark.parametrize("readonly", [False, True])
def test_hard_linked_sqlite_companion_is_refused(tmp_path: Path, suffix: str,
                                                 readonly: bool) -> None:
    state = tmp_path / "s.sqlite"
    Store(str(state)).close()
    victim = secret(tmp_path / "shadow")
    os.link(victim, f"{state}{suffix}")
    if IS_ROOT:  # SQLite as root chowns the companion to the state file's owner
        os.chown(state, 65534, 65534)
    with pytest.raises(StoreError, match="has 2 hard links") as info:
        Store(str(state), readonly=readonly)
    assert "\n" not in str(info.value)
    assert untouched(victim)


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_symlinked_sqlite_companion_is_refused(tmp_path: Path, suffix: str) -> None:
    state = tmp_path / "s.sqlite"
    Store(str(state)).close()
    victim = secret(tmp_path / "shadow")
    Path(f"{state}{suffix}").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(str(state))
    assert untouched(victim)


def test_events_file_that_is_a_link_is_refused_and_its_target_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "a.pcap"
    write_pcap(capture, [(1.0, announcement("10.0.0.1", MAC))])
    victim = secret(tmp_path / "shadow")
    symlink, hardlink = tmp_path / "e.jsonl", tmp_path / "h.jsonl"
    symlink.symlink_to(victim)
    os.link(victim, hardlink)
    for planted, why in ((symlink, "it is a symbolic link"), (hardlink, "it has 2 hard links")):
        assert main(["replay", "--events", str(planted), str(capture)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"arpwatchd: {planted}: cannot open events file: {why}")
        assert len(err.splitlines()) == 1
    assert untouched(victim)


def test_reopen_after_rotation_refuses_a_link_planted_meanwhile(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    writer = EventWriter(str(events))
    events.rename(tmp_path / "e.jsonl.1")
    victim = secret(tmp_path / "shadow")
    events.symlink_to(victim)
    with pytest.raises(OutputError, match="cannot reopen events file: it is a symbolic link"):
        writer.reopen()
    writer.close()
    assert untouched(victim)


def test_events_to_dev_null_and_to_a_fifo_still_work(tmp_path: Path) -> None:
    EventWriter(os.devnull).close()
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer = EventWriter(str(fifo))
        writer.write([NEW])
        writer.close()
        assert b'"ip":"10.0.0.1"' in os.read(reader, 4096)
    finally:
        os.close(reader)


def test_export_chmods_its_own_temporary_file_not_a_link_swapped_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who can write the output directory swaps the temporary file for a link while
    the export writes it: the export must still change only its own file's mode."""
    state = tmp_path / "state.sqlite"
    store = Store(str(state))
    store.write([BindingRecord("eth0", None, 0x0A000005, bytes.fromhex("020000000001"), 1.0,
                               2.0)], [], [])
    store.close()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    victim = secret(tmp_path / "shadow")
    write = tools._write

    def swap_then_write(out: object, lines: object) -> None:
        (temporary,) = out_dir.glob(".arp.dat.*")
        temporary.rename(tmp_path / "moved")
        temporary.symlink_to(victim)
        write(out, lines)  # type: ignore[arg-type]

    monkeypatch.setattr(tools, "_write", swap_then_write)
    assert main(["export-arpdat", "--state", str(state), "-o", str(out_dir / "arp.dat")]) == 0
    assert untouched(victim)
    assert mode(tmp_path / "moved") == 0o644


# ---------------------------------------------------------------------- the metrics port

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    stats = SensorStats()
    stats.capture("eth0")
    running = start_metrics(stats, Config(), "127.0.0.1", _free_port(), started=5.0)
    try:
        yield running
    finally:
        running.close()


def _request(server: MetricsServer, method: str, path: str,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_metrics_are_served_at_metrics_only(server: MetricsServer) -> None:
    status, headers, body = _request(server, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"arpwatchd_start_time_seconds 5.0" in body
    for path in ("/debug", "/../../etc/passwd", "/metrics/", "/favicon.ico", "/metricsx"):
        status, _, body = _request(server, "GET", path)
        assert (status, b"arpwatchd_" in body) == (404, False), path


def test_metrics_head_and_index_page_and_other_methods(server: MetricsServer) -> None:
    _, get_headers, get_body = _request(server, "GET", "/metrics")
    status, headers, body = _request(server, "HEAD", "/metrics")
    assert (status, body) == (200, b"")
    assert headers["Content-Type"] == get_headers["Content-Type"]
    assert int(headers["Content-Length"]) == len(get_body)
    status, headers, body = _request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<a href="/metrics">' in body
    for method, path in (("POST", "/metrics"), ("PUT", "/"), ("DELETE", "/metrics")):
        status, headers, _ = _request(server, method, path)
        assert (status, headers.get("Allow")) == (405, "GET, HEAD"), (method, path)


def test_metrics_content_negotiation_is_prometheus_clients(server: MetricsServer) -> None:
    status, headers, body = _request(
        server, "GET", "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    status, headers, body = _request(server, "GET", "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert b"arpwatchd_build_info{" in gzip.decompress(body)


@pytest.mark.parametrize("text", [":9000", "[]:9000"])
def test_metrics_address_without_a_host_is_a_usage_error(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=r"write 0\.0\.0\.0:9000 or \[::\]:9000"):
        parse_metrics_address(text)
    with pytest.raises(SystemExit) as info:
        main(["replay", "--metrics-address", text, "x.pcap"])
    assert info.value.code == 2
    assert "0.0.0.0:9000" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("address", ['""', "' '"])
def test_config_metrics_address_without_a_host_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.address.*write 0\.0\.0\.0 or ::"):
        parse_config(f"metrics:\n  address: {address}\n", "site.yml")


def test_shipped_config_passes_the_address_rule() -> None:
    assert load_config(str(ROOT / "deploy" / "arpwatchd.yml")).metrics.address == "0.0.0.0"
    unit = (ROOT / "deploy" / "arpwatchd.service").read_text()
    assert "--metrics-address" not in unit  # it takes the config's address


def test_metrics_reachable_from_the_network_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="arpwatchd")
    for address, port in (("127.0.0.1", _free_port()), ("0.0.0.0", _free_port())):
        start_metrics(SensorStats(), Config(), address, port).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"metrics on 0.0.0.0:{port} are reachable from the network"]
