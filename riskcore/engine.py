"""The reference engine (one event at a time) and the batched engine.

Both take an :class:`EventBatch` — columnar ticks plus the fills that arrived
between them — and return the same alert and breaker events in the same order,
leaving every account with the same figures. The reference applies each event
to each account in turn; the batched engine, per account, gathers the ticks of
the symbols it holds between two of its own fills and computes every figure for
all of them with NumPy, in the same arithmetic order as
:class:`riskcore.account.AccountBook`, then steps the alert/breaker machine only
at the ticks where something can change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from riskcore.account import CRITICAL, AccountBook, AccountState
from riskcore.clock import NS_PER_SECOND, TradingCalendar
from riskcore.config import RiskConfig
from riskcore.errors import UnknownAccountError
from riskcore.events import AlertEvent, BreakerEvent, Fill, Tick
from riskcore.states import EngageCause, KillSwitchMode, Metric

Event = AlertEvent | BreakerEvent
Quote = tuple[float, float]


@dataclass(slots=True)
class TickColumns:
    """Ticks as columns. ``stream`` indexes ``streams``; ``symbol`` indexes the config's symbols."""

    symbol: np.ndarray  # int32
    bid: np.ndarray  # float64
    ask: np.ndarray  # float64
    ts_ns: np.ndarray  # int64
    seq: np.ndarray  # int64
    stream: np.ndarray  # int32
    streams: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    @classmethod
    def empty(cls) -> "TickColumns":
        return cls(
            np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.zeros(0, np.int32), (),
        )

    @classmethod
    def from_ticks(cls, ticks: Sequence[Tick], symbol_ids: Mapping[str, int]) -> "TickColumns":
        streams: dict[str, int] = {}
        for tick in ticks:
            streams.setdefault(tick.stream, len(streams))
        return cls(
            symbol=np.fromiter((symbol_ids[t.symbol] for t in ticks), np.int32, len(ticks)),
            bid=np.fromiter((t.bid for t in ticks), np.float64, len(ticks)),
            ask=np.fromiter((t.ask for t in ticks), np.float64, len(ticks)),
            ts_ns=np.fromiter((t.ts_ns for t in ticks), np.int64, len(ticks)),
            seq=np.fromiter((t.seq for t in ticks), np.int64, len(ticks)),
            stream=np.fromiter((streams[t.stream] for t in ticks), np.int32, len(ticks)),
            streams=tuple(streams),
        )


@dataclass(slots=True)
class EventBatch:
    """Ticks in arrival order, and fills placed between them.

    Fill ``j`` arrived after ``ticks[:fill_pos[j]]`` (``fill_pos`` is non-decreasing).
    ``marks`` carries the router's latest quote, as of the start of the batch, of
    symbols the batch's fills trade, so an account that opens a symbol it did not
    hold starts from the latest mark.
    """

    ticks: TickColumns
    fills: list[Fill] = field(default_factory=list)
    fill_pos: list[int] = field(default_factory=list)
    marks: dict[int, Quote] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[Tick | Fill], symbol_ids: Mapping[str, int]) -> "EventBatch":
        ticks: list[Tick] = []
        fills: list[Fill] = []
        fill_pos: list[int] = []
        for event in events:
            if isinstance(event, Fill):
                fills.append(event)
                fill_pos.append(len(ticks))
            else:
                ticks.append(event)
        return cls(TickColumns.from_ticks(ticks, symbol_ids), fills, fill_pos)


