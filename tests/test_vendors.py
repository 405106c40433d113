"""Vendor names from Debian's ieee-data: found by searching the files for the first few dozen
prefixes (a fast start), from the parsed table after; both must name the same vendor."""

from __future__ import annotations

import random

import pytest

from arpwatchd.vendors import IEEE_DATA, SCANS_BEFORE_LOAD, Vendors

pytestmark = pytest.mark.skipif(not (IEEE_DATA / "oui.csv").exists(),
                                reason="Debian's ieee-data is not installed")


def _mac(prefix: str) -> str:
    digits = (prefix + "0" * 12)[:12]
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def test_searching_the_files_names_the_same_vendor_as_the_table() -> None:
    table = Vendors()
    prefixes = list(table._table())
    sample = random.Random(5).sample(prefixes, 400)
    by_length = {len(p) for p in sample}
    assert by_length == {6, 7, 9}  # MA-L, MA-M, and MA-S or IAB all covered
    for prefix in [*sample, "FCFFFF", "001122", "AC1F6B"]:
        searched = Vendors()  # fresh: its first lookup searches, it never parses the table
        assert searched.lookup(_mac(prefix)) == table.lookup(_mac(prefix)), prefix
        assert searched._by_prefix is None


def test_many_vendors_switch_to_the_parsed_table() -> None:
    vendors = Vendors()
    prefixes = random.Random(7).sample([p for p in Vendors()._table() if len(p) == 6],
                                       SCANS_BEFORE_LOAD + 10)
    names = [vendors.lookup(_mac(p)) for p in prefixes]
    assert vendors._by_prefix is not None
    assert all(names)
    assert vendors.lookup("00:1c:7f:00:00:01") == "Check Point Software Technologies"
    assert vendors.lookup("02:00:00:00:00:01") is None  # locally administered: no vendor


def test_a_lan_of_few_vendors_never_parses_the_table() -> None:
    """Thousands of hosts from a handful of vendors (and of divided blocks) cost searches of
    the files for a few prefixes, not the 46,000-row parse."""
    vendors = Vendors()
    ouis = ["00:1c:7f", "3c:fa:43", "70:b3:d5", "8c:1f:64", "00:50:c2"]
    for i in range(2000):
        vendors.lookup(f"{ouis[i % len(ouis)]}:{i >> 8 & 255:02x}:{i & 255:02x}:01")
    assert vendors._by_prefix is None
    assert vendors.lookup("70:b3:d5:f2:f0:01") == Vendors()._table()["70B3D5F2F"]
