"""``riskmon chaos``: failure drills against a live local system, each compared with the run without the fault.

Each drill feeds the same generated stream (account, portfolio and firm breaches and fills included) twice:
once undisturbed, once with a fault halfway through; an operator's halt that is part of a drill's story happens
in both runs, at the same point. It reports whether the system recovered (every account's state identical to
the undisturbed run's, every account up again), how long recovery took (from the fault until the rest of the
stream has been applied and every account is up again), and how many events — account alerts and breakers,
portfolio and firm limit breaches and breakers, operator commands — were lost or recorded twice (both must be 0).
The drills' journals compact into snapshots several times a run, so restarts rebuild from snapshot + journal.

- ``shard kill -9``: the process hosting an account shard is killed; Ray restarts it from its journal.
- ``supervisor kill -9``: the supervisor's process is killed mid-stream after a desk halt; Ray restarts it from its
  journal.
- ``service restart``: the whole system shuts down after a firm halt and starts again under the same name.
- ``node loss``: a worker node hosting account shards leaves a 3-node cluster; Ray restarts its shards on the
  surviving worker from their journals. It runs on a cluster of its own, in a child process
  (:mod:`riskmon.cluster_drill`); the other three share one local Ray in this process.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any, Callable

import ray

from riskcore.config import DurabilityConfig, RiskConfig
from riskcore.errors import RiskmonError
from riskcore.gate import Order, Reason
from riskmon.loadgen import Chunk, LoadGenerator, firm_config
from supervisor.system import RiskSystem, init_ray

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
    """An operator's halt once everything sent so far is applied (so it lands at the same point in every run)."""
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
    probes = [Order(spec.id, spec.positions[0].symbol if spec.positions else next(iter(system.config.symbols)),
                    1.0, 1.0) for spec in system.config.accounts]
    return gate.wait_for(lambda g: all(g.check(o).reason is not Reason.STALE_STATE for o in probes), timeout_s)


def drill_result(fault: str, baseline: dict[str, Any], faulted: dict[str, Any], recovery_s: float,
                 up: bool) -> dict[str, Any]:
    """A drill's row: recovered if ``up`` and the accounts and shard counts equal the baseline's."""
    lost, duplicated = event_diff(baseline["events"], faulted["events"])
    recovered = up and faulted["states"] == baseline["states"] and faulted["counts"] == baseline["counts"]
    return {"fault": fault, "recovered": recovered, "recovery_s": round(recovery_s, 2), "lost_events": lost,
            "duplicated_events": duplicated}


def drill_shard_kill(config: RiskConfig, parts: list[Chunk], baseline: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    system = RiskSystem.start(config, name=f"chaos-shard-{uuid.uuid4().hex[:8]}")
    try:
        killed: dict[str, float] = {}

        def kill(s: RiskSystem) -> None:
            killed["at"] = time.monotonic()
            s.crash_shard("shard-0000")

        faulted = run_stream(system, parts, kill)
        up = wait_all_up(system)
        return drill_result("shard kill -9", baseline(), faulted, time.monotonic() - killed["at"], up)
    finally:
        _discard(system)


def drill_supervisor_kill(config: RiskConfig, parts: list[Chunk], baseline: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    system = RiskSystem.start(config, name=f"chaos-supervisor-{uuid.uuid4().hex[:8]}")
    desk = next(iter(config.portfolios))
    half = len(parts) // 2
    actions = {half: halt("portfolio", desk, "drill: desk halted before the supervisor dies")}
    try:
        killed: dict[str, float] = {}

        def kill(s: RiskSystem) -> None:  # a few batches after the halt, with batches in flight
            s.crash_supervisor()
            killed["at"] = time.monotonic()

        faulted = run_stream(system, parts, kill, half + 3, actions)
        up = wait_all_up(system) and system.status()["breakers"]["portfolios"][desk]["state"] == "ENGAGED"
        return drill_result("supervisor kill -9", baseline("desk halt", actions), faulted, time.monotonic() - killed["at"], up)
    finally:
        _discard(system)


def drill_service_restart(config: RiskConfig, parts: list[Chunk], baseline: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    name = f"chaos-restart-{uuid.uuid4().hex[:8]}"
    half = len(parts) // 2
    firm_halt = halt("global", "firm", "drill: firm halted before the restart")
    first = RiskSystem.start(config, name=name)
    try:
        run_stream(first, parts[:half])
        firm_halt(first)
    finally:
        first.shutdown()
    started = time.monotonic()
    second = RiskSystem.start(config, name=name)
    try:
        recovery_s = time.monotonic() - started
        halted = second.status()["breakers"]["global"]["state"] == "ENGAGED"
        faulted = run_stream(second, parts[half:])
        up = wait_all_up(second) and halted
        return drill_result("service restart", baseline("firm halt", {half: firm_halt}), faulted, recovery_s, up)
    finally:
        _discard(second)


def _discard(system: RiskSystem) -> None:
    """Shut a drill's system down and remove its journals (drills leave nothing behind)."""
    state = system.state
    system.shutdown()
    if state is not None:
        shutil.rmtree(state, ignore_errors=True)


IN_PROCESS_DRILLS = {"shard kill -9": drill_shard_kill, "supervisor kill -9": drill_supervisor_kill,
                     "service restart": drill_service_restart}


def run_chaos(accounts: int = 600, ticks: int = 12_000, seed: int = 11,
              faults: tuple[str, ...] = FAULTS) -> list[dict[str, Any]]:
    """Run the drills named in ``faults``, in that order, on ``drill_config(accounts)`` fed ``ticks`` ticks.

    Returns one row per drill with the ``RESULT_KEYS``; a drill that could not run to its end also has an
    ``error`` (and null figures). The in-process drills start a local Ray here unless one is up already.
    """
    # The node-loss drill builds on this module's helpers, so it is imported when it runs.
    from riskmon.cluster_drill import run_node_loss

    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise RiskmonError(f"unknown fault {unknown[0]!r}; one of {', '.join(FAULTS)}")
    results: list[dict[str, Any]] = []
    config = drill_config(accounts)
    parts: list[Chunk] = []
    baselines: dict[str, dict[str, Any]] = {}

    def baseline(story: str = "plain", actions: dict[int, Callable[[RiskSystem], None]] | None = None) -> dict[str, Any]:
        """The undisturbed run of a drill's story (its operator actions included), run once per story."""
        if story not in baselines:
            system = RiskSystem.start(config, name=f"chaos-baseline-{uuid.uuid4().hex[:8]}")
            try:
                baselines[story] = run_stream(system, parts, actions=actions)
            finally:
                _discard(system)
        return baselines[story]

    owns_ray = False
    try:
        for fault in faults:
            if fault == NODE_LOSS:
                row = run_node_loss(accounts, ticks, seed)
                results.append({key: row[key] for key in (*RESULT_KEYS, "error") if key in row})
                continue
            if not parts:
                # Ray's restart notices are expected here; the table says what happened.
                owns_ray = init_ray(log_to_driver=False)
                parts = drill_load(config, ticks, seed)
            results.append(IN_PROCESS_DRILLS[fault](config, parts, baseline))
    finally:
        if owns_ray:
            ray.shutdown()
    return results
