"""Shared pytest configuration for arpwatchd's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# --- netlab: live network-namespace lab (tests/netlab.py) -----------------------------------
# Tests marked ``live`` need root and network namespaces; elsewhere they are skipped with the
# reason netlab.lab_available() gives. The ``lab`` fixture is a fresh Lab per test, torn down
# (namespaces, veths, processes) even when the test fails.
from netlab import Lab, lab_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    live = [item for item in items if item.get_closest_marker("live")]
    if not live:
        return
    ok, reason = lab_available()
    if not ok:
        for item in live:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A started ``netlab.Lab`` (sensor namespace + flooding bridge); add hosts in the test."""
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)
    with Lab() as the_lab:
        yield the_lab


# --- end netlab ----------------------------------------------------------------------------
