"""Operator commands: engage or reset a breaker by hand, with an operator's name and a reason.

An account's breaker is its shard's (the shard carries the command out and answers with the event); a
portfolio's or the firm's is the supervisor's. Every command is logged and audited with the states before
and after, a refused one too; one Ray delivers again is answered as before (``supervisor.commands``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from riskcore.aggregate import Aggregate, Aggregator
from riskcore.clock import rfc3339_us
from riskcore.errors import RiskmonError
from riskcore.messages import OperatorAnswer, ShardCommandAnswer, operator_answer
from riskcore.states import BreakerState, Scope
from supervisor.commands import check_command
from supervisor.intake import ReportIntake
from supervisor.recorder import Recorder
from supervisor.upper import UpperBreakers
from supervisor.wiring import Wiring


class OperatorCommands:
    def __init__(self, intake: ReportIntake, recorder: Recorder, aggregator: Aggregator, upper: UpperBreakers,
                 wiring: Wiring, flush: Callable[[], None], publish: Callable[[], None]) -> None:
        """``flush``: make what changed durable; ``publish``: that, and tell the gates (a new version)."""
        self.intake = intake
        self.recorder = recorder
        self.aggregator = aggregator
        self.upper = upper
        self.wiring = wiring
        self.flush = flush
        self.publish = publish

    def _aggregate(self, scope: str, target: str) -> Aggregate:
        return self.aggregator.firm() if scope == Scope.GLOBAL else self.aggregator.portfolio(target)

    async def engage(self, scope: str, target: str, operator: str, reason: str,
                     now_ns: int | None) -> OperatorAnswer:
        answered = self.recorder.commands.answer("engage", scope, target, operator, reason, now_ns)
        if answered is not None:
            return answered
        now_ns = self._checked("engage", scope, target, operator, reason, now_ns)
        if scope == Scope.ACCOUNT:
            shard = self.wiring.handle(target)
            done: ShardCommandAnswer = await shard.engage.remote(target, now_ns, operator, reason)
            assert done.event is not None  # an engage is never refused
            event, before, after = done.event, done.before, done.after
            self.intake.set_account_breaker(target, BreakerState.ENGAGED, reason, done.halts_version)
        else:
            event, before, after, record = self.upper.engage(
                scope, target, self._aggregate(scope, target), now_ns, operator, reason)
            self.recorder.journal.add(record)
            self.intake.push_upper()
        self.recorder.record(self.recorder.events.command_key(), event,
                             {"action": "engage", "before": before, "after": after})
        self.publish()
        return operator_answer(event.to_dict())

    async def reset(self, scope: str, target: str, operator: str, reason: str,
                    now_ns: int | None) -> OperatorAnswer:
        answered = self.recorder.commands.answer("reset", scope, target, operator, reason, now_ns)
        if answered is not None:
            return answered
        now_ns = self._checked("reset", scope, target, operator, reason, now_ns)
        if scope == Scope.ACCOUNT:
            shard = self.wiring.handle(target)
            done: ShardCommandAnswer = await shard.reset.remote(target, now_ns, operator, reason)
            event, refusal, before, after = done.event, done.refusal, done.before, done.after
            if event is not None:
                self.intake.set_account_breaker(target, BreakerState.SAFE, "", done.halts_version)
        else:
            event, refusal, before, after, record = self.upper.reset(
                scope, target, self._aggregate(scope, target), now_ns, operator, reason)
            if record is not None:
                self.recorder.journal.add(record)
                self.intake.push_upper()
        refused: dict[str, Any] = {"type": "command", "action": "reset", "scope": scope, "id": target,
                                   "operator": operator, "reason": reason, "refused": refusal,
                                   "ts": rfc3339_us(now_ns)}
        self.recorder.record(self.recorder.events.command_key(), refused if event is None else event,
                             {"action": "reset", "before": before, "after": after})
        self.publish()
        return operator_answer(None if event is None else event.to_dict(), refusal)

    def _checked(self, action: str, scope: str, target: str, operator: str, reason: str,
                 now_ns: int | None) -> int:
        """The command's time, once it is valid; one refused here (no operator, no reason, unknown target) is
        audited too."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        try:
            check_command(scope, operator, reason)
            if scope == Scope.ACCOUNT:
                self.wiring.handle(target)
            elif scope == Scope.PORTFOLIO:
                self.upper.breaker(scope, target)
        except RiskmonError as exc:
            self.recorder.audit_record("command", {
                "action": action, "scope": scope, "id": target, "operator": operator, "reason": reason,
                "refused": str(exc), "_ts_ns": now_ns})
            self.flush()
            raise
        return now_ns
