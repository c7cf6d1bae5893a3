"""Screening of input before it can touch an account: refuse, count, explain.

A refused tick or fill changes nothing; the caller gets a :class:`Refusal`
naming the stream, the sequence number and a reason code, and the screen keeps
a count per code for metrics and the audit trail.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskcore.batch import SNAPSHOT_VERSION, TickColumns, check_snapshot_version
from riskcore.events import AccountEvent, Cash, event_id

MAX_PRICE = 1e9  # no instrument we mark trades near this; beyond it a price is a broken feed
MAX_QTY = 1e12  # an order of magnitude past any real position: a fat-fingered or corrupted fill
MAX_CASH = 1e12  # no account moves (or pays in fees) a trillion at once: a corrupted or mistyped amount
MAX_NAME = 256  # characters in a stream name, fill id or cash id: longer is corrupt or hostile input


@dataclass(frozen=True, slots=True)
class Refusal:
    stream: str
    seq: int
    code: str
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"stream": self.stream, "seq": self.seq, "code": self.code, "message": self.message}


def quote_problem(bid: float, ask: float) -> tuple[str, str] | None:
    """Why a quote is unusable, or None."""
    if not (math.isfinite(bid) and math.isfinite(ask)):
        return "bad_price", f"non-finite price bid={bid} ask={ask}"
    if bid <= 0.0 or ask <= 0.0:
        return "bad_price", f"non-positive price bid={bid} ask={ask}"
    if bid >= MAX_PRICE or ask >= MAX_PRICE:
        return "bad_price", f"absurd price bid={bid} ask={ask}"
    if bid > ask:
        return "crossed_quote", f"bid {bid} above ask {ask}"
    return None


class TickScreen:
    """Per-stream order and per-row sanity of ticks (sequence strictly rising, time not running back)."""

    def __init__(self) -> None:
        self.last_seq: dict[str, int] = {}
        self.last_ts: dict[str, int] = {}
        self.refused: Counter[str] = Counter()

    def screen(self, ticks: TickColumns) -> tuple[np.ndarray, list[Refusal]]:
        """A mask of the rows to apply, and the refusals of the others (in row order)."""
        n = len(ticks)
        if n == 0:
            return np.ones(0, dtype=bool), []
        bid, ask = ticks.bid, ticks.ask
        with np.errstate(invalid="ignore"):
            row_ok = (
                np.isfinite(bid) & np.isfinite(ask) & (bid > 0.0) & (ask > 0.0) & (bid <= ask)
                & (bid < MAX_PRICE) & (ask < MAX_PRICE)
            )
        if bool(row_ok.all()) and all(len(name) <= MAX_NAME for name in ticks.streams):
            ends = self._ends_if_in_order(ticks)
            if ends is not None:
                for name, (seq, ts) in ends.items():
                    self.last_seq[name], self.last_ts[name] = seq, ts
                return np.ones(n, dtype=bool), []
        return self._screen_rows(ticks)

    def _ends_if_in_order(self, ticks: TickColumns) -> dict[str, tuple[int, int]] | None:
        """Each stream's last (seq, ts) if every stream is in order in this batch and after its past, else
        None.

        One stable sort by stream, whatever the number of streams.
        """
        order = np.argsort(ticks.stream, kind="stable")
        streams = ticks.stream[order]
        seq, ts = ticks.seq[order], ticks.ts_ns[order]
        same = streams[1:] == streams[:-1]
        if bool(np.any(same & (np.diff(seq) <= 0))) or bool(np.any(same & (np.diff(ts) < 0))):
            return None
        firsts = np.flatnonzero(np.r_[True, ~same])
        lasts = np.r_[firsts[1:] - 1, streams.size - 1]
        ends: dict[str, tuple[int, int]] = {}
        for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True):
            name = ticks.streams[int(streams[first])]
            past = name in self.last_seq
            if past and (int(seq[first]) <= self.last_seq[name] or int(ts[first]) < self.last_ts[name]):
                return None
            ends[name] = (int(seq[last]), int(ts[last]))
        return ends

    def _screen_rows(self, ticks: TickColumns) -> tuple[np.ndarray, list[Refusal]]:
        mask = np.zeros(len(ticks), dtype=bool)
        refusals: list[Refusal] = []
        for row in range(len(ticks)):
            name = ticks.streams[int(ticks.stream[row])]
            seq, ts = int(ticks.seq[row]), int(ticks.ts_ns[row])
            problem = quote_problem(float(ticks.bid[row]), float(ticks.ask[row]))
            if len(name) > MAX_NAME:
                problem = ("bad_name", f"stream name of {len(name)} characters (at most {MAX_NAME})")
                name = name[:MAX_NAME]
            if problem is None and name in self.last_seq:
                if seq <= self.last_seq[name]:
                    problem = ("duplicate_seq",
                               f"sequence {seq} not after {self.last_seq[name]} on stream {name}")
                elif ts < self.last_ts[name]:
                    problem = ("stale_timestamp", f"timestamp runs back on stream {name}")
            if problem is None:
                mask[row] = True
                self.last_seq[name], self.last_ts[name] = seq, ts
            else:
                self.refused[problem[0]] += 1
                refusals.append(Refusal(name, seq, *problem))
        return mask, refusals

    def refuse(self, stream: str, seq: int, code: str, message: str) -> Refusal:
        """Count a refusal found before screening (unparseable record, unknown symbol)."""
        self.refused[code] += 1
        return Refusal(stream, seq, code, message)

    def snapshot(self) -> dict[str, Any]:
        """Each stream's last accepted ``[seq, ts_ns]`` and the refusal counts, as msgpack-native values."""
        return {
            "version": SNAPSHOT_VERSION,
            "streams": {name: [seq, self.last_ts[name]] for name, seq in self.last_seq.items()},
            "refused": dict(self.refused),
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        check_snapshot_version(snapshot, "tick screen")
        streams = snapshot["streams"]
        self.last_seq = {name: seq for name, (seq, _) in streams.items()}
        self.last_ts = {name: ts for name, (_, ts) in streams.items()}
        self.refused = Counter(snapshot["refused"])


class FillScreen:
    """Fills and cash movements: known account (and symbol), sane numbers, each fill id and cash id applied
    once."""

    def __init__(self, accounts: Iterable[str], symbols: Mapping[str, int]) -> None:
        self.accounts = set(accounts)
        self.symbols = symbols
        self.seen_ids: set[str] = set()
        self.refused: Counter[str] = Counter()

    def problem(self, fill: AccountEvent) -> tuple[str, str] | None:
        if fill.account not in self.accounts:
            return "unknown_account", f"unknown account {fill.account[:MAX_NAME]!r}"
        event_name = fill.cash_id if isinstance(fill, Cash) else fill.fill_id
        for what, name in (("stream", fill.stream), ("id", event_name)):
            if len(name) > MAX_NAME:
                return "bad_name", f"{what} of {len(name)} characters (at most {MAX_NAME})"
        if isinstance(fill, Cash):
            if not math.isfinite(fill.amount) or fill.amount == 0.0 or abs(fill.amount) > MAX_CASH:
                return "bad_amount", f"cash amount {fill.amount!r} is zero, non-finite or absurd"
            if fill.cash_id and event_id(fill) in self.seen_ids:
                return "duplicate_cash", f"cash movement {fill.cash_id!r} was already applied"
            return None
        if fill.symbol not in self.symbols:
            return "unknown_symbol", f"unknown symbol {fill.symbol!r}"
        if not math.isfinite(fill.qty) or fill.qty == 0.0 or abs(fill.qty) > MAX_QTY:
            return "bad_qty", f"quantity {fill.qty!r} is zero, non-finite or absurd"
        if not math.isfinite(fill.price) or fill.price <= 0.0 or fill.price >= MAX_PRICE:
            return "bad_price", f"fill price {fill.price!r} is not a usable price"
        # A negative fee is a rebate (a maker's), credited to the balance like realised PnL.
        if not math.isfinite(fill.fee) or abs(fill.fee) > MAX_CASH:
            return "bad_fee", f"fee {fill.fee!r} is non-finite or absurd"
        if fill.fill_id and event_id(fill) in self.seen_ids:
            return "duplicate_fill", f"fill {fill.fill_id!r} was already applied"
        return None

    def note(self, fill: AccountEvent) -> None:
        """``fill`` is applied: its id is refused from now on."""
        key = event_id(fill)
        if key:
            self.seen_ids.add(key)

    def screen(
        self, fills: Sequence[AccountEvent], fill_pos: Sequence[int]
    ) -> tuple[list[AccountEvent], list[int], list[Refusal]]:
        kept, kept_pos, refusals, _ = self.screen_indexed(fills, fill_pos)
        return kept, kept_pos, refusals

    def screen_indexed(
        self, fills: Sequence[AccountEvent], fill_pos: Sequence[int]
    ) -> tuple[list[AccountEvent], list[int], list[Refusal], list[int]]:
        """As :meth:`screen`, with the index in ``fills`` of each refused one (in the refusals' order)."""
        kept: list[AccountEvent] = []
        kept_pos: list[int] = []
        refusals: list[Refusal] = []
        refused_at: list[int] = []
        for index, (fill, pos) in enumerate(zip(fills, fill_pos, strict=True)):
            problem = self.problem(fill)
            if problem is None:
                self.note(fill)
                kept.append(fill)
                kept_pos.append(pos)
            else:
                self.refused[problem[0]] += 1
                refusals.append(Refusal(fill.stream, fill.seq, *problem))
                refused_at.append(index)
        return kept, kept_pos, refusals, refused_at

    def snapshot(self) -> dict[str, Any]:
        """The fill ids applied (a list of strings, in no order) and the refusal counts."""
        return {"version": SNAPSHOT_VERSION, "seen_ids": list(self.seen_ids), "refused": dict(self.refused)}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take the state :meth:`snapshot` wrote; the known accounts and symbols stay the constructor's."""
        check_snapshot_version(snapshot, "fill screen")
        self.seen_ids = set(snapshot["seen_ids"])
        self.refused = Counter(snapshot["refused"])
