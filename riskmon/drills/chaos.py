"""``riskmon chaos``: failure drills against a live local system, each compared with the run without it.

Each drill feeds the same generated stream (account, portfolio and firm breaches and fills included) twice:
once undisturbed, once with a fault halfway through; an operator's halt that is part of a drill's story
happens in both runs, at the same point. It reports whether the system recovered (every account's state
identical to the undisturbed run's, every account up again), how long recovery took (from the fault until the
rest of the stream has been applied and every account is up again), and how many events — account alerts and
breakers, portfolio and firm limit breaches and breakers, operator commands — were lost or recorded twice
(both must be 0). The drills' journals compact into snapshots several times a run, so restarts rebuild from
snapshot + journal.

- ``shard kill -9``: the process hosting an account shard is killed; Ray restarts it from its journal.
- ``supervisor kill -9``: the supervisor's process is killed mid-stream after a desk halt; Ray restarts it
  from its journal.
- ``service restart``: the whole system shuts down after a firm halt and starts again under the same name.
- ``node loss``: a worker node hosting account shards leaves a 3-node cluster; Ray restarts its shards on the
  surviving worker from their journals. It runs on a cluster of its own, in a child process
  (:mod:`riskmon.drills.node_loss`); the other three share one local Ray in this process.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

import ray

from driver.system import RiskSystem, init_ray
from riskcore.config import RiskConfig
from riskcore.errors import RiskmonError
from riskcore.states import BreakerState
from riskmon.drills.common import (
    FAULTS,
    NODE_LOSS,
    RESULT_KEYS,
    crash_shard,
    crash_supervisor,
    drill_config,
    drill_load,
    drill_result,
    halt,
    run_stream,
    wait_all_up,
)
from riskmon.drills.node_loss import run_node_loss
from riskmon.loadgen.generator import Chunk

Baseline = Callable[..., dict[str, Any]]  # the undisturbed run of a drill's story (see run_chaos)


def drill_shard_kill(config: RiskConfig, parts: list[Chunk], baseline: Baseline) -> dict[str, Any]:
    system = RiskSystem.start(config, name=f"chaos-shard-{uuid.uuid4().hex[:8]}")
    try:
        killed: dict[str, float] = {}

        def kill(s: RiskSystem) -> None:
            killed["at"] = time.monotonic()
            crash_shard(s, "shard-0000")

        faulted = run_stream(system, parts, kill)
        up = wait_all_up(system)
        return drill_result("shard kill -9", baseline(), faulted, time.monotonic() - killed["at"], up)
    finally:
        _discard(system)


def drill_supervisor_kill(config: RiskConfig, parts: list[Chunk], baseline: Baseline) -> dict[str, Any]:
    system = RiskSystem.start(config, name=f"chaos-supervisor-{uuid.uuid4().hex[:8]}")
    desk = next(iter(config.portfolios))
    half = len(parts) // 2
    actions = {half: halt("portfolio", desk, "drill: desk halted before the supervisor dies")}
    try:
        killed: dict[str, float] = {}

        def kill(s: RiskSystem) -> None:  # a few batches after the halt, with batches in flight
            crash_supervisor(s)
            killed["at"] = time.monotonic()

        faulted = run_stream(system, parts, kill, half + 3, actions)
        engaged = system.status()["breakers"]["portfolios"][desk]["state"] == BreakerState.ENGAGED
        up = wait_all_up(system) and engaged
        recovery_s = time.monotonic() - killed["at"]
        return drill_result("supervisor kill -9", baseline("desk halt", actions), faulted, recovery_s, up)
    finally:
        _discard(system)


def drill_service_restart(config: RiskConfig, parts: list[Chunk], baseline: Baseline) -> dict[str, Any]:
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
        halted = second.status()["breakers"]["global"]["state"] == BreakerState.ENGAGED
        faulted = run_stream(second, parts[half:])
        up = wait_all_up(second) and halted
        story = baseline("firm halt", {half: firm_halt})
        return drill_result("service restart", story, faulted, recovery_s, up)
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
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise RiskmonError(f"unknown fault {unknown[0]!r}; one of {', '.join(FAULTS)}")
    results: list[dict[str, Any]] = []
    config = drill_config(accounts)
    parts: list[Chunk] = []
    baselines: dict[str, dict[str, Any]] = {}

    def baseline(story: str = "plain",
                 actions: dict[int, Callable[[RiskSystem], None]] | None = None) -> dict[str, Any]:
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
