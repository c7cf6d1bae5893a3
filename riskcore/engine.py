"""The reference engine (one event at a time) and the batched engine.

Both take an :class:`EventBatch` — columnar ticks plus the fills that arrived
between them — and return the same alert and breaker events in the same order,
leaving every account with the same figures. The reference applies each event
to each account in turn through :class:`riskcore.account.AccountBook`; the
batched engine runs the same loop compiled (:mod:`riskcore.kernel`) over state
packed into arrays, and applies fills through the same ``AccountBook`` code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from riskcore import kernel
from riskcore.account import CRITICAL, AccountBook, AccountState, transition_metric
from riskcore.aggregate import SummaryColumns
from riskcore.clock import NS_PER_SECOND, TradingCalendar
from riskcore.config import RiskConfig
from riskcore.errors import SnapshotError, UnknownAccountError
from riskcore.events import AccountEvent, AlertEvent, BreakerEvent, Cash, Fill, Tick
from riskcore.states import AlertLevel, EngageCause, KillSwitchMode, Metric

Event = AlertEvent | BreakerEvent
Quote = tuple[float, float]

# The layout of every snapshot riskcore writes (engine, input screens). Bump it on any change: a snapshot
# of another layout would be misread, not refused (a refused one keeps its shard down; see SnapshotError).
SNAPSHOT_VERSION = 1


def check_snapshot_version(snapshot: Mapping[str, Any], what: str) -> None:
    """Refuse (:class:`SnapshotError`) a ``what`` snapshot not written in :data:`SNAPSHOT_VERSION`'s layout."""
    version = snapshot.get("version") if isinstance(snapshot, Mapping) else None
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(f"{what} snapshot has version {version!r}; this build reads version {SNAPSHOT_VERSION}")


