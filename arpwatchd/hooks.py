"""Per-event hook: run an operator's program for chosen events, arpwatch-style notification
without arpwatch's flaws.

arpwatch forks sendmail for each report and, with three children running, blocks capture in
`pause()` (report.c). Here:
- the program runs WITHOUT a shell, from an argument list: event fields (an interface name
  given on the command line, a vendor string) reach it only as its standard input (the event
  JSON line) and ARPWATCHD_* environment variables, never as shell text, so `;rm -rf /` or
  `$(id)` in them is inert;
- at most `max_running` run at once, each in a worker thread that waits for it; an event that
  finds them all busy is dropped and counted (the first drop is logged), so a flood of events
  cannot fork-bomb the host or stall capture;
- a program still running after `timeout` is killed with its whole process group (it runs in
  a session of its own, so its children go too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

from arpwatchd.events import Event, EventKind

log = logging.getLogger("arpwatchd")

ENV_PREFIX = "ARPWATCHD_"
ENV_FIELDS = ("ts", "event", "severity", "interface", "vlan", "ip", "mac", "previous_mac",
              "reason", "suspect", "vendor", "count", "since", "duration", "suppressed_event")
"""Always set (empty when the event has no such field), so scripts need no existence tests."""
STDERR_KEPT = 500


@dataclass(frozen=True, slots=True)
class HookConfig:
    command: tuple[str, ...]
    """Program (absolute path) and its arguments, passed as a list: no shell."""
    events: frozenset[EventKind]
    timeout: float = 10.0
    max_running: int = 4


def hook_env(event: Event, vendor: str | None, base: dict[str, str] | None = None
             ) -> dict[str, str]:
    """The hook's environment: `base` (default: ours) plus ARPWATCHD_<FIELD> per event field."""
    env = dict(os.environ if base is None else base)
    fields = event.to_dict(vendor)
    for name in ENV_FIELDS:
        value = fields.get(name)
        env[ENV_PREFIX + name.upper()] = "" if value is None else str(value)
    return env


class HookRunner:
    """Runs the hook for matching events in worker threads; never blocks, never raises."""


    def counters(self) -> dict[str, int]:
        """For metrics: runs started, events dropped (all slots busy), failures, timeouts."""
        return {"hook_runs": self.started, "hook_dropped": self.dropped,
                "hook_failures": self.failed, "hook_timeouts": self.timed_out}

    def __init__(self, config: HookConfig) -> None:
        self.config = config
        self.started = 0
        self.dropped = 0
        self.failed = 0
        self.timed_out = 0
        self._slots = threading.BoundedSemaphore(config.max_running)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._logged: set[str] = set()

    def write(self, events: list[Event], vendor_of: Callable[[str | None], str | None]) -> None:
        for event in events:
            if event.kind not in self.config.events:
                continue
            if not self._slots.acquire(blocking=False):
                with self._lock:
                    self.dropped += 1
                self._once("busy", f"hook: {self.config.max_running} already running; events "
                           f"that find no free slot are dropped (counted; this is logged once)")
                continue
            vendor = vendor_of(event.mac)
            payload = (event.to_json(vendor) + "\n").encode()
            thread = threading.Thread(target=self._run, args=(payload, hook_env(event, vendor)),
                                      name="hook", daemon=True)
            with self._lock:
                self.started += 1
                self._threads.add(thread)
            thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Waits for the running hooks (each is bounded by the configured timeout)."""
        limit = self.config.timeout + 5.0 if timeout is None else timeout
        with self._lock:
            running = list(self._threads)
        for thread in running:
            thread.join(limit)

    def close(self) -> None:
        self.wait()

    def _run(self, payload: bytes, env: dict[str, str]) -> None:
        try:
            self._execute(payload, env)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
            self._slots.release()

    def _execute(self, payload: bytes, env: dict[str, str]) -> None:
        command = list(self.config.command)
        # stderr goes to a file, not a pipe: waiting for the program, not for every process
        # that inherited its pipe, lets a hook leave a background job behind.
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(  # an argument list, never a shell
                    command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                    env=env, cwd="/", start_new_session=True, close_fds=True)
            except (OSError, ValueError) as exc:
                self._failed("start", f"hook: cannot run {command[0]}: {exc}")
                return
            assert proc.stdin is not None
            with contextlib.suppress(OSError):  # a program that exits unread is fine
                proc.stdin.write(payload)  # one JSON line: far below the pipe's buffer
                proc.stdin.close()
            try:
                proc.wait(timeout=self.config.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                with self._lock:
                    self.timed_out += 1
                self._once("timeout", f"hook: {command[0]} still running after "
                           f"{self.config.timeout:g} s; killed with its children (logged "
                           f"once, counted)")
                return
            if proc.returncode != 0:
                errors.seek(max(0, errors.seek(0, os.SEEK_END) - STDERR_KEPT))
                tail = errors.read().decode(errors="replace").strip()
                self._failed(f"exit{proc.returncode}", f"hook: {command[0]} exited with "
                             f"status {proc.returncode}" + (f": {tail}" if tail else ""))

    def _failed(self, key: str, message: str) -> None:
        with self._lock:
            self.failed += 1
        self._once(key, message + " (each kind of failure is logged once, all are counted)")

    def _once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning("%s", message)
