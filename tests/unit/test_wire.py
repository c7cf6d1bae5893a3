"""msgpack frames (riskcore.wire): round trips, and every refusal is an InputError with a code."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from riskcore.engine import EventBatch, TickColumns
from riskcore.errors import InputError
from riskcore.events import AccountEvent, Cash, Fill
from riskcore.wire import BatchFrame, TickFrame, decode, encode_batch, encode_fills, encode_ticks

T0 = 1_577_916_000_000_000_000  # 2020-01-01T22:00:00Z in ns


# --------------------------------------------------------------------------- helpers


def sample_ticks() -> bytes:
    return encode_ticks(
        "feed-1",
        ["EURUSD", "GBPUSD"],
        [0, 1, 0],
        [1.1212, 1.3250, 1.1213],
        [1.1217, 1.3252, 1.1218],
        [T0, T0 + 1, T0 + 2],
        [10, 11, 12],
    )


def sample_fills() -> list[AccountEvent]:
    return [
        Fill("acct-1", "EURUSD", 1_000_000.0, 1.1215, T0, fee=12.5, fill_id="f-1", stream="exec", seq=4),
        Fill("acct-2", "GBPUSD", -250.0, 1.3251, T0 + 5),
    ]


def sample_batch() -> EventBatch:
    ticks = TickColumns(
        symbol=np.array([0, 2, 0, 1], np.int32),
        bid=np.array([1.1, 2.2, 1.2, 3.3]),
        ask=np.array([1.15, 2.25, 1.25, 3.35]),
        ts_ns=np.array([T0, T0 + 1, T0 + 2, T0 + 3], np.int64),
        seq=np.array([1, 1, 2, 3], np.int64),
        stream=np.array([0, 1, 0, 0], np.int32),
        streams=("s-a", "s-b"),
    )
    return EventBatch(ticks, sample_fills(), [0, 3], {0: (1.05, 1.06), 1: (3.0, 3.1)})


def repack(frame: bytes, **changes: Any) -> bytes:
    """The same frame with some top-level keys replaced (``None`` removes the key)."""
    raw = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    packed: bytes = msgpack.packb(raw, use_bin_type=True)
    return packed


def refused(data: bytes, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as info:
        decode(data, **kwargs)
    return info.value


# --------------------------------------------------------------------------- round trips


def test_wire_when_ticks_encoded_then_decoded_returns_equal_columns() -> None:
    frame = decode(sample_ticks())
    assert isinstance(frame, TickFrame)
    assert frame.stream == "feed-1"
    assert frame.symbols == ["EURUSD", "GBPUSD"]
    assert len(frame) == 3
    np.testing.assert_array_equal(frame.sym, [0, 1, 0])
    np.testing.assert_array_equal(frame.bid, [1.1212, 1.3250, 1.1213])
    np.testing.assert_array_equal(frame.ask, [1.1217, 1.3252, 1.1218])
    np.testing.assert_array_equal(frame.ts_ns, [T0, T0 + 1, T0 + 2])
    np.testing.assert_array_equal(frame.seq, [10, 11, 12])
    assert (frame.sym.dtype, frame.bid.dtype, frame.ts_ns.dtype, frame.seq.dtype) == (
        np.dtype("<i4"),
        np.dtype("<f8"),
        np.dtype("<i8"),
        np.dtype("<i8"),
    )


def test_wire_when_empty_ticks_encoded_then_decoded_returns_empty_frame() -> None:
    frame = decode(encode_ticks("s", [], [], [], [], [], []))
    assert isinstance(frame, TickFrame)
    assert len(frame) == 0


def test_wire_when_fills_encoded_then_decoded_returns_equal_fills() -> None:
    assert decode(encode_fills(sample_fills())) == sample_fills()


def test_wire_when_batch_encoded_then_decoded_returns_equal_batch() -> None:
    batch = sample_batch()
    frame = decode(encode_batch(batch, number=7, base_pos=120), symbol_count=3)
    assert isinstance(frame, BatchFrame)
    assert (frame.number, frame.base_pos) == (7, 120)
    got = frame.batch
    for name in ("symbol", "bid", "ask", "ts_ns", "seq", "stream"):
        np.testing.assert_array_equal(getattr(got.ticks, name), getattr(batch.ticks, name), err_msg=name)
    assert got.ticks.streams == ("s-a", "s-b")
    assert got.fills == batch.fills
    assert got.fill_pos == [0, 3]
    assert got.marks == {0: (1.05, 1.06), 1: (3.0, 3.1)}


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", b"\xc1\x00\xff garbage", b"\x82\xa1v"], ids=["empty", "c1", "junk", "half-map"]
)
def test_wire_when_bytes_are_garbage_raises_bad_frame(data: bytes) -> None:
    assert refused(data).code == "bad_frame"


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_wire_when_frame_truncated_raises_bad_frame(cut: int) -> None:
    data = sample_ticks()
    assert refused(data[:-cut]).code == "bad_frame"


def test_wire_when_frame_has_trailing_bytes_raises_bad_frame() -> None:
    assert refused(sample_ticks() + b"\x00").code == "bad_frame"


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_wire_when_version_wrong_raises_bad_frame(version: Any) -> None:
    error = refused(repack(sample_ticks(), v=version))
    assert error.code == "bad_frame"
    assert "version" in error.message


def test_wire_when_version_missing_raises_bad_frame() -> None:
    assert refused(repack(sample_ticks(), v=None)).code == "bad_frame"


def test_wire_when_type_unknown_raises_bad_frame() -> None:
    error = refused(repack(sample_ticks(), type="orders"))
    assert error.code == "bad_frame"
    assert "orders" in error.message


def test_wire_when_column_length_not_multiple_of_itemsize_raises_bad_frame() -> None:
    error = refused(repack(sample_ticks(), bid=b"\x00" * 23))
    assert error.code == "bad_frame"
    assert "multiple" in error.message


def test_wire_when_columns_have_unequal_rows_raises_bad_frame() -> None:
    error = refused(repack(sample_ticks(), ask=np.zeros(2).tobytes()))
    assert error.code == "bad_frame"
    assert "rows" in error.message


def test_wire_when_column_not_bytes_raises_bad_frame() -> None:
    assert refused(repack(sample_ticks(), seq=[10, 11, 12])).code == "bad_frame"


@pytest.mark.parametrize("sym", [[0, 2, 1], [-1, 0, 1]], ids=["past-end", "negative"])
def test_wire_when_sym_index_outside_symbols_raises_bad_frame(sym: list[int]) -> None:
    data = repack(sample_ticks(), sym=np.array(sym, "<i4").tobytes())
    assert refused(data).code == "bad_frame"


def test_wire_when_batch_symbol_id_outside_symbol_count_raises_bad_frame() -> None:
    data = encode_batch(sample_batch(), 0, 0)
    assert refused(data, symbol_count=2).code == "bad_frame"
    assert isinstance(decode(data, symbol_count=3), BatchFrame)


def test_wire_when_batch_fill_pos_decreasing_raises_bad_frame() -> None:
    assert (
        refused(repack(encode_batch(sample_batch(), 0, 0), fill_pos=[3, 0]), symbol_count=3).code
        == "bad_frame"
    )


def test_wire_when_batch_fill_pos_past_rows_raises_bad_frame() -> None:
    assert (
        refused(repack(encode_batch(sample_batch(), 0, 0), fill_pos=[0, 5]), symbol_count=3).code
        == "bad_frame"
    )


def test_wire_when_batch_mark_for_unknown_symbol_raises_bad_frame() -> None:
    data = repack(encode_batch(sample_batch(), 0, 0), marks={9: [1.0, 1.1]})
    assert refused(data, symbol_count=3).code == "bad_frame"


@pytest.mark.parametrize("bad", [["x", 1.0], [None, 1.0], [{}, 1.0]], ids=["str", "nil", "map"])
def test_wire_when_batch_mark_value_not_number_raises_bad_frame(bad: list[Any]) -> None:
    data = repack(encode_batch(sample_batch(), 0, 0), marks={0: bad})
    assert refused(data, symbol_count=3).code == "bad_frame"


def test_wire_when_frame_larger_than_max_bytes_raises_oversize_frame() -> None:
    data = sample_ticks()
    error = refused(data, max_bytes=len(data) - 1)
    assert error.code == "oversize_frame"
    assert isinstance(decode(data, max_bytes=len(data)), TickFrame)


def fills_frame(**fill_changes: Any) -> bytes:
    item = {"account": "acct-1", "symbol": "EURUSD", "qty": 10.0, "price": 1.1, "ts": T0}
    item.update(fill_changes)
    packed: bytes = msgpack.packb({"v": 1, "type": "fills", "fills": [item]}, use_bin_type=True)
    return packed


def test_wire_when_fill_qty_is_string_raises_bad_fill() -> None:
    error = refused(fills_frame(qty="10"))
    assert error.code == "bad_fill"
    assert "qty" in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [("price", None), ("ts", 1.5), ("account", 7), ("qty", True), ("fee", "0"), ("seq", "3")],
)
def test_wire_when_fill_field_mistyped_raises_bad_fill(field: str, value: Any) -> None:
    assert refused(fills_frame(**{field: value})).code == "bad_fill"


def test_wire_when_fill_missing_required_field_raises_bad_fill() -> None:
    item = {"account": "acct-1", "symbol": "EURUSD", "qty": 10.0, "ts": T0}
    assert refused(msgpack.packb({"v": 1, "type": "fills", "fills": [item]})).code == "bad_fill"


def test_wire_when_fill_has_unknown_field_raises_bad_fill() -> None:
    error = refused(fills_frame(venue="XLON"))
    assert error.code == "bad_fill"
    assert "venue" in error.message


def test_wire_when_fill_has_unknown_keys_of_mixed_types_raises_bad_fill() -> None:
    item: dict[Any, Any] = {"account": "acct-1", "symbol": "EURUSD", "qty": 10.0, "price": 1.1, "ts": T0}
    item["venue"] = "XLON"
    item[3] = 4
    data = msgpack.packb({"v": 1, "type": "fills", "fills": [item]}, use_bin_type=True)
    assert refused(data).code == "bad_fill"


def test_wire_when_fill_not_a_map_raises_bad_fill() -> None:
    assert refused(msgpack.packb({"v": 1, "type": "fills", "fills": [[1, 2]]})).code == "bad_fill"


def test_wire_when_fills_not_a_list_raises_bad_frame() -> None:
    assert refused(msgpack.packb({"v": 1, "type": "fills", "fills": {"a": 1}})).code == "bad_frame"


@pytest.mark.parametrize("payload", [[1, 2, 3], "ticks", 42, None], ids=["list", "str", "int", "nil"])
def test_wire_when_frame_is_not_a_map_raises_bad_frame(payload: Any) -> None:
    error = refused(msgpack.packb(payload))
    assert error.code == "bad_frame"
    assert "map" in error.message


def test_wire_when_frame_has_ext_type_raises_bad_frame() -> None:
    data = msgpack.packb({"v": 1, "type": "ticks", "stream": msgpack.ExtType(1, b"xx")})
    assert refused(data).code == "bad_frame"


# --------------------------------------------------------------------------- cash movements


def test_wire_when_cash_travels_among_fills_decodes_to_the_same_events_in_order() -> None:
    events: list[AccountEvent] = [
        sample_fills()[0],
        Cash("acct-1", -250_000.0, T0 + 5, "wd-7", "treasury", 3),
        sample_fills()[-1],
    ]
    assert decode(encode_fills(events)) == events
    batch = EventBatch(TickColumns.empty(), events, [0, 0, 0])
    frame = decode(encode_batch(batch, number=1, base_pos=0), symbol_count=3)
    assert isinstance(frame, BatchFrame)
    assert frame.batch.fills == events


@pytest.mark.parametrize(
    "item",
    [
        {"type": "cash", "account": "acct-1", "amount": "100", "ts": T0},  # amount a string
        {"type": "cash", "account": "acct-1", "ts": T0},  # no amount
        {"type": "cash", "account": "acct-1", "amount": 5.0, "ts": T0, "symbol": "EURUSD"},  # a fill's field
        {"type": "cash", "account": 3, "amount": 5.0, "ts": T0},
        {"type": "cash", "account": "acct-1", "amount": True, "ts": T0},
    ],
)
def test_wire_when_cash_item_malformed_raises_bad_fill(item: dict[str, Any]) -> None:
    assert refused(msgpack.packb({"v": 1, "type": "fills", "fills": [item]})).code == "bad_fill"