def _is_symbol_id(value: object, n_symbols: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_symbols


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
    def empty(cls) -> TickColumns:
        return cls(
            np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.zeros(0, np.int32), (),
        )

    @classmethod
    def from_ticks(cls, ticks: Sequence[Tick], symbol_ids: Mapping[str, int]) -> TickColumns:
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
    """Ticks in arrival order, and fills (and cash movements: the accounts' own events) placed between them.

    Fill ``j`` arrived after ``ticks[:fill_pos[j]]`` (``fill_pos`` is non-decreasing).
    ``marks`` carries the router's latest quote, as of the start of the batch, of
    symbols the batch's fills trade, so an account that opens a symbol it did not
    hold starts from the latest mark.
    """

    ticks: TickColumns
    fills: list[AccountEvent] = field(default_factory=list)
    fill_pos: list[int] = field(default_factory=list)
    marks: dict[int, Quote] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[Tick | AccountEvent], symbol_ids: Mapping[str, int]) -> EventBatch:
        ticks: list[Tick] = []
        fills: list[AccountEvent] = []
        fill_pos: list[int] = []
        for event in events:
            if isinstance(event, (Fill, Cash)):
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

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> dict[str, Any]:
        """Every account's state and the latest marks, as msgpack-native values (no numpy, no pickle).

        With the journal written after it, enough to rebuild the engine (:meth:`restore`) without
        replaying the journal from its start. Symbol ids index ``symbols``, the config's symbol table.
        """
        return {
            "version": SNAPSHOT_VERSION,
            "symbols": list(self.symbol_names),
            "marks": [[symbol_id, bid, ask] for symbol_id, (bid, ask) in sorted(self.marks.items())],
            "accounts": [book.snapshot() for book in self.books],
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take the state :meth:`snapshot` wrote, in an engine of the same config and accounts.

        Raises :class:`SnapshotError`, having changed nothing, for a snapshot of another version, of other
        accounts, or naming symbols this config does not have.
        """
        self._check_snapshot(snapshot)
        for data in snapshot["accounts"]:
            self.book_by_id[data["id"]].restore(data)
        self.marks = {symbol_id: (bid, ask) for symbol_id, bid, ask in snapshot["marks"]}

    def _check_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        check_snapshot_version(snapshot, "engine")
        known = list(snapshot["symbols"])
        if known != self.symbol_names[: len(known)]:
            # Symbols appended to the config since are fine (ids of the old ones are unchanged); any other change
            # would make the snapshot's ids name other symbols.
            raise SnapshotError("snapshot symbol table is not a prefix of the config's: its symbol ids would "
                                "name other symbols (symbols may only be appended to a running system's config)")
        ids = sorted(data["id"] for data in snapshot["accounts"])
        if ids != sorted(self.book_by_id):
            hosted = set(self.book_by_id)
            raise SnapshotError(
                f"snapshot accounts are not this engine's: missing {sorted(hosted - set(ids))[:5]}, "
                f"not hosted here {sorted(set(ids) - hosted)[:5]}, {len(ids)} in snapshot, {len(hosted)} hosted"
            )
        n_symbols = len(self.symbol_names)
        for data in snapshot["accounts"]:
            for symbol_id in data["slot_symbols"]:
                if not _is_symbol_id(symbol_id, n_symbols):
                    raise SnapshotError(f"snapshot account {data['id']} holds unknown symbol id {symbol_id!r}")
        for symbol_id, *_ in snapshot["marks"]:
            if not _is_symbol_id(symbol_id, n_symbols):
                raise SnapshotError(f"snapshot marks unknown symbol id {symbol_id!r}")


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

    def apply_fill(self, fill: AccountEvent) -> list[Event]:
        if isinstance(fill, Cash):
            return self.book(fill.account).on_cash(fill)
        return self.book(fill.account).on_fill(fill, self.symbol_ids[fill.symbol], self.marks)


def _grow(array: np.ndarray, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    """A copy of a 2-D array with at least ``rows`` rows and ``cols`` columns (zero-filled)."""
    r = max(array.shape[0], rows or 0)
    c = max(array.shape[1], cols or 0)
    out = np.zeros((r, c), dtype=array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out


class BatchedEngine(_EngineBase):
    """The engine the account actors run: the compiled reference loop over packed arrays.

    Between batches the arrays hold each account's figures; the :class:`AccountBook` objects are
    brought up to date on demand (:meth:`sync`) for views, fills and operator commands, and written
    back after them. Fills run through the same ``AccountBook.on_fill`` as the reference engine.
    """

    def __init__(self, config: RiskConfig, account_ids: Iterable[str] | None = None) -> None:
        super().__init__(config, account_ids)
        n_accounts, n_symbols = len(self.books), len(self.symbol_names)
        width = max([len(b.slot_symbols) for b in self.books] + [1])
        self.slot_n = np.zeros(n_accounts, np.int64)
        self.slot_sym = np.zeros((n_accounts, width), np.int64)
        self.slot_qty = np.zeros((n_accounts, width))
        self.slot_avg = np.zeros((n_accounts, width))
        self.slot_mult = np.zeros((n_accounts, width))
        # Each slot's open-PnL and exposure terms at its symbol's current mark (the kernel re-sums them).
        self.slot_upnl = np.zeros((n_accounts, width))
        self.slot_expo = np.zeros((n_accounts, width))
        self.hold_n = np.zeros(n_symbols, np.int64)
        self.hold_acc = np.zeros((n_symbols, 1), np.int64)  # holders of each symbol, in account order
        self.hold_slot = np.zeros((n_symbols, 1), np.int64)  # ... and the slot each keeps it in
        f64 = lambda: np.zeros(n_accounts)  # noqa: E731
        self.a_balance, self.a_closed, self.a_open, self.a_expo, self.a_sod, self.a_peak = (f64() for _ in range(6))
        self.a_rank, self.a_ddr, self.a_levr = (np.zeros(n_accounts, np.int64) for _ in range(3))
        self.a_ts = np.zeros(n_accounts, np.int64)
        self.a_has_ts = np.zeros(n_accounts, np.bool_)
        self.a_next_roll = np.full(n_accounts, -1, np.int64)
        self.a_eng = np.zeros(n_accounts, np.bool_)
        self.a_cause_limit = np.zeros(n_accounts, np.bool_)
        self.a_eng_at = np.zeros(n_accounts, np.int64)
        self.a_eng_dd = np.zeros(n_accounts, np.bool_)
        self.a_day_rolled = np.zeros(n_accounts, np.bool_)
        self.a_lag = np.zeros(n_accounts, np.bool_)  # accounts whose book lags the arrays
        # Reached by an event (the kernel sets it on a tick) since the last changed-only summary.
        self.a_changed = np.zeros(n_accounts, np.bool_)
        position_in_config = {spec.id: i for i, spec in enumerate(config.accounts)}
        self.config_index = np.array([position_in_config[b.id] for b in self.books], dtype=np.int32)
        limits = [b.limits for b in self.books]
        self.l_ddw = np.array([x.drawdown_warning for x in limits], dtype=np.float64).reshape(n_accounts)
        self.l_ddh = np.array([x.max_daily_drawdown for x in limits], dtype=np.float64).reshape(n_accounts)
        self.l_levw = np.array([x.leverage_warning for x in limits], dtype=np.float64).reshape(n_accounts)
        self.l_levh = np.array([x.max_account_leverage for x in limits], dtype=np.float64).reshape(n_accounts)
        self.l_auto = np.array([x.kill_switch_mode is KillSwitchMode.AUTO for x in limits], dtype=np.bool_).reshape(n_accounts)
        self.l_autoreset = np.array([x.auto_reset for x in limits], dtype=np.bool_).reshape(n_accounts)
        self.l_cool_s = np.array([x.recovery_cooldown_seconds for x in limits], dtype=np.float64).reshape(n_accounts)
        self.l_roll_release = np.array([x.release_on_day_roll for x in limits], dtype=np.bool_).reshape(n_accounts)
        self.m_bid = np.zeros(n_symbols)
        self.m_ask = np.zeros(n_symbols)
        self.m_has = np.zeros(n_symbols, np.bool_)
        self.index_of = {book.id: index for index, book in enumerate(self.books)}
        # Called with each account breaker change the moment a batch makes it (the kernel stops after the
        # tick that engaged one), before the rest of the batch: a halt need not wait for the batch to end.
        self.on_breaker: Callable[[BreakerEvent], None] | None = None
        self._out_i = np.zeros((4096, kernel.OUT_INT_COLS), np.int64)
        self._out_f = np.zeros((4096, kernel.OUT_FLOAT_COLS))
        for index in range(n_accounts):
            self._pack(index)

    # ------------------------------------------------------------------ book <-> arrays

    def _pack(self, a: int) -> None:
        """Write one account's book into the arrays (after a fill or an operator command)."""
        book = self.books[a]
        n = len(book.slot_symbols)
        if n > self.slot_sym.shape[1]:
            width = max(n, 2 * self.slot_sym.shape[1])
            self.slot_sym, self.slot_qty = _grow(self.slot_sym, cols=width), _grow(self.slot_qty, cols=width)
            self.slot_avg, self.slot_mult = _grow(self.slot_avg, cols=width), _grow(self.slot_mult, cols=width)
            self.slot_upnl, self.slot_expo = _grow(self.slot_upnl, cols=width), _grow(self.slot_expo, cols=width)
        for j in range(int(self.slot_n[a]), n):  # new slots: this account now holds that symbol
            self._add_holder(book.slot_symbols[j], a, j)
        self.slot_n[a] = n
        self.slot_sym[a, :n] = book.slot_symbols
        self.slot_qty[a, :n] = book.qty
        self.slot_avg[a, :n] = book.avg
        self.slot_mult[a, :n] = book.mult
        for j, symbol_id in enumerate(book.slot_symbols):
            qty, avg, mult = book.qty[j], book.avg[j], book.mult[j]
            if qty == 0.0:
                self.slot_upnl[a, j] = self.slot_expo[a, j] = 0.0
                continue
            # The same terms, in the same order of operations, as AccountBook.remark and the kernel.
            mark = avg if not self.m_has[symbol_id] else float(self.m_bid[symbol_id] if qty > 0.0 else self.m_ask[symbol_id])
            self.slot_upnl[a, j] = qty * (mark - avg) * mult
            self.slot_expo[a, j] = abs(qty) * mark * mult
        self.a_balance[a], self.a_closed[a], self.a_open[a] = book.balance, book.closed_pnl, book.open_pnl
        self.a_expo[a], self.a_sod[a], self.a_peak[a] = book.exposure, book.sod_equity, book.day_peak
        self.a_rank[a], self.a_ddr[a], self.a_levr[a] = book.rank, book.dd_rank, book.lev_rank
        self.a_has_ts[a] = book.ts_ns is not None
        self.a_ts[a] = book.ts_ns or 0
        self.a_next_roll[a] = -1 if book.next_roll_ns is None else book.next_roll_ns
        breaker = book.breaker
        self.a_eng[a] = breaker.engaged
        self.a_cause_limit[a] = breaker.engaged and breaker.cause is EngageCause.LIMIT
        self.a_eng_at[a] = breaker.engaged_at_ns
        self.a_eng_dd[a] = breaker.metric == Metric.DRAWDOWN_PCT.field
        self.a_day_rolled[a] = breaker.day_rolled
        self.a_changed[a] = True

    def _unpack(self, a: int) -> None:
        book = self.books[a]
        book.balance, book.closed_pnl = float(self.a_balance[a]), float(self.a_closed[a])
        book.open_pnl, book.exposure = float(self.a_open[a]), float(self.a_expo[a])
        book.sod_equity, book.day_peak = float(self.a_sod[a]), float(self.a_peak[a])
        book.rank, book.dd_rank, book.lev_rank = int(self.a_rank[a]), int(self.a_ddr[a]), int(self.a_levr[a])
        book.ts_ns = int(self.a_ts[a]) if self.a_has_ts[a] else None
        book.next_roll_ns = None if self.a_next_roll[a] < 0 else int(self.a_next_roll[a])
        book.breaker.day_rolled = bool(self.a_day_rolled[a])
        self.a_lag[a] = False

    def _add_holder(self, symbol_id: int, a: int, slot: int) -> None:
        n = int(self.hold_n[symbol_id])
        if n + 1 > self.hold_acc.shape[1]:
            width = max(n + 1, 2 * self.hold_acc.shape[1])
            self.hold_acc, self.hold_slot = _grow(self.hold_acc, cols=width), _grow(self.hold_slot, cols=width)
        at = int(np.searchsorted(self.hold_acc[symbol_id, :n], a))  # account order, as the reference visits
        for table, value in ((self.hold_acc, a), (self.hold_slot, slot)):
            table[symbol_id, at + 1 : n + 1] = table[symbol_id, at:n].copy()
            table[symbol_id, at] = value
        self.hold_n[symbol_id] = n + 1

    def sync(self) -> None:
        """Bring every account's book up to date with the arrays."""
        for a in np.flatnonzero(self.a_lag).tolist():
            self._unpack(a)

    def states(self) -> dict[str, AccountState]:
        self.sync()
        return super().states()

    def snapshot(self) -> dict[str, Any]:
        self.sync()  # a snapshot reads the books
        return super().snapshot()

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """:meth:`_EngineBase.restore`, then the arrays rebuilt from the books.

        Every account counts as changed for the next changed-only summary.
        """
        super().restore(snapshot)
        # Marks first: _pack prices each slot's terms at them, as the kernel last did.
        self.m_has[:] = False
        self._mark_arrays(self.marks)
        # Every slot anew: _pack adds each slot's symbol holder, in account order.
        self.slot_n[:] = 0
        self.hold_n[:] = 0
        for a in range(len(self.books)):
            self._pack(a)
        self.a_lag[:] = False

    def summary_columns(self, changed_only: bool = False) -> SummaryColumns:
        """Accounts' summaries straight from the arrays: the figures ``summarize`` gives, as columns.

        ``changed_only``: only accounts an event has reached since the last such call (a tick of a symbol
        they hold, a fill, an operator command); every other account's figures are as last reported.
        """
        if changed_only:
            rows = np.flatnonzero(self.a_changed)
            self.a_changed[:] = False
        else:
            rows = np.arange(len(self.books))
        slot_n, slot_qty = self.slot_n[rows], self.slot_qty[rows]
        held = (np.arange(slot_qty.shape[1]) < slot_n[:, None]) & (slot_qty != 0.0)
        pos_row, pos_slot = np.nonzero(held)
        pos_account = rows[pos_row]
        qty = slot_qty[pos_row, pos_slot]
        symbol = self.slot_sym[pos_account, pos_slot]
        quoted = np.where(qty > 0.0, self.m_bid[symbol], self.m_ask[symbol])
        mark = np.where(self.m_has[symbol], quoted, self.slot_avg[pos_account, pos_slot])
        return SummaryColumns(
            index=self.config_index[rows], equity=self.a_balance[rows] + self.a_open[rows],
            sod_equity=self.a_sod[rows], exposure=self.a_expo[rows], rank=self.a_rank[rows].astype(np.int8),
            engaged=self.a_eng[rows], ts_ns=np.where(self.a_has_ts[rows], self.a_ts[rows], -1),
            pos_account=pos_row.astype(np.int32), pos_symbol=symbol.astype(np.int32),
            pos_qty=qty, pos_net=qty * mark * self.slot_mult[pos_account, pos_slot], day=self.a_next_roll[rows],
        )

    def engage(self, account_id: str, now_ns: int, operator: str, reason: str) -> BreakerEvent:
        a = self.index_of.get(account_id)
        if a is not None:
            self._unpack(a)
        event = super().engage(account_id, now_ns, operator, reason)
        self._pack(self.index_of[account_id])
        return event

    def reset(self, account_id: str, now_ns: int, operator: str, reason: str) -> tuple[BreakerEvent | None, str | None]:
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
            columns = [np.zeros(1, np.int32), np.zeros(1), np.zeros(1), np.zeros(1, np.int64)]
            for column in columns:
                column.flags.writeable = writeable
            BatchedEngine._warm_call(*columns)

    @staticmethod
    def _warm_call(t_sym: np.ndarray, t_bid: np.ndarray, t_ask: np.ndarray, t_ts: np.ndarray) -> None:
        one_f, one_i, one_b = np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.bool_)
        grid_f, grid_i = np.zeros((1, 1)), np.zeros((1, 1), np.int64)
        kernel.run_ticks(
            t_sym, t_bid, t_ask, t_ts, 0, 0,
            one_f.copy(), one_f.copy(), one_b.copy(), one_i.copy(), grid_i.copy(), grid_i.copy(),
            one_i.copy(), grid_i.copy(), grid_f.copy(), grid_f.copy(), grid_f.copy(), grid_f.copy(), grid_f.copy(),
            *(one_f.copy() for _ in range(6)), *(one_i.copy() for _ in range(3)), one_i.copy(), one_b.copy(),
            one_i.copy(), one_b.copy(), one_b.copy(), one_i.copy(), one_b.copy(), one_b.copy(), one_b.copy(),
            *(one_f.copy() for _ in range(4)), one_b.copy(), one_b.copy(), one_f.copy(), one_b.copy(),
            one_i.copy(), np.zeros((4, kernel.OUT_INT_COLS), np.int64), np.zeros((4, kernel.OUT_FLOAT_COLS)), 0, False,
        )

    # ------------------------------------------------------------------ batches

    def apply(self, batch: EventBatch) -> list[Event]:
        return [event for *_, event in self.apply_keyed(batch)]

    def apply_keyed(self, batch: EventBatch) -> list[tuple[int, int, int, Event]]:
        """Events with their sort key: (position in the batch, account index, order at that event)."""
        self.marks.update(batch.marks)
        self._mark_arrays(batch.marks)
        ticks = batch.ticks
        keyed: list[tuple[int, int, int, Event]] = []
        rolls = self._roll_boundaries(ticks, batch.fills)
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
                    s: (float(self.m_bid[s]), float(self.m_ask[s]))
                    for s in {*book.slot_symbols, symbol_id} if self.m_has[s]
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
            self.marks[symbol_id] = (float(self.m_bid[symbol_id]), float(self.m_ask[symbol_id]))
        return keyed

    def _mark_arrays(self, marks: Mapping[int, Quote]) -> None:
        for symbol_id, (bid, ask) in marks.items():
            self.m_bid[symbol_id], self.m_ask[symbol_id], self.m_has[symbol_id] = bid, ask, True

    def _roll_boundaries(self, ticks: TickColumns, fills: list[AccountEvent]) -> np.ndarray:
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

    def _run(self, ticks: TickColumns, start: int, end: int, fills_before: int, rolls: np.ndarray,
             keyed: list[tuple[int, int, int, Event]]) -> None:
        while start < end:
            held = int(self.hold_n[ticks.symbol[start:end]].max()) if end > start else 0
            if 2 * held + 2 > self._out_i.shape[0]:
                self._out_i = _grow(self._out_i, rows=4 * held + 4)
                self._out_f = _grow(self._out_f, rows=4 * held + 4)
            status, start, rows = kernel.run_ticks(
                ticks.symbol, ticks.bid, ticks.ask, ticks.ts_ns, start, end,
                self.m_bid, self.m_ask, self.m_has, self.hold_n, self.hold_acc, self.hold_slot,
                self.slot_n, self.slot_sym, self.slot_qty, self.slot_avg, self.slot_mult, self.slot_upnl, self.slot_expo,
                self.a_balance, self.a_closed, self.a_open, self.a_expo, self.a_sod, self.a_peak,
                self.a_rank, self.a_ddr, self.a_levr, self.a_ts, self.a_has_ts, self.a_next_roll,
                self.a_eng, self.a_cause_limit, self.a_eng_at, self.a_eng_dd, self.a_day_rolled, self.a_changed,
                self.l_ddw, self.l_ddh, self.l_levw, self.l_levh, self.l_auto, self.l_autoreset, self.l_cool_s,
                self.l_roll_release, rolls, self._out_i, self._out_f, 0, self.on_breaker is not None,
            )
            np.logical_or(self.a_lag, self.a_changed, out=self.a_lag)
            if status == kernel.NO_ROLL_BOUNDARY:  # pragma: no cover - boundaries span the whole batch
                raise AssertionError("trading-day boundaries do not cover the batch")
            self._events(ticks, rows, fills_before, keyed)

    def _events(self, ticks: TickColumns, rows: int, fills_before: int, keyed: list[tuple[int, int, int, Event]]) -> None:
        out_i, out_f = self._out_i, self._out_f
        order_at: dict[tuple[int, int], int] = {}
        for r in range(rows):
            kind, i, a = int(out_i[r, 0]), int(out_i[r, 1]), int(out_i[r, 2])
            book = self.books[a]
            limits = book.limits
            stream, seq, ts = ticks.streams[int(ticks.stream[i])], int(ticks.seq[i]), int(ticks.ts_ns[i])
            dd_pct, lev = float(out_f[r, 0]), float(out_f[r, 1])
            event: Event
            if kind == kernel.ALERT:
                from_rank, to_rank, dd_rank, old_dd_rank = (int(x) for x in out_i[r, 3:7])
                metric, value, threshold = transition_metric(to_rank, dd_rank, 0, old_dd_rank, dd_pct, lev, limits)
                event = AlertEvent(book.id, str(AlertLevel.from_rank(from_rank)), str(AlertLevel.from_rank(to_rank)),
                                   metric, value, threshold, stream, seq, ts)
            elif kind == kernel.ENGAGE:
                if int(out_i[r, 5]) == CRITICAL:
                    metric, value, threshold = "drawdown_pct", dd_pct, limits.max_daily_drawdown
                else:
                    metric, value, threshold = "leverage", lev, limits.max_account_leverage
                reason = f"{metric} {value:.6g} > {threshold:g}"
                book.breaker.engage(ts, EngageCause.LIMIT, reason, "limit", metric)
                event = BreakerEvent("account", book.id, "ENGAGED", reason, "limit", "", stream, seq, ts)
            else:
                cause = "day_roll" if kind == kernel.DAY_ROLL else "auto_reset"
                book.breaker.reset()
                event = BreakerEvent("account", book.id, "SAFE", f"{cause}: back within limits", cause, "",
                                     stream, seq, ts)
            order = order_at.get((i, a), 0)
            order_at[(i, a)] = order + 1
            keyed.append((i + fills_before, a, order, event))
            if self.on_breaker is not None and isinstance(event, BreakerEvent):
                self.on_breaker(event)


__all__ = [
    "SNAPSHOT_VERSION",
    "BatchedEngine",
    "EventBatch",
    "Metric",
    "ReferenceEngine",
    "TickColumns",
    "check_snapshot_version",
]
