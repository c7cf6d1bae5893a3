"""Input screening (riskcore.ingest): refused ticks and fills change nothing and are counted per code."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import msgpack
import numpy as np
import pytest

from riskcore.engine import SNAPSHOT_VERSION, TickColumns
from riskcore.errors import SnapshotError
from riskcore.events import AccountEvent, Fill
from riskcore.ingest import MAX_CASH, MAX_PRICE, MAX_QTY, FillScreen, Refusal, TickScreen, quote_problem

T0 = 1_577_916_000_000_000_000

Row = tuple[int, float, float, int, int]  # (stream index, bid, ask, ts_ns, seq)


# --------------------------------------------------------------------------- helpers


def columns(rows: Sequence[Row], streams: Sequence[str] = ("A", "B")) -> TickColumns:
    return TickColumns(
        symbol=np.zeros(len(rows), np.int32),
        bid=np.array([r[1] for r in rows], np.float64),
        ask=np.array([r[2] for r in rows], np.float64),
        ts_ns=np.array([r[3] for r in rows], np.int64),
        seq=np.array([r[4] for r in rows], np.int64),
        stream=np.array([r[0] for r in rows], np.int32),
        streams=tuple(streams),
    )


def ok(stream: int, seq: int, ts: int | None = None, bid: float = 1.0, ask: float = 1.1) -> Row:
    return (stream, bid, ask, T0 + seq if ts is None else ts, seq)


class PathSpy:
    """Counts the calls of TickScreen._screen_rows (the row-by-row path) while delegating to it."""

    def __init__(self, screen: TickScreen) -> None:
        self.calls = 0
        self._inner = screen._screen_rows

        def spy(ticks: TickColumns) -> tuple[np.ndarray, list[Refusal]]:
            self.calls += 1
            return self._inner(ticks)

        screen._screen_rows = spy  # type: ignore[method-assign]


def codes(refusals: list[Refusal]) -> list[str]:
    return [r.code for r in refusals]


def fill_ids(events: list[AccountEvent]) -> list[str]:
    """The fill ids of ``events``, every one a fill."""
    assert all(isinstance(e, Fill) for e in events), events
    return [e.fill_id for e in events if isinstance(e, Fill)]


# --------------------------------------------------------------------------- quote sanity


@pytest.mark.parametrize(
    ("bid", "ask"),
    [
        (math.nan, 1.1),
        (1.0, math.nan),
        (math.inf, math.inf),
        (1.0, math.inf),
        (-math.inf, 1.0),
        (0.0, 1.1),
        (-1.0, 1.1),
        (1.0, 0.0),
        (1.0, -1.1),
        (MAX_PRICE, MAX_PRICE),
        (1.0, 2e9),
    ],
    ids=[
        "nan-bid",
        "nan-ask",
        "inf-both",
        "inf-ask",
        "-inf-bid",
        "zero-bid",
        "neg-bid",
        "zero-ask",
        "neg-ask",
        "absurd-both",
        "absurd-ask",
    ],
)
def test_tick_screen_when_price_unusable_refuses_bad_price(bid: float, ask: float) -> None:
    screen = TickScreen()
    mask, refusals = screen.screen(columns([ok(0, 1), (0, bid, ask, T0 + 2, 2), ok(0, 3)]))
    assert mask.tolist() == [True, False, True]
    assert codes(refusals) == ["bad_price"]
    assert (refusals[0].stream, refusals[0].seq) == ("A", 2)
    assert screen.refused == Counter({"bad_price": 1})


def test_tick_screen_when_bid_above_ask_refuses_crossed_quote() -> None:
    screen = TickScreen()
    mask, refusals = screen.screen(columns([(0, 1.2, 1.1, T0, 1)]))
    assert mask.tolist() == [False]
    assert codes(refusals) == ["crossed_quote"]


def test_tick_screen_when_bid_equals_ask_accepts() -> None:
    mask, refusals = TickScreen().screen(columns([(0, 1.1, 1.1, T0, 1)]))
    assert mask.tolist() == [True]
    assert refusals == []


def test_quote_problem_when_quote_sane_returns_none() -> None:
    assert quote_problem(1.0, 1.0) is None
    assert quote_problem(1.0, 1.0001) is None


# --------------------------------------------------------------------------- order on a stream


@pytest.mark.parametrize("seq", [5, 4, 0, -3], ids=["equal", "lower", "zero", "negative"])
def test_tick_screen_when_seq_not_above_last_across_batches_refuses_duplicate_seq(seq: int) -> None:
    screen = TickScreen()
    screen.screen(columns([ok(0, 5)]))
    mask, refusals = screen.screen(columns([ok(0, seq, ts=T0 + 100)]))
    assert mask.tolist() == [False]
    assert codes(refusals) == ["duplicate_seq"]


def test_tick_screen_when_seq_repeats_within_batch_refuses_duplicate_seq() -> None:
    mask, refusals = TickScreen().screen(columns([ok(0, 1), ok(0, 2), ok(0, 2, ts=T0 + 9), ok(0, 3)]))
    assert mask.tolist() == [True, True, False, True]
    assert codes(refusals) == ["duplicate_seq"]


def test_tick_screen_when_timestamp_runs_back_refuses_stale_timestamp() -> None:
    screen = TickScreen()
    mask, refusals = screen.screen(columns([ok(0, 1, ts=T0 + 10), ok(0, 2, ts=T0 + 9), ok(0, 3, ts=T0 + 10)]))
    assert mask.tolist() == [True, False, True]
    assert codes(refusals) == ["stale_timestamp"]
    mask, refusals = screen.screen(columns([ok(0, 4, ts=T0 + 5)]))
    assert mask.tolist() == [False]
    assert codes(refusals) == ["stale_timestamp"]


def test_tick_screen_when_timestamp_repeats_with_higher_seq_accepts() -> None:
    mask, refusals = TickScreen().screen(columns([ok(0, 1, ts=T0), ok(0, 2, ts=T0), ok(0, 3, ts=T0)]))
    assert mask.all()
    assert refusals == []


def test_tick_screen_when_row_refused_does_not_advance_stream_last_seq_or_ts() -> None:
    screen = TickScreen()
    screen.screen(columns([ok(0, 1, ts=T0)]))
    # seq 9 / ts T0+90 is refused for its price: seq 5 at T0+50 after it is still in order.
    mask, refusals = screen.screen(columns([(0, math.nan, 1.1, T0 + 90, 9), ok(0, 5, ts=T0 + 50)]))
    assert mask.tolist() == [False, True]
    assert codes(refusals) == ["bad_price"]
    assert (screen.last_seq["A"], screen.last_ts["A"]) == (5, T0 + 50)


def test_tick_screen_when_stale_row_refused_same_seq_later_accepted() -> None:
    screen = TickScreen()
    screen.screen(columns([ok(0, 1, ts=T0 + 100)]))
    mask, refusals = screen.screen(columns([ok(0, 2, ts=T0 + 50), ok(0, 2, ts=T0 + 150)]))
    assert mask.tolist() == [False, True]
    assert codes(refusals) == ["stale_timestamp"]
    assert (screen.last_seq["A"], screen.last_ts["A"]) == (2, T0 + 150)


def test_tick_screen_when_one_stream_has_bad_rows_other_streams_unaffected() -> None:
    screen = TickScreen()
    rows = [ok(0, 1), ok(1, 1), ok(0, 1), (0, -1.0, 1.0, T0 + 5, 5), ok(1, 2), ok(1, 3), ok(0, 0)]
    mask, refusals = screen.screen(columns(rows))
    assert mask.tolist() == [True, True, False, False, True, True, False]
    assert codes(refusals) == ["duplicate_seq", "bad_price", "duplicate_seq"]
    assert all(r.stream == "A" for r in refusals)
    assert (screen.last_seq["B"], screen.last_ts["B"]) == (3, T0 + 3)
    assert screen.last_seq["A"] == 1


def test_tick_screen_when_streams_share_seq_numbers_accepts_each() -> None:
    mask, refusals = TickScreen().screen(columns([ok(0, 1), ok(1, 1), ok(0, 2), ok(1, 2)]))
    assert mask.all()
    assert refusals == []


def test_tick_screen_when_refusing_counts_per_code() -> None:
    screen = TickScreen()
    screen.screen(columns([ok(0, 5, ts=T0 + 50)]))
    rows = [
        ok(0, 5),
        ok(0, 4),
        (0, 0.0, 1.0, T0 + 60, 6),
        (0, 2.0, 1.0, T0 + 61, 7),
        ok(0, 8, ts=T0 + 40),
        (0, math.inf, 1.0, T0 + 70, 9),
        ok(0, 10, ts=T0 + 70),
    ]
    mask, refusals = screen.screen(columns(rows))
    assert mask.tolist() == [False, False, False, False, False, False, True]
    assert screen.refused == Counter(
        {"duplicate_seq": 2, "bad_price": 2, "crossed_quote": 1, "stale_timestamp": 1}
    )
    assert len(refusals) == 6
    screen.refuse("A", 11, "unknown_symbol", "XXX")
    assert screen.refused["unknown_symbol"] == 1


def test_tick_screen_when_batch_empty_returns_empty_mask() -> None:
    mask, refusals = TickScreen().screen(TickColumns.empty())
    assert mask.shape == (0,)
    assert refusals == []


# --------------------------------------------------------------------------- fast path vs row path


def test_tick_screen_when_batch_clean_takes_fast_path_and_records_last_per_stream() -> None:
    screen = TickScreen()
    spy = PathSpy(screen)
    mask, refusals = screen.screen(columns([ok(0, 1), ok(1, 7), ok(0, 2), ok(1, 9, ts=T0 + 99)]))
    assert spy.calls == 0
    assert mask.all()
    assert refusals == []
    assert screen.last_seq == {"A": 2, "B": 9}
    assert screen.last_ts == {"A": T0 + 2, "B": T0 + 99}


@pytest.mark.parametrize(
    "rows",
    [
        [ok(0, 1), (0, math.nan, 1.0, T0 + 2, 2)],
        [ok(0, 2), ok(0, 1)],
        [ok(0, 1, ts=T0 + 5), ok(0, 2, ts=T0 + 4)],
        [ok(0, 1), (1, 2.0, 1.0, T0, 1)],
    ],
    ids=["bad-price", "seq-back", "ts-back", "crossed-other-stream"],
)
def test_tick_screen_when_batch_has_bad_row_takes_row_path(rows: list[Row]) -> None:
    screen = TickScreen()
    spy = PathSpy(screen)
    mask, refusals = screen.screen(columns(rows))
    assert spy.calls == 1
    assert len(refusals) == 1
    assert not mask.all()


def test_tick_screen_when_batch_starts_behind_previous_batch_takes_row_path() -> None:
    screen = TickScreen()
    screen.screen(columns([ok(0, 5)]))
    spy = PathSpy(screen)
    mask, _ = screen.screen(columns([ok(0, 5, ts=T0 + 50), ok(0, 6, ts=T0 + 60)]))
    assert spy.calls == 1
    assert mask.tolist() == [False, True]


# --------------------------------------------------------------------------- fills


def fill(**changes: object) -> Fill:
    values: dict[str, object] = {
        "account": "acct-1",
        "symbol": "EURUSD",
        "qty": 1000.0,
        "price": 1.12,
        "ts_ns": T0,
        "fee": 1.0,
        "fill_id": "",
        "stream": "exec",
        "seq": 3,
    }
    values.update(changes)
    return Fill(**values)  # type: ignore[arg-type]


def fill_screen() -> FillScreen:
    return FillScreen(["acct-1", "acct-2"], {"EURUSD": 0, "XAUUSD": 1})


def test_fill_screen_when_fill_sane_accepts() -> None:
    assert fill_screen().problem(fill()) is None
    assert fill_screen().problem(fill(qty=-5.0, fee=0.0)) is None


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"account": "ghost"}, "unknown_account"),
        ({"symbol": "DOGEUSD"}, "unknown_symbol"),
        ({"qty": 0.0}, "bad_qty"),
        ({"qty": -0.0}, "bad_qty"),
        ({"qty": math.nan}, "bad_qty"),
        ({"qty": math.inf}, "bad_qty"),
        ({"qty": MAX_QTY * 2}, "bad_qty"),
        ({"qty": -MAX_QTY * 2}, "bad_qty"),
        ({"price": 0.0}, "bad_price"),
        ({"price": -1.12}, "bad_price"),
        ({"price": math.nan}, "bad_price"),
        ({"price": MAX_PRICE}, "bad_price"),
        ({"fee": MAX_CASH * 2}, "bad_fee"),
        ({"fee": -MAX_CASH * 2}, "bad_fee"),
        ({"fee": math.nan}, "bad_fee"),
        ({"fee": math.inf}, "bad_fee"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in v),
)
def test_fill_screen_when_fill_malformed_refuses_with_code(changes: dict[str, object], code: str) -> None:
    screen = fill_screen()
    kept, kept_pos, refusals = screen.screen([fill(**changes)], [0])
    assert kept == []
    assert kept_pos == []
    assert codes(refusals) == [code]
    assert (refusals[0].stream, refusals[0].seq) == ("exec", 3)
    assert screen.refused == Counter({code: 1})


def test_fill_screen_when_fill_id_repeats_refuses_duplicate_fill() -> None:
    screen = fill_screen()
    kept, kept_pos, refusals = screen.screen([fill(fill_id="f-1"), fill(fill_id="f-1", seq=4)], [0, 2])
    assert kept == [fill(fill_id="f-1")]
    assert kept_pos == [0]
    assert codes(refusals) == ["duplicate_fill"]
    kept, _, refusals = screen.screen([fill(fill_id="f-1", seq=5), fill(fill_id="f-2", seq=6)], [1, 1])
    assert fill_ids(kept) == ["f-2"]
    assert codes(refusals) == ["duplicate_fill"]
    assert screen.refused == Counter({"duplicate_fill": 2})


def test_fill_screen_when_fill_id_empty_never_treated_as_duplicate() -> None:
    kept, _, refusals = fill_screen().screen([fill(), fill(), fill()], [0, 0, 1])
    assert len(kept) == 3
    assert refusals == []


def test_fill_screen_when_refused_fill_has_id_later_valid_fill_with_same_id_accepted() -> None:
    screen = fill_screen()
    screen.screen([fill(fill_id="f-9", price=-1.0)], [0])
    kept, _, refusals = screen.screen([fill(fill_id="f-9")], [0])
    assert fill_ids(kept) == ["f-9"]
    assert refusals == []


def test_fill_screen_when_mixed_batch_keeps_positions_of_accepted_fills() -> None:
    fills = [fill(seq=1), fill(account="ghost", seq=2), fill(seq=3), fill(qty=math.nan, seq=4), fill(seq=5)]
    kept, kept_pos, refusals = fill_screen().screen(fills, [0, 1, 2, 2, 7])
    assert [f.seq for f in kept] == [1, 3, 5]
    assert kept_pos == [0, 2, 7]
    assert [(r.seq, r.code) for r in refusals] == [(2, "unknown_account"), (4, "bad_qty")]


# --------------------------------------------------------------------------- snapshots


def through_msgpack(snapshot: dict[str, object]) -> dict[str, object]:
    decoded: dict[str, object] = msgpack.unpackb(
        msgpack.packb(snapshot, use_bin_type=True), raw=False, strict_map_key=False
    )
    return decoded


def test_tick_screen_when_restored_from_snapshot_screens_as_the_original() -> None:
    original = TickScreen()
    original.screen(columns([ok(0, 5), ok(1, 9), ok(0, 6, bid=2.0, ask=1.0)]))
    restored = TickScreen()
    restored.restore(through_msgpack(original.snapshot()))
    # Behind stream A's last seq, behind its last time, fresh on B, and a stream not seen before.
    batch = columns([ok(0, 5), ok(0, 7, ts=T0 + 4), ok(1, 10), ok(2, 1)], streams=("A", "B", "C"))

    mask, refusals = restored.screen(batch)
    expected_mask, expected_refusals = original.screen(batch)

    assert mask.tolist() == expected_mask.tolist() == [False, False, True, True]
    assert refusals == expected_refusals
    assert codes(refusals) == ["duplicate_seq", "stale_timestamp"]
    assert (
        restored.refused
        == original.refused
        == Counter({"crossed_quote": 1, "duplicate_seq": 1, "stale_timestamp": 1})
    )
    assert (restored.last_seq, restored.last_ts) == (original.last_seq, original.last_ts)


def test_fill_screen_when_restored_from_snapshot_refuses_fill_ids_already_applied() -> None:
    original = fill_screen()
    original.screen([fill(fill_id="f-1"), fill(fill_id="f-2"), fill(fill_id="f-3", qty=0.0)], [0, 0, 0])
    restored = fill_screen()
    restored.restore(through_msgpack(original.snapshot()))

    kept, _, refusals = restored.screen([fill(fill_id="f-2"), fill(fill_id="f-3")], [0, 0])

    assert fill_ids(kept) == ["f-3"]
    assert codes(refusals) == ["duplicate_fill"]
    assert restored.refused == Counter({"bad_qty": 1, "duplicate_fill": 1})


@pytest.mark.parametrize("screen", [TickScreen(), fill_screen()], ids=["ticks", "fills"])
def test_screen_restore_when_snapshot_of_another_version_refuses(screen: TickScreen | FillScreen) -> None:
    snapshot = screen.snapshot()
    snapshot["version"] = SNAPSHOT_VERSION + 1

    with pytest.raises(SnapshotError, match=f"version {SNAPSHOT_VERSION + 1}"):
        screen.restore(snapshot)
