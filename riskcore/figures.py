"""The scalar rules behind an account's figures: position arithmetic, marking, drawdown, leverage, levels.

Plain functions of numbers, so that :class:`riskcore.account.AccountBook` calls them and the compiled
kernel (:mod:`riskcore.kernel`) runs the very same functions compiled: each rule has one definition.
"""

from __future__ import annotations

import math

from riskcore.config import AccountLimits
from riskcore.states import Metric

INF = math.inf
CRITICAL = 2
# A fill that leaves a position within this fraction of its own size leaves it flat: what remains is the
# residue of binary fractions (0.1 + 0.2 - 0.3 leaves 5.6e-17), not a holding.
FLAT_TOLERANCE = 1e-9


def fill_position(
    qty: float, avg: float, fill_qty: float, price: float, mult: float
) -> tuple[float, float, float]:
    """Apply a fill to a position: ``(new_qty, new_avg, realised)``.

    Growing moves the average to the weighted average; reducing realises
    ``(price - avg) * closed_qty * multiplier * sign``; a flip closes the old
    side and opens the remainder at the fill price. A reduction or flip that leaves
    at most :data:`FLAT_TOLERANCE` of the fill's size leaves the position flat.
    """
    if qty == 0.0:
        return fill_qty, price, 0.0
    if (qty > 0.0) == (fill_qty > 0.0):
        new_qty = qty + fill_qty
        return new_qty, (abs(qty) * avg + abs(fill_qty) * price) / abs(new_qty), 0.0
    closed = min(abs(fill_qty), abs(qty))
    sign = 1.0 if qty > 0.0 else -1.0
    realised = (price - avg) * closed * mult * sign
    remaining = qty + fill_qty
    if abs(remaining) <= FLAT_TOLERANCE * abs(fill_qty):
        return 0.0, 0.0, realised
    if abs(fill_qty) < abs(qty):
        return remaining, avg, realised
    return remaining, price, realised


def mark_price(qty: float, avg: float, bid: float, ask: float, quoted: bool) -> float:
    """What a position is marked at: long at the bid, short at the ask (what it could be closed at); before
    its symbol's first quote (``quoted`` false), at its average price. The kernel runs it compiled."""
    if not quoted:
        return avg
    return bid if qty > 0.0 else ask


def metric_rank(value: float, warning: float, hard: float) -> int:
    """0 NORMAL, 1 WARNING (strictly above the soft limit), 2 CRITICAL (strictly above the hard limit)."""
    return 2 if value > hard else (1 if value > warning else 0)


def transition_metric(
    new_rank: int,
    dd_rank: int,
    lev_rank: int,
    old_dd_rank: int,
    dd_pct: float,
    leverage: float,
    limits: AccountLimits,
) -> tuple[str, float, float]:
    """Name the metric, its value and the threshold behind a change of level.

    Going up (or down to WARNING) the metric that now sits at the new level
    explains it, drawdown first on a tie; going down to NORMAL, the metric that
    had been elevated (drawdown first), against its warning level.
    """
    if new_rank > 0:
        metric = Metric.DRAWDOWN_PCT if dd_rank == new_rank else Metric.LEVERAGE
    else:
        metric = Metric.DRAWDOWN_PCT if old_dd_rank > 0 else Metric.LEVERAGE
    if metric is Metric.DRAWDOWN_PCT:
        threshold = limits.max_daily_drawdown if new_rank == CRITICAL else limits.drawdown_warning
        return metric.field, dd_pct, threshold
    threshold = limits.max_account_leverage if new_rank == CRITICAL else limits.leverage_warning
    return metric.field, leverage, threshold


def drawdown_pct(day_peak: float, drawdown: float) -> float:
    if day_peak > 0.0:
        return drawdown / day_peak
    return INF if drawdown > 0.0 else 0.0


def leverage(exposure: float, equity: float) -> float:
    return exposure / equity if equity > 0.0 else INF


__all__ = [
    "CRITICAL",
    "FLAT_TOLERANCE",
    "INF",
    "drawdown_pct",
    "fill_position",
    "leverage",
    "mark_price",
    "metric_rank",
    "transition_metric",
]
