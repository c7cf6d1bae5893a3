"""The batched engine equals the one-event-at-a-time reference engine (DESIGN §1).

The stream of ticks and fills (:mod:`tests.property.streams`) is split into random batches; both engines
get the same batches, and after every batch the alert/breaker events, every account's state, every
breaker and the engines' snapshots must be identical — equal, not close. Operator engage/reset commands
between batches go to both engines too.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, target

from riskcore.clock import parse_rfc3339
from riskcore.engine import BatchedEngine, EventBatch, ReferenceEngine
from riskcore.events import AlertEvent, BreakerEvent, Cash, Event, Fill, Tick
from tests.property.streams import HOUR, S, Scenario, breakers, one_account_scenario, scenarios

# --------------------------------------------------------------------------- running both engines


def run_both(scenario: Scenario) -> list[Event]:
    """Apply the scenario to both engines, asserting equality after every batch; the reference's events."""
    config = scenario.config
    symbol_ids = config.symbol_ids()
    reference = ReferenceEngine(config)
    batched = BatchedEngine(config)
    published: list[Event] = []
    if scenario.publish:
        batched.on_breaker = published.append
    operator_after = scenario.operator_after()
    all_events: list[Event] = []
    for number, (start, end) in enumerate(scenario.batches):
        chunk = scenario.events[start:end]
        expected = reference.apply(EventBatch.from_events(chunk, symbol_ids))
        actual = batched.apply(EventBatch.from_events(chunk, symbol_ids))
        assert actual == expected, f"events differ in batch {number} (events {start}..{end})"
        if scenario.publish:
            # Every breaker change was published during the batch, in the order the batch made them.
            assert published == [e for e in actual if isinstance(e, BreakerEvent)], (
                f"published in batch {number}"
            )
            published.clear()
        assert batched.states() == reference.states(), (
            f"states differ after batch {number} (events {start}..{end})"
        )
        assert breakers(batched) == breakers(reference), f"breakers differ after batch {number}"
        # The whole state, down to slots, ranks, the next day roll and the marks.
        assert batched.snapshot() == reference.snapshot(), f"snapshots differ after batch {number}"
        all_events.extend(expected)
        now_ns = chunk[-1].ts_ns
        for step in operator_after.get(number, ()):
            assert step.apply(batched, now_ns) == step.apply(reference, now_ns)
            assert breakers(batched) == breakers(reference), f"breakers differ after operator {step}"
    return all_events


