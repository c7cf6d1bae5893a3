"""Input screening (riskcore.ingest): the whole-batch fast path and the row-by-row path agree on any input."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from riskcore.ingest import TickScreen
from tests.unit.test_ingest import T0, Row, columns

_PRICE = st.sampled_from([1.0, 1.1, 1.2] * 8 + [0.0, -1.0, math.nan, math.inf, 2e9])
_ROW = st.tuples(st.integers(0, 2), _PRICE, _PRICE, st.integers(0, 12), st.integers(0, 12))


@st.composite
def _batch(draw: st.DrawFn) -> list[Row]:
    rows = draw(st.lists(_ROW, max_size=12))
    if draw(st.booleans()):
        # Mostly in order: rising seq and time from a drawn start (so the fast path is taken often).
        start = draw(st.integers(0, 30))
        rows = [(s, b, a, start + i, start + i) for i, (s, b, a, _t, _q) in enumerate(rows)]
    return [(s, b, a, T0 + t, q) for s, b, a, t, q in rows]


@settings(max_examples=500, deadline=None)
@given(st.lists(_batch(), min_size=1, max_size=4))
def test_tick_screen_when_batches_random_fast_and_row_paths_agree(batches: list[list[Row]]) -> None:
    """Each batch through ``screen`` (fast path when it can) equals the row-by-row path on a twin screen."""
    fast, rows_only = TickScreen(), TickScreen()
    for batch in batches:
        cols = columns(batch, streams=("A", "B", "C"))
        mask_fast, ref_fast = fast.screen(cols)
        mask_rows, ref_rows = rows_only._screen_rows(cols)
        assert mask_fast.tolist() == mask_rows.tolist()
        assert ref_fast == ref_rows
        assert fast.last_seq == rows_only.last_seq
        assert fast.last_ts == rows_only.last_ts
    assert fast.refused == rows_only.refused
