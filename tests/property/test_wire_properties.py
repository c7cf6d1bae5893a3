"""msgpack frames (riskcore.wire) on generated input.

Any bytes decode to a frame or raise an InputError, nothing else; any tick columns round-trip bit for bit.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcore.errors import InputError
from riskcore.events import Fill
from riskcore.wire import BatchFrame, TickFrame, decode, encode_batch, encode_fills, encode_ticks
from tests.unit.test_wire import sample_batch, sample_fills, sample_ticks

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_wire_when_fed_arbitrary_bytes_returns_frame_or_raises_input_error(data: bytes) -> None:
    code: str | None = None
    try:
        result = decode(data, symbol_count=8, max_bytes=4096)
    except InputError as error:
        code = error.code
    if code is not None:
        assert code in {"bad_frame", "bad_fill", "oversize_frame"}
        return
    assert isinstance(result, (TickFrame, BatchFrame, list))
    if isinstance(result, list):
        assert all(isinstance(item, Fill) for item in result)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_wire_when_valid_frame_bytes_mutated_returns_frame_or_raises_input_error(data: st.DataObject) -> None:
    # Arbitrary bytes rarely form a version-1 map, so also flip, cut and splice bytes of real frames.
    frames = [sample_ticks(), encode_fills(sample_fills()), encode_batch(sample_batch(), 1, 2)]
    base = data.draw(st.sampled_from(frames))
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    blob = bytes(buf[:cut]) + data.draw(st.binary(max_size=16))
    try:
        result = decode(blob, symbol_count=3)
    except InputError:
        return
    assert isinstance(result, (TickFrame, BatchFrame, list))


# A generator of well-formed-looking frames with wrong-ish contents (any scalar as a mark value, fill keys of
# mixed types): decode must answer with a frame or an InputError, nothing else.
_SCALAR = st.one_of(st.none(), st.booleans(), INT64, FINITE, st.text(max_size=6), st.binary(max_size=24))
_FILL = st.dictionaries(
    st.one_of(
        st.sampled_from(
            ["account", "symbol", "qty", "price", "ts", "fee", "fill_id", "stream", "seq", "venue"]
        ),
        st.integers(0, 3),
    ),
    _SCALAR, max_size=10,
)
_COLUMN = st.one_of(st.binary(max_size=40), st.none(), st.integers(0, 3))
_FRAME = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2]), "type": st.sampled_from(["ticks", "fills", "batch", "nope"])},
    optional={
        "stream": st.one_of(st.text(max_size=4), INT64),
        "streams": st.lists(st.one_of(st.text(max_size=3), INT64), max_size=3),
        "symbols": st.lists(st.one_of(st.text(max_size=3), INT64), max_size=3),
        "sym": _COLUMN, "bid": _COLUMN, "ask": _COLUMN, "ts": _COLUMN, "seq": _COLUMN,
        "fills": st.one_of(st.lists(st.one_of(_FILL, _SCALAR), max_size=3), _SCALAR),
        "fill_pos": st.lists(st.one_of(st.integers(-2, 6), st.booleans(), st.text(max_size=2)), max_size=3),
        "marks": st.dictionaries(
            st.one_of(st.integers(-2, 5), st.text(max_size=2)),
            st.one_of(st.lists(st.one_of(FINITE, _SCALAR), max_size=3), _SCALAR), max_size=3,
        ),
        "batch": _SCALAR, "base_pos": _SCALAR,
    },
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FRAME)
def test_wire_when_fed_structured_junk_frames_returns_frame_or_raises_input_error(
    frame: dict[str, Any],
) -> None:
    try:
        result = decode(msgpack.packb(frame, use_bin_type=True), symbol_count=3)
    except InputError:
        return
    assert isinstance(result, (TickFrame, BatchFrame, list))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
    st.text(min_size=1, max_size=8),
    st.data(),
)
def test_wire_when_random_tick_columns_round_trip_returns_identical_columns(
    symbols: list[str], stream: str, data: st.DataObject
) -> None:
    row = st.tuples(st.integers(0, len(symbols) - 1), FINITE, FINITE, INT64, INT64)
    rows = data.draw(st.lists(row, max_size=50))
    sym = np.array([r[0] for r in rows], np.int32)
    bid = np.array([r[1] for r in rows], np.float64)
    ask = np.array([r[2] for r in rows], np.float64)
    ts = np.array([r[3] for r in rows], np.int64)
    seq = np.array([r[4] for r in rows], np.int64)
    frame = decode(encode_ticks(stream, symbols, sym, bid, ask, ts, seq))
    assert isinstance(frame, TickFrame)
    assert frame.stream == stream
    assert frame.symbols == symbols
    assert len(frame) == len(rows)
    # Bit-identical: -0.0 stays -0.0, every int64 survives.
    pairs = ((frame.sym, sym), (frame.bid, bid), (frame.ask, ask), (frame.ts_ns, ts), (frame.seq, seq))
    for got, want in pairs:
        assert got.tobytes() == want.tobytes()