def tally(events: list[Event]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for event in events:
        if isinstance(event, AlertEvent):
            counts[f"alert:{event.to_level}"] += 1
            counts[f"alert:{event.from_level}->{event.to_level}"] += 1
        else:
            counts[f"breaker:{event.state}:{event.cause}"] += 1
    return counts


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(scenarios())
def test_batched_engine_when_fed_any_batching_of_a_stream_equals_reference_engine(scenario: Scenario) -> None:
    events = run_both(scenario)

    counts = tally(events)
    # Steer generation towards streams that breach, engage and release: the interesting cases.
    target(float(counts["alert:CRITICAL"]), label="critical alerts")
    target(
        float(counts["breaker:ENGAGED:limit"] + counts["breaker:SAFE:auto_reset"]), label="breaker changes"
    )


# --------------------------------------------------------------------------- edges the generator rarely hits


@pytest.mark.parametrize("sizes", [[4], [1, 3], [2, 2], [3, 1], [1, 1, 1, 1]])
def test_batched_engine_when_auto_reset_due_exactly_at_cooldown_end_equals_reference(
    sizes: list[int],
) -> None:
    t0 = parse_rfc3339("2020-01-15T15:00:00Z")
    events: list[Tick | Fill] = [
        Tick("S0", 97.5, 97.6, t0, "t", 1),  # drawdown 0.025: engaged
        Tick("S0", 98.5, 98.6, t0, "t", 2),  # same instant: back to WARNING, cooldown not over
        Tick("S0", 98.5, 98.6, t0 + S, "t", 3),  # exactly 1 s later: released here, not later
        Tick("S0", 98.6, 98.7, t0 + 2 * S, "t", 4),
    ]
    scenario = one_account_scenario({"auto_reset": True, "recovery_cooldown_seconds": 1}, events, sizes)

    released = [e for e in run_both(scenario) if isinstance(e, BreakerEvent) and e.state == "SAFE"]

    assert [(e.cause, e.seq) for e in released] == [("auto_reset", 3)]


@pytest.mark.parametrize("sizes", [[5], [2, 3], [3, 2], [4, 1]])
def test_batched_engine_when_tick_lands_exactly_on_roll_inside_a_batch_equals_reference(
    sizes: list[int],
) -> None:
    roll = parse_rfc3339("2020-07-15T21:00:00Z")  # 17:00 EDT
    events: list[Tick | Fill] = [
        Tick("S0", 97.5, 97.6, roll - HOUR, "t", 1),  # engaged by drawdown
        Tick("S0", 98.5, 98.6, roll - 2 * S, "t", 2),  # WARNING, still engaged
        Tick("S0", 98.4, 98.5, roll - 1, "t", 3),  # 1 ns before the roll: same day
        Tick("S0", 98.4, 98.5, roll, "t", 4),  # the roll: new day, released
        Fill("A0", "S1", 10.0, 50.0, roll, stream="f", seq=5),
    ]
    scenario = one_account_scenario(
        {"release_on_day_roll": True, "recovery_cooldown_seconds": 30}, events, sizes
    )

    released = [e for e in run_both(scenario) if isinstance(e, BreakerEvent) and e.state == "SAFE"]

    assert [(e.cause, e.seq) for e in released] == [("day_roll", 4)]


@pytest.mark.parametrize("sizes", [[3], [1, 2], [2, 1]])
def test_batched_engine_when_first_event_sits_exactly_on_a_roll_equals_reference(sizes: list[int]) -> None:
    roll = parse_rfc3339("2020-01-15T22:00:00Z")
    events: list[Tick | Fill] = [
        Tick("S0", 100.5, 100.6, roll, "t", 1),  # first event, on the roll: the day starts here
        Tick("S0", 101.0, 101.1, roll + S, "t", 2),  # same trading day: no roll
        Tick("S0", 100.0, 100.1, roll + HOUR, "t", 3),
    ]
    scenario = one_account_scenario({}, events, sizes)

    run_both(scenario)

    state = ReferenceEngine(scenario.config)
    state.apply(EventBatch.from_events(events, scenario.config.symbol_ids()))
    assert state.states()["A0"].sod_equity == 100_000.0  # never rolled
    assert state.states()["A0"].day_peak == 101_000.0


@pytest.mark.parametrize("sizes", [[4], [1, 3], [2, 2], [3, 1]])
def test_batched_engine_when_leverage_breaker_meets_day_roll_equals_reference(sizes: list[int]) -> None:
    roll = parse_rfc3339("2020-01-15T22:00:00Z")
    events: list[Tick | Fill] = [
        Fill("A0", "S0", 400.0, 100.0, roll - 2 * HOUR, stream="f", seq=1),  # 1400 held: leverage 1.4
        Tick("S0", 98.2, 98.3, roll - HOUR, "t", 2),  # leverage 137_480 / 97_480 > 1.41, drawdown 0.025
        Tick("S0", 100.0, 100.1, roll - 60 * S, "t", 3),  # leverage 1.4: WARNING, still engaged
        Tick("S0", 100.0, 100.1, roll, "t", 4),  # the roll: a leverage breaker is not a daily limit
    ]
    limits = {
        "max_account_leverage": 1.41,
        "leverage_warning": 1.3,
        "max_daily_drawdown": 0.05,
        "drawdown_warning": 0.03,
        "release_on_day_roll": True,
        "recovery_cooldown_seconds": 0,
    }
    scenario = one_account_scenario(limits, events, sizes)

    breaker_changes = [e for e in run_both(scenario) if isinstance(e, BreakerEvent)]

    assert [(e.state, e.seq) for e in breaker_changes] == [("ENGAGED", 2)]
    assert breaker_changes[0].reason.startswith("leverage")


# --------------------------------------------------------------------------- the property is not vacuous


def test_scenario_generator_when_sampled_produces_breaches_engagements_and_releases() -> None:
    """Over a fixed (derandomized) set of examples, the generator must reach every interesting path."""
    seen: list[Counter[str]] = []
    multi_event_batches_with_fills = 0
    with_cash = 0

    @settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenarios())
    def sample(scenario: Scenario) -> None:
        nonlocal multi_event_batches_with_fills, with_cash
        with_cash += any(isinstance(e, Cash) for e in scenario.events)
        reference = ReferenceEngine(scenario.config)
        symbol_ids = scenario.config.symbol_ids()
        events: list[Event] = []
        for start, end in scenario.batches:
            chunk = scenario.events[start:end]
            events += reference.apply(EventBatch.from_events(chunk, symbol_ids))
            if end - start > 1 and any(isinstance(e, Fill) for e in chunk[1:]):
                multi_event_batches_with_fills += 1
        seen.append(tally(events))

    sample()

    def examples_with(key: str) -> int:
        return sum(1 for counts in seen if counts[key])

    assert len(seen) >= 100
    # Thresholds sit at about half of what this generator gives; of 150 examples: 121 reach CRITICAL,
    # 85 engage a breaker, 95 escalate WARNING -> CRITICAL, 41 auto-reset and 18 release at a day roll.
    assert examples_with("alert:CRITICAL") >= len(seen) // 2, "too few examples reach CRITICAL"
    assert examples_with("breaker:ENGAGED:limit") >= len(seen) // 3, "too few examples engage a breaker"
    assert examples_with("alert:WARNING") >= len(seen) // 3
    assert examples_with("alert:WARNING->CRITICAL") >= len(seen) // 4, (
        "breaches should build up, not only start"
    )
    assert examples_with("alert:NORMAL") >= len(seen) // 4, "too few examples recover"
    assert examples_with("breaker:SAFE:auto_reset") >= 15, "auto_reset releases are rarely generated"
    assert examples_with("breaker:SAFE:day_roll") >= 6, "day-roll releases are rarely generated"
    assert multi_event_batches_with_fills >= len(seen) // 4
    assert with_cash >= len(seen) // 4, "too few examples move cash"
