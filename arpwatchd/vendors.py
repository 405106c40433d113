"""MAC to vendor name from the IEEE registry, offline (Debian's ieee-data CSV files).

The longest assignment wins: MA-S (36 bits) before MA-M (28) before MA-L (24), as the IEEE
sub-allocates. Loaded once, lazily, so a sensor that never prints an event never reads it.
Locally administered MACs (random, virtual) have no vendor.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from arpwatchd.addresses import virtual_router

IEEE_DATA = Path("/usr/share/ieee-data")
_FILES = ("oui36.csv", "iab.csv", "mam.csv", "oui.csv")


class Vendors:
    def __init__(self, directory: Path = IEEE_DATA) -> None:
        self._directory = directory
        self._by_prefix: dict[str, str] | None = None

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
        return self._by_prefix

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
        table = self._table()
        for length in (9, 7, 6):
            name = table.get(digits[:length])
            if name is not None:
                return name
        return None


@lru_cache(maxsize=65536)
def _cached_lookup(vendors: Vendors, mac: str) -> str | None:
    return vendors._lookup(mac)
