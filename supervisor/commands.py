"""Operator commands: what makes one valid, and the book of those carried out, so none is carried out twice.

Ray delivers a call again when the supervisor died before its answer left. A command carries its caller's
time, so (action, scope, target, operator, reason, time) names it: one already carried out is answered as
before. The book is rebuilt from the event log, where each command that changed a breaker is.
"""

from __future__ import annotations

from typing import Any

from riskcore.clock import rfc3339_us
from riskcore.errors import RiskmonError
from riskcore.messages import OperatorAnswer, operator_answer
from riskcore.states import EngageCause, ReleaseCause, Scope

CommandKey = tuple[str, str, str, str, str, str]


def check_command(scope: str, operator: str, reason: str) -> None:
    if scope not in tuple(Scope):
        raise RiskmonError(f"scope must be one of {', '.join(Scope)}, got {scope!r}")
    if not operator.strip() or not reason.strip():
        raise RiskmonError("an operator command needs an operator name and a reason")


def command_key(body: dict[str, Any]) -> CommandKey | None:
    """An operator command's identity, from the breaker event it made (None for any other event)."""
    if (body.get("type") == "breaker" and body.get("stream") == "operator"
            and body.get("cause") in (EngageCause.OPERATOR, ReleaseCause.RESET)):
        action = "engage" if body["cause"] == EngageCause.OPERATOR else "reset"
        return (action, body["scope"], body["id"], body["operator"], body["reason"], body["tick_ts"])
    return None


class CommandBook:
    def __init__(self) -> None:
        self.answered: dict[CommandKey, OperatorAnswer] = {}

    def note(self, body: dict[str, Any]) -> None:
        """Remember a command that changed a breaker. (A refused one changed nothing: delivered again, it is
        judged again, as the same command sent again later would be.)"""
        key = command_key(body)
        if key is not None:
            self.answered[key] = operator_answer(body)

    def answer(self, action: str, scope: str, target: str, operator: str, reason: str,
               now_ns: int | None) -> OperatorAnswer | None:
        """The answer this command already got, or None (a command without a time is always new)."""
        if now_ns is None:
            return None
        target = "firm" if scope == Scope.GLOBAL else target
        return self.answered.get((action, scope, target, operator, reason, rfc3339_us(now_ns)))
