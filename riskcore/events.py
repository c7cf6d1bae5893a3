"""Inputs (ticks, fills, cash movements) and outputs (alert and breaker events) as plain values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from riskcore.clock import rfc3339_us
from riskcore.states import BreakerCause, BreakerState, EngageCause, ReleaseCause, Scope


@dataclass(frozen=True, slots=True)
class Tick:
    """One top-of-book quote. ``seq`` is the record's sequence number on its ``stream``."""

    symbol: str
    bid: float
    ask: float
    ts_ns: int
    stream: str = "ticks"
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution. ``qty`` is signed: positive buys, negative sells."""

    account: str
    symbol: str
    qty: float
    price: float
    ts_ns: int
    fee: float = 0.0
    fill_id: str = ""
    stream: str = "fills"
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Cash:
    """Cash moved into (``amount`` > 0: a deposit) or out of (< 0: a withdrawal) an account.

    It changes the balance, and start-of-day equity and the day peak by the same amount: moving cash is
    neither profit nor loss, so daily PnL and drawdown are as they were, while leverage follows the new
    equity. It travels with the account's fills (routed by account, in arrival order), and ``cash_id`` is
    applied once.
    """

    account: str
    amount: float
    ts_ns: int
    cash_id: str = ""
    stream: str = "cash"
    seq: int = 0


AccountEvent = Fill | Cash  # what an account's own stream carries (the router routes these by account)


def event_id(event: AccountEvent) -> str:
    """The id an account event is applied once by ("" if it has none); fill and cash ids never collide."""
    if isinstance(event, Fill):
        return f"fill:{event.fill_id}" if event.fill_id else ""
    return f"cash:{event.cash_id}" if event.cash_id else ""


def _json_number(value: float) -> float | str:
    # JSON has no inf; a risk report must still say "infinite leverage" rather than drop it.
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An account's alert level changed, at the event (``stream``, ``seq``, ``ts_ns``) that caused it."""

    account: str
    from_level: str
    to_level: str
    metric: str
    value: float
    threshold: float
    stream: str
    seq: int
    ts_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "alert",
            "account": self.account,
            "from": self.from_level,
            "to": self.to_level,
            "metric": self.metric,
            "value": _json_number(self.value),
            "threshold": self.threshold,
            "stream": self.stream,
            "tick_seq": self.seq,
            "tick_ts": rfc3339_us(self.ts_ns),
        }


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A breaker changed state, and why (``cause``: an :class:`EngageCause` or a :class:`ReleaseCause`).

    The enums are string enums: they compare equal to their values, and :meth:`to_dict`, msgpack and JSON
    carry the plain strings. An event rebuilt from those strings gets its enums back here.
    """

    scope: Scope
    id: str
    state: BreakerState
    reason: str
    cause: BreakerCause
    operator: str
    stream: str
    seq: int | None
    ts_ns: int

    def __post_init__(self) -> None:
        # A decoded event (msgpack, JSON) arrives with plain strings; one built in riskcore already has enums,
        # which these lookups return unchanged.
        object.__setattr__(self, "scope", Scope(self.scope))
        object.__setattr__(self, "state", BreakerState(self.state))
        object.__setattr__(self, "cause", breaker_cause(self.cause))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "breaker",
            "scope": str(self.scope),
            "id": self.id,
            "state": str(self.state),
            "reason": self.reason,
            "cause": str(self.cause),
            "operator": self.operator,
            "stream": self.stream,
            "tick_seq": self.seq,
            "tick_ts": rfc3339_us(self.ts_ns),
        }


def breaker_cause(value: str) -> BreakerCause:
    """The cause a string names (``limit``, ``operator``, ``auto_reset``, ``day_roll``, ``reset``)."""
    if value in _ENGAGE_CAUSES:
        return EngageCause(value)
    return ReleaseCause(value)


_ENGAGE_CAUSES = frozenset(EngageCause)

Event = AlertEvent | BreakerEvent  # what the engines emit
