"""The batched engine: the reference loop compiled (:mod:`riskcore.kernel`) over state packed into arrays.

Fills and operator commands run through the same :class:`riskcore.account.AccountBook` code as the
reference engine; ticks run through the kernel, whose results are bit-identical to the reference's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from riskcore import kernel
from riskcore.account import AccountState
from riskcore.aggregate import SummaryColumns
from riskcore.arrays import (
    F64,
    I64,
    Flags,
    account_arrays,
    grow,
    holder_arrays,
    limit_arrays,
    out_rows,
    quote_arrays,
    slot_arrays,
    tick_arrays,
)
from riskcore.batch import EventBatch, Quote, TickColumns
from riskcore.clock import NS_PER_SECOND
from riskcore.config import AccountLimits, RiskConfig
from riskcore.events import AccountEvent, AlertEvent, BreakerEvent, Cash, Event
from riskcore.figures import mark_price, transition_metric
from riskcore.reference import EngineBase
from riskcore.states import AlertLevel, EngageCause, Metric, ReleaseCause

KeyedEvent = tuple[int, int, int, Event]  # (position in the batch, account index, order at that event), event


class BatchedEngine(EngineBase):
    """The engine the account actors run: the compiled reference loop over packed arrays.

    Between batches the arrays hold each account's figures; the :class:`AccountBook` objects are
    brought up to date on demand (:meth:`sync`) for views, fills and operator commands, and written
    back after them. Fills run through the same ``AccountBook.on_fill`` as the reference engine.
    """

    def __init__(self, config: RiskConfig, account_ids: Iterable[str] | None = None) -> None:
        super().__init__(config, account_ids)
        n_accounts, n_symbols = len(self.books), len(self.symbol_names)
        width = max([len(b.slot_symbols) for b in self.books] + [1])
        self.slots = slot_arrays(n_accounts, width)
        self.holders = holder_arrays(n_symbols)
        # ``touched``: reached by an event (the kernel sets it on a tick) since the last changed-only summary.
        self.acc = account_arrays(n_accounts)
        self.lag = np.zeros(n_accounts, np.bool_)  # accounts whose book lags the arrays
        position_in_config = {spec.id: i for i, spec in enumerate(config.accounts)}
        self.config_index = np.array([position_in_config[b.id] for b in self.books], dtype=np.int32)
        self.limits = limit_arrays([b.limits for b in self.books])
        self.quotes = quote_arrays(n_symbols)
        self.index_of = {book.id: index for index, book in enumerate(self.books)}
        # Called with each account breaker change the moment a batch makes it (the kernel stops after the
        # tick that engaged one), before the rest of the batch: a halt need not wait for the batch to end.
        self.on_breaker: Callable[[BreakerEvent], None] | None = None
        self._out = out_rows(4096)
        for index in range(n_accounts):
            self._pack(index)

    # ------------------------------------------------------------------ array views read by name

    @property
    def m_bid(self) -> F64:
        """Each symbol's latest bid (``quotes.bid``)."""
        return self.quotes.bid

    @property
    def a_balance(self) -> F64:
        return self.acc.balance

    @property
    def a_open(self) -> F64:
        return self.acc.open_pnl

    @property
    def a_peak(self) -> F64:
        return self.acc.day_peak

    @property
    def a_ts(self) -> I64:
        return self.acc.ts_ns

    @property
    def a_has_ts(self) -> Flags:
        return self.acc.has_ts

    # ------------------------------------------------------------------ book <-> arrays

    def _pack(self, a: int) -> None:
        """Write one account's book into the arrays (after a fill or an operator command)."""
        book = self.books[a]
        n = len(book.slot_symbols)
        if n > self.slots.symbol.shape[1]:
            width = max(n, 2 * self.slots.symbol.shape[1])
            old = self.slots
            self.slots = old._replace(
                symbol=grow(old.symbol, cols=width), qty=grow(old.qty, cols=width),
                avg=grow(old.avg, cols=width), mult=grow(old.mult, cols=width),
                upnl=grow(old.upnl, cols=width), expo=grow(old.expo, cols=width),
            )
        slots, acc, quotes = self.slots, self.acc, self.quotes
        for j in range(int(slots.n_slots[a]), n):  # new slots: this account now holds that symbol
            self._add_holder(book.slot_symbols[j], a, j)
        slots.n_slots[a] = n
        slots.symbol[a, :n] = book.slot_symbols
        slots.qty[a, :n] = book.qty
        slots.avg[a, :n] = book.avg
        slots.mult[a, :n] = book.mult
        for j, symbol_id in enumerate(book.slot_symbols):
            qty, avg, mult = book.qty[j], book.avg[j], book.mult[j]
            if qty == 0.0:
                slots.upnl[a, j] = slots.expo[a, j] = 0.0
                continue
            # The same terms, in the same order of operations, as AccountBook.remark and the kernel.
            mark = mark_price(qty, avg, float(quotes.bid[symbol_id]), float(quotes.ask[symbol_id]),
                                     bool(quotes.quoted[symbol_id]))
            slots.upnl[a, j] = qty * (mark - avg) * mult
            slots.expo[a, j] = abs(qty) * mark * mult
        acc.balance[a], acc.closed_pnl[a], acc.open_pnl[a] = book.balance, book.closed_pnl, book.open_pnl
        acc.exposure[a], acc.sod_equity[a], acc.day_peak[a] = book.exposure, book.sod_equity, book.day_peak
        acc.rank[a], acc.dd_rank[a], acc.lev_rank[a] = book.rank, book.dd_rank, book.lev_rank
        acc.has_ts[a] = book.ts_ns is not None
        acc.ts_ns[a] = book.ts_ns or 0
        acc.next_roll_ns[a] = -1 if book.next_roll_ns is None else book.next_roll_ns
        breaker = book.breaker
        acc.engaged[a] = breaker.engaged
        acc.cause_limit[a] = breaker.engaged and breaker.cause is EngageCause.LIMIT
        acc.engaged_at_ns[a] = breaker.engaged_at_ns
        acc.engaged_dd[a] = breaker.metric == Metric.DRAWDOWN_PCT.field
        acc.day_rolled[a] = breaker.day_rolled
        acc.touched[a] = True

    def _unpack(self, a: int) -> None:
        book, acc = self.books[a], self.acc
        book.balance, book.closed_pnl = float(acc.balance[a]), float(acc.closed_pnl[a])
        book.open_pnl, book.exposure = float(acc.open_pnl[a]), float(acc.exposure[a])
        book.sod_equity, book.day_peak = float(acc.sod_equity[a]), float(acc.day_peak[a])
        book.rank, book.dd_rank, book.lev_rank = int(acc.rank[a]), int(acc.dd_rank[a]), int(acc.lev_rank[a])
        book.ts_ns = int(acc.ts_ns[a]) if acc.has_ts[a] else None
        book.next_roll_ns = None if acc.next_roll_ns[a] < 0 else int(acc.next_roll_ns[a])
        book.breaker.day_rolled = bool(acc.day_rolled[a])
        self.lag[a] = False

    def _add_holder(self, symbol_id: int, a: int, slot: int) -> None:
        holders = self.holders
        n = int(holders.n_holders[symbol_id])
        if n + 1 > holders.account.shape[1]:
            width = max(n + 1, 2 * holders.account.shape[1])
            holders = self.holders = holders._replace(
                account=grow(holders.account, cols=width), slot=grow(holders.slot, cols=width)
            )
        at = int(np.searchsorted(holders.account[symbol_id, :n], a))  # account order, as the reference visits
        for table, value in ((holders.account, a), (holders.slot, slot)):
            table[symbol_id, at + 1 : n + 1] = table[symbol_id, at:n].copy()
            table[symbol_id, at] = value
        holders.n_holders[symbol_id] = n + 1

    def sync(self) -> None:
        """Bring every account's book up to date with the arrays."""
        for a in np.flatnonzero(self.lag).tolist():
            self._unpack(a)

    def states(self) -> dict[str, AccountState]:
        self.sync()
        return super().states()

    def snapshot(self) -> dict[str, Any]:
        self.sync()  # a snapshot reads the books
        return super().snapshot()

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """:meth:`EngineBase.restore`, then the arrays rebuilt from the books.

        Every account counts as changed for the next changed-only summary.
        """
        super().restore(snapshot)
        # Marks first: _pack prices each slot's terms at them, as the kernel last did.
        self.quotes.quoted[:] = False
        self._mark_arrays(self.marks)
        # Every slot anew: _pack adds each slot's symbol holder, in account order.
        self.slots.n_slots[:] = 0
        self.holders.n_holders[:] = 0
        for a in range(len(self.books)):
            self._pack(a)
        self.lag[:] = False

    def summary_columns(self, changed_only: bool = False) -> SummaryColumns:
        """Accounts' summaries straight from the arrays, as columns.

        ``changed_only``: only accounts an event has reached since the last such call (a tick of a symbol
        they hold, a fill, an operator command); every other account's figures are as last reported.
        """
        acc, slots, quotes = self.acc, self.slots, self.quotes
        if changed_only:
            rows = np.flatnonzero(acc.touched)
            acc.touched[:] = False
        else:
            rows = np.arange(len(self.books))
        slot_n, slot_qty = slots.n_slots[rows], slots.qty[rows]
        held = (np.arange(slot_qty.shape[1]) < slot_n[:, None]) & (slot_qty != 0.0)
        pos_row, pos_slot = np.nonzero(held)
        pos_account = rows[pos_row]
        qty = slot_qty[pos_row, pos_slot]
        symbol = slots.symbol[pos_account, pos_slot]
        avg = slots.avg[pos_account, pos_slot]
        mark = kernel.mark_prices(qty, avg, quotes.bid[symbol], quotes.ask[symbol], quotes.quoted[symbol])
        return SummaryColumns(
            index=self.config_index[rows], equity=acc.balance[rows] + acc.open_pnl[rows],
            sod_equity=acc.sod_equity[rows], exposure=acc.exposure[rows], rank=acc.rank[rows].astype(np.int8),
            engaged=acc.engaged[rows], ts_ns=np.where(acc.has_ts[rows], acc.ts_ns[rows], -1),
            pos_account=pos_row.astype(np.int32), pos_symbol=symbol.astype(np.int32),
            pos_qty=qty, pos_net=qty * mark * slots.mult[pos_account, pos_slot], day=acc.next_roll_ns[rows],
        )

    def engage(self, account_id: str, now_ns: int, operator: str, reason: str) -> BreakerEvent:
        a = self.index_of.get(account_id)
        if a is not None:
            self._unpack(a)
        event = super().engage(account_id, now_ns, operator, reason)
        self._pack(self.index_of[account_id])
        return event

    def reset(
        self, account_id: str, now_ns: int, operator: str, reason: str
    ) -> tuple[BreakerEvent | None, str | None]:
        a = self.index_of.get(account_id)
        if a is not None:
            self._unpack(a)
        result = super().reset(account_id, now_ns, operator, reason)
        self._pack(self.index_of[account_id])
        return result

    @staticmethod
    def warm_up() -> None:
        """Compile the kernel (or load it from numba's cache) on a one-account dummy, touching no state.

        Both specialisations: tick columns decoded from a frame are read-only views, in-process ones are not.
        """
        for writeable in (True, False):
            ticks = TickColumns.empty()
            for column in (ticks.symbol, ticks.bid, ticks.ask, ticks.ts_ns):
                column.flags.writeable = writeable
            kernel.run_ticks(
                tick_arrays(ticks), 0, 0, quote_arrays(1), holder_arrays(1), slot_arrays(1, 1),
                account_arrays(1), limit_arrays([AccountLimits()]), np.zeros(0, np.int64), out_rows(4), 0,
                False,
            )
        kernel.mark_prices(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.bool_))

    # ------------------------------------------------------------------ batches

    def apply(self, batch: EventBatch) -> list[Event]:
        return [event for *_, event in self.apply_keyed(batch)]

    def apply_keyed(self, batch: EventBatch) -> list[KeyedEvent]:
        """Events with their sort key: (position in the batch, account index, order at that event)."""
        self.marks.update(batch.marks)
        self._mark_arrays(batch.marks)
        ticks = batch.ticks
        keyed: list[KeyedEvent] = []
        rolls = self._roll_boundaries(ticks, batch.fills)
        quotes = self.quotes
        start = 0
        for j, fill in enumerate(batch.fills):
            end = batch.fill_pos[j]
            self._run(ticks, start, end, j, rolls, keyed)
            a = self.index_of[fill.account]
            self._unpack(a)
            book = self.books[a]
            if isinstance(fill, Cash):
                events = book.on_cash(fill)
            else:
                symbol_id = self.symbol_ids[fill.symbol]
                marks = {
                    s: (float(quotes.bid[s]), float(quotes.ask[s]))
                    for s in {*book.slot_symbols, symbol_id} if quotes.quoted[s]
                }
                events = book.on_fill(fill, symbol_id, marks)
            for order, event in enumerate(events):
                keyed.append((end + j, a, order, event))
                if self.on_breaker is not None and isinstance(event, BreakerEvent):
                    self.on_breaker(event)
            self._pack(a)
            start = end
        self._run(ticks, start, len(ticks), len(batch.fills), rolls, keyed)
        for symbol_id in np.unique(ticks.symbol).tolist():  # the marks the batch moved
            self.marks[symbol_id] = (float(quotes.bid[symbol_id]), float(quotes.ask[symbol_id]))
        return keyed

    def _mark_arrays(self, marks: Mapping[int, Quote]) -> None:
        quotes = self.quotes
        for symbol_id, (bid, ask) in marks.items():
            quotes.bid[symbol_id], quotes.ask[symbol_id], quotes.quoted[symbol_id] = bid, ask, True

    def _roll_boundaries(self, ticks: TickColumns, fills: list[AccountEvent]) -> I64:
        """Every trading-day boundary from three days before the batch to three days after it."""
        stamps = [int(ticks.ts_ns.min()), int(ticks.ts_ns.max())] if len(ticks) else []
        stamps += [f.ts_ns for f in fills]
        if not stamps:
            return np.zeros(0, np.int64)
        day = 86_400 * NS_PER_SECOND
        boundary = self.calendar.next_roll_after(min(stamps) - 3 * day)
        out = [boundary]
        while boundary <= max(stamps) + 3 * day:
            boundary = self.calendar.next_roll_after(boundary)
            out.append(boundary)
        return np.asarray(out, dtype=np.int64)

    def _run(self, ticks: TickColumns, start: int, end: int, fills_before: int, rolls: I64,
             keyed: list[KeyedEvent]) -> None:
        columns = tick_arrays(ticks)
        while start < end:
            held = int(self.holders.n_holders[ticks.symbol[start:end]].max()) if end > start else 0
            if 2 * held + 2 > self._out.ints.shape[0]:
                self._out = out_rows(4 * held + 4)
            status, start, rows = kernel.run_ticks(
                columns, start, end, self.quotes, self.holders, self.slots, self.acc, self.limits, rolls,
                self._out, 0, self.on_breaker is not None,
            )
            np.logical_or(self.lag, self.acc.touched, out=self.lag)
            if status == kernel.NO_ROLL_BOUNDARY:  # pragma: no cover - boundaries span the whole batch
                raise AssertionError("trading-day boundaries do not cover the batch")
            self._events(ticks, rows, fills_before, keyed)

    def _events(self, ticks: TickColumns, rows: int, fills_before: int, keyed: list[KeyedEvent]) -> None:
        out_i, out_f = self._out
        order_at: dict[tuple[int, int], int] = {}
        for r in range(rows):
            kind, i, a = int(out_i[r, 0]), int(out_i[r, 1]), int(out_i[r, 2])
            book = self.books[a]
            stream, seq, ts = ticks.streams[int(ticks.stream[i])], int(ticks.seq[i]), int(ticks.ts_ns[i])
            dd_pct, lev = float(out_f[r, 0]), float(out_f[r, 1])
            event: Event
            if kind == kernel.ALERT:
                from_rank, to_rank, dd_rank, old_dd_rank = (int(x) for x in out_i[r, 3:7])
                metric, value, threshold = transition_metric(
                    to_rank, dd_rank, 0, old_dd_rank, dd_pct, lev, book.limits
                )
                event = AlertEvent(
                    book.id, str(AlertLevel.from_rank(from_rank)), str(AlertLevel.from_rank(to_rank)), metric,
                    value, threshold, stream, seq, ts,
                )
            elif kind == kernel.ENGAGE:
                event = book.engage_at_limit(int(out_i[r, 5]), dd_pct, lev, ts, stream, seq)
            else:
                cause = ReleaseCause.DAY_ROLL if kind == kernel.DAY_ROLL else ReleaseCause.AUTO_RESET
                event = book.release(cause, ts, stream, seq)
            order = order_at.get((i, a), 0)
            order_at[(i, a)] = order + 1
            keyed.append((i + fills_before, a, order, event))
            if self.on_breaker is not None and isinstance(event, BreakerEvent):
                self.on_breaker(event)



__all__ = ["BatchedEngine"]
