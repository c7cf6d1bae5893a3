"""The supervisor's table of account breakers, as their shards tell it.

An account breaker trips inside its shard at the exact tick; the shard tells the supervisor at once
(``breaker_now``) and again in the batch's report, numbering its news with its breaker-change number, so
older news (a report that arrives after the operator's reset) never undoes newer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from riskcore.messages import AccountBreakerState
from riskcore.states import BreakerState, Scope


class AccountBreakerTable:
    def __init__(self, accounts: Iterable[str]) -> None:
        self.states: dict[str, AccountBreakerState] = {
            account: {"state": BreakerState.SAFE, "reason": ""} for account in accounts}
        self.seen: dict[str, int] = {}  # account -> the shard's breaker-change number last taken

    def state(self, account: str) -> BreakerState:
        return self.states[account]["state"]

    def engaged(self, account: str) -> bool:
        return self.states[account]["state"] is BreakerState.ENGAGED

    def engaged_accounts(self) -> list[str]:
        return [a for a, s in self.states.items() if s["state"] is BreakerState.ENGAGED]

    def set(self, account: str, state: BreakerState, reason: str, version: int = -1) -> bool:
        """Take news of ``account``'s breaker; True if it changed the table. ``version``: the shard's
        breaker-change number as of the news (-1: unnumbered); news older than what is known is ignored."""
        if version >= 0:
            if version < self.seen.get(account, -1):
                return False
            self.seen[account] = version
        new: AccountBreakerState = {"state": BreakerState(state), "reason": reason}
        if self.states[account] == new:
            return False  # already known (published mid-batch, now in the report)
        self.states[account] = new
        return True

    def replay(self, body: dict[str, Any]) -> None:
        """A logged event read back from the journal: an account's breaker change moves the table."""
        if body.get("type") == "breaker" and body.get("scope") == Scope.ACCOUNT:
            self.states[body["id"]] = {"state": BreakerState(body["state"]), "reason": body["reason"]}

    def snapshot(self) -> dict[str, AccountBreakerState]:
        return {account: {"state": s["state"], "reason": s["reason"]} for account, s in self.states.items()}
