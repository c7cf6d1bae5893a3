"""Failure drills on real Ray: each run is compared with the same run without the fault.

`kill -9` of the process hosting an account shard, in the middle of a stream with batches in flight: Ray
restarts the shard, it rebuilds from its journal, the calls it never answered are delivered again and each
batch is applied once, in order. The accounts must end identical to the cent, with the same account alert
and breaker events, every fill applied and no tick applied twice.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import ray

from riskmon.loadgen import LoadGenerator, firm_config
from supervisor.system import RiskSystem

pytestmark = pytest.mark.ray

# Two shards. Big enough that Ray passes the config by reference, so a restart must find it again.
CONFIG = firm_config(600, 2, 20, accounts_per_actor=300)
CHUNK = 400


def load() -> list[Any]:
    generator = LoadGenerator(CONFIG, seed=11, breach_every=1_500)
    generator.plan(12_000)
    return list(generator.chunks(CHUNK, generator.sent + 12_000))


def account_events(system: RiskSystem) -> list[dict[str, Any]]:
    return [e for e in system.events() if e.get("type") in ("alert", "breaker") and e.get("scope", "account") == "account"]


def shard_counts(system: RiskSystem) -> dict[str, tuple[int, int, int]]:
    stats = ray.get([h.stats.remote() for h in system.shards.values()])
    return {s["shard"]: (s["batches"], s["ticks_applied"], s["fills_applied"]) for s in stats}


def run(system: RiskSystem, parts: list[Any], fault: Callable[[RiskSystem], None] | None = None) -> dict[str, Any]:
    for n, part in enumerate(parts):
        if fault is not None and n == len(parts) // 2:
            fault(system)
        system.submit_columns(part.ticks, part.fills, part.fill_pos)
    system.flush(timeout_s=120.0)
    return {"states": system.states(), "events": account_events(system), "counts": shard_counts(system)}


def test_drill_when_shard_process_killed_mid_stream_accounts_end_identical(
    start_system: Callable[..., RiskSystem],
) -> None:
    parts = load()
    baseline = run(start_system(CONFIG), parts)
    assert any(e["type"] == "breaker" and e["state"] == "ENGAGED" for e in baseline["events"])
    assert sum(len(p.fills) for p in parts) > 50

    crashed: dict[str, Any] = {}

    def kill_minus_nine(system: RiskSystem) -> None:
        crashed["pid"] = system.crash_shard("shard-0000")
        crashed["at"] = time.monotonic()

    system = start_system(CONFIG)
    faulted = run(system, parts, kill_minus_nine)
    assert system.shard_pid("shard-0000") != crashed["pid"]  # a new process, rebuilt from the journal
    assert faulted["states"] == baseline["states"]
    assert faulted["events"] == baseline["events"]
    assert faulted["counts"] == baseline["counts"]  # every batch, tick and fill applied exactly once
    assert system.status()["up"] == {spec.id: True for spec in CONFIG.accounts}
