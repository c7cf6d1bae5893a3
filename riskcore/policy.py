"""Portfolio and firm limits: what a breach, or its end, does to the breaker (pure: the supervisor applies
it).

Judged at a batch's watermark, from the aggregate as of that batch, the scope's limits, its breaker and the
metrics already in breach before it; time is the watermark's. Nothing here changes any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from riskcore.aggregate import Aggregate, Breach, breaches
from riskcore.config import AggregateLimits
from riskcore.states import Breaker, EngageCause, KillSwitchMode

AUTO_RESET_REASON = "auto_reset: back within limits"


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """``breaches``: every limit breached now, in check order; ``new``: those not in breach before (each is a
    limit event); ``engage``: the breach to engage the breaker for (``kill_switch_mode: auto``, breaker
    safe); ``release``: release the breaker (back within limits, engaged by a limit, ``auto_reset``, cooldown
    over)."""

    breaches: tuple[Breach, ...]
    new: tuple[Breach, ...]
    engage: Breach | None
    release: bool

    @property
    def in_breach(self) -> frozenset[str]:
        """The metrics in breach after this decision."""
        return frozenset(b.metric for b in self.breaches)


def judge_limits(aggregate: Aggregate, limits: AggregateLimits, breaker: Breaker, in_breach: frozenset[str],
                 now_ns: int) -> LimitDecision:
    """``in_breach``: the scope's metrics in breach as of the last judgement (a breach still in force is not
    new)."""
    found = tuple(breaches(aggregate, limits))
    new = tuple(b for b in found if b.metric not in in_breach)
    auto = limits.kill_switch_mode is KillSwitchMode.AUTO
    engage = found[0] if found and not breaker.engaged and auto else None
    release = (not found and breaker.engaged and breaker.cause is EngageCause.LIMIT and limits.auto_reset
               and breaker.cooldown_left_seconds(now_ns, limits.recovery_cooldown_seconds) == 0)
    return LimitDecision(found, new, engage, release)


def reset_refusal(aggregate: Aggregate, limits: AggregateLimits, breaker: Breaker, now_ns: int) -> str | None:
    """Why an operator may not reset a portfolio or the global breaker now, or None when they may."""
    return breaker.reset_refusal(now_ns, limits.recovery_cooldown_seconds, bool(breaches(aggregate, limits)),
                                 limits.kill_switch_mode)