class _EngineBase:
    """Accounts, marks and operator commands shared by both engines."""

    def __init__(self, config: RiskConfig, account_ids: Iterable[str] | None = None) -> None:
        self.config = config
        self.symbol_ids = config.symbol_ids()
        self.symbol_names = list(config.symbols)
        self.multipliers = [spec.multiplier for spec in config.symbols.values()]
        self.calendar = TradingCalendar(config.trading_day.roll_time, config.trading_day.timezone)
        wanted = None if account_ids is None else set(account_ids)
        self.books: list[AccountBook] = [
            AccountBook(spec, self.symbol_ids, self.multipliers, self.calendar)
            for spec in config.accounts
            if wanted is None or spec.id in wanted
        ]
        self.book_by_id = {book.id: book for book in self.books}
        if wanted is not None and len(self.book_by_id) != len(wanted):
            raise UnknownAccountError(sorted(wanted - set(self.book_by_id))[0])
        self.marks: dict[int, Quote] = {}

    # ------------------------------------------------------------------ views

    def states(self) -> dict[str, AccountState]:
        return {book.id: book.state() for book in self.books}

    def book(self, account_id: str) -> AccountBook:
        try:
            return self.book_by_id[account_id]
        except KeyError:
            raise UnknownAccountError(account_id) from None

    def held_symbols(self) -> set[int]:
        return {symbol_id for book in self.books for symbol_id in book.slot_symbols}

    # ------------------------------------------------------------------ operator commands

    def engage(self, account_id: str, now_ns: int, operator: str, reason: str) -> BreakerEvent:
        book = self.book(account_id)
        book.breaker.engage(now_ns, EngageCause.OPERATOR, reason, operator)
        return BreakerEvent("account", account_id, "ENGAGED", reason, "operator", operator, "operator", None, now_ns)

    def reset(self, account_id: str, now_ns: int, operator: str, reason: str) -> tuple[BreakerEvent | None, str | None]:
        """Release an account breaker, or say why not (cooldown, limit still breached)."""
        book = self.book(account_id)
        refusal = book.reset_refusal(now_ns)
        if refusal is not None:
            return None, refusal
        book.breaker.reset()
        return BreakerEvent("account", account_id, "SAFE", reason, "reset", operator, "operator", None, now_ns), None


class ReferenceEngine(_EngineBase):
    """The specification, executable: every event applied to every account, one at a time."""

    def apply(self, batch: EventBatch) -> list[Event]:
        self.marks.update(batch.marks)
        ticks = batch.ticks
        events: list[Event] = []
        n_fills = len(batch.fills)
        j = 0
        for i in range(len(ticks) + 1):
            while j < n_fills and batch.fill_pos[j] <= i:
                events.extend(self.apply_fill(batch.fills[j]))
                j += 1
            if i == len(ticks):
                break
            symbol_id = int(ticks.symbol[i])
            self.marks[symbol_id] = (float(ticks.bid[i]), float(ticks.ask[i]))
            ts_ns = int(ticks.ts_ns[i])
            stream = ticks.streams[int(ticks.stream[i])]
            seq = int(ticks.seq[i])
            for book in self.books:
                if book.holds(symbol_id):
                    events.extend(book.on_tick(self.marks, ts_ns, stream, seq))
        return events

    def apply_fill(self, fill: Fill) -> list[Event]:
        return self.book(fill.account).on_fill(fill, self.symbol_ids[fill.symbol], self.marks)


class _BatchView:
    """Per-batch indexes: the ticks of each symbol, and quotes as of any position."""

    def __init__(self, ticks: TickColumns, pre_marks: Mapping[int, Quote], fill_pos: Sequence[int]) -> None:
        self.ticks = ticks
        self.pre_marks = pre_marks
        self.fill_pos = np.asarray(fill_pos, dtype=np.int64)
        order = np.argsort(ticks.symbol, kind="stable")
        sorted_symbols = ticks.symbol[order]
        present, starts = np.unique(sorted_symbols, return_index=True)
        ends = np.append(starts[1:], len(order))
        self.by_symbol = {int(s): order[a:b] for s, a, b in zip(present, starts, ends)}
        self._empty = np.zeros(0, dtype=np.int64)

    def ticks_of(self, symbol_id: int) -> np.ndarray:
        return self.by_symbol.get(symbol_id, self._empty)

    def quote_before(self, symbol_id: int, position: int) -> Quote | None:
        """The latest quote of a symbol among ``ticks[:position]``, else the pre-batch mark."""
        indexes = self.ticks_of(symbol_id)
        k = int(np.searchsorted(indexes, position, side="left")) - 1
        if k >= 0:
            i = int(indexes[k])
            return float(self.ticks.bid[i]), float(self.ticks.ask[i])
        return self.pre_marks.get(symbol_id)


