"""Readers for recorded quote files as users download them.

Each reader yields ``(index, Tick | InputError)`` for every record, in file
order; ``index`` is the 0-based record number, so a refused record keeps its
place and the indexes match the file's lines.

- HistData ASCII: ``20200101 170000065,1.121200,1.121720,0`` — EST without
  daylight saving (fixed UTC-05:00), millisecond precision, no symbol.
- TrueFX: ``EUR/USD,20130101 21:59:59.981,1.32023,1.32054`` — UTC.
- msgpack: back-to-back ``ticks`` frames (see :mod:`riskcore.wire`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from riskcore.clock import datetime_to_ns
from riskcore.errors import InputError
from riskcore.events import Tick
from riskcore.wire import _tick_frame, iter_frames

FORMATS = ("histdata", "truefx", "msgpack")
_EST = timezone(timedelta(hours=-5))
Record = tuple[int, Tick | InputError]


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError("bad_record", f"{what} {text!r} is not a number") from None


def parse_histdata_line(line: str, symbol: str, stream: str, index: int) -> Tick:
    parts = line.strip().split(",")
    if len(parts) != 4:
        raise InputError("bad_record", f"expected 4 comma-separated fields, got {len(parts)}")
    stamp = parts[0]
    if len(stamp) != 18 or stamp[8] != " " or not (stamp[:8] + stamp[9:]).isdigit():
        raise InputError("bad_record", f"timestamp {stamp!r} is not YYYYMMDD HHMMSSmmm")
    try:
        local = datetime(
            int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]),
            int(stamp[13:15]), int(stamp[15:18]) * 1000, tzinfo=_EST,
        )
    except ValueError as exc:
        raise InputError("bad_record", f"timestamp {stamp!r}: {exc}") from None
    bid, ask = _number(parts[1], "bid"), _number(parts[2], "ask")
    return Tick(symbol, bid, ask, datetime_to_ns(local), stream, index)


def parse_truefx_line(line: str, index: int) -> Tick:
    parts = line.strip().split(",")
    if len(parts) != 4:
        raise InputError("bad_record", f"expected 4 comma-separated fields, got {len(parts)}")
    symbol = parts[0].replace("/", "")
    try:
        utc = datetime.strptime(parts[1], "%Y%m%d %H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        raise InputError("bad_record", f"timestamp {parts[1]!r} is not YYYYMMDD HH:MM:SS.mmm") from None
    bid, ask = _number(parts[2], "bid"), _number(parts[3], "ask")
    return Tick(symbol, bid, ask, datetime_to_ns(utc), symbol, index)


def _lines(path: Path) -> Iterator[tuple[int, str | InputError]]:
    with path.open("rb") as handle:
        for index, raw in enumerate(handle):
            try:
                yield index, raw.decode("ascii")
            except UnicodeDecodeError:
                yield index, InputError("bad_record", "line is not ASCII text")


def read_records(path: str | Path, fmt: str, symbol: str | None = None) -> Iterator[Record]:
    path = Path(path)
    if fmt == "histdata":
        if not symbol:
            raise InputError("bad_arguments", "HistData files carry no symbol: pass --symbol")
        for index, line in _lines(path):
            if isinstance(line, InputError):
                yield index, line
                continue
            try:
                yield index, parse_histdata_line(line, symbol, symbol, index)
            except InputError as exc:
                yield index, exc
    elif fmt == "truefx":
        for index, line in _lines(path):
            if isinstance(line, InputError):
                yield index, line
                continue
            try:
                tick = parse_truefx_line(line, index)
            except InputError as exc:
                yield index, exc
                continue
            if symbol and tick.symbol != symbol:
                yield index, InputError("other_symbol", f"record is {tick.symbol}, replay selected {symbol}")
            else:
                yield index, tick
    elif fmt == "msgpack":
        index = 0
        for item in iter_frames(path.read_bytes()):
            if isinstance(item, InputError):
                yield index, item
                return
            try:
                if not isinstance(item, dict) or item.get("type") != "ticks" or item.get("v") != 1:
                    raise InputError("bad_frame", "recorded msgpack files hold version-1 'ticks' frames")
                frame = _tick_frame(item)
            except InputError as exc:
                yield index, exc
                index += 1
                continue
            for row in range(len(frame)):
                name = frame.symbols[int(frame.sym[row])]
                if symbol and name != symbol:
                    yield index, InputError("other_symbol", f"record is {name}, replay selected {symbol}")
                else:
                    yield index, Tick(
                        name, float(frame.bid[row]), float(frame.ask[row]), int(frame.ts_ns[row]),
                        frame.stream, index,
                    )
                index += 1
    else:
        raise InputError("bad_arguments", f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
