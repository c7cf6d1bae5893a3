"""One account: positions, marks, the DESIGN §1 figures, alert level and breaker.

This module, with the scalar rules of :mod:`riskcore.figures`, is the definition of
every number. ``AccountBook.on_tick`` and ``AccountBook.on_fill`` apply one event;
the batched engine computes the same figures for many ticks at once and must
agree with these to the last bit, so the arithmetic order here is part of the
contract (sums run over position slots in the order the account first opened
each symbol).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from riskcore.clock import TradingCalendar, rfc3339_us
from riskcore.config import AccountSpec
from riskcore.events import AlertEvent, BreakerEvent, Cash, Event, Fill
from riskcore.figures import (
    CRITICAL,
    FLAT_TOLERANCE,
    drawdown_pct,
    fill_position,
    leverage,
    mark_price,
    metric_rank,
    transition_metric,
)
from riskcore.states import (
    AlertLevel,
    Breaker,
    BreakerState,
    EngageCause,
    KillSwitchMode,
    Metric,
    ReleaseCause,
    Scope,
)


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account's figures as of its last applied event (DESIGN §1, plus equity and breaker)."""

    account: str
    portfolio: str
    timestamp: str | None
    balance: float
    open_pnl: float
    closed_pnl: float
    total_pnl: float
    positions: int
    total_exposure: float
    leverage: float
    drawdown: float
    drawdown_pct: float
    alert_level: str
    equity: float
    day_peak: float
    sod_equity: float
    breaker: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = "inf" if value > 0 else "-inf"
        return out


