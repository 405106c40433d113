"""Shared by the real-tool live tests: when each event line appeared, and where the measured
detection latencies go (benchmarks/detection_latency.py reads them).

Latency is measured as an operator sees it: from the first offending frame on the wire (its
time in the lab's capture, stamped by the kernel: ``netlab.kernel_rx_timestamps``) to the
moment the sensor's event line appeared in its events file (``EventClock``, polling every
2 ms; the same CLOCK_REALTIME). Tests never assert these figures (the machines are shared);
they record them when ``ARPWATCHD_LATENCY_LOG`` names a file.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from netlab import SensorEvent, pick

POLL = 0.002


class EventClock:
    """Tails an events file on a thread, noting the wall-clock time each line appeared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, SensorEvent]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._tail, name="event clock", daemon=True)
        self._thread.start()

    def _tail(self) -> None:
        offset, partial = 0, b""
        while not self._stop.is_set():
            try:
                with self.path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                now = time.time()
                offset += len(chunk)
                *complete, partial = (partial + chunk).split(b"\n")
                with self._lock:
                    self.lines += [(now, json.loads(line)) for line in complete if line]
            self._stop.wait(POLL)

    def first(self, event: str, **fields: object) -> float | None:
        """When the first line of ``event`` with ``fields`` appeared (None: not yet)."""
        with self._lock:
            for seen, line in self.lines:
                if pick([line], event, **fields):
                    return seen
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> EventClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_latency(scenario: str, event: str, latency: float, capture: Path | None = None
                   ) -> None:
    """Appends one measured latency (seconds) to ``$ARPWATCHD_LATENCY_LOG`` when it is set,
    and keeps a copy of the scenario's capture in ``$ARPWATCHD_LATENCY_CAPTURES`` if given."""
    log = os.environ.get("ARPWATCHD_LATENCY_LOG")
    if not log:
        return
    kept = None
    folder = os.environ.get("ARPWATCHD_LATENCY_CAPTURES")
    if folder and capture is not None and capture.exists():
        kept = Path(folder) / f"{scenario}-{time.time_ns()}.pcap"
        shutil.copyfile(capture, kept)
    with open(log, "a", encoding="utf-8") as out:
        out.write(json.dumps({"scenario": scenario, "event": event, "latency": latency,
                              "capture": str(kept) if kept else None}) + "\n")
