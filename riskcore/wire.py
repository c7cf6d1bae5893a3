"""msgpack frames: columnar tick batches, fills, and the router-to-account batch.

Columns travel as little-endian raw bytes inside one msgpack map, so encoding is
a memcpy and decoding is ``np.frombuffer`` (zero copy). Every decoder checks the
frame's shape and refuses anything else with :class:`InputError`; it never
executes or constructs objects from input (no pickle, no ext types).

Frame types (key ``type``, version ``v`` = 1):

``ticks``  one feed's quotes: ``stream`` (str), ``symbols`` (names), and columns
           ``sym`` (<i4 index into ``symbols``), ``bid``/``ask`` (<f8),
           ``ts`` (<i8 ns since epoch, UTC), ``seq`` (<i8, per-stream sequence).
``fills``  ``fills``: a list of maps with ``account``, ``symbol``, ``qty``,
           ``price``, ``ts``; optional ``fee``, ``fill_id``, ``stream``, ``seq``. A
           cash movement in the same list is ``{"type": "cash", "account",
           "amount", "ts"}``; optional ``cash_id``, ``stream``, ``seq``.
``batch``  router to account actors: ``streams`` (names), columns ``stream``
           (<i4), ``sym`` (<i4 config symbol id), ``bid``, ``ask``, ``ts``,
           ``seq``; ``fills`` and ``fill_pos``; ``marks`` {symbol id: [bid, ask]};
           ``batch`` (router batch number, counting only batches sent),
           ``base_pos`` (arrival position of its first event), ``targets``
           (the shards it was sent to, so the supervisor knows when a batch
           is complete) and ``tseq`` (for each target, the batch's number in
           that shard's own sequence: a shard applies its batches in that
           order, once each, however Ray delivers and re-delivers them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import msgpack
import numpy as np

from riskcore.batch import EventBatch, TickColumns
from riskcore.errors import InputError
from riskcore.events import AccountEvent, Cash, Fill

VERSION = 1
MAX_FRAME_BYTES = 64 * 1024 * 1024
_COLUMNS = {"bid": "<f8", "ask": "<f8", "ts": "<i8", "seq": "<i8", "sym": "<i4", "stream": "<i4"}


def _column(name: str, array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=_COLUMNS[name]).tobytes()


def _read_column(frame: Mapping[str, Any], name: str, rows: int | None) -> np.ndarray:
    raw = frame.get(name)
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise InputError("bad_frame", f"column {name!r} must be bytes, got {type(raw).__name__}")
    dtype = np.dtype(_COLUMNS[name])
    if len(raw) % dtype.itemsize:
        raise InputError(
            "bad_frame", f"column {name!r} has {len(raw)} bytes, not a multiple of {dtype.itemsize}"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if rows is not None and array.shape[0] != rows:
        raise InputError("bad_frame", f"column {name!r} has {array.shape[0]} rows, expected {rows}")
    return array


def _unpack(data: bytes | bytearray | memoryview, max_bytes: int) -> dict[str, Any]:
    if len(data) > max_bytes:
        raise InputError("oversize_frame", f"frame of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        frame = msgpack.unpackb(
            data, raw=False, strict_map_key=False, max_bin_len=max_bytes, max_str_len=1 << 20,
            max_array_len=1 << 24, max_map_len=1 << 20, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise InputError("bad_frame", f"not a msgpack frame: {detail}") from None
    if not isinstance(frame, dict):
        raise InputError("bad_frame", f"frame must be a map, got {type(frame).__name__}")
    if frame.get("v") != VERSION:
        raise InputError("bad_frame", f"unsupported frame version {frame.get('v')!r} (this is {VERSION})")
    return frame


# --------------------------------------------------------------------------- ticks


@dataclass(slots=True)
class TickFrame:
    stream: str
    symbols: list[str]
    sym: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    ts_ns: np.ndarray
    seq: np.ndarray

    def __len__(self) -> int:
        return int(self.sym.shape[0])


def _packb(frame: Mapping[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(frame, use_bin_type=True)
    return packed


def encode_ticks(
    stream: str, symbols: Sequence[str], sym: Any, bid: Any, ask: Any, ts_ns: Any, seq: Any
) -> bytes:
    return _packb(
        {
            "v": VERSION, "type": "ticks", "stream": stream, "symbols": list(symbols),
            "sym": _column("sym", np.asarray(sym)), "bid": _column("bid", np.asarray(bid)),
            "ask": _column("ask", np.asarray(ask)), "ts": _column("ts", np.asarray(ts_ns)),
            "seq": _column("seq", np.asarray(seq)),
        }
    )


def _tick_frame(frame: Mapping[str, Any]) -> TickFrame:
    stream = frame.get("stream")
    symbols = frame.get("symbols")
    if not isinstance(stream, str) or not stream:
        raise InputError("bad_frame", "ticks frame needs a non-empty string 'stream'")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise InputError("bad_frame", "ticks frame needs 'symbols', a list of names")
    sym = _read_column(frame, "sym", None)
    rows = int(sym.shape[0])
    if rows and (int(sym.min()) < 0 or int(sym.max()) >= len(symbols)):
        raise InputError("bad_frame", "column 'sym' indexes outside 'symbols'")
    return TickFrame(
        stream, symbols, sym, _read_column(frame, "bid", rows), _read_column(frame, "ask", rows),
        _read_column(frame, "ts", rows), _read_column(frame, "seq", rows),
    )


# --------------------------------------------------------------------------- fills


def fill_to_wire(fill: AccountEvent) -> dict[str, Any]:
    if isinstance(fill, Cash):
        return {"type": "cash", "account": fill.account, "amount": fill.amount, "ts": fill.ts_ns,
                "cash_id": fill.cash_id, "stream": fill.stream, "seq": fill.seq}
    return {
        "account": fill.account, "symbol": fill.symbol, "qty": fill.qty, "price": fill.price,
        "ts": fill.ts_ns, "fee": fill.fee, "fill_id": fill.fill_id, "stream": fill.stream, "seq": fill.seq,
    }


_FILL_FIELDS = frozenset({"account", "symbol", "qty", "price", "ts", "fee", "fill_id", "stream", "seq"})
_CASH_FIELDS = frozenset({"type", "account", "amount", "ts", "cash_id", "stream", "seq"})


def fill_from_wire(item: Any) -> AccountEvent:
    if not isinstance(item, dict):
        raise InputError("bad_fill", f"a fill must be a map, got {type(item).__name__}")
    cash = item.get("type") == "cash"
    what = "cash movement" if cash else "fill"
    unknown = sorted(repr(key) for key in item if key not in (_CASH_FIELDS if cash else _FILL_FIELDS))
    if unknown:
        raise InputError("bad_fill", f"unknown {what} field {unknown[0]}")

    def field(name: str, kinds: tuple[type, ...], default: Any = None) -> Any:
        value = item.get(name, default)
        if value is None or isinstance(value, bool) or not isinstance(value, kinds):
            expected = "/".join(k.__name__ for k in kinds)
            raise InputError("bad_fill", f"{what} field {name!r} must be {expected}, got {value!r}")
        return value

    if cash:
        return Cash(
            account=field("account", (str,)), amount=float(field("amount", (int, float))),
            ts_ns=int(field("ts", (int,))),
            cash_id=field("cash_id", (str,), ""), stream=field("stream", (str,), "cash"),
            seq=int(field("seq", (int,), 0)),
        )
    return Fill(
        account=field("account", (str,)), symbol=field("symbol", (str,)),
        qty=float(field("qty", (int, float))), price=float(field("price", (int, float))),
        ts_ns=int(field("ts", (int,))), fee=float(field("fee", (int, float), 0.0)),
        fill_id=field("fill_id", (str,), ""), stream=field("stream", (str,), "fills"),
        seq=int(field("seq", (int,), 0)),
    )


def encode_fills(fills: Sequence[AccountEvent]) -> bytes:
    return _packb({"v": VERSION, "type": "fills", "fills": [fill_to_wire(f) for f in fills]})


# --------------------------------------------------------------------------- router batches


@dataclass(slots=True)
class BatchFrame:
    batch: EventBatch
    number: int
    base_pos: int
    targets: tuple[str, ...] = ()  # every shard this batch was sent to
    target_seq: tuple[int, ...] = ()  # its number in each target shard's sequence

    def seq_for(self, shard: str) -> int | None:
        if shard in self.targets and len(self.target_seq) == len(self.targets):
            return self.target_seq[self.targets.index(shard)]
        return None


def encode_batch(batch: EventBatch, number: int, base_pos: int, targets: Sequence[str] = (),
                 target_seq: Sequence[int] = ()) -> bytes:
    ticks = batch.ticks
    return _packb(
        {
            "v": VERSION, "type": "batch", "batch": number, "base_pos": base_pos, "targets": list(targets),
            "tseq": list(target_seq),
            "streams": list(ticks.streams),
            "stream": _column("stream", ticks.stream), "sym": _column("sym", ticks.symbol),
            "bid": _column("bid", ticks.bid), "ask": _column("ask", ticks.ask),
            "ts": _column("ts", ticks.ts_ns), "seq": _column("seq", ticks.seq),
            "fills": [fill_to_wire(f) for f in batch.fills], "fill_pos": list(batch.fill_pos),
            "marks": {int(k): [float(v[0]), float(v[1])] for k, v in batch.marks.items()},
        }
    )


def _batch_frame(frame: Mapping[str, Any], symbol_count: int) -> BatchFrame:
    streams = frame.get("streams")
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
        raise InputError("bad_frame", "batch frame needs 'streams', a list of names")
    sym = _read_column(frame, "sym", None)
    rows = int(sym.shape[0])
    stream = _read_column(frame, "stream", rows)
    if rows and (int(sym.min()) < 0 or int(sym.max()) >= symbol_count):
        raise InputError("bad_frame", "column 'sym' holds an unknown symbol id")
    if rows and (int(stream.min()) < 0 or int(stream.max()) >= len(streams)):
        raise InputError("bad_frame", "column 'stream' indexes outside 'streams'")
    ticks = TickColumns(
        sym, _read_column(frame, "bid", rows), _read_column(frame, "ask", rows),
        _read_column(frame, "ts", rows), _read_column(frame, "seq", rows), stream, tuple(streams),
    )
    raw_fills = frame.get("fills")
    fill_pos = frame.get("fill_pos")
    if not isinstance(raw_fills, list) or not isinstance(fill_pos, list) or len(raw_fills) != len(fill_pos):
        raise InputError("bad_frame", "batch frame needs 'fills' and 'fill_pos' lists of one length")
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= rows for p in fill_pos) or any(
        a > b for a, b in pairwise(fill_pos)
    ):
        raise InputError("bad_frame", "'fill_pos' must be non-decreasing positions within the batch")
    marks_raw = frame.get("marks")
    if not isinstance(marks_raw, dict):
        raise InputError("bad_frame", "batch frame needs 'marks', a map")
    marks: dict[int, tuple[float, float]] = {}
    for key, value in marks_raw.items():
        if not (
            isinstance(key, int) and not isinstance(key, bool) and 0 <= key < symbol_count
            and isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise InputError("bad_frame", f"bad mark entry {key!r}: {value!r}")
        marks[key] = (float(value[0]), float(value[1]))
    number, base_pos = frame.get("batch"), frame.get("base_pos")
    if not isinstance(number, int) or not isinstance(base_pos, int):
        raise InputError("bad_frame", "batch frame needs integer 'batch' and 'base_pos'")
    targets = frame.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InputError("bad_frame", "'targets' must be a list of shard ids")
    target_seq = frame.get("tseq", [])
    if (not isinstance(target_seq, list) or (target_seq and len(target_seq) != len(targets))
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in target_seq)):
        raise InputError("bad_frame", "'tseq' must hold one non-negative integer per target")
    batch = EventBatch(ticks, [fill_from_wire(item) for item in raw_fills], list(fill_pos), marks)
    return BatchFrame(batch, number, base_pos, tuple(targets), tuple(target_seq))


# --------------------------------------------------------------------------- entry point


def decode(
    data: bytes | bytearray | memoryview, *, symbol_count: int = 1 << 30, max_bytes: int = MAX_FRAME_BYTES
) -> TickFrame | list[AccountEvent] | BatchFrame:
    """Decode one frame of any type, or raise :class:`InputError` saying what is wrong with it."""
    frame = _unpack(data, max_bytes)
    kind = frame.get("type")
    if kind == "ticks":
        return _tick_frame(frame)
    if kind == "fills":
        items = frame.get("fills")
        if not isinstance(items, list):
            raise InputError("bad_frame", "fills frame needs 'fills', a list")
        return [fill_from_wire(item) for item in items]
    if kind == "batch":
        return _batch_frame(frame, symbol_count)
    raise InputError("bad_frame", f"unknown frame type {kind!r}")


def iter_frames(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> list[dict[str, Any] | InputError]:
    """Split a recorded file of back-to-back frames; a broken tail becomes one InputError."""
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1), max_ext_len=0
    )
    unpacker.feed(data)
    out: list[dict[str, Any] | InputError] = []
    try:
        out.extend(unpacker)  # what came before a malformed frame is kept
    except Exception as exc:
        out.append(InputError("bad_frame", f"malformed frame: {type(exc).__name__}: {exc}"))
        return out
    if unpacker.tell() != len(data):
        out.append(InputError("bad_frame", f"truncated frame: {len(data) - unpacker.tell()} trailing bytes"))
    return out