class AccountBook:
    """The state of one account, changed one event at a time."""

    def __init__(
        self,
        spec: AccountSpec,
        symbol_ids: Mapping[str, int],
        multipliers: list[float],
        calendar: TradingCalendar,
    ) -> None:
        self.id = spec.id
        self.portfolio = spec.portfolio
        self.limits = spec.limits
        self.calendar = calendar
        self.multipliers = multipliers
        # Position slots, in the order each symbol was first held; never removed, so sums keep one order.
        self.slot_of: dict[int, int] = {}
        self.slot_symbols: list[int] = []
        self.qty: list[float] = []
        self.avg: list[float] = []
        self.mult: list[float] = []
        for pos in spec.positions:
            slot = self._slot(symbol_ids[pos.symbol])
            self.qty[slot] = pos.qty
            self.avg[slot] = pos.avg_price if pos.qty != 0.0 else 0.0
        self.balance = spec.balance
        self.closed_pnl = 0.0
        # Before any tick every position is marked at its average price, so open PnL starts at zero.
        self.open_pnl = 0.0
        self.exposure = 0.0
        for slot, qty in enumerate(self.qty):
            if qty != 0.0:
                self.exposure += abs(qty) * self.avg[slot] * self.mult[slot]
        self.sod_equity = self.balance
        self.day_peak = self.balance
        self.rank = 0  # alert level as a rank; the first event evaluates it
        self.dd_rank = 0
        self.lev_rank = 0
        self.breaker = Breaker(Scope.ACCOUNT, spec.id)
        self.ts_ns: int | None = None
        self.next_roll_ns: int | None = None

    # ------------------------------------------------------------------ positions

    def _slot(self, symbol_id: int) -> int:
        slot = self.slot_of.get(symbol_id)
        if slot is None:
            slot = len(self.slot_symbols)
            self.slot_of[symbol_id] = slot
            self.slot_symbols.append(symbol_id)
            self.qty.append(0.0)
            self.avg.append(0.0)
            self.mult.append(self.multipliers[symbol_id])
        return slot

    def holds(self, symbol_id: int) -> bool:
        return symbol_id in self.slot_of

    def position(self, symbol_id: int) -> float:
        slot = self.slot_of.get(symbol_id)
        return 0.0 if slot is None else self.qty[slot]

    # ------------------------------------------------------------------ figures

    @property
    def equity(self) -> float:
        return self.balance + self.open_pnl

    @property
    def drawdown(self) -> float:
        return self.day_peak - self.equity

    @property
    def drawdown_pct(self) -> float:
        return drawdown_pct(self.day_peak, self.drawdown)

    @property
    def leverage(self) -> float:
        return leverage(self.exposure, self.equity)

    def remark(self, marks: Mapping[int, tuple[float, float]]) -> None:
        """Recompute open PnL and exposure from the latest quotes (long at bid, short at ask)."""
        open_pnl = 0.0
        exposure = 0.0
        for slot, symbol_id in enumerate(self.slot_symbols):
            qty = self.qty[slot]
            if qty == 0.0:
                continue
            quote = marks.get(symbol_id)
            bid, ask = (0.0, 0.0) if quote is None else quote
            mark = mark_price(qty, self.avg[slot], bid, ask, quote is not None)
            open_pnl += qty * (mark - self.avg[slot]) * self.mult[slot]
            exposure += abs(qty) * mark * self.mult[slot]
        self.open_pnl = open_pnl
        self.exposure = exposure

    # ------------------------------------------------------------------ events

    def begin_event(self, ts_ns: int) -> None:
        """Roll the trading day first if ``ts_ns`` is at or past the boundary."""
        if self.next_roll_ns is None:
            self.next_roll_ns = self.calendar.next_roll_after(ts_ns)
        elif ts_ns >= self.next_roll_ns:
            self.roll_day()
            self.next_roll_ns = self.calendar.next_roll_after(ts_ns)
        self.ts_ns = ts_ns

    def roll_day(self) -> None:
        equity = self.equity
        self.sod_equity = equity
        self.day_peak = equity
        self.closed_pnl = 0.0
        if self.breaker.engaged:
            self.breaker.day_rolled = True

    def on_tick(
        self, marks: Mapping[int, tuple[float, float]], ts_ns: int, stream: str, seq: int
    ) -> list[Event]:
        self.begin_event(ts_ns)
        self.remark(marks)
        return self.evaluate(ts_ns, stream, seq)

    def on_fill(
        self, fill: Fill, symbol_id: int, marks: Mapping[int, tuple[float, float]]
    ) -> list[Event]:
        self.begin_event(fill.ts_ns)
        self.apply_fill_arithmetic(fill, symbol_id)
        self.remark(marks)
        return self.evaluate(fill.ts_ns, fill.stream, fill.seq)

    def on_cash(self, cash: Cash) -> list[Event]:
        """A deposit or withdrawal: the balance moves, and start-of-day equity and the day peak with it (after
        a roll it brings on), so it is neither daily PnL nor drawdown; leverage follows the new equity."""
        self.begin_event(cash.ts_ns)
        self.balance += cash.amount
        self.sod_equity += cash.amount
        self.day_peak += cash.amount
        return self.evaluate(cash.ts_ns, cash.stream, cash.seq)

    def apply_fill_arithmetic(self, fill: Fill, symbol_id: int) -> None:
        slot = self._slot(symbol_id)
        new_qty, new_avg, realised = fill_position(
            self.qty[slot], self.avg[slot], fill.qty, fill.price, self.mult[slot]
        )
        self.qty[slot] = new_qty
        self.avg[slot] = new_avg
        self.balance += realised - fill.fee
        # Realised PnL is net of fees (a negative fee, a maker rebate, adds to both).
        self.closed_pnl += realised - fill.fee

    def evaluate(self, ts_ns: int, stream: str, seq: int) -> list[Event]:
        """Peak, levels, alert and breaker steps after the figures changed at one event."""
        equity = self.equity
        if equity > self.day_peak:
            self.day_peak = equity
        dd_pct = self.drawdown_pct
        lev = self.leverage
        limits = self.limits
        dd_rank = metric_rank(dd_pct, limits.drawdown_warning, limits.max_daily_drawdown)
        lev_rank = metric_rank(lev, limits.leverage_warning, limits.max_account_leverage)
        return self.step_levels(dd_rank, lev_rank, dd_pct, lev, ts_ns, stream, seq)

    def step_levels(
        self, dd_rank: int, lev_rank: int, dd_pct: float, lev: float, ts_ns: int, stream: str, seq: int
    ) -> list[Event]:
        events: list[Event] = []
        rank = max(dd_rank, lev_rank)
        if rank != self.rank:
            metric, value, threshold = transition_metric(
                rank, dd_rank, lev_rank, self.dd_rank, dd_pct, lev, self.limits
            )
            events.append(
                AlertEvent(
                    self.id, str(AlertLevel.from_rank(self.rank)), str(AlertLevel.from_rank(rank)),
                    metric, value, threshold, stream, seq, ts_ns,
                )
            )
        self.rank, self.dd_rank, self.lev_rank = rank, dd_rank, lev_rank
        breaker_event = self.step_breaker(rank, dd_rank, dd_pct, lev, ts_ns, stream, seq)
        if breaker_event is not None:
            events.append(breaker_event)
        return events

    def step_breaker(
        self, rank: int, dd_rank: int, dd_pct: float, lev: float, ts_ns: int, stream: str, seq: int
    ) -> BreakerEvent | None:
        breaker = self.breaker
        limits = self.limits
        if breaker.engaged:
            if rank == CRITICAL or breaker.cause is not EngageCause.LIMIT:
                return None
            # Released at the first event of a new day after the cooldown, if the daily drawdown engaged it.
            day_release = (
                breaker.day_rolled and limits.release_on_day_roll
                and breaker.metric == Metric.DRAWDOWN_PCT.field
            )
            if not (limits.auto_reset or day_release):
                return None
            if breaker.cooldown_left_seconds(ts_ns, limits.recovery_cooldown_seconds) > 0:
                return None
            cause = ReleaseCause.DAY_ROLL if day_release else ReleaseCause.AUTO_RESET
            return self.release(cause, ts_ns, stream, seq)
        if rank == CRITICAL and limits.kill_switch_mode is KillSwitchMode.AUTO:
            return self.engage_at_limit(dd_rank, dd_pct, lev, ts_ns, stream, seq)
        return None

    def engage_at_limit(
        self, dd_rank: int, dd_pct: float, lev: float, ts_ns: int, stream: str, seq: int
    ) -> BreakerEvent:
        """Engage the breaker for the hard limit breached (drawdown first) at the event ``stream``/``seq``."""
        limits = self.limits
        if dd_rank == CRITICAL:
            metric, value, threshold = Metric.DRAWDOWN_PCT.field, dd_pct, limits.max_daily_drawdown
        else:
            metric, value, threshold = Metric.LEVERAGE.field, lev, limits.max_account_leverage
        reason = f"{metric} {value:.6g} > {threshold:g}"
        self.breaker.engage(ts_ns, EngageCause.LIMIT, reason, "limit", metric)
        return BreakerEvent(
            Scope.ACCOUNT, self.id, BreakerState.ENGAGED, reason, EngageCause.LIMIT, "", stream, seq, ts_ns
        )

    def release(self, cause: ReleaseCause, ts_ns: int, stream: str, seq: int) -> BreakerEvent:
        """Release a limit engagement that is back within limits (``auto_reset`` or ``day_roll``)."""
        self.breaker.reset()
        return BreakerEvent(
            Scope.ACCOUNT, self.id, BreakerState.SAFE, f"{cause}: back within limits", cause, "", stream, seq,
            ts_ns,
        )

    # ------------------------------------------------------------------ operator

    def reset_refusal(self, now_ns: int) -> str | None:
        return self.breaker.reset_refusal(
            now_ns, self.limits.recovery_cooldown_seconds, self.rank == CRITICAL, self.limits.kill_switch_mode
        )

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> dict[str, Any]:
        """Everything that decides this account's future figures, as msgpack-native values.

        Slots keep their order: sums run over them in that order, so it is part of the state.
        """
        return {
            "id": self.id,
            "slot_symbols": list(self.slot_symbols),
            "qty": list(self.qty),
            "avg": list(self.avg),
            "mult": list(self.mult),
            "balance": self.balance,
            "closed_pnl": self.closed_pnl,
            "open_pnl": self.open_pnl,
            "exposure": self.exposure,
            "sod_equity": self.sod_equity,
            "day_peak": self.day_peak,
            "rank": self.rank,
            "dd_rank": self.dd_rank,
            "lev_rank": self.lev_rank,
            "ts_ns": self.ts_ns,
            "next_roll_ns": self.next_roll_ns,
            "breaker": self.breaker.snapshot(),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the state :meth:`snapshot` wrote; limits, portfolio and calendar stay the config's."""
        self.slot_symbols = list(data["slot_symbols"])
        self.slot_of = {symbol_id: slot for slot, symbol_id in enumerate(self.slot_symbols)}
        self.qty, self.avg, self.mult = list(data["qty"]), list(data["avg"]), list(data["mult"])
        self.balance, self.closed_pnl = data["balance"], data["closed_pnl"]
        self.open_pnl, self.exposure = data["open_pnl"], data["exposure"]
        self.sod_equity, self.day_peak = data["sod_equity"], data["day_peak"]
        self.rank, self.dd_rank, self.lev_rank = data["rank"], data["dd_rank"], data["lev_rank"]
        self.ts_ns, self.next_roll_ns = data["ts_ns"], data["next_roll_ns"]
        self.breaker = Breaker.from_snapshot(data["breaker"])

    # ------------------------------------------------------------------ views

    def state(self) -> AccountState:
        return AccountState(
            account=self.id,
            portfolio=self.portfolio,
            timestamp=None if self.ts_ns is None else rfc3339_us(self.ts_ns),
            balance=self.balance,
            open_pnl=self.open_pnl,
            closed_pnl=self.closed_pnl,
            total_pnl=self.closed_pnl + self.open_pnl,
            positions=sum(1 for qty in self.qty if qty != 0.0),
            total_exposure=self.exposure,
            leverage=self.leverage,
            drawdown=self.drawdown,
            drawdown_pct=self.drawdown_pct,
            alert_level=str(AlertLevel.from_rank(self.rank)),
            equity=self.equity,
            day_peak=self.day_peak,
            sod_equity=self.sod_equity,
            breaker=str(self.breaker.state),
        )


__all__ = [  # the scalar rules are riskcore.figures'; the book is where they are usually met
    "FLAT_TOLERANCE",
    "AccountBook",
    "AccountState",
    "drawdown_pct",
    "fill_position",
    "leverage",
    "mark_price",
    "metric_rank",
    "transition_metric",
]
