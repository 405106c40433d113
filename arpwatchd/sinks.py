"""Builds the optional event sinks (syslog, hook) that `EventWriter` fans events out to.

Kept apart from `output` so that the JSON-lines writer does not import sockets or
subprocesses, and apart from `config` so that parsing a config never opens anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arpwatchd.config import OutputConfig
    from arpwatchd.output import EventSink


def open_sinks(output: OutputConfig) -> list[EventSink]:
    """The sinks the config asks for; they connect and run lazily, in their own threads."""
    sinks: list[EventSink] = []
    if output.syslog is not None:
        from arpwatchd.syslog import SyslogSink  # noqa: PLC0415  (only when configured)

        sinks.append(SyslogSink(output.syslog))
    if output.hook is not None:
        from arpwatchd.hooks import HookRunner  # noqa: PLC0415  (only when configured)

        sinks.append(HookRunner(output.hook))
    return sinks
