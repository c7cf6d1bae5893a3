"""Batches close on size or on time: one-tick submits still travel in batches, and nothing waits forever."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from riskcore.clock import NS_PER_SECOND, parse_rfc3339
from riskcore.events import Tick
from tests.integration.fixtures import StartSystem

pytestmark = pytest.mark.ray

T0 = parse_rfc3339("2020-01-02T14:30:00.000000Z")


def config(max_ticks: int, max_delay_ms: float) -> dict[str, Any]:
    return {
        "symbols": {"EURUSD": {}},
        "portfolios": {"desk": {}},
        "accounts": [{"id": "a", "portfolio": "desk", "balance": 1_000_000,
                      "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.1}}}],
        "batching": {"max_ticks": max_ticks, "max_delay_ms": max_delay_ms},
    }


def stream(n: int) -> list[Tick]:
    return [Tick("EURUSD", 1.1 - 0.0001 * i, 1.1002 - 0.0001 * i, T0 + i * NS_PER_SECOND, "f", i)
            for i in range(n)]


def test_batching_when_ticks_arrive_one_by_one_they_are_coalesced(start_system: StartSystem) -> None:
    one_by_one = start_system(config(max_ticks=50, max_delay_ms=10_000))
    for tick in stream(200):
        one_by_one.submit([tick])
    one_by_one.flush()
    bulk = start_system(config(max_ticks=50, max_delay_ms=10_000))
    bulk.submit(stream(200))
    bulk.flush()
    # 200 single-tick submits: the first goes at once (idle shards), the rest gather while batches are in
    # flight (exactly how many batches depends on timing; tests/unit/test_ingest_feeds.py pins the rule).
    assert one_by_one.ingest_stats()["batches"] < 200
    assert bulk.ingest_stats()["batches"] == 4  # one submit of 200 ticks, closed every 50 ticks
    assert one_by_one.states() == bulk.states()
    assert one_by_one.events() == bulk.events()


def test_batching_when_a_batch_is_not_full_it_closes_on_the_time_bound(start_system: StartSystem) -> None:
    system = start_system(config(max_ticks=10_000, max_delay_ms=20))
    system.submit(stream(3))
    # No flush: the time bound alone must send the batch; wait for its report to reach the supervisor.
    assert ray.get(system.supervisor.wait_reported.remote(dict.fromkeys(system.shards, 1), 30.0)) == {}
    assert system.ingest_stats()["batches"] == 1
    assert system.states()["a"]["timestamp"] == "2020-01-02T14:30:02.000000Z"
