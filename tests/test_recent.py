"""The kernel's `Recent` table (_recent.c) and `senders.PyRecent` (no compiler) must evict the
same entries in the same order: the tracker's requests and answers on record decide whether a
reply was solicited, so a different eviction is a different event once a table is full."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpwatchd.kernel import KERNEL
from arpwatchd.senders import PyRecent

pytestmark = pytest.mark.skipif(KERNEL is None, reason="C kernel not built")

# keys as the tracker makes them (request keys are bytes, answer keys ints, reported keys
# tuples), with equal hashes that differ (hash(-1) == hash(-2); 2**61 - 1 + k hashes as k)
KEYS = st.one_of(
    st.binary(min_size=0, max_size=40),
    st.integers(min_value=-3, max_value=40),
    st.sampled_from([2**61 - 1, 2**61, 2**61 + 5, 2**200 + 7, (1 << 64) * 3]),
    st.tuples(st.sampled_from(["conflict", "flood"]), st.integers(0, 3), st.binary(max_size=6)),
)
OPS = st.lists(
    st.tuples(st.sampled_from(["note", "get", "within", "first_in", "contains", "pop"]), KEYS,
              st.floats(min_value=0, max_value=100, allow_nan=False)),
    max_size=300,
)


def run(table: Any, ops: list[tuple[str, Any, float]]) -> list[Any]:
    seen = []
    for op, key, ts in ops:
        if op == "note":
            seen.append(table.note(key, ts))
        elif op == "get":
            seen.append(table.get(key, "missing"))
        elif op == "within":
            seen.append(table.within(key, ts, 5.0))
        elif op == "pop":
            seen.append(table.pop(key, "missing"))
        elif op == "first_in":
            seen.append(table.first_in(key, ts, 5.0))
        else:
            seen.append(key in table)
        seen.append(len(table))
    return [*seen, table.items()]


@settings(max_examples=400, deadline=None)
@given(cap=st.integers(min_value=0, max_value=200), ops=OPS)
def test_same_answers_and_evictions_as_python(cap: int, ops: list[tuple[str, Any, float]]
                                              ) -> None:
    assert KERNEL is not None
    assert run(KERNEL.Recent(cap), ops) == run(PyRecent(cap), ops)


def test_full_table_evicts_the_oldest_sixty_fourth_and_refresh_moves_to_the_end() -> None:
    assert KERNEL is not None
    cap = 640
    table, python = KERNEL.Recent(cap), PyRecent(cap)
    for t in (table, python):
        for n in range(cap):
            t.note(n, float(n))
        t.note(0, 1000.0)  # refreshed: now the newest, not evicted
        t.note("new", 1001.0)  # full: the 10 oldest (1..10) go
    assert table.items() == python.items()
    assert len(table) == cap - 9
    assert 0 in table and 10 not in table and 11 in table
    assert table.items()[-2:] == [(0, 1000.0), ("new", 1001.0)]


def test_a_million_keys_through_a_small_table_stay_bounded() -> None:
    assert KERNEL is not None
    table = KERNEL.Recent(1000)
    for n in range(1_000_000):
        table.note(n.to_bytes(9, "big"), float(n))
    assert len(table) <= 1000
    assert table.get((999_999).to_bytes(9, "big")) == 999_999.0


def test_values_are_released_and_cycles_collected() -> None:
    assert KERNEL is not None

    class Value:
        freed = 0

        def __del__(self) -> None:
            Value.freed += 1

    table = KERNEL.Recent(10)
    for n in range(25):
        table.note(n, Value())
    assert Value.freed == 15  # evicted ones dropped at once
    cycle: list[object] = []
    table.note("self", cycle)
    cycle.append(table)  # a table reachable from its own value
    del table, cycle
    gc.collect()
    assert Value.freed == 25


def test_bad_arguments_raise_not_crash() -> None:
    assert KERNEL is not None
    with pytest.raises(ValueError):
        KERNEL.Recent(-1)
    table = KERNEL.Recent(4)
    with pytest.raises(TypeError):
        table.note([1], 1.0)  # unhashable
    with pytest.raises(TypeError):
        table.note(1)
    table.note("k", "not a time")
    with pytest.raises(TypeError):
        table.within("k", 1.0, 1.0)


def test_pop_and_clear() -> None:
    assert KERNEL is not None
    for table in (KERNEL.Recent(8), PyRecent(8)):
        for n in range(5):
            table.note(bytes([n]) * 60, n)
        assert table.pop(bytes([2]) * 60) == 2
        assert table.pop(b"absent", "none") == "none"
        with pytest.raises(KeyError):
            table.pop(b"absent")
        assert [v for _, v in table.items()] == [0, 1, 3, 4]
        table.clear()
        assert len(table) == 0 and not table.items()
