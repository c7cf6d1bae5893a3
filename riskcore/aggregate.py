"""Portfolio and firm aggregation, and their limits (the supervisor's arithmetic).

Aggregates are exact as of each account's last report: the supervisor replaces
an account's :class:`AccountSummary` whenever it reports and recomputes the
totals of the scopes it belongs to.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from riskcore.account import AccountBook
from riskcore.config import AggregateLimits, RiskConfig
from riskcore.states import AlertLevel

FIRM = "firm"


@dataclass(slots=True)
class AccountSummary:
    """What an account reports to the supervisor after each batch."""

    account: str
    portfolio: str
    equity: float
    sod_equity: float
    exposure: float
    net: dict[str, float]  # symbol -> signed notional at the account's marks
    positions: dict[str, float]  # symbol -> signed quantity
    alert_level: str
    breaker: str
    ts_ns: int | None

    @property
    def daily_pnl(self) -> float:
        return self.equity - self.sod_equity


@dataclass(slots=True)
class SummaryColumns:
    """Many accounts' summaries as columns: what a shard sends after each batch (NumPy pickles out of band)."""

    accounts: list[str]
    portfolios: list[str]
    equity: np.ndarray
    sod_equity: np.ndarray
    exposure: np.ndarray
    rank: np.ndarray
    engaged: np.ndarray
    ts_ns: np.ndarray  # -1: no event yet
    symbols: list[str]  # names for pos_symbol
    pos_account: np.ndarray  # one row per non-flat position: index into accounts
    pos_symbol: np.ndarray
    pos_qty: np.ndarray
    pos_net: np.ndarray

    def to_summaries(self) -> list[AccountSummary]:
        out = [
            AccountSummary(account, portfolio, equity, sod, exposure, {}, {}, str(AlertLevel.from_rank(rank)),
                           "ENGAGED" if engaged else "SAFE", None if ts < 0 else ts)
            for account, portfolio, equity, sod, exposure, rank, engaged, ts in zip(
                self.accounts, self.portfolios, self.equity.tolist(), self.sod_equity.tolist(),
                self.exposure.tolist(), self.rank.tolist(), self.engaged.tolist(), self.ts_ns.tolist())
        ]
        for a, s, qty, net in zip(self.pos_account.tolist(), self.pos_symbol.tolist(), self.pos_qty.tolist(),
                                  self.pos_net.tolist()):
            name = self.symbols[s]
            out[a].positions[name] = qty
            out[a].net[name] = net
        return out


def summarize(book: AccountBook, marks: Mapping[int, tuple[float, float]], symbol_names: list[str]) -> AccountSummary:
    net: dict[str, float] = {}
    positions: dict[str, float] = {}
    for slot, symbol_id in enumerate(book.slot_symbols):
        qty = book.qty[slot]
        if qty == 0.0:
            continue
        quote = marks.get(symbol_id)
        mark = book.avg[slot] if quote is None else (quote[0] if qty > 0.0 else quote[1])
        name = symbol_names[symbol_id]
        net[name] = qty * mark * book.mult[slot]
        positions[name] = qty
    return AccountSummary(
        account=book.id, portfolio=book.portfolio, equity=book.equity, sod_equity=book.sod_equity,
        exposure=book.exposure, net=net, positions=positions, alert_level=str(AlertLevel.from_rank(book.rank)),
        breaker=str(book.breaker.state), ts_ns=book.ts_ns,
    )


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
            "scope": self.scope, "id": self.id, "accounts": self.accounts, "gross_exposure": self.gross_exposure,
            "net_exposure": dict(self.net_exposure), "equity": self.equity, "daily_pnl": self.daily_pnl,
            "day_peak": self.day_peak, "drawdown": self.drawdown, "by_level": dict(self.by_level),
            "by_breaker": dict(self.by_breaker),
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
    if limits.max_gross_exposure is not None and aggregate.gross_exposure > limits.max_gross_exposure:
        found.append(Breach(aggregate.scope, aggregate.id, "gross_exposure", aggregate.gross_exposure, limits.max_gross_exposure))
    if limits.max_net_exposure_per_symbol is not None:
        for symbol in sorted(aggregate.net_exposure):
            value = aggregate.net_exposure[symbol]
            if abs(value) > limits.max_net_exposure_per_symbol:
                found.append(Breach(aggregate.scope, aggregate.id, f"net_exposure[{symbol}]", value, limits.max_net_exposure_per_symbol))
    if limits.max_daily_loss is not None and -aggregate.daily_pnl > limits.max_daily_loss:
        found.append(Breach(aggregate.scope, aggregate.id, "daily_loss", -aggregate.daily_pnl, limits.max_daily_loss))
    return found


class Aggregator:
    """Latest summary per account; totals per portfolio and for the firm."""

    def __init__(self, config: RiskConfig) -> None:
        self.portfolio_of = {spec.id: spec.portfolio for spec in config.accounts}
        self.members: dict[str, list[str]] = {pid: [] for pid in config.portfolios}
        for spec in config.accounts:
            self.members[spec.portfolio].append(spec.id)
        self.summaries: dict[str, AccountSummary] = {}
        self.peaks: dict[str, float] = {}  # scope id -> highest aggregate equity this trading day
        self.sod: dict[str, float] = {}

    def update(self, summaries: Iterable[AccountSummary]) -> set[str]:
        """Install fresh summaries; return the portfolios they touch."""
        touched: set[str] = set()
        for summary in summaries:
            self.summaries[summary.account] = summary
            touched.add(summary.portfolio)
        return touched

    def _total(self, scope: str, scope_id: str, accounts: Iterable[str]) -> Aggregate:
        total = Aggregate(scope, scope_id)
        levels: Counter[str] = Counter()
        states: Counter[str] = Counter()
        for account_id in accounts:
            summary = self.summaries.get(account_id)
            if summary is None:
                continue
            total.accounts += 1
            total.gross_exposure += summary.exposure
            total.equity += summary.equity
            total.sod_equity += summary.sod_equity
            for symbol, value in summary.net.items():
                total.net_exposure[symbol] = total.net_exposure.get(symbol, 0.0) + value
            levels[summary.alert_level] += 1
            states[summary.breaker] += 1
        total.daily_pnl = total.equity - total.sod_equity
        # A start-of-day change (an account rolled its day) restarts the aggregate peak.
        key = f"{scope}:{scope_id}"
        if self.sod.get(key) != total.sod_equity:
            self.sod[key] = total.sod_equity
            self.peaks[key] = total.sod_equity
        peak = max(self.peaks.get(key, total.sod_equity), total.equity)
        self.peaks[key] = peak
        total.day_peak = peak
        total.drawdown = peak - total.equity
        total.by_level = {str(level): levels.get(str(level), 0) for level in AlertLevel}
        total.by_breaker = {"SAFE": states.get("SAFE", 0), "ENGAGED": states.get("ENGAGED", 0)}
        return total

    def portfolio(self, portfolio_id: str) -> Aggregate:
        return self._total("portfolio", portfolio_id, self.members.get(portfolio_id, ()))

    def firm(self) -> Aggregate:
        return self._total("global", FIRM, self.portfolio_of)