class BatchedEngine(_EngineBase):
    """The engine the account actors run: vectorised per account, equal to the reference."""

    def apply(self, batch: EventBatch) -> list[Event]:
        return [event for *_, event in self.apply_keyed(batch)]

    def apply_keyed(self, batch: EventBatch) -> list[tuple[int, int, int, Event]]:
        """Events with their sort key: (position in the batch, account index, order at that event)."""
        self.marks.update(batch.marks)
        ticks = batch.ticks
        view = _BatchView(ticks, dict(self.marks), batch.fill_pos)
        fills_by_account: dict[str, list[int]] = {}
        for j, fill in enumerate(batch.fills):
            fills_by_account.setdefault(fill.account, []).append(j)
        keyed: list[tuple[int, int, int, Event]] = []
        for book_index, book in enumerate(self.books):
            start = 0
            for j in fills_by_account.get(book.id, ()):
                end = batch.fill_pos[j]
                self._run_ticks(book, book_index, view, start, end, keyed)
                fill = batch.fills[j]
                symbol_id = self.symbol_ids[fill.symbol]
                marks = {s: q for s in {*book.slot_symbols, symbol_id} if (q := view.quote_before(s, end)) is not None}
                for order, event in enumerate(book.on_fill(fill, symbol_id, marks)):
                    keyed.append((end + j, book_index, order, event))
                start = end
            self._run_ticks(book, book_index, view, start, len(ticks), keyed)
        for symbol_id, indexes in view.by_symbol.items():
            last = int(indexes[-1])
            self.marks[symbol_id] = (float(ticks.bid[last]), float(ticks.ask[last]))
        keyed.sort(key=lambda item: item[:3])
        return keyed

    # ------------------------------------------------------------------ ticks between two fills

    def _run_ticks(
        self, book: AccountBook, book_index: int, view: _BatchView, start: int, end: int,
        keyed: list[tuple[int, int, int, Event]],
    ) -> None:
        if start >= end or not book.slot_symbols:
            return
        parts = []
        for symbol_id in book.slot_symbols:
            indexes = view.ticks_of(symbol_id)
            if indexes.size:
                lo, hi = np.searchsorted(indexes, (start, end), side="left")
                if hi > lo:
                    parts.append(indexes[lo:hi])
        if not parts:
            return
        idx = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
        ts = view.ticks.ts_ns[idx]
        rolled = False
        while idx.size:
            # Same rule as AccountBook.begin_event: the first event past the boundary rolls the day.
            if book.next_roll_ns is None:
                book.next_roll_ns = self.calendar.next_roll_after(int(ts[0]))
            elif ts[0] >= book.next_roll_ns:
                book.roll_day()
                book.next_roll_ns = self.calendar.next_roll_after(int(ts[0]))
                rolled = True
            beyond = np.flatnonzero(ts[1:] >= book.next_roll_ns)
            cut = 1 + int(beyond[0]) if beyond.size else idx.size
            self._run_part(book, book_index, view, idx[:cut], ts[:cut], rolled, keyed)
            idx, ts, rolled = idx[cut:], ts[cut:], False

    def _run_part(
        self, book: AccountBook, book_index: int, view: _BatchView, idx: np.ndarray, ts: np.ndarray,
        rolled_first: bool, keyed: list[tuple[int, int, int, Event]],
    ) -> None:
        """Ticks ``idx`` of one account with no fill and no day roll between them."""
        ticks = view.ticks
        n = idx.size
        open_pnl = np.zeros(n)
        exposure = np.zeros(n)
        for slot, symbol_id in enumerate(book.slot_symbols):
            qty = book.qty[slot]
            if qty == 0.0:
                continue
            avg = book.avg[slot]
            mult = book.mult[slot]
            side = ticks.bid if qty > 0.0 else ticks.ask
            pre = view.pre_marks.get(symbol_id)
            fallback = avg if pre is None else (pre[0] if qty > 0.0 else pre[1])
            indexes = view.ticks_of(symbol_id)
            if indexes.size:
                k = np.searchsorted(indexes, idx, side="right") - 1
                mark = np.where(k >= 0, side[indexes[np.maximum(k, 0)]], fallback)
            else:
                mark = np.full(n, fallback)
            # Same order of operations as AccountBook.remark: bit-identical results.
            open_pnl = open_pnl + qty * (mark - avg) * mult
            exposure = exposure + abs(qty) * mark * mult
        equity = book.balance + open_pnl
        peak = np.maximum.accumulate(np.concatenate(([book.day_peak], equity)))[1:]
        drawdown = peak - equity
        with np.errstate(divide="ignore", invalid="ignore"):
            dd_pct = np.where(peak > 0.0, drawdown / peak, np.where(drawdown > 0.0, np.inf, 0.0))
            lev = np.where(equity > 0.0, exposure / equity, np.inf)
        limits = book.limits
        dd_rank = (dd_pct > limits.drawdown_warning).astype(np.int8) + (dd_pct > limits.max_daily_drawdown)
        lev_rank = (lev > limits.leverage_warning).astype(np.int8) + (lev > limits.max_account_leverage)
        rank = np.maximum(dd_rank, lev_rank)

        i = 0
        while i < n:
            k = self._next_change(book, rank, ts, i, rolled_first)
            if k is None:
                break
            if k > 0:
                book.dd_rank, book.lev_rank = int(dd_rank[k - 1]), int(lev_rank[k - 1])
            book.open_pnl, book.exposure = float(open_pnl[k]), float(exposure[k])
            book.day_peak, book.ts_ns = float(peak[k]), int(ts[k])
            tick = int(idx[k])
            events = book.step_levels(
                int(dd_rank[k]), int(lev_rank[k]), float(dd_pct[k]), float(lev[k]), int(ts[k]),
                ticks.streams[int(ticks.stream[tick])], int(ticks.seq[tick]), rolled_first and k == 0,
            )
            position = tick + int(np.searchsorted(view.fill_pos, tick, side="right"))
            for order, event in enumerate(events):
                keyed.append((position, book_index, order, event))
            i = k + 1
        book.open_pnl, book.exposure = float(open_pnl[-1]), float(exposure[-1])
        book.day_peak, book.ts_ns = float(peak[-1]), int(ts[-1])
        book.rank, book.dd_rank, book.lev_rank = int(rank[-1]), int(dd_rank[-1]), int(lev_rank[-1])

    @staticmethod
    def _next_change(book: AccountBook, rank: np.ndarray, ts: np.ndarray, start: int, rolled_first: bool) -> int | None:
        """The first tick at or after ``start`` where the level or the breaker may change.

        A superset is fine (``step_levels`` decides exactly); missing one is not.
        """
        if start == 0 and rolled_first:
            return 0  # a roll may release a breaker at its first event
        candidates = rank[start:] != book.rank
        breaker = book.breaker
        limits = book.limits
        if breaker.engaged:
            if breaker.cause is EngageCause.LIMIT and limits.auto_reset:
                cooled = (ts[start:] - breaker.engaged_at_ns) >= int(limits.recovery_cooldown_seconds * NS_PER_SECOND) - 1_000
                candidates |= (rank[start:] < CRITICAL) & cooled
        elif limits.kill_switch_mode is KillSwitchMode.AUTO:
            candidates |= rank[start:] == CRITICAL
        hits = np.flatnonzero(candidates)
        return start + int(hits[0]) if hits.size else None


__all__ = ["BatchedEngine", "EventBatch", "Metric", "ReferenceEngine", "TickColumns"]
