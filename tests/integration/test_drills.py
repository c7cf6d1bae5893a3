"""Failure drills on real Ray: each run is compared with the same run without the fault.

- `kill -9` of the process hosting an account shard, mid-stream with batches in flight: Ray restarts the
  shard, it rebuilds from its journal, the calls it never answered are delivered again and each batch is
  applied once, in order. Accounts identical to the cent, the same account alert and breaker events, every
  fill applied, no tick applied twice.
- `kill -9` of the supervisor after a desk halt: the halt is still in force at the gate, nothing lost.
- a restart of the whole service: account, portfolio and firm halts still in force; the stream continues.
- removal of a node hosting accounts from a 3-node cluster: they come back elsewhere, identical.
- `riskmon chaos` runs all four against a live system and reports them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import ray

from driver.system import RiskSystem
from riskcore.audit import verify
from riskcore.gate import Order, Reason
from riskmon.drills.common import (
    crash_shard,
    crash_supervisor,
    drill_config,
    drill_load,
    event_diff,
    halt,
    shard_pid,
)
from riskmon.drills.common import run_stream as run
from riskmon.drills.node_loss import run_node_loss

pytestmark = pytest.mark.ray

# Two shards, desk and firm limits that breach mid-stream, journals that compact several times a run.
CONFIG = drill_config(600)


def load() -> list[Any]:
    return drill_load(CONFIG, 12_000)


def test_drill_when_shard_process_killed_mid_stream_accounts_end_identical(
    start_system: Callable[..., RiskSystem],
) -> None:
    parts = load()
    baseline = run(start_system(CONFIG), parts)
    assert any(e["type"] == "breaker" and e["state"] == "ENGAGED" for e in baseline["events"])
    # Desk and firm limits breach mid-stream too, so their events are compared as well.
    scopes = {e["scope"] for e in baseline["events"] if e["type"] == "breaker"}
    assert scopes >= {"account", "portfolio", "global"}
    assert sum(len(p.fills) for p in parts) > 50

    crashed: dict[str, Any] = {}

    def kill_minus_nine(system: RiskSystem) -> None:
        crashed["pid"] = crash_shard(system, "shard-0000")
        crashed["at"] = time.monotonic()

    system = start_system(CONFIG)
    faulted = run(system, parts, kill_minus_nine)
    assert shard_pid(system, "shard-0000") != crashed["pid"]  # a new process, rebuilt from the journal
    assert faulted["states"] == baseline["states"]
    assert event_diff(baseline["events"], faulted["events"]) == (0, 0)  # account, desk and firm events alike
    assert faulted["counts"] == baseline["counts"]  # every batch, tick and fill applied exactly once
    assert max(s["snapshots"] for s in ray.get([h.stats.remote() for h in system.shards.values()])) > 0
    # Back up: a gate that hears the supervisor's view stops denying the restarted shard's accounts as down.
    gate = system.gate()
    assert gate.wait_for(lambda g: all(g.check(Order(a, "SYM000", 1.0, 1.0)).reason is not Reason.STALE_STATE
                                       for a in system.placement["shard-0000"]), 30.0)
    status = system.status()
    assert status["up"] == {spec.id: True for spec in CONFIG.accounts}, status["watch_failures"]


def halted_order(portfolio: str, calm: dict[str, Any]) -> Order:
    """An order that adds risk, for an account of ``portfolio`` whose own breaker stays SAFE in ``calm``."""
    spec = next(a for a in CONFIG.accounts if a.portfolio == portfolio and calm[a.id]["breaker"] == "SAFE")
    position = spec.positions[0]
    return Order(spec.id, position.symbol, 1_000.0 if position.qty > 0 else -1_000.0, 1.0)


HAND_HALT_NS = 1_578_000_000 * 1_000_000_000  # an operator's halt at a fixed time, so two runs compare
HALTED = {Reason.PORTFOLIO_HALT, Reason.GLOBAL_HALT, Reason.REDUCE_ONLY}  # reduce-only halts name REDUCE_ONLY


def upper_breakers(system: RiskSystem) -> tuple[object, dict[str, object]]:
    breakers = system.status()["breakers"]
    return breakers["global"]["state"], {p: b["state"] for p, b in breakers["portfolios"].items()}


def test_drill_when_supervisor_killed_breakers_stay_engaged_and_nothing_is_lost(
    start_system: Callable[..., RiskSystem],
) -> None:
    parts = load()
    half = len(parts) // 2
    # The desk halt is part of the story in both runs; only the kill is the fault.
    desk_halt = {half: halt("portfolio", "desk-00", "drill: desk halted before the supervisor dies")}
    baseline = run(start_system(CONFIG), parts, actions=desk_halt)
    system = start_system(CONFIG)
    gate = system.gate()
    order = halted_order("desk-00", baseline["states"])

    def kill(system: RiskSystem) -> None:  # three batches after the halt, with batches in flight
        assert gate.wait_for(lambda g: g.check(order).reason in HALTED, 20.0), gate.check(order)
        old = crash_supervisor(system)
        assert ray.get(system.supervisor.__ray_call__.remote(lambda s: __import__("os").getpid())) != old

    faulted = run(system, parts, kill, half + 3, desk_halt)
    # desk-00 by the operator; desk-01 and the firm by their limits.
    assert upper_breakers(system) == ("ENGAGED", {"desk-00": "ENGAGED", "desk-01": "ENGAGED"})
    assert gate.wait_for(lambda g: g.check(order).reason in HALTED, 20.0), gate.check(order)
    assert faulted["states"] == baseline["states"]
    # The log rebuilt from the journal, the batches it had open closed as they were: none lost or doubled.
    assert event_diff(baseline["events"], faulted["events"]) == (0, 0)
    assert faulted["counts"] == baseline["counts"]
    assert system.state is not None
    trail = system.state / "audit.jsonl"
    assert verify(trail).ok
    keys = [json.loads(line).get("key") for line in trail.read_text().splitlines()]
    assert len([k for k in keys if k]) == len({k for k in keys if k})  # every audited event once


def test_drill_when_whole_service_restarts_engaged_breakers_stay_engaged(ray_session: None) -> None:
    parts = load()
    name = f"drill-restart-{uuid.uuid4().hex[:8]}"
    first = RiskSystem.start(CONFIG, name=name)
    try:
        before = run(first, parts[: len(parts) // 2])
        first.engage("global", "firm", "ops", "drill: firm halted before the restart", HAND_HALT_NS)
        first.engage("account", "acct-00001", "ops", "drill: one account halted by hand", HAND_HALT_NS)
        engaged = {a for a, s in before["states"].items() if s["breaker"] == "ENGAGED"}
        engaged_accounts = engaged | {"acct-00001"}
    finally:
        first.shutdown()
    second = RiskSystem.start(CONFIG, name=name)
    try:
        states = second.states()
        assert {a for a, s in states.items() if s["breaker"] == "ENGAGED"} == engaged_accounts
        assert upper_breakers(second)[0] == "ENGAGED"
        gate = second.gate()
        assert gate.check(halted_order("desk-01", states)).reason in HALTED
        # The stream goes on where it stopped; the accounts end as if the service had never stopped.
        after = run(second, parts[len(parts) // 2:])
        whole = RiskSystem.start(CONFIG, name=f"{name}-whole")
        try:
            expected = run(whole, parts[: len(parts) // 2])
            whole.engage("global", "firm", "ops", "drill: firm halted before the restart", HAND_HALT_NS)
            whole.engage("account", "acct-00001", "ops", "drill: one account halted by hand", HAND_HALT_NS)
            expected = run(whole, parts[len(parts) // 2:])
        finally:
            whole.shutdown()
        assert after["states"] == expected["states"]
        assert event_diff(expected["events"], after["events"]) == (0, 0)
    finally:
        second.shutdown()


def test_drill_when_a_node_hosting_accounts_is_removed_they_come_back_elsewhere_identical() -> None:
    # What `riskmon chaos` runs: a 3-node cluster of its own, in a child process beside this session's Ray.
    result = run_node_loss(accounts=200, ticks=6_000, seed=5)
    assert "detail" in result, result.get("error")  # else the drill ended without a result
    detail = result["detail"]
    assert detail["shards_on_it"], result
    assert detail["moved"], result  # restarted on the surviving worker
    assert detail["identical_to_reference"], result  # every account equal to the reference engine's
    assert result["recovered"], result
    assert (result["lost_events"], result["duplicated_events"]) == (0, 0), result
    assert detail["engaged"] > 0, result  # the stream breached
    assert detail["fills"] > 0, result  # and filled


def test_chaos_command_when_run_reports_every_drill_recovered_with_nothing_lost(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "chaos.json"
    command = [sys.executable, "-m", "riskmon.cli", "chaos", "--accounts", "200", "--ticks", "4000",
               "--json", str(out)]
    done = subprocess.run(command, cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["fault"] for r in results] == ["shard kill -9", "supervisor kill -9", "service restart",
                                             "node loss"]
    for r in results:
        assert set(r) == {"fault", "recovered", "recovery_s", "lost_events", "duplicated_events"}
        assert r["recovered"], r
        assert (r["lost_events"], r["duplicated_events"]) == (0, 0), r
        assert r["recovery_s"] > 0, r
    assert "events lost" in done.stdout


def test_restart_when_the_audit_trail_was_tampered_with_refuses_to_start_and_says_why(
    ray_session: None,
) -> None:
    from riskcore.audit import AuditError

    name = f"drill-tamper-{uuid.uuid4().hex[:8]}"
    first = RiskSystem.start(CONFIG, name=name)
    try:
        run(first, load()[:4])
        first.engage("portfolio", "desk-00", "ops", "so the trail has an operator record", HAND_HALT_NS)
        assert first.state is not None
        trail = first.state / "audit.jsonl"
    finally:
        first.shutdown()
    data = bytearray(trail.read_bytes())
    data[len(data) // 2] ^= 0x01
    trail.write_bytes(bytes(data))
    with pytest.raises(AuditError, match="refusing to extend it"):
        RiskSystem.start(CONFIG, name=name)
    assert trail.read_bytes() == bytes(data)  # left exactly as found, for the investigation


def test_restart_when_a_feed_replays_old_quotes_the_new_router_refuses_them_once(ray_session: None) -> None:
    from riskcore.events import Tick

    name = f"drill-replay-{uuid.uuid4().hex[:8]}"
    quotes = [Tick("SYM000", 1.0 + i / 1000, 1.0002 + i / 1000, HAND_HALT_NS + i, "feed-9", i)
              for i in range(5)]
    first = RiskSystem.start(CONFIG, name=name)
    try:
        first.submit(quotes)
        first.flush()
    finally:
        first.shutdown()
    second = RiskSystem.start(CONFIG, name=name)
    try:
        second.submit(quotes[3:])  # the feed reconnects and sends its last two quotes again
        second.flush()
        # Refused once, at ingest, to the sender: not again at each shard.
        assert [(r.code, r.seq) for r in second.refusals] == [("duplicate_seq", 3), ("duplicate_seq", 4)]
    finally:
        second.shutdown()
