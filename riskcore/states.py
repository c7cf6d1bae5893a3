"""Alert levels and circuit breakers: enums and transition tables.

A breaker's lifecycle is a table of ``(state, trigger) -> state``; a pair not in
the table raises :class:`TransitionError` naming both. Who engaged a breaker
(a limit or an operator) decides how it may be released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from riskcore.clock import NS_PER_SECOND
from riskcore.errors import TransitionError


class AlertLevel(StrEnum):
    NORMAL = "NORMAL"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]

    @classmethod
    def from_rank(cls, rank: int) -> AlertLevel:
        return _LEVELS_BY_RANK[rank]


_LEVEL_RANK = {AlertLevel.NORMAL: 0, AlertLevel.WARNING: 1, AlertLevel.CRITICAL: 2}
_LEVELS_BY_RANK = (AlertLevel.NORMAL, AlertLevel.WARNING, AlertLevel.CRITICAL)


class KillSwitchMode(StrEnum):
    AUTO = "auto"  # CRITICAL engages the breaker at that tick
    MANUAL = "manual"  # CRITICAL only alerts; an operator engages


class BreakerState(StrEnum):
    SAFE = "SAFE"
    ENGAGED = "ENGAGED"


class BreakerTrigger(StrEnum):
    ENGAGE = "engage"
    RESET = "reset"


class EngageCause(StrEnum):
    LIMIT = "limit"
    OPERATOR = "operator"


class ReleaseCause(StrEnum):
    AUTO_RESET = "auto_reset"  # back within limits after the cooldown, with ``auto_reset: true``
    DAY_ROLL = "day_roll"  # a daily-limit breaker released at the trading-day roll (``release_on_day_roll``)
    RESET = "reset"  # an operator's reset


BreakerCause = EngageCause | ReleaseCause  # why a breaker last changed state (a BreakerEvent's cause)


class Scope(StrEnum):
    ACCOUNT = "account"
    PORTFOLIO = "portfolio"
    GLOBAL = "global"


class Metric(IntEnum):
    """The account metrics with limits; the order breaks ties (drawdown first)."""

    DRAWDOWN_PCT = 0
    LEVERAGE = 1

    @property
    def field(self) -> str:
        return ("drawdown_pct", "leverage")[self]


_BREAKER_TABLE: dict[tuple[BreakerState, BreakerTrigger], BreakerState] = {
    (BreakerState.SAFE, BreakerTrigger.ENGAGE): BreakerState.ENGAGED,
    # An operator may engage an engaged breaker: it becomes theirs (no auto-release), its cooldown restarts.
    (BreakerState.ENGAGED, BreakerTrigger.ENGAGE): BreakerState.ENGAGED,
    (BreakerState.ENGAGED, BreakerTrigger.RESET): BreakerState.SAFE,
}


def next_breaker_state(state: BreakerState, trigger: BreakerTrigger) -> BreakerState:
    try:
        return _BREAKER_TABLE[(state, trigger)]
    except KeyError:
        raise TransitionError("breaker", str(state), str(trigger)) from None


def cooldown_left_seconds(cooldown_seconds: float, engaged_at_ns: int, now_ns: int) -> float:
    """Seconds of a breaker's recovery cooldown left at ``now_ns`` (0 once it is over)."""
    return max(0.0, cooldown_seconds - (now_ns - engaged_at_ns) / NS_PER_SECOND)


@dataclass(slots=True)
class Breaker:
    """One circuit breaker (account, portfolio or global). Mutable; time is passed in."""

    scope: Scope
    id: str
    state: BreakerState = BreakerState.SAFE
    cause: EngageCause | None = None
    reason: str = ""
    engaged_by: str = ""
    engaged_at_ns: int = 0
    # For a limit engagement: which metric (e.g. "drawdown_pct", "gross_exposure") tripped it.
    metric: str = ""
    # A trading day has rolled since it engaged: a daily limit's breach is behind it.
    day_rolled: bool = False

    @property
    def engaged(self) -> bool:
        return self.state is BreakerState.ENGAGED

    def engage(self, now_ns: int, cause: EngageCause, reason: str, by: str, metric: str = "") -> None:
        self.state = next_breaker_state(self.state, BreakerTrigger.ENGAGE)
        self.cause = cause
        self.reason = reason
        self.engaged_by = by
        self.engaged_at_ns = now_ns
        self.metric = metric
        self.day_rolled = False

    def cooldown_left_seconds(self, now_ns: int, cooldown_seconds: float) -> float:
        return cooldown_left_seconds(cooldown_seconds, self.engaged_at_ns, now_ns)

    def reset_refusal(
        self, now_ns: int, cooldown_seconds: float, still_breached: bool, mode: KillSwitchMode
    ) -> str | None:
        """Why a reset may not happen now, or ``None`` when it may.

        - only an engaged breaker can be reset;
        - never before ``recovery_cooldown_seconds`` since it engaged;
        - a limit engagement only once the metric is back within its hard limit, and under
          ``kill_switch_mode: auto`` never while a hard limit is breached (it would re-engage at once).
        """
        if not self.engaged:
            return f"{self.scope} breaker {self.id} is not engaged"
        left = self.cooldown_left_seconds(now_ns, cooldown_seconds)
        if left > 0:
            return f"recovery cooldown: {left:.3f} s of {cooldown_seconds:g} s left"
        if still_breached and (self.cause is EngageCause.LIMIT or mode is KillSwitchMode.AUTO):
            return "hard limit still breached"
        return None

    def reset(self) -> None:
        self.state = next_breaker_state(self.state, BreakerTrigger.RESET)
        self.cause = None
        self.reason = ""
        self.engaged_by = ""
        self.metric = ""
        self.day_rolled = False

    def snapshot(self) -> dict[str, object]:
        """Every field, as msgpack/JSON-native values: :meth:`from_snapshot` rebuilds the same breaker."""
        return {
            "scope": str(self.scope),
            "id": self.id,
            "state": str(self.state),
            "cause": str(self.cause) if self.cause else None,
            "reason": self.reason,
            "engaged_by": self.engaged_by,
            "engaged_at_ns": self.engaged_at_ns,
            "metric": self.metric,
            "day_rolled": self.day_rolled,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Breaker:
        cause = None if data["cause"] is None else EngageCause(data["cause"])
        return cls(
            Scope(data["scope"]), data["id"], BreakerState(data["state"]), cause,
            data["reason"], data["engaged_by"], data["engaged_at_ns"], data["metric"], data["day_rolled"],
        )
