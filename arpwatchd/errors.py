"""The errors the command line turns into exit codes, and those codes; imports nothing.

They belong to the edges that raise them (capture, store, config, output, privileges) and
are re-exported there; they live here so that `cli` can catch them without importing the
edges, which would load libpcap, SQLite and ctypes for every command (start-up, issue 12).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
"""EX_UNAVAILABLE: an interface to capture on is missing or down at start."""


class ConfigError(Exception):
    """A config that cannot be used; the message is one line naming the key and line."""


class CaptureError(Exception):
    """The capture cannot start or go on; the message is one line naming what failed."""


class InterfaceUnavailableError(CaptureError):
    """The interface does not exist or is down. At start this has an exit status of its own
    (69), so systemd's restart limit and an operator can tell it from a broken sensor: the
    interface may come later (a USB NIC, a VLAN made by another unit), a bug will not go."""


class StoreError(Exception):
    """The state file cannot be opened or written; one line naming the file."""


class OutputError(Exception):
    """The events destination cannot be opened or written."""


class PrivilegeError(Exception):
    """Dropping privileges failed; one line saying what to fix."""
