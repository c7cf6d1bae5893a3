"""A batched engine restored from a snapshot goes on exactly as the engine that wrote it.

A restarted account shard rebuilds from its last snapshot and the journal written after it instead of
replaying its whole journal, so the snapshot must hold everything that decides future behaviour. The
stream (:mod:`tests.property.streams`: fills, flips, day rolls, operator commands) runs through one engine;
before a random batch its snapshot goes through msgpack, as a shard writes and reads it, into a fresh
engine of the same config and accounts. Both then take the rest of the batches and operator commands:
every event after every batch, every state, breaker and summary column must be identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from riskcore.clock import parse_rfc3339
from riskcore.config import parse_config
from riskcore.engine import BatchedEngine, EventBatch
from riskcore.events import BreakerEvent, Event, Fill, Tick
from tests.property.streams import (
    HOUR,
    OperatorStep,
    S,
    Scenario,
    breakers,
    one_account_scenario,
    scenarios,
)

MSGPACK_NATIVE = (dict, list, str, int, float, bool, type(None))


def msgpack_round_trip(snapshot: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = msgpack.unpackb(
        msgpack.packb(snapshot, use_bin_type=True), raw=False, strict_map_key=False
    )
    return decoded


def assert_native(value: object, path: str = "snapshot") -> None:
    """Only plain msgpack types: a numpy scalar would pack (np.float64 is a float) but is not data."""
    assert type(value) in MSGPACK_NATIVE, f"{path} is a {type(value).__name__}"
    if isinstance(value, dict):
        for key, item in value.items():
            assert_native(key, f"{path} key {key!r}")
            assert_native(item, f"{path}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_native(item, f"{path}[{i}]")


def assert_same_arrays(original: BatchedEngine, restored: BatchedEngine) -> None:
    """Bit for bit, the state the kernel reads (slots and holders up to their counts: widths may differ)."""
    for group in ("acc", "quotes"):
        for name, array in getattr(original, group)._asdict().items():
            if name != "touched":
                assert array.tobytes() == getattr(getattr(restored, group), name).tobytes(), (group, name)
    slots, restored_slots = original.slots, restored.slots
    assert np.array_equal(slots.n_slots, restored_slots.n_slots)
    assert np.array_equal(original.holders.n_holders, restored.holders.n_holders)
    for a, n in enumerate(slots.n_slots.tolist()):
        for name in ("symbol", "qty", "avg", "mult", "upnl", "expo"):
            assert getattr(slots, name)[a, :n].tobytes() == getattr(restored_slots, name)[a, :n].tobytes(), (
                name,
                a,
            )
    for s, n in enumerate(original.holders.n_holders.tolist()):
        for name in ("account", "slot"):
            assert np.array_equal(
                getattr(original.holders, name)[s, :n], getattr(restored.holders, name)[s, :n]
            ), (name, s)


def run_with_snapshot(scenario: Scenario, cut: int) -> tuple[dict[str, Any], list[Event]]:
    """Run the scenario on one engine and, from before batch ``cut``, on an engine restored from its snapshot.

    Asserts the two agree after every later batch and operator command; returns the snapshot and the
    events of the batches after it.
    """
    config = scenario.config
    symbol_ids = config.symbol_ids()
    original = BatchedEngine(config)
    published: tuple[list[Event], list[Event]] = ([], [])
    if scenario.publish:
        original.on_breaker = published[0].append
    operator_after = scenario.operator_after()
    restored: BatchedEngine | None = None
    snapshot: dict[str, Any] = {}
    events: list[Event] = []
    for number, (start, end) in enumerate(scenario.batches):
        chunk = scenario.events[start:end]
        if number == cut:
            # No view of the original before this: snapshot() itself must bring its books up to date.
            snapshot = original.snapshot()
            assert_native(snapshot)
            restored = BatchedEngine(config, [book.id for book in original.books])
            restored.restore(msgpack_round_trip(snapshot))
            assert_same_arrays(original, restored)
            if scenario.publish:
                restored.on_breaker = published[1].append
            published[0].clear()
        expected = original.apply(EventBatch.from_events(chunk, symbol_ids))
        if restored is not None:
            actual = restored.apply(EventBatch.from_events(chunk, symbol_ids))
            assert actual == expected, (
                f"events differ in batch {number} (events {start}..{end}), snapshot before {cut}"
            )
            assert published[1] == published[0], f"published breaker changes differ in batch {number}"
            assert restored.states() == original.states(), f"states differ after batch {number}"
            events += expected
        now_ns = chunk[-1].ts_ns
        for step in operator_after.get(number, ()):
            outcome = step.apply(original, now_ns)
            if restored is not None:
                assert step.apply(restored, now_ns) == outcome, f"operator {step} after batch {number}"
    assert restored is not None
    assert restored.states() == original.states()
    assert breakers(restored) == breakers(original)
    mine, theirs = restored.summary_columns(), original.summary_columns()
    for column in dataclasses.fields(mine):
        assert np.array_equal(getattr(mine, column.name), getattr(theirs, column.name)), column.name
    return snapshot, events


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(scenarios(), st.data())
def test_batched_engine_when_restored_from_snapshot_at_any_batch_continues_identically(
    scenario: Scenario, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(scenario.batches) - 1), label="snapshot before batch")

    snapshot, _ = run_with_snapshot(scenario, cut)

    # Steer generation towards snapshots of symbols opened by fills and of engaged breakers a day roll passed.
    accounts = snapshot["accounts"]
    held_in_config = sum(len(spec.positions) for spec in scenario.config.accounts)
    target(float(sum(len(a["slot_symbols"]) for a in accounts) - held_in_config), label="slots opened")
    target(float(sum(a["breaker"]["state"] == "ENGAGED" for a in accounts)), label="engaged breakers")
    target(float(sum(a["breaker"]["day_rolled"] for a in accounts)), label="engaged breakers, day rolled")


# ------------------------------------------------------------------ states the generator may miss at a cut


def two_account_scenario(events: Sequence[Tick | Fill], sizes: list[int]) -> Scenario:
    """A0 and A1 each holding 1,000 S0; S1 (multiplier 10) neither holds."""
    limits = {
        "max_daily_drawdown": 0.02,
        "drawdown_warning": 0.01,
        "max_account_leverage": 10.0,
        "leverage_warning": 5.0,
    }
    raw = {
        "symbols": {"S0": {"multiplier": 1}, "S1": {"multiplier": 10}},
        "portfolios": {"P0": {}},
        "accounts": [
            {
                "id": f"A{a}",
                "portfolio": "P0",
                "balance": 100_000.0,
                "positions": {"S0": {"qty": 1_000.0, "avg_price": 100.0}},
                "limits": limits,
            }
            for a in range(2)
        ],
    }
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return Scenario(raw, parse_config(raw), list(events), list(pairwise(bounds)), [])


@pytest.mark.parametrize("sizes", [[4, 4], [3, 1, 2, 2], [4, 1, 1, 1, 1]])
def test_batched_engine_when_snapshot_holds_symbols_opened_by_fills_restores_slots_and_holders(
    sizes: list[int],
) -> None:
    t0 = parse_rfc3339("2020-01-15T15:00:00Z")
    events: list[Tick | Fill] = [
        Tick("S1", 50.0, 50.1, t0, "t", 1),
        Fill("A1", "S1", 100.0, 50.1, t0 + S, stream="f", seq=2),  # A1 opens S1 before A0 does
        Fill("A0", "S1", 100.0, 50.1, t0 + 2 * S, stream="f", seq=3),
        Tick("S1", 49.9, 50.0, t0 + 3 * S, "t", 4),
        # After the snapshot: S1 falls; both accounts hit WARNING, then CRITICAL, in account order.
        Tick("S1", 48.9, 49.0, t0 + 4 * S, "t", 5),
        Tick("S1", 47.0, 47.1, t0 + 5 * S, "t", 6),
        Fill("A0", "S1", -150.0, 47.0, t0 + 6 * S, stream="f", seq=7),  # flips A0 short
        Tick("S1", 47.5, 47.6, t0 + 7 * S, "t", 8),
    ]
    scenario = two_account_scenario(events, sizes)

    snapshot, after = run_with_snapshot(scenario, cut=1)

    assert [a["slot_symbols"] for a in snapshot["accounts"]] == [[0, 1], [0, 1]]
    assert [(e.account, e.to_level) for e in after if not isinstance(e, BreakerEvent)][:4] == [
        ("A0", "WARNING"),
        ("A1", "WARNING"),
        ("A0", "CRITICAL"),
        ("A1", "CRITICAL"),
    ]


@pytest.mark.parametrize("sizes", [[2, 3], [2, 1, 2], [2, 1, 1, 1]])
def test_batched_engine_when_snapshot_taken_during_breaker_cooldown_releases_at_cooldown_end(
    sizes: list[int],
) -> None:
    t0 = parse_rfc3339("2020-01-15T15:00:00Z")
    events: list[Tick | Fill] = [
        Tick("S0", 97.5, 97.6, t0, "t", 1),  # drawdown 0.025: engaged, cooldown 30 s
        Tick("S0", 98.5, 98.6, t0 + S, "t", 2),  # WARNING, still engaged
        # After the snapshot; an operator reset after the next batch is refused (cooldown).
        Tick("S0", 98.6, 98.7, t0 + 10 * S, "t", 3),
        Tick("S0", 98.6, 98.7, t0 + 30 * S - 1, "t", 4),  # 1 ns short of the cooldown
        Tick("S0", 98.6, 98.7, t0 + 30 * S, "t", 5),  # released here
    ]
    limits = {"auto_reset": True, "recovery_cooldown_seconds": 30}
    scenario = dataclasses.replace(
        one_account_scenario(limits, events, sizes), operator=[OperatorStep(1, "reset", 0)]
    )

    snapshot, after = run_with_snapshot(scenario, cut=1)

    assert snapshot["accounts"][0]["breaker"]["state"] == "ENGAGED"
    assert [(e.state, e.cause, e.seq) for e in after if isinstance(e, BreakerEvent)] == [
        ("SAFE", "auto_reset", 5)
    ]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_batched_engine_when_snapshot_taken_around_day_roll_of_engaged_breaker_releases_on_new_day(
    cut: int,
) -> None:
    roll = parse_rfc3339("2020-07-15T21:00:00Z")  # 17:00 EDT
    events: list[Tick | Fill] = [
        Tick("S0", 97.5, 97.6, roll - 10 * S, "t", 1),  # engaged by drawdown, cooldown 30 s
        Tick("S0", 97.5, 97.6, roll, "t", 2),  # the roll: a new day, but the cooldown is not over
        Tick("S0", 97.6, 97.7, roll + 5 * S, "t", 3),
        Tick("S0", 97.6, 97.7, roll + 19 * S, "t", 4),
        Tick("S0", 97.6, 97.7, roll + 20 * S, "t", 5),  # only the day roll (not auto_reset) releases it
        Tick("S0", 97.7, 97.8, roll + HOUR, "t", 6),
    ]
    limits = {"release_on_day_roll": True, "recovery_cooldown_seconds": 30}
    scenario = one_account_scenario(limits, events, [1, 2, 1, 2])

    snapshot, after = run_with_snapshot(scenario, cut)

    # Before the roll (cut 1) the restored engine must know when the day ends; after it, that it has ended.
    assert snapshot["accounts"][0]["breaker"]["day_rolled"] is (cut > 1)
    assert [(e.state, e.cause, e.seq) for e in after if isinstance(e, BreakerEvent)] == [
        ("SAFE", "day_roll", 5)
    ]
