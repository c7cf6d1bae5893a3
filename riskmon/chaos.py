"""``riskmon chaos``: failure drills against a live local system, each compared with the run without the fault.

Each drill feeds the same generated stream (breaches and fills included) twice: once undisturbed, once with a
fault halfway through. It reports whether the system recovered (every account's state identical to the
undisturbed run's, every account up again), how long recovery took (from the fault until the rest of the
stream has been applied and every account is up again), and how many account alert and breaker events were
lost or recorded twice (both must be 0).

- ``shard kill -9``: the process hosting an account shard is killed; Ray restarts it from its journal.
- ``supervisor kill -9``: the supervisor's process is killed after a desk halt; Ray restarts it from its journal.
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
from typing import Any, Callable

import ray

from riskcore.config import RiskConfig
from riskcore.errors import RiskmonError
from riskcore.gate import Order, Reason
from riskmon.loadgen import Chunk, LoadGenerator, firm_config
from supervisor.system import RiskSystem, init_ray

NODE_LOSS = "node loss"
FAULTS = ("shard kill -9", "supervisor kill -9", "service restart", NODE_LOSS)
RESULT_KEYS = ("fault", "recovered", "recovery_s", "lost_events", "duplicated_events")


def drill_config(accounts: int = 600, portfolios: int = 2, symbols: int = 20) -> RiskConfig:
    return firm_config(accounts, portfolios, symbols, accounts_per_actor=max(1, accounts // 2))


def drill_load(config: RiskConfig, ticks: int = 12_000, seed: int = 11, chunk: int = 400) -> list[Chunk]:
    generator = LoadGenerator(config, seed=seed, breach_every=max(100, ticks // 8))
    generator.plan(ticks)
    return list(generator.chunks(chunk, generator.sent + ticks))


def account_events(system: RiskSystem) -> list[dict[str, Any]]:
    return [e for e in system.events()
            if e.get("type") in ("alert", "breaker") and e.get("scope", "account") == "account"]


def shard_counts(system: RiskSystem) -> dict[str, tuple[int, int, int]]:
    stats = ray.get([h.stats.remote() for h in system.shards.values()])
    return {s["shard"]: (s["batches"], s["ticks_applied"], s["fills_applied"]) for s in stats}


def run_stream(system: RiskSystem, parts: list[Chunk], fault: Callable[[RiskSystem], None] | None = None,
               fault_at: int | None = None) -> dict[str, Any]:
    """Feed ``parts`` (``fault`` runs before part ``fault_at``, default halfway), flush, and read the outcome."""
    at = len(parts) // 2 if fault_at is None else fault_at
    for n, part in enumerate(parts):
        if fault is not None and n == at:
            fault(system)
        system.submit_columns(part.ticks, part.fills, part.fill_pos)
    system.flush(timeout_s=180.0)
    return {"states": system.states(), "events": account_events(system), "counts": shard_counts(system)}


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


def drill_shard_kill(config: RiskConfig, parts: list[Chunk], baseline: dict[str, Any]) -> dict[str, Any]:
    system = RiskSystem.start(config, name=f"chaos-shard-{uuid.uuid4().hex[:8]}")
    try:
        killed: dict[str, float] = {}

        def kill(s: RiskSystem) -> None:
            killed["at"] = time.monotonic()
            s.crash_shard("shard-0000")

        faulted = run_stream(system, parts, kill)
        up = wait_all_up(system)
        return drill_result("shard kill -9", baseline, faulted, time.monotonic() - killed["at"], up)
    finally:
        _discard(system)


def drill_supervisor_kill(config: RiskConfig, parts: list[Chunk], baseline: dict[str, Any]) -> dict[str, Any]:
    system = RiskSystem.start(config, name=f"chaos-supervisor-{uuid.uuid4().hex[:8]}")
    desk = next(iter(config.portfolios))
    try:
        killed: dict[str, float] = {}

        def halt_then_kill(s: RiskSystem) -> None:
            s.engage("portfolio", desk, "chaos", "drill: desk halted before the supervisor dies")
            s.crash_supervisor()
            killed["at"] = time.monotonic()
            s.status()  # answered by the restarted supervisor

        faulted = run_stream(system, parts, halt_then_kill)
        up = wait_all_up(system) and system.status()["breakers"]["portfolios"][desk]["state"] == "ENGAGED"
        return drill_result("supervisor kill -9", baseline, faulted, time.monotonic() - killed["at"], up)
    finally:
        _discard(system)


def drill_service_restart(config: RiskConfig, parts: list[Chunk], baseline: dict[str, Any]) -> dict[str, Any]:
    name = f"chaos-restart-{uuid.uuid4().hex[:8]}"
    half = len(parts) // 2
    first = RiskSystem.start(config, name=name)
    try:
        run_stream(first, parts[:half])
        first.engage("global", "firm", "chaos", "drill: firm halted before the restart")
    finally:
        first.shutdown()
    started = time.monotonic()
    second = RiskSystem.start(config, name=name)
    try:
        recovery_s = time.monotonic() - started
        halted = second.status()["breakers"]["global"]["state"] == "ENGAGED"
        faulted = run_stream(second, parts[half:])
        up = wait_all_up(second) and halted
        return drill_result("service restart", baseline, faulted, recovery_s, up)
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
    baseline: dict[str, Any] | None = None
    config = drill_config(accounts)
    parts: list[Chunk] = []
    owns_ray = False
    try:
        for fault in faults:
            if fault == NODE_LOSS:
                row = run_node_loss(accounts, ticks, seed)
                results.append({key: row[key] for key in (*RESULT_KEYS, "error") if key in row})
                continue
            if baseline is None:
                # Ray's restart notices are expected here; the table says what happened.
                owns_ray = init_ray(log_to_driver=False)
                parts = drill_load(config, ticks, seed)
                baseline_system = RiskSystem.start(config, name=f"chaos-baseline-{uuid.uuid4().hex[:8]}")
                try:
                    baseline = run_stream(baseline_system, parts)
                finally:
                    _discard(baseline_system)
            results.append(IN_PROCESS_DRILLS[fault](config, parts, baseline))
    finally:
        if owns_ray:
            ray.shutdown()
    return results
