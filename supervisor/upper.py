"""Portfolio and global breakers: the limits in breach on each, limit events and operator commands. The
decisions are ``riskcore.policy``'s; this applies them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from riskcore.aggregate import Aggregate
from riskcore.clock import rfc3339_us
from riskcore.config import AggregateLimits, RiskConfig
from riskcore.errors import RiskmonError
from riskcore.events import BreakerEvent
from riskcore.messages import Watermark
from riskcore.policy import AUTO_RESET_REASON, judge_limits, reset_refusal
from riskcore.states import Breaker, BreakerState, EngageCause, ReleaseCause, Scope

ScopeId = tuple[str, str]  # (scope, id): ("portfolio", desk) or ("global", "firm")
Snapshots = dict[str, Any]  # the breaker's snapshot and the aggregate, as the audit trail keeps them


@dataclass(slots=True)
class LimitOutcome:
    """What judging one aggregate at a watermark changed: limit events to log, journal records, and the
    breaker event (its engage or auto-reset) if the breaker moved."""

    limit_events: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    breaker_event: BreakerEvent | None = None


def _record(breaker: Breaker, op: str) -> dict[str, Any]:
    return {"k": "upper", "scope": str(breaker.scope), "id": breaker.id, "op": op,
            "now_ns": breaker.engaged_at_ns, "cause": str(breaker.cause or ""), "reason": breaker.reason,
            "by": breaker.engaged_by, "metric": breaker.metric}


class UpperBreakers:
    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self.global_breaker = Breaker(Scope.GLOBAL, "firm")
        self.portfolio_breakers = {pid: Breaker(Scope.PORTFOLIO, pid) for pid in config.portfolios}
        self.active_breaches: set[tuple[str, str, str]] = set()  # (scope, id, metric) in breach now

    def breaker(self, scope: str, target: str) -> tuple[Breaker, AggregateLimits]:
        if scope == Scope.GLOBAL:
            return self.global_breaker, self.config.firm
        if target not in self.portfolio_breakers:
            raise RiskmonError(f"unknown portfolio {target!r}")
        return self.portfolio_breakers[target], self.config.portfolios[target].limits

    def in_breach(self, scope: ScopeId) -> frozenset[str]:
        return frozenset(k[2] for k in self.active_breaches if k[:2] == scope)

    def check(self, aggregate: Aggregate, limits: AggregateLimits, mark: Watermark) -> LimitOutcome:
        """Judge one aggregate at a batch's watermark and apply the decision."""
        breaker = self.breaker(aggregate.scope, aggregate.id)[0]
        scope: ScopeId = (aggregate.scope, aggregate.id)
        before = self.in_breach(scope)
        ts_ns = int(mark["ts_ns"])
        decision = judge_limits(aggregate, limits, breaker, before, ts_ns)
        outcome = LimitOutcome([{
            "type": "limit", "scope": b.scope, "id": b.id, "metric": b.metric, "value": b.value,
            "threshold": b.threshold, "stream": mark.get("stream"), "tick_seq": mark.get("seq"),
            "tick_ts": rfc3339_us(ts_ns)} for b in decision.new])
        if decision.in_breach != before:  # a restarted supervisor must not log a breach still in force as new
            self.active_breaches -= {(*scope, m) for m in before}
            self.active_breaches |= {(*scope, m) for m in decision.in_breach}
            outcome.records.append({"k": "breaches", "scope": scope[0], "id": scope[1],
                                    "metrics": sorted(decision.in_breach)})
        stream, seq = str(mark.get("stream")), mark.get("seq")
        if decision.engage is not None:
            breach = decision.engage
            breaker.engage(ts_ns, EngageCause.LIMIT, breach.reason, "limit", breach.metric)
            outcome.records.append(_record(breaker, "engage"))
            outcome.breaker_event = BreakerEvent(breaker.scope, breaker.id, BreakerState.ENGAGED,
                                                 breach.reason, EngageCause.LIMIT, "", stream, seq, ts_ns)
        elif decision.release:
            breaker.reset()
            outcome.records.append(_record(breaker, "reset"))
            outcome.breaker_event = BreakerEvent(breaker.scope, breaker.id, BreakerState.SAFE,
                                                 AUTO_RESET_REASON, ReleaseCause.AUTO_RESET, "", stream, seq,
                                                 ts_ns)
        return outcome

    def engage(self, scope: str, target: str, aggregate: Aggregate, now_ns: int, operator: str,
               reason: str) -> tuple[BreakerEvent, Snapshots, Snapshots, dict[str, Any]]:
        """An operator's engage: its event, the breaker and aggregate before and after, the journal record."""
        breaker = self.breaker(scope, target)[0]
        before = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
        breaker.engage(now_ns, EngageCause.OPERATOR, reason, operator)
        after = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
        event = BreakerEvent(breaker.scope, breaker.id, BreakerState.ENGAGED, reason, EngageCause.OPERATOR,
                             operator, "operator", None, now_ns)
        return event, before, after, _record(breaker, "engage")

    def reset(self, scope: str, target: str, aggregate: Aggregate, now_ns: int, operator: str, reason: str,
              ) -> tuple[BreakerEvent | None, str | None, Snapshots, Snapshots, dict[str, Any] | None]:
        """An operator's reset: its event (None if refused) and why not, states before and after, its journal
        record (None if refused)."""
        breaker, limits = self.breaker(scope, target)
        before = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
        refusal = reset_refusal(aggregate, limits, breaker, now_ns)
        event, record = None, None
        if refusal is None:
            breaker.reset()
            record = _record(breaker, "reset")
            event = BreakerEvent(breaker.scope, breaker.id, BreakerState.SAFE, reason, ReleaseCause.RESET,
                                 operator, "operator", None, now_ns)
        after = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
        return event, refusal, before, after, record


    def replay(self, record: dict[str, Any]) -> None:
        if record["k"] == "breaches":
            scope = (record["scope"], record["id"])
            self.active_breaches = {k for k in self.active_breaches if k[:2] != scope}
            self.active_breaches |= {(*scope, metric) for metric in record["metrics"]}
            return
        breaker = self.breaker(record["scope"], record["id"])[0]
        if record["op"] == "engage":
            breaker.engage(record["now_ns"], EngageCause(record["cause"]), record["reason"], record["by"],
                           record["metric"])
        else:
            breaker.reset()

    def records(self) -> list[dict[str, Any]]:
        """Engaged breakers and breaches in force, for a compacted journal."""
        records = [_record(b, "engage") for b in (self.global_breaker, *self.portfolio_breakers.values())
                   if b.engaged]
        return records + [{"k": "breaches", "scope": scope[0], "id": scope[1],
                           "metrics": sorted(self.in_breach(scope))}
                          for scope in sorted({k[:2] for k in self.active_breaches})]

    def states(self) -> dict[str, BreakerState]:
        return {"global": self.global_breaker.state,
                **{f"portfolio:{pid}": b.state for pid, b in self.portfolio_breakers.items()}}
