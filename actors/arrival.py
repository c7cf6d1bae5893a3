"""A batch as the shard's engine sees it: refused rows removed, positions mapped back to arrival order."""

from __future__ import annotations

import bisect

import numpy as np

from riskcore.engine import TickColumns


def keep_ticks(ticks: TickColumns, mask: np.ndarray) -> TickColumns:
    return TickColumns(
        ticks.symbol[mask], ticks.bid[mask], ticks.ask[mask], ticks.ts_ns[mask], ticks.seq[mask],
        ticks.stream[mask], ticks.streams,
    )


class ArrivalPositions:
    """Maps a position in the cleaned batch the engine saw back to the router's arrival numbering.

    In a batch, fill ``j`` sits at merged position ``fill_pos[j] + j`` and tick ``t`` at
    ``t + (fills at or before t)``; refused rows are gone from the cleaned batch.
    """

    def __init__(self, fill_pos: list[int], kept_ticks: np.ndarray, kept_pos: list[int],
                 kept_fills: list[int], base_pos: int) -> None:
        self.orig_fill_pos = np.asarray(fill_pos, dtype=np.int64)
        self.kept_ticks = kept_ticks
        self.clean_fill_at = [pos + j for j, pos in enumerate(kept_pos)]
        self.kept_fills = kept_fills
        self.base_pos = base_pos

    def __call__(self, pos: int) -> int:
        j = bisect.bisect_left(self.clean_fill_at, pos)
        if j < len(self.clean_fill_at) and self.clean_fill_at[j] == pos:
            orig = self.kept_fills[j]
            return self.base_pos + int(self.orig_fill_pos[orig]) + orig
        tick = int(self.kept_ticks[pos - j])
        return self.base_pos + tick + int(np.searchsorted(self.orig_fill_pos, tick, side="right"))
