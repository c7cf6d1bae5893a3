"""Recorded quote files (riskcore.feeds): HistData, TrueFX and msgpack, as users download or record them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from riskcore.clock import rfc3339_us
from riskcore.errors import InputError
from riskcore.events import Fill, Tick
from riskcore.feeds import parse_histdata_line, parse_truefx_line, read_records
from riskcore.wire import encode_fills, encode_ticks
from riskmon.loadgen.quotes import EURUSD_REL_SPREAD, EURUSD_TICK_VOL

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EURUSD_FILE = DATA_DIR / "EURUSD-histdata-20200101.csv"
needs_eurusd = pytest.mark.skipif(
    not EURUSD_FILE.is_file(),
    reason=f"real EURUSD tick file not present at {EURUSD_FILE} (shared data not mounted)",
)


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("ascii") if isinstance(data, str) else data)
    return path


def as_tick(record: Tick | InputError) -> Tick:
    assert isinstance(record, Tick), record
    return record


def same_3_significant_digits(a: float, b: float) -> bool:
    return f"{a:.2e}" == f"{b:.2e}"


# --------------------------------------------------------------------------- single lines


def test_parse_histdata_line_when_readme_example_returns_utc_timestamp_and_quote() -> None:
    tick = parse_histdata_line("20200101 170000065,1.121200,1.121720,0", "EURUSD", "eurusd-feed", 7)
    # 17:00:00.065 EST (fixed UTC-05:00, no daylight saving) is 22:00:00.065 UTC.
    assert rfc3339_us(tick.ts_ns) == "2020-01-01T22:00:00.065000Z"
    assert (tick.symbol, tick.bid, tick.ask) == ("EURUSD", 1.1212, 1.12172)
    assert (tick.stream, tick.seq) == ("eurusd-feed", 7)


def test_parse_histdata_line_when_summer_date_still_uses_fixed_utc_minus_5() -> None:
    # No daylight saving: July 17:00 in the file is 22:00 UTC, not 21:00.
    tick = parse_histdata_line("20200701 170000000,1.1,1.2,0", "EURUSD", "s", 0)
    assert rfc3339_us(tick.ts_ns) == "2020-07-01T22:00:00.000000Z"


def test_parse_histdata_line_when_line_has_crlf_ending_parses() -> None:
    tick = parse_histdata_line("20200101 170000065,1.121200,1.121720,0\r\n", "EURUSD", "s", 0)
    assert rfc3339_us(tick.ts_ns) == "2020-01-01T22:00:00.065000Z"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "20200101 170000065,1.1212,1.1217",
        "20200101 170000065,1.1,1.2,0,9",
        "20200101170000065,1.1,1.2,0",
        "20200101 17000006,1.1,1.2,0",
        "20200230 170000065,1.1,1.2,0",
        "20200101 250000065,1.1,1.2,0",
        "20200101 170000065,abc,1.2,0",
        "20200101 170000065,1.1,,0",
        "2020O101 170000065,1.1,1.2,0",
    ],
    ids=[
        "empty",
        "garbage",
        "3-fields",
        "5-fields",
        "no-space",
        "short-stamp",
        "feb-30",
        "hour-25",
        "bid-text",
        "ask-empty",
        "letter-in-date",
    ],
)
def test_parse_histdata_line_when_line_malformed_raises_bad_record(line: str) -> None:
    with pytest.raises(InputError) as info:
        parse_histdata_line(line, "EURUSD", "s", 0)
    assert info.value.code == "bad_record"


def test_parse_truefx_line_when_readme_example_returns_symbol_and_utc_timestamp() -> None:
    tick = parse_truefx_line("EUR/USD,20130101 21:59:59.981,1.32023,1.32054", 4)
    assert tick.symbol == "EURUSD"
    assert rfc3339_us(tick.ts_ns) == "2013-01-01T21:59:59.981000Z"
    assert (tick.bid, tick.ask, tick.seq) == (1.32023, 1.32054, 4)


@pytest.mark.parametrize(
    "line",
    [
        "EUR/USD,20130101 21:59:59.981,1.32023",
        "EUR/USD,2013-01-01 21:59:59.981,1.32023,1.32054",
        "EUR/USD,20130101 21:59:59.981,x,1.32054",
        "EUR/USD,20131301 21:59:59.981,1.32023,1.32054",
    ],
    ids=["3-fields", "dashed-date", "bid-text", "month-13"],
)
def test_parse_truefx_line_when_line_malformed_raises_bad_record(line: str) -> None:
    with pytest.raises(InputError) as info:
        parse_truefx_line(line, 0)
    assert info.value.code == "bad_record"


# --------------------------------------------------------------------------- files


def test_read_records_when_histdata_has_bad_lines_yields_errors_at_their_line_index(tmp_path: Path) -> None:
    lines = [
        "20200101 170000065,1.121200,1.121720,0",
        "this is not a quote",
        "20200101 170001000,1.121300,1.121800,0",
        "",
        "20200101 170002000,1.1213,oops,0",
        "20200101 170003000,1.121400,1.121900,0",
    ]
    path = write(tmp_path, "q.csv", "\n".join(lines) + "\n")
    records = list(read_records(path, "histdata", "EURUSD"))
    assert [index for index, _ in records] == list(range(6))
    kinds = ["tick" if isinstance(r, Tick) else r.code for _, r in records]
    assert kinds == ["tick", "bad_record", "tick", "bad_record", "bad_record", "tick"]
    # A good record's seq is its line index, so it stays aligned with the file around refused lines.
    assert [r.seq for _, r in records if isinstance(r, Tick)] == [0, 2, 5]
    assert {r.symbol for _, r in records if isinstance(r, Tick)} == {"EURUSD"}
    assert rfc3339_us(as_tick(records[5][1]).ts_ns) == "2020-01-01T22:00:03.000000Z"


def test_read_records_when_line_not_ascii_yields_bad_record_and_keeps_alignment(tmp_path: Path) -> None:
    data = (
        b"20200101 170000065,1.1212,1.1217,0\n20200101 17\xff0000065,1.1,1.2,0\n"
        b"20200101 170001000,1.1,1.2,0\n"
    )
    records = list(read_records(write(tmp_path, "q.csv", data), "histdata", "EURUSD"))
    assert [index for index, _ in records] == [0, 1, 2]
    assert isinstance(records[1][1], InputError)
    assert records[1][1].code == "bad_record"
    assert isinstance(records[2][1], Tick)
    assert records[2][1].seq == 2


def test_read_records_when_last_line_has_no_newline_reads_it(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "20200101 170000065,1.1212,1.1217,0\r\n20200101 170001000,1.1,1.2,0")
    records = list(read_records(path, "histdata", "EURUSD"))
    assert [type(r) for _, r in records] == [Tick, Tick]


def test_read_records_when_histdata_without_symbol_raises_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "20200101 170000065,1.1212,1.1217,0\n")
    with pytest.raises(InputError) as info:
        list(read_records(path, "histdata"))
    assert info.value.code == "bad_arguments"


def test_read_records_when_format_unknown_raises_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        list(read_records(write(tmp_path, "q.txt", ""), "csv"))
    assert info.value.code == "bad_arguments"


def test_read_records_when_truefx_has_bad_and_other_symbol_lines_yields_each_at_its_index(
    tmp_path: Path,
) -> None:
    lines = [
        "EUR/USD,20130101 21:59:59.981,1.32023,1.32054",
        "GBP/USD,20130101 21:59:59.990,1.62500,1.62540",
        "EUR/USD,not a time,1.32023,1.32054",
        "EUR/USD,20130101 22:00:00.120,1.32024,1.32055",
    ]
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    records = list(read_records(path, "truefx", "EURUSD"))
    assert [index for index, _ in records] == [0, 1, 2, 3]
    kinds = ["tick" if isinstance(r, Tick) else r.code for _, r in records]
    assert kinds == ["tick", "other_symbol", "bad_record", "tick"]
    assert as_tick(records[3][1]).seq == 3
    assert as_tick(records[3][1]).symbol == "EURUSD"
    unfiltered = list(read_records(path, "truefx"))
    assert [r.symbol for _, r in unfiltered if isinstance(r, Tick)] == ["EURUSD", "GBPUSD", "EURUSD"]


T0 = 1_577_916_000_000_000_000


def two_tick_frames() -> bytes:
    first = encode_ticks(
        "feed",
        ["EURUSD", "GBPUSD"],
        [0, 1, 0],
        [1.1, 1.3, 1.2],
        [1.15, 1.35, 1.25],
        [T0, T0 + 1, T0 + 2],
        [100, 101, 102],
    )
    second = encode_ticks("feed", ["EURUSD"], [0, 0], [1.4, 1.5], [1.45, 1.55], [T0 + 3, T0 + 4], [103, 104])
    return first + second


def test_read_records_when_msgpack_has_two_tick_frames_yields_running_indexes(tmp_path: Path) -> None:
    records = list(read_records(write(tmp_path, "t.msgpack", two_tick_frames()), "msgpack"))
    assert [index for index, _ in records] == [0, 1, 2, 3, 4]
    ticks = [as_tick(r) for _, r in records]
    assert [t.symbol for t in ticks] == ["EURUSD", "GBPUSD", "EURUSD", "EURUSD", "EURUSD"]
    assert [t.bid for t in ticks] == [1.1, 1.3, 1.2, 1.4, 1.5]
    assert [t.ask for t in ticks] == [1.15, 1.35, 1.25, 1.45, 1.55]
    assert [t.ts_ns for t in ticks] == [T0 + k for k in range(5)]
    # riskmon/replay.py documents tick_seq as the record's index in the file.
    assert [(t.stream, t.seq) for t in ticks] == [("feed", k) for k in range(5)]


def test_read_records_when_msgpack_symbol_selected_marks_others_other_symbol(tmp_path: Path) -> None:
    records = list(read_records(write(tmp_path, "t.msgpack", two_tick_frames()), "msgpack", "EURUSD"))
    assert [index for index, _ in records] == [0, 1, 2, 3, 4]
    assert isinstance(records[1][1], InputError)
    assert records[1][1].code == "other_symbol"


@pytest.mark.parametrize("cut", [1, 9, 30])
def test_read_records_when_msgpack_tail_truncated_yields_input_error_after_good_records(
    tmp_path: Path, cut: int
) -> None:
    data = two_tick_frames()
    records = list(read_records(write(tmp_path, "t.msgpack", data[:-cut]), "msgpack"))
    assert [index for index, _ in records] == [0, 1, 2, 3]
    assert all(isinstance(r, Tick) for _, r in records[:3])
    error = records[3][1]
    assert isinstance(error, InputError)
    assert error.code == "bad_frame"


def test_read_records_when_msgpack_holds_non_tick_frame_yields_error_and_continues(tmp_path: Path) -> None:
    first = encode_ticks("feed", ["EURUSD"], [0], [1.1], [1.2], [T0], [1])
    fills = encode_fills([Fill("a", "EURUSD", 1.0, 1.1, T0)])
    last = encode_ticks("feed", ["EURUSD"], [0], [1.3], [1.4], [T0 + 1], [2])
    records = list(read_records(write(tmp_path, "t.msgpack", first + fills + last), "msgpack"))
    assert [index for index, _ in records] == [0, 1, 2]
    assert isinstance(records[0][1], Tick)
    assert isinstance(records[2][1], Tick)
    assert isinstance(records[1][1], InputError)
    assert records[1][1].code == "bad_frame"
    assert records[2][1].bid == 1.3


def test_read_records_when_msgpack_file_is_garbage_yields_one_error(tmp_path: Path) -> None:
    records = list(read_records(write(tmp_path, "t.msgpack", b"\xc1\xc1\xc1"), "msgpack"))
    assert len(records) == 1
    assert records[0][0] == 0
    assert isinstance(records[0][1], InputError)


# --------------------------------------------------------------------------- the real EURUSD file


@needs_eurusd
def test_read_records_when_real_eurusd_histdata_file_yields_9500_clean_ordered_ticks() -> None:
    records = list(read_records(EURUSD_FILE, "histdata", "EURUSD"))
    assert len(records) == 9500
    errors = [(i, r) for i, r in records if isinstance(r, InputError)]
    assert errors == []
    assert [i for i, _ in records] == list(range(9500))
    ts = np.array([as_tick(r).ts_ns for _, r in records], dtype=np.int64)
    assert bool(np.all(np.diff(ts) >= 0))
    assert rfc3339_us(int(ts[0])) == "2020-01-01T22:00:00.065000Z"
    bid = np.array([as_tick(r).bid for _, r in records])
    ask = np.array([as_tick(r).ask for _, r in records])
    assert bool(np.all((bid > 0) & (bid <= ask)))


@needs_eurusd
def test_quotes_constants_when_recomputed_from_real_eurusd_file_agree_to_3_significant_digits() -> None:
    records = [as_tick(r) for _, r in read_records(EURUSD_FILE, "histdata", "EURUSD")]
    bid = np.array([r.bid for r in records])
    ask = np.array([r.ask for r in records])
    mid = (bid + ask) / 2.0
    tick_vol = float(np.std(np.diff(np.log(mid))))
    rel_spread = float(np.median((ask - bid) / mid))
    assert math.isfinite(tick_vol)
    assert math.isfinite(rel_spread)
    assert same_3_significant_digits(tick_vol, EURUSD_TICK_VOL), (tick_vol, EURUSD_TICK_VOL)
    assert same_3_significant_digits(rel_spread, EURUSD_REL_SPREAD), (rel_spread, EURUSD_REL_SPREAD)
