"""MAC to vendor name from the IEEE registry, offline (Debian's ieee-data CSV files).

The longest assignment wins: MA-S (36 bits) before MA-M (28) before MA-L (24), as the IEEE
sub-allocates. Read lazily, so a sensor that never prints an event never reads it; the first
few dozen prefixes are found by searching the files, the whole table is parsed only after.
Locally administered MACs (random, virtual) have no vendor.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from functools import lru_cache
from pathlib import Path

from arpwatchd.addresses import virtual_router

IEEE_DATA = Path("/usr/share/ieee-data")
_FILES = ("oui36.csv", "iab.csv", "mam.csv", "oui.csv")


_REGISTRIES = {9: (b"MA-S", b"IAB"), 7: (b"MA-M",), 6: (b"MA-L",)}
"""The registries of each prefix length; each file of `_FILES` holds one, in that order."""
SCANS_BEFORE_LOAD = 64
"""OUIs looked up by searching the raw files before the whole table is parsed: a LAN has a
few dozen vendors, and parsing 46,000 rows costs 55 ms of every start."""
_DIVIDED = re.compile(rb"\n(?:MA-M|MA-S|IAB),([0-9A-F]{6})")


class Vendors:
    def __init__(self, directory: Path = IEEE_DATA) -> None:
        self._directory = directory
        self._by_prefix: dict[str, str] | None = None
        self._raw: dict[bytes, bytes] | None = None
        self._divided: set[bytes] = set()
        self._scanned: dict[str, str | None] = {}
        self._ouis: set[str] = set()

    def _load(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for name in _FILES:
            try:
                with (self._directory / name).open(encoding="utf-8", newline="") as handle:
                    for row in csv.reader(handle):
                        if len(row) >= 3 and row[0].startswith(("MA-", "IAB")):
                            table.setdefault(row[1].upper(), row[2].strip())
            except OSError:
                continue
        return table

    @property
    def available(self) -> bool:
        return bool(self._table())

    def _table(self) -> dict[str, str]:
        if self._by_prefix is None:
            self._by_prefix = self._load()
            self._raw = None
        return self._by_prefix

    def _files(self) -> dict[bytes, bytes]:
        """Each registry's file, by registry name, read once."""
        if self._raw is None:
            self._raw = {}
            for file in _FILES:
                with contextlib.suppress(OSError):
                    data = b"\n" + (self._directory / file).read_bytes()
                    first = data.find(b"\n", 1) + 1  # the first row after the header
                    self._raw[data[first : data.find(b",", first)]] = data
            blocks = b"".join(data for name, data in self._raw.items() if name != b"MA-L")
            self._divided = set(_DIVIDED.findall(blocks))
        return self._raw

    def _scan(self, digits: str) -> str | None:
        """What the parsed table gives for a MAC's 12 hex digits, found by searching each
        registry's file; only OUIs the IEEE divided into MA-M, MA-S or IAB blocks are
        searched for those."""
        oui = digits[:6]
        files = self._files()
        lengths = (9, 7, 6) if oui.encode() in self._divided else (6,)
        for length in lengths:
            prefix = digits[:length]
            if prefix not in self._scanned:
                self._scanned[prefix] = self._find(files, prefix)
            if self._scanned[prefix] is not None:
                return self._scanned[prefix]
        return None

    @staticmethod
    def _find(files: dict[bytes, bytes], prefix: str) -> str | None:
        for registry in _REGISTRIES[len(prefix)]:
            data = files.get(registry, b"")
            at = data.find(b"\n" + registry + b"," + prefix.encode() + b",")
            if at >= 0:
                text = data[at + 1 : at + 4096].decode("utf-8", "replace")
                row = next(csv.reader(io.StringIO(text)))
                return row[2].strip() if len(row) >= 3 else None
        return None

    def lookup(self, mac: str | None) -> str | None:
        """Vendor of a MAC in aa:bb:cc:dd:ee:ff form, or None."""
        if not mac:
            return None
        return _cached_lookup(self, mac)

    def _lookup(self, mac: str) -> str | None:
        digits = mac.replace(":", "").upper()
        if len(digits) != 12:
            return None
        first = int(digits[:2], 16)
        router = virtual_router(bytes.fromhex(digits))
        if router is not None:
            return f"{router.value.upper()} virtual router"
        if first & 0x02:
            return None
        if self._by_prefix is None and len(self._ouis) < SCANS_BEFORE_LOAD:
            self._ouis.add(digits[:6])
            return self._scan(digits)
        table = self._table()
        for length in (9, 7, 6):
            name = table.get(digits[:length])
            if name is not None:
                return name
        return None


@lru_cache(maxsize=65536)
def _cached_lookup(vendors: Vendors, mac: str) -> str | None:
    return vendors._lookup(mac)
