"""Figures at their edges, the same in the reference engine, the batched engine and the compiled kernel.

Flat positions within rounding, drawdown from a day peak at or below zero, fee rebates, what ``total_pnl``
is beside the day's PnL for a position carried over the roll, breaker events as enums, and the marking rule.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import numpy as np
import pytest

from riskcore import kernel
from riskcore.account import FLAT_TOLERANCE, AccountState, fill_position, mark_price
from riskcore.clock import NS_PER_SECOND, TradingCalendar, parse_rfc3339
from riskcore.config import AccountLimits, BatchingConfig, RiskConfig, TradingDayConfig, parse_config
from riskcore.engine import BatchedEngine, EventBatch, ReferenceEngine
from riskcore.events import AccountEvent, AlertEvent, BreakerEvent, Cash, Event, Fill, Tick
from riskcore.ingest import FillScreen
from riskcore.states import BreakerState, EngageCause, ReleaseCause, Scope

S = NS_PER_SECOND
T0 = parse_rfc3339("2020-01-15T15:00:00.000000Z")  # 10:00 in New York, far from the 17:00 roll


def one_account(
    balance: float = 100_000.0, positions: dict[str, tuple[float, float]] | None = None, **limits: Any
) -> RiskConfig:
    """Account ``A`` holding ``positions`` (symbol -> (qty, avg_price)); XYZ has multiplier 10, ABC 1."""
    return parse_config(
        {
            "symbols": {"XYZ": {"multiplier": 10}, "ABC": {}},
            "portfolios": {"desk": {}},
            "accounts": [
                {
                    "id": "A",
                    "portfolio": "desk",
                    "balance": balance,
                    "limits": limits,
                    "positions": {s: {"qty": q, "avg_price": p} for s, (q, p) in (positions or {}).items()},
                }
            ],
        }
    )


def run_both(config: RiskConfig, events: list[Tick | AccountEvent]) -> tuple[list[Event], AccountState]:
    """``events`` one per batch through the reference engine, all in one batch through the batched engine
    (ticks through its kernel); asserts both give the same events and figures, and returns them."""
    ids = config.symbol_ids()
    reference = ReferenceEngine(config)
    expected = [e for event in events for e in reference.apply(EventBatch.from_events([event], ids))]
    batched = BatchedEngine(config)
    got = batched.apply(EventBatch.from_events(events, ids))
    assert got == expected
    assert batched.states() == reference.states()
    return got, reference.states()["A"]


def tick(bid: float, ask: float, ts_ns: int, seq: int, symbol: str = "XYZ") -> Tick:
    return Tick(symbol, bid, ask, ts_ns, "t", seq)


def fill(qty: float, price: float, ts_ns: int, seq: int, fee: float = 0.0, symbol: str = "ABC") -> Fill:
    return Fill("A", symbol, qty, price, ts_ns, fee=fee, fill_id=f"f{seq}", stream="f", seq=seq)


# --------------------------------------------------------------------------- flat within rounding


def test_fill_position_when_fills_net_to_zero_by_rounding_leaves_it_flat() -> None:
    qty, avg, _ = fill_position(0.1, 10.0, 0.2, 10.0, 1.0)
    assert qty + -0.3 != 0.0  # 0.1 + 0.2 - 0.3: 5.6e-17 in binary fractions

    qty, avg, realised = fill_position(qty, avg, -0.3, 12.0, 1.0)

    assert (qty, avg) == (0.0, 0.0)
    assert realised == pytest.approx(0.6)


def test_fill_position_when_flip_overshoots_by_rounding_leaves_it_flat() -> None:
    held = 0.1 + 0.2  # 0.30000000000000004

    assert fill_position(-0.3, 10.0, held, 9.0, 1.0)[:2] == (0.0, 0.0)


def test_fill_position_when_remainder_is_more_than_the_tolerance_keeps_it() -> None:
    remainder = 1_000_000.0 * FLAT_TOLERANCE * 4

    qty, avg, _ = fill_position(1_000_000.0 + remainder, 10.0, -1_000_000.0, 11.0, 1.0)

    assert qty == pytest.approx(remainder)
    assert avg == 10.0


def test_positions_when_fills_net_to_zero_by_rounding_count_it_flat_in_both_engines() -> None:
    config = one_account()
    events: list[Tick | AccountEvent] = [
        tick(20.0, 20.5, T0, 0, "ABC"),
        fill(0.1, 20.0, T0 + S, 1),
        fill(0.2, 20.0, T0 + 2 * S, 2),
        fill(-0.3, 20.0, T0 + 3 * S, 3),
        tick(21.0, 21.5, T0 + 4 * S, 4, "ABC"),
    ]

    _, state = run_both(config, events)

    assert state.positions == 0
    assert (state.open_pnl, state.total_exposure) == (0.0, 0.0)
    summary = BatchedEngine(config)
    summary.apply(EventBatch.from_events(events, config.symbol_ids()))
    assert summary.summary_columns().pos_qty.size == 0  # the supervisor's view has no position either


# --------------------------------------------------------------------------- drawdown from a peak <= 0


def test_drawdown_pct_when_day_peak_not_positive_is_zero_at_the_peak_and_infinite_below_it() -> None:
    # 1,000 XYZ (x10) bought at 10 on 100,000 of balance. Withdrawing 150,000 leaves balance, start-of-day
    # equity and day peak at -50,000: drawdown 0, drawdown_pct 0; leverage is inf (equity <= 0): CRITICAL.
    config = one_account(positions={"XYZ": (1_000.0, 10.0)}, kill_switch_mode="manual")
    withdrawal = Cash("A", -150_000.0, T0, "w1", "c", 0)
    events, state = run_both(config, [withdrawal])
    assert (state.day_peak, state.drawdown, state.drawdown_pct, state.leverage) == (
        -50_000.0,
        0.0,
        0.0,
        math.inf,
    )
    assert [(e.to_level, e.metric) for e in events if isinstance(e, AlertEvent)] == [("CRITICAL", "leverage")]

    # XYZ bid 9.9: open PnL -1,000, equity -51,000, 1,000 below a peak of -50,000: no fraction measures it.
    _, state = run_both(config, [withdrawal, tick(9.9, 10.0, T0 + S, 1)])

    assert (state.drawdown, state.drawdown_pct, state.alert_level) == (1_000.0, math.inf, "CRITICAL")


# --------------------------------------------------------------------------- rebates


def test_fill_screen_when_fee_negative_accepts_it_as_a_rebate() -> None:
    screen = FillScreen(["A"], {"ABC": 1})
    rebate = fill(100.0, 20.0, T0, 0, fee=-1.5)

    kept, _, refusals = screen.screen([rebate], [0])

    assert (kept, refusals) == ([rebate], [])


def test_rebate_when_fill_pays_negative_fee_raises_balance_and_daily_pnl_in_both_engines() -> None:
    config = one_account()
    events: list[Tick | AccountEvent] = [
        fill(100.0, 20.0, T0, 0, fee=-1.5),
        fill(-100.0, 21.0, T0 + S, 1, fee=-1.25),
    ]

    _, state = run_both(config, events)

    # +100 realised, +2.75 of rebates.
    assert (state.balance, state.closed_pnl, state.total_pnl) == (100_102.75, 102.75, 102.75)


# --------------------------------------------------------------------------- total_pnl over the roll


def test_total_pnl_when_position_carried_over_the_roll_exceeds_the_days_pnl_by_its_open_pnl_at_the_roll() -> (
    None
):
    config = one_account(positions={"XYZ": (100.0, 10.0)})
    roll = TradingCalendar("17:00", "America/New_York").next_roll_after(T0)
    events: list[Tick | AccountEvent] = [
        tick(11.0, 11.1, T0, 0),  # open PnL 100 * (11 - 10) * 10 = 1,000
        tick(11.0, 11.1, roll, 1),  # the roll: start-of-day equity 101,000, closed PnL 0
        tick(11.5, 11.6, roll + S, 2),  # open PnL 1,500
    ]

    _, state = run_both(config, events)

    assert state.total_pnl == state.closed_pnl + state.open_pnl == 1_500.0
    assert (
        state.equity - state.sod_equity == 500.0
    )  # the day's PnL: total_pnl less the 1,000 open at the roll


# --------------------------------------------------------------------------- breaker events as enums


def test_breaker_events_when_made_by_engines_and_commands_carry_enums_and_encode_as_plain_strings() -> None:
    config = one_account(positions={"XYZ": (1_000.0, 10.0)}, auto_reset=True, recovery_cooldown_seconds=0)
    events, _ = run_both(config, [tick(9.7, 9.8, T0, 0), tick(10.0, 10.1, T0 + S, 1)])
    engine = BatchedEngine(config)
    operator = engine.engage("A", T0, "alice", "review")
    released, _ = engine.reset("A", T0 + S, "alice", "clear")
    assert released is not None

    changes = [e for e in events if isinstance(e, BreakerEvent)] + [operator, released]

    assert [(e.scope, e.state, e.cause) for e in changes] == [
        (Scope.ACCOUNT, BreakerState.ENGAGED, EngageCause.LIMIT),
        (Scope.ACCOUNT, BreakerState.SAFE, ReleaseCause.AUTO_RESET),
        (Scope.ACCOUNT, BreakerState.ENGAGED, EngageCause.OPERATOR),
        (Scope.ACCOUNT, BreakerState.SAFE, ReleaseCause.RESET),
    ]
    for event in changes:
        plain = event.to_dict()
        assert all(type(plain[key]) is str for key in ("scope", "state", "cause"))
        assert json.loads(json.dumps(plain)) == plain
        fields = [
            event.scope,
            event.id,
            event.state,
            event.reason,
            event.cause,
            event.operator,
            event.stream,
            event.seq,
            event.ts_ns,
        ]
        decoded = BreakerEvent(*msgpack.unpackb(msgpack.packb(fields)))
        assert decoded == event
        assert (type(decoded.scope), type(decoded.state), type(decoded.cause)) == (
            Scope,
            BreakerState,
            type(event.cause),
        )


def test_breaker_event_when_cause_unknown_refuses() -> None:
    with pytest.raises(ValueError, match="'sometimes'"):
        BreakerEvent(Scope.ACCOUNT, "A", BreakerState.SAFE, "", "sometimes", "", "s", None, T0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the marking rule


@pytest.mark.parametrize(
    ("qty", "quoted", "expected"),
    [(5.0, True, 1.25), (-5.0, True, 1.5), (5.0, False, 1.0), (-5.0, False, 1.0)],
    ids=["long-at-bid", "short-at-ask", "long-unquoted-at-avg", "short-unquoted-at-avg"],
)
def test_mark_price_when_quoted_or_not_marks_long_at_bid_short_at_ask_else_avg(
    qty: float, quoted: bool, expected: float
) -> None:
    assert mark_price(qty, 1.0, 1.25, 1.5, quoted) == expected
    one = np.ones(1)
    assert kernel.mark_prices(qty * one, one, 1.25 * one, 1.5 * one, np.array([quoted])).tolist() == [
        expected
    ]


# --------------------------------------------------------------------------- config defaults


def test_parse_config_when_sections_absent_takes_the_dataclass_defaults() -> None:
    config = parse_config({})

    assert config.limits == AccountLimits()
    assert (config.batching, config.trading_day) == (BatchingConfig(), TradingDayConfig())
