"""The order gate fails closed: a dead account actor or a silent supervisor means deny."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from riskcore.gate import Order, Reason
from riskmon.drills.common import kill_shard
from tests.integration.fixtures import StartSystem

pytestmark = pytest.mark.ray

HOLDING = {"EURUSD": {"qty": 100_000, "avg_price": 1.1}}
CONFIG: dict[str, Any] = {
    "symbols": {"EURUSD": {}},
    "portfolios": {"desk": {}},
    "accounts": [
        {"id": "a", "portfolio": "desk", "balance": 1_000_000, "positions": HOLDING},
        {"id": "b", "portfolio": "desk", "balance": 1_000_000, "positions": HOLDING},
    ],
    "gate": {"max_staleness_ms": 800, "poll_interval_ms": 100},
}


def order(account: str) -> Order:
    return Order(account, "EURUSD", 1_000, 1.1)


def test_gate_when_account_actor_dies_denies_that_account_only(start_system: StartSystem) -> None:
    system = start_system(CONFIG)
    gate = system.gate()
    assert gate.wait_for(lambda g: g.check(order("a")).allowed and g.check(order("b")).allowed, 10)
    kill_shard(system, next(shard for shard, accounts in system.placement.items() if "a" in accounts))
    assert gate.wait_for(lambda g: g.check(order("a")).reason is Reason.STALE_STATE, 15)
    assert "down" in gate.check(order("a")).detail
    assert gate.check(order("b")).allowed


def test_gate_when_supervisor_is_gone_denies_everything_after_the_staleness_bound(
    start_system: StartSystem,
) -> None:
    system = start_system(CONFIG)
    gate = system.gate()
    assert gate.wait_for(lambda g: g.check(order("a")).allowed, 10)
    ray.kill(system.supervisor, no_restart=True)
    # No view arrives any more: the local copy ages past max_staleness_ms and every check denies.
    assert gate.wait_for(lambda g: g.errors > 0, 10)
    assert gate.wait_for(lambda g: g.check(order("a")).reason is Reason.STALE_STATE, 5)
    assert gate.check(order("b")).reason is Reason.STALE_STATE
