"""What every failure drill shares: the drill firm and stream, the faults, and how a run is compared.

A drill feeds the same generated stream twice, once undisturbed and once with a fault, and compares every
account's state, every event and each shard's batch/tick/fill counts (:func:`drill_result`).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ray

from driver.system import RiskSystem
from riskcore.config import DurabilityConfig, RiskConfig
from riskcore.gate import Order, Reason
from riskmon.loadgen.generator import Chunk, LoadGenerator, firm_config

NODE_LOSS = "node loss"
FAULTS = ("shard kill -9", "supervisor kill -9", "service restart", NODE_LOSS)
RESULT_KEYS = ("fault", "recovered", "recovery_s", "lost_events", "duplicated_events")


# Operator commands in drills carry this time, so the same command is the same event in every run.
COMMAND_NS = 1_578_000_000 * 1_000_000_000


def drill_config(accounts: int = 600, portfolios: int = 2, symbols: int = 20) -> RiskConfig:
    """Two shards; desk and firm gross-exposure limits a little above where the firm starts, so the stream's
    fills breach them mid-run (portfolio and firm breakers engage); journals compact every 256 KiB."""
    plain = firm_config(accounts, portfolios, symbols, accounts_per_actor=max(1, accounts // 2))
    desks: dict[str, float] = {}
    for spec in plain.accounts:
        gross = sum(abs(p.qty) * p.avg_price * plain.symbols[p.symbol].multiplier for p in spec.positions)
        desks[spec.portfolio] = desks.get(spec.portfolio, 0.0) + gross
    config = firm_config(accounts, portfolios, symbols, accounts_per_actor=max(1, accounts // 2),
                         desk_limits={"max_gross_exposure": 1.04 * max(desks.values())},
                         firm_limits={"max_gross_exposure": 1.05 * sum(desks.values())})
    return replace(config, durability=DurabilityConfig(snapshot_mb=0.25))


def drill_load(config: RiskConfig, ticks: int = 12_000, seed: int = 11, chunk: int = 400) -> list[Chunk]:
    generator = LoadGenerator(config, seed=seed, breach_every=max(100, ticks // 8))
    generator.plan(ticks)
    return list(generator.chunks(chunk, generator.sent + ticks))


def halt(scope: str, target: str, reason: str) -> Callable[[RiskSystem], None]:
    """An operator's halt once everything sent so far is applied (it lands at the same point in every run)."""
    def act(system: RiskSystem) -> None:
        system.flush(timeout_s=180.0)
        system.engage(scope, target, "chaos", reason, now_ns=COMMAND_NS)
    return act


def shard_counts(system: RiskSystem) -> dict[str, tuple[int, int, int]]:
    stats = ray.get([h.stats.remote() for h in system.shards.values()])
    return {s["shard"]: (s["batches"], s["ticks_applied"], s["fills_applied"]) for s in stats}


def run_stream(system: RiskSystem, parts: list[Chunk], fault: Callable[[RiskSystem], None] | None = None,
               fault_at: int | None = None, actions: dict[int, Callable[[RiskSystem], None]] | None = None,
               ) -> dict[str, Any]:
    """Feed ``parts`` (``actions[n]``, then ``fault``, run before part n: the fault at ``fault_at``, default
    halfway), flush, and read the outcome: accounts, every event, and each shard's batch/tick/fill counts."""
    at = len(parts) // 2 if fault_at is None else fault_at
    for n, part in enumerate(parts):
        if actions and n in actions:
            actions[n](system)
        if fault is not None and n == at:
            fault(system)
        system.submit_columns(part.ticks, part.fills, part.fill_pos)
    system.flush(timeout_s=180.0)
    return {"states": system.states(), "events": system.events(), "counts": shard_counts(system)}


def event_diff(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[int, int]:
    """(events of ``expected`` missing from ``got``, events ``got`` holds more often than ``expected``)."""
    return len(unmatched_events(expected, got)), len(unmatched_events(got, expected))


def unmatched_events(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of ``expected``, in order, that ``got`` does not hold as many times (a drill's diff)."""
    spare = Counter(repr(sorted(e.items())) for e in got)
    missing = []
    for event in expected:
        key = repr(sorted(event.items()))
        if spare[key] > 0:
            spare[key] -= 1
        else:
            missing.append(event)
    return missing


def wait_all_up(system: RiskSystem, timeout_s: float = 60.0) -> bool:
    """Block until a gate stops denying any account as down (its actor is up again)."""
    gate = system.gate()
    any_symbol = next(iter(system.config.symbols))
    probes = [Order(spec.id, spec.positions[0].symbol if spec.positions else any_symbol, 1.0, 1.0)
              for spec in system.config.accounts]
    return gate.wait_for(lambda g: all(g.check(o).reason is not Reason.STALE_STATE for o in probes),
                         timeout_s)


def drill_result(fault: str, baseline: dict[str, Any], faulted: dict[str, Any], recovery_s: float,
                 up: bool) -> dict[str, Any]:
    """A drill's row: recovered if ``up`` and the accounts and shard counts equal the baseline's."""
    lost, duplicated = event_diff(baseline["events"], faulted["events"])
    recovered = up and faulted["states"] == baseline["states"] and faulted["counts"] == baseline["counts"]
    return {"fault": fault, "recovered": recovered, "recovery_s": round(recovery_s, 2), "lost_events": lost,
            "duplicated_events": duplicated}


# ---------------------------------------------------------------- faults (drills and tests only, not public)

def kill_shard(system: RiskSystem, shard_id: str) -> None:
    """Stop one shard's actor for good: its accounts go down and gates deny them."""
    ray.kill(system.shards[shard_id], no_restart=True)


def crash_supervisor(system: RiskSystem) -> int:
    """``kill -9`` the supervisor's process; Ray restarts it from its journal. Returns the pid."""
    pid: int = ray.get(system.supervisor.__ray_call__.remote(lambda supervisor: os.getpid()))
    os.kill(pid, signal.SIGKILL)
    return pid


def shard_pid(system: RiskSystem, shard_id: str) -> int:
    pid: int = ray.get(system.shards[shard_id].__ray_call__.remote(lambda shard: os.getpid()))
    return pid


def crash_shard(system: RiskSystem, shard_id: str) -> int:
    """``kill -9`` the process hosting one shard; Ray restarts a journaled shard. Returns the pid."""
    pid = shard_pid(system, shard_id)
    os.kill(pid, signal.SIGKILL)
    return pid
