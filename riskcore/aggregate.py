"""Portfolio and firm aggregation, and their limits (the supervisor's arithmetic).

Aggregates are exact as of each account's last report: the supervisor replaces
an account's row (:class:`SummaryColumns`) whenever it reports and recomputes
the totals of the scopes it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from riskcore.config import AggregateLimits, RiskConfig
from riskcore.states import AlertLevel

FIRM = "firm"


@dataclass(slots=True)
class SummaryColumns:
    """Accounts' summaries as columns: what a shard sends after each batch (NumPy pickles out of band).

    ``index`` holds each row's position in the config's account list; ``pos_*`` hold one row per non-flat
    position, ``pos_account`` indexing the rows above and ``pos_symbol`` the config's symbols, in account
    order and, within an account, in the account's slot order.
    """

    index: np.ndarray  # int32, config account index of each row
    equity: np.ndarray
    sod_equity: np.ndarray
    exposure: np.ndarray
    rank: np.ndarray
    engaged: np.ndarray
    ts_ns: np.ndarray  # -1: no event yet
    pos_account: np.ndarray
    pos_symbol: np.ndarray
    pos_qty: np.ndarray
    pos_net: np.ndarray
    # Each row's trading day (the time of its next day roll; -1 before its first event). Tells a day roll,
    # which restarts the aggregate day peak, from a cash movement, which shifts it (empty: not known, taken
    # as a roll).
    day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))



@dataclass(slots=True)
class Aggregate:
    scope: str  # "portfolio" or "global"
    id: str
    accounts: int = 0
    gross_exposure: float = 0.0
    net_exposure: dict[str, float] = field(default_factory=dict)
    equity: float = 0.0
    sod_equity: float = 0.0
    daily_pnl: float = 0.0
    day_peak: float = 0.0
    drawdown: float = 0.0
    by_level: dict[str, int] = field(default_factory=dict)
    by_breaker: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "scope": self.scope, "id": self.id, "accounts": self.accounts,
            "gross_exposure": self.gross_exposure, "net_exposure": dict(self.net_exposure),
            "equity": self.equity, "daily_pnl": self.daily_pnl, "day_peak": self.day_peak,
            "drawdown": self.drawdown, "by_level": dict(self.by_level), "by_breaker": dict(self.by_breaker),
        }


@dataclass(frozen=True, slots=True)
class Breach:
    scope: str
    id: str
    metric: str
    value: float
    threshold: float

    @property
    def reason(self) -> str:
        return f"{self.metric} {self.value:.6g} beyond {self.threshold:g}"


def breaches(aggregate: Aggregate, limits: AggregateLimits) -> list[Breach]:
    """Every aggregate limit strictly exceeded, in a fixed order (gross, net per symbol, daily loss)."""
    found: list[Breach] = []
    scope, scope_id = aggregate.scope, aggregate.id
    if limits.max_gross_exposure is not None and aggregate.gross_exposure > limits.max_gross_exposure:
        gross = aggregate.gross_exposure
        found.append(Breach(scope, scope_id, "gross_exposure", gross, limits.max_gross_exposure))
    if limits.max_net_exposure_per_symbol is not None:
        for symbol in sorted(aggregate.net_exposure):
            value = aggregate.net_exposure[symbol]
            if abs(value) > limits.max_net_exposure_per_symbol:
                found.append(Breach(scope, scope_id, f"net_exposure[{symbol}]", value,
                                    limits.max_net_exposure_per_symbol))
    if limits.max_daily_loss is not None and -aggregate.daily_pnl > limits.max_daily_loss:
        found.append(Breach(scope, scope_id, "daily_loss", -aggregate.daily_pnl, limits.max_daily_loss))
    return found


class Aggregator:
    """Every account's latest figures as columns; totals per portfolio and for the firm, with NumPy.

    Sums run in a fixed order — accounts in config order and, within an account, positions in slot order,
    each scope's total accumulated one term at a time (``np.bincount``) — so a total depends only on the
    figures, never on the order reports arrived in. Scope row ``p`` is portfolio ``p`` (config order); the
    last row is the firm.
    """

    def __init__(self, config: RiskConfig) -> None:
        self.account_ids = [spec.id for spec in config.accounts]
        self.portfolio_ids = list(config.portfolios)
        self.symbol_names = list(config.symbols)
        scope_of = {pid: p for p, pid in enumerate(self.portfolio_ids)}
        n = len(self.account_ids)
        self.p_of = np.array([scope_of[spec.portfolio] for spec in config.accounts], dtype=np.int64)
        self.index_of = {account: i for i, account in enumerate(self.account_ids)}
        self.has = np.zeros(n, np.bool_)  # reported at least once
        self.equity, self.sod_equity, self.exposure = np.zeros(n), np.zeros(n), np.zeros(n)
        self.rank = np.zeros(n, np.int64)
        self.engaged = np.zeros(n, np.bool_)  # the supervisor's breaker state, not the report's
        self.day = np.full(n, -1, np.int64)
        self.pos_count = np.zeros(n, np.int64)
        self.pos_sym = np.zeros((n, 1), np.int64)
        self.pos_qty = np.zeros((n, 1))
        self.pos_net = np.zeros((n, 1))
        rows = len(self.portfolio_ids) + 1
        self.peak = np.zeros(rows)
        self.peak_sod = np.full(rows, np.nan)  # the start-of-day equity each peak started from
        self._totals: _Totals | None = None
        self._rolled = np.zeros(len(self.portfolio_ids) + 1, np.bool_)  # scopes an account rolled its day in

    def update(self, columns: SummaryColumns) -> set[str]:
        """Install fresh summaries; return the portfolios they touch."""
        rows = columns.index.astype(np.int64)
        if rows.size == 0:
            return set()
        self._totals = None
        # A start-of-day change restarts a scope's day peak only if an account rolled its day; a cash movement
        # moves start-of-day equity too, and shifts the peak by as much instead (totals()).
        if columns.day.size == rows.size:
            # (-1 to a day is an account's first event, not a roll)
            rolled = self.has[rows] & (self.day[rows] >= 0) & (self.day[rows] != columns.day)
            self.day[rows] = columns.day
        else:
            rolled = np.ones(rows.size, np.bool_)
        if bool(rolled.any()):
            self._rolled[self.p_of[rows[rolled]]] = True
            self._rolled[-1] = True
        self.has[rows] = True
        self.equity[rows], self.sod_equity[rows] = columns.equity, columns.sod_equity
        self.exposure[rows], self.rank[rows] = columns.exposure, columns.rank
        counts = np.bincount(columns.pos_account, minlength=rows.size)
        width = int(counts.max())
        if width > self.pos_sym.shape[1]:
            grow = ((0, 0), (0, width - self.pos_sym.shape[1]))
            self.pos_sym = np.pad(self.pos_sym, grow)
            self.pos_qty = np.pad(self.pos_qty, grow)
            self.pos_net = np.pad(self.pos_net, grow)
        self.pos_count[rows] = counts
        slot = np.arange(columns.pos_account.size) - (np.cumsum(counts) - counts)[columns.pos_account]
        owner = rows[columns.pos_account]
        self.pos_sym[owner, slot] = columns.pos_symbol
        self.pos_qty[owner, slot] = columns.pos_qty
        self.pos_net[owner, slot] = columns.pos_net
        return {self.portfolio_ids[p] for p in np.unique(self.p_of[rows]).tolist()}

    def columns(self) -> SummaryColumns:
        """Every reported account's figures, as the columns they came in (``engaged`` and ``ts_ns`` are not
        kept here: all False, all -1). A shard keeps its figures as of an earlier batch this way."""
        rows = np.flatnonzero(self.has)
        pos_row, pos_slot = np.nonzero(np.arange(self.pos_sym.shape[1]) < self.pos_count[rows][:, None])
        owner = rows[pos_row]
        return SummaryColumns(
            index=rows.astype(np.int32), equity=self.equity[rows], sod_equity=self.sod_equity[rows],
            exposure=self.exposure[rows], rank=self.rank[rows].astype(np.int8),
            engaged=np.zeros(rows.size, np.bool_), ts_ns=np.full(rows.size, -1, np.int64),
            pos_account=pos_row.astype(np.int32),
            pos_symbol=self.pos_sym[owner, pos_slot].astype(np.int32), pos_qty=self.pos_qty[owner, pos_slot],
            pos_net=self.pos_net[owner, pos_slot], day=self.day[rows],
        )

    def set_engaged(self, account: str, engaged: bool) -> None:
        self.engaged[self.index_of[account]] = engaged
        self._totals = None

    def positions(self, account: str) -> dict[str, float]:
        i = self.index_of[account]
        n = int(self.pos_count[i])
        held = zip(self.pos_sym[i, :n].tolist(), self.pos_qty[i, :n].tolist(), strict=True)
        return {self.symbol_names[s]: q for s, q in held}

    def totals(self) -> _Totals:
        """Every scope's totals (computed once per change of figures; the day peaks move here)."""
        if self._totals is not None:
            return self._totals
        scopes, symbols = len(self.portfolio_ids), len(self.symbol_names)
        acc = np.flatnonzero(self.has)
        # The firm is one more scope over the same accounts: row `scopes`.
        key = np.concatenate((self.p_of[acc], np.full(acc.size, scopes)))
        acc2 = np.concatenate((acc, acc))
        rows = scopes + 1

        def per_scope(values: np.ndarray) -> np.ndarray:
            return np.bincount(key, weights=values[acc2], minlength=rows)

        equity, sod = per_scope(self.equity), per_scope(self.sod_equity)
        held = (np.arange(self.pos_sym.shape[1]) < self.pos_count[:, None]) & self.has[:, None]
        owner, slot = np.nonzero(held)
        sym = self.pos_sym[owner, slot]
        pkey = np.concatenate((self.p_of[owner] * symbols + sym, scopes * symbols + sym))
        net_values = self.pos_net[owner, slot]
        net = np.bincount(pkey, weights=np.concatenate((net_values, net_values)), minlength=rows * symbols)
        present = np.bincount(pkey, minlength=rows * symbols) > 0
        # A start-of-day change (an account rolled its day) restarts the aggregate peak; with no figures at
        # all (a restarted supervisor before its shards answered) the peaks it restored from its journal
        # stand.
        if acc.size:
            changed = self.peak_sod != sod
            restart = changed & (self._rolled | np.isnan(self.peak_sod))
            cash = changed & ~restart  # start-of-day equity moved by deposits or withdrawals alone
            self.peak = np.where(restart, sod, np.where(cash, self.peak + (sod - self.peak_sod), self.peak))
            self.peak_sod = sod
            self._rolled[:] = False
            self.peak = np.maximum(self.peak, equity)
        self._totals = _Totals(
            accounts=np.bincount(key, minlength=rows), gross=per_scope(self.exposure), equity=equity, sod=sod,
            peak=self.peak.copy(), net=net.reshape(rows, symbols), present=present.reshape(rows, symbols),
            levels=np.bincount(key * 3 + self.rank[acc2], minlength=rows * 3).reshape(rows, 3),
            engaged=np.bincount(key, weights=self.engaged[acc2].astype(np.float64), minlength=rows).astype(
                np.int64),
        )
        return self._totals

    def may_breach(self, row: int, limits: AggregateLimits) -> bool:
        """Whether scope ``row`` breaches any limit (the vectorised test; :func:`breaches` names them)."""
        t = self.totals()
        if limits.max_gross_exposure is not None and t.gross[row] > limits.max_gross_exposure:
            return True
        if limits.max_daily_loss is not None and t.sod[row] - t.equity[row] > limits.max_daily_loss:
            return True
        return limits.max_net_exposure_per_symbol is not None and bool(
            np.any(np.abs(t.net[row][t.present[row]]) > limits.max_net_exposure_per_symbol))

    def aggregate(self, row: int) -> Aggregate:
        t = self.totals()
        portfolio = row < len(self.portfolio_ids)
        names = self.symbol_names
        equity, sod = float(t.equity[row]), float(t.sod[row])
        return Aggregate(
            scope="portfolio" if portfolio else "global", id=self.portfolio_ids[row] if portfolio else FIRM,
            accounts=int(t.accounts[row]), gross_exposure=float(t.gross[row]),
            net_exposure={names[s]: float(t.net[row, s]) for s in np.flatnonzero(t.present[row]).tolist()},
            equity=equity, sod_equity=sod, daily_pnl=equity - sod, day_peak=float(t.peak[row]),
            drawdown=float(t.peak[row]) - equity,
            by_level={str(level): int(t.levels[row, level.rank]) for level in AlertLevel},
            by_breaker={"SAFE": int(t.accounts[row] - t.engaged[row]), "ENGAGED": int(t.engaged[row])},
        )

    def row(self, portfolio_id: str) -> int:
        return self.portfolio_ids.index(portfolio_id)

    def portfolio(self, portfolio_id: str) -> Aggregate:
        return self.aggregate(self.row(portfolio_id))

    def firm(self) -> Aggregate:
        return self.aggregate(len(self.portfolio_ids))


@dataclass(frozen=True, slots=True)
class _Totals:
    accounts: np.ndarray
    gross: np.ndarray
    equity: np.ndarray
    sod: np.ndarray
    peak: np.ndarray
    net: np.ndarray  # [scope, symbol]
    present: np.ndarray  # [scope, symbol]: some account in the scope holds the symbol
    levels: np.ndarray  # [scope, rank]
    engaged: np.ndarray
