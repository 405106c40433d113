"""A batch of captured frames as pcapy-ng's `next_batch` returns it, readable without pcapy.

`data` holds every frame back to back; `meta` has one 16-byte record per frame, four native
uint32 (seconds, microseconds, offset, length). Frames are sliced out only when iterated.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

META = struct.Struct("=IIII")


@dataclass(frozen=True, slots=True)
class Batch:
    """Frames read in one call: `data` holds them all, `meta` 16-byte (sec, usec, off, len)."""

    data: bytes
    meta: bytes

    def __len__(self) -> int:
        return len(self.meta) // META.size

    def last_ts(self) -> float:
        sec, usec, _, _ = META.unpack_from(self.meta, len(self.meta) - META.size)
        return float(sec + usec * 1e-6)

    def frames(self) -> Iterator[tuple[float, bytes]]:
        data = self.data
        for sec, usec, offset, length in META.iter_unpack(self.meta):
            yield sec + usec * 1e-6, data[offset : offset + length]
