"""The fast path for repeated frames gives exactly the events and state of the slow path."""

from __future__ import annotations

from pathlib import Path

import pytest
from arpbuild import replay_quietly

from arpwatchd.config import Config, load_config
from arpwatchd.events import Event
from arpwatchd.tracker import BindingRecord

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
CAPTURES = sorted((ROOT / "pcaps").glob("*.pcap")) + sorted(
    p for p in SHARED.glob("*.pcap*") if SHARED.is_dir()
)


def run(capture: Path, fast: bool) -> tuple[list[Event], list[BindingRecord], int]:
    config_path = capture.with_suffix(".yml")
    config = load_config(str(config_path)) if config_path.exists() else Config()
    sensor = replay_quietly(capture, config, fast)
    assert sensor.emitted is not None
    hits = sensor.fastpath.request_hits + sensor.fastpath.reply_hits
    bindings = sorted(sensor.tracker.bindings(), key=lambda b: (b.vlan or 0, b.ip))
    return sensor.emitted, bindings, hits


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_fast_and_slow_paths_agree(capture: Path) -> None:
    slow_events, slow_bindings, _ = run(capture, fast=False)
    fast_events, fast_bindings, _ = run(capture, fast=True)
    assert fast_events == slow_events
    assert fast_bindings == slow_bindings


def test_the_fast_path_is_used_on_a_lan() -> None:
    _, _, hits = run(ROOT / "pcaps" / "quiet-lan.pcap", fast=True)
    assert hits > 100
