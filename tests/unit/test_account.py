"""Positions, marks, the DESIGN §1 figures, alert levels, breakers and the trading day, one event at a time.

Every expected number is worked out by hand in the test (or its comment) from the DESIGN §1 definitions.
"""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from riskcore.account import fill_position
from riskcore.clock import parse_rfc3339, rfc3339_us
from riskcore.config import RiskConfig, parse_config
from riskcore.engine import EventBatch, ReferenceEngine
from riskcore.errors import UnknownAccountError
from riskcore.events import AlertEvent, BreakerEvent, Cash, Event, Fill, Tick
from riskcore.states import BreakerState, EngageCause, ReleaseCause, Scope

S = 1_000_000_000  # ns per second
T0 = parse_rfc3339("2020-01-15T15:00:00.000000Z")  # 10:00 in New York, far from the 17:00 roll

# --------------------------------------------------------------------------- helpers


def make_config(
    balance: float = 100_000.0,
    positions: dict[str, tuple[float, float]] | None = None,
    **limits: Any,
) -> RiskConfig:
    """One account ``A`` in portfolio ``desk``; XYZ has multiplier 10, ABC multiplier 1."""
    if positions is None:
        positions = {"XYZ": (100.0, 50.0)}
    return parse_config(
        {
            "symbols": {"XYZ": {"multiplier": 10}, "ABC": {}},
            "portfolios": {"desk": {}},
            "accounts": [
                {
                    "id": "A",
                    "portfolio": "desk",
                    "balance": balance,
                    "positions": {
                        sym: {"qty": qty, "avg_price": avg} for sym, (qty, avg) in positions.items()
                    },
                    "limits": limits,
                }
            ],
        }
    )


class Desk:
    """A ReferenceEngine fed one event per batch, as the reference model defines it."""

    def __init__(self, config: RiskConfig) -> None:
        self.engine = ReferenceEngine(config)
        self.ids = config.symbol_ids()

    def tick(
        self, bid: float, ask: float | None = None, *, ts: int, seq: int, symbol: str = "XYZ"
    ) -> list[Event]:
        ask = bid + 1.0 if ask is None else ask  # a wide spread: marking a long at the ask would show
        return self.engine.apply(EventBatch.from_events([Tick(symbol, bid, ask, ts, "t", seq)], self.ids))

    def fill(
        self,
        qty: float,
        price: float,
        *,
        ts: int,
        seq: int,
        symbol: str = "XYZ",
        fee: float = 0.0,
        account: str = "A",
    ) -> list[Event]:
        event = Fill(account, symbol, qty, price, ts, fee=fee, stream="f", seq=seq)
        return self.engine.apply(EventBatch.from_events([event], self.ids))

    @property
    def state(self) -> Any:
        return self.engine.states()["A"]


def about(value: float) -> float:
    """Equal to any float within pytest's default tolerance of ``value``."""
    return cast(float, pytest.approx(value))


def breaker_event(event: Event) -> BreakerEvent:
    assert isinstance(event, BreakerEvent), event
    return event


def alerts(events: list[Event]) -> list[AlertEvent]:
    return [e for e in events if isinstance(e, AlertEvent)]


def breaker_events(events: list[Event]) -> list[BreakerEvent]:
    return [e for e in events if isinstance(e, BreakerEvent)]


# --------------------------------------------------------------------------- fill_position


def test_fill_position_when_flat_opens_at_fill_price() -> None:
    assert fill_position(0.0, 0.0, 10.0, 50.0, 1.0) == (10.0, 50.0, 0.0)
    assert fill_position(0.0, 0.0, -7.0, 12.5, 10.0) == (-7.0, 12.5, 0.0)


def test_fill_position_when_long_grows_moves_to_weighted_average() -> None:
    # (10 * 50 + 30 * 60) / 40 = 57.5
    assert fill_position(10.0, 50.0, 30.0, 60.0, 1.0) == (40.0, 57.5, 0.0)


def test_fill_position_when_short_grows_moves_to_weighted_average() -> None:
    # (10 * 50 + 30 * 40) / 40 = 42.5
    assert fill_position(-10.0, 50.0, -30.0, 40.0, 1.0) == (-40.0, 42.5, 0.0)


def test_fill_position_when_long_partially_reduced_realises_gain_and_keeps_average() -> None:
    # (60 - 57.5) * 10 * 1 * (+1) = 25
    assert fill_position(40.0, 57.5, -10.0, 60.0, 1.0) == (30.0, 57.5, 25.0)


def test_fill_position_when_long_partially_reduced_at_a_loss_realises_loss() -> None:
    # (55 - 57.5) * 10 * 1 * (+1) = -25
    assert fill_position(40.0, 57.5, -10.0, 55.0, 1.0) == (30.0, 57.5, -25.0)


def test_fill_position_when_short_partially_reduced_below_average_realises_gain() -> None:
    # (40 - 42.5) * 10 * 1 * (-1) = +25
    assert fill_position(-40.0, 42.5, 10.0, 40.0, 1.0) == (-30.0, 42.5, 25.0)


def test_fill_position_when_short_partially_reduced_above_average_realises_loss() -> None:
    # (45 - 42.5) * 10 * 1 * (-1) = -25
    assert fill_position(-40.0, 42.5, 10.0, 45.0, 1.0) == (-30.0, 42.5, -25.0)


def test_fill_position_when_exactly_closed_leaves_zero_quantity() -> None:
    qty, _avg, realised = fill_position(30.0, 57.5, -30.0, 50.0, 1.0)

    assert qty == 0.0
    assert realised == -225.0  # (50 - 57.5) * 30


def test_fill_position_when_closed_then_reopened_opens_at_new_price() -> None:
    qty, avg, _ = fill_position(30.0, 57.5, -30.0, 50.0, 1.0)

    assert fill_position(qty, avg, -5.0, 48.0, 1.0) == (-5.0, 48.0, 0.0)


def test_fill_position_when_long_flips_closes_old_side_and_opens_rest_at_fill_price() -> None:
    # closes 10 at (55 - 50) * 10 = 50, opens -15 at 55
    assert fill_position(10.0, 50.0, -25.0, 55.0, 1.0) == (-15.0, 55.0, 50.0)


def test_fill_position_when_short_flips_closes_old_side_and_opens_rest_at_fill_price() -> None:
    # closes 10 at (45 - 50) * 10 * (-1) = 50, opens +15 at 45
    assert fill_position(-10.0, 50.0, 25.0, 45.0, 1.0) == (15.0, 45.0, 50.0)


def test_fill_position_when_multiplier_scales_realised_pnl() -> None:
    # (4010 - 4000) * 1 * 50 = 500; a flip also realises with the multiplier: (3990 - 4000) * 2 * 50 = -1000
    assert fill_position(2.0, 4000.0, -1.0, 4010.0, 50.0) == (1.0, 4000.0, 500.0)
    assert fill_position(2.0, 4000.0, -3.0, 3990.0, 50.0) == (-1.0, 3990.0, -1000.0)


def test_fill_position_when_growing_ignores_multiplier_in_average() -> None:
    assert fill_position(1.0, 100.0, 1.0, 200.0, 100.0) == (2.0, 150.0, 0.0)


# --------------------------------------------------------------------------- marks and figures


def test_account_state_when_no_tick_yet_marks_at_avg_price() -> None:
    desk = Desk(make_config(positions={"XYZ": (100.0, 50.0), "ABC": (-200.0, 20.0)}))

    state = desk.state

    assert state.timestamp is None
    assert state.open_pnl == 0.0
    assert state.total_exposure == 54_000.0  # 100*50*10 + 200*20*1
    assert state.equity == 100_000.0
    assert state.leverage == 0.54
    assert state.positions == 2
    assert state.alert_level == "NORMAL"
    assert state.breaker == "SAFE"


def test_account_state_when_long_ticked_marks_at_bid() -> None:
    desk = Desk(make_config())

    desk.tick(49.5, 50.5, ts=T0, seq=1)
    state = desk.state

    assert state.open_pnl == -500.0  # 100 * (49.5 - 50) * 10
    assert state.total_exposure == 49_500.0  # 100 * 49.5 * 10
    assert state.equity == 99_500.0
    assert state.leverage == 49_500.0 / 99_500.0
    assert state.timestamp == "2020-01-15T15:00:00.000000Z"


def test_account_state_when_short_ticked_marks_at_ask() -> None:
    desk = Desk(make_config(positions={"XYZ": (-100.0, 50.0)}))

    desk.tick(49.0, 49.5, ts=T0, seq=1)
    state = desk.state

    assert state.open_pnl == 500.0  # -100 * (49.5 - 50) * 10
    assert state.total_exposure == 49_500.0  # 100 * 49.5 * 10
    assert state.equity == 100_500.0


def test_account_state_when_only_one_symbol_ticked_marks_other_at_avg_price() -> None:
    desk = Desk(make_config(positions={"XYZ": (100.0, 50.0), "ABC": (-200.0, 20.0)}))

    desk.tick(49.0, 49.5, ts=T0, seq=1)
    state = desk.state

    assert state.open_pnl == -1_000.0  # XYZ: 100 * (49 - 50) * 10; ABC untouched
    assert state.total_exposure == 53_000.0  # 49_000 + 200 * 20
    assert state.total_pnl == -1_000.0


def test_account_state_when_position_opened_by_fill_before_any_tick_marks_at_fill_price() -> None:
    desk = Desk(make_config(positions={}))

    desk.fill(100.0, 50.0, ts=T0, seq=1)
    state = desk.state

    assert state.open_pnl == 0.0
    assert state.total_exposure == 50_000.0
    assert state.positions == 1


def test_account_state_when_symbol_opened_after_market_ticked_starts_from_latest_mark() -> None:
    desk = Desk(make_config(positions={}))

    desk.tick(49.0, 51.0, ts=T0, seq=1)  # nobody holds XYZ yet: only the mark moves
    desk.fill(100.0, 50.0, ts=T0 + S, seq=2)
    state = desk.state

    assert state.open_pnl == -1_000.0  # long marked at bid 49: 100 * (49 - 50) * 10
    assert state.total_exposure == 49_000.0


def test_account_state_when_equity_rises_then_falls_measures_drawdown_from_day_peak() -> None:
    desk = Desk(make_config())

    desk.tick(51.0, ts=T0, seq=1)
    peak = desk.state
    desk.tick(50.5, ts=T0 + S, seq=2)
    state = desk.state

    assert peak.equity == 101_000.0
    assert peak.day_peak == 101_000.0
    assert peak.drawdown == 0.0
    assert state.open_pnl == 500.0
    assert state.equity == 100_500.0
    assert state.day_peak == 101_000.0
    assert state.drawdown == 500.0
    assert state.drawdown_pct == 500.0 / 101_000.0
    assert state.leverage == 50_500.0 / 100_500.0
    assert state.sod_equity == 100_000.0
    assert state.closed_pnl == 0.0
    assert state.total_pnl == 500.0


def test_account_state_when_equity_below_start_of_day_uses_start_as_peak() -> None:
    desk = Desk(make_config())

    desk.tick(49.5, ts=T0, seq=1)
    state = desk.state

    assert state.day_peak == 100_000.0
    assert state.drawdown == 500.0
    assert state.drawdown_pct == 0.005


@pytest.mark.parametrize(("bid", "equity"), [(49.0, 0.0), (48.0, -1_000.0)])
def test_account_state_when_equity_not_positive_reports_infinite_leverage(bid: float, equity: float) -> None:
    desk = Desk(make_config(balance=1_000.0))

    desk.tick(bid, ts=T0, seq=1)
    state = desk.state

    assert state.equity == equity
    assert math.isinf(state.leverage)
    assert state.leverage > 0
    assert state.to_dict()["leverage"] == "inf"
    assert state.alert_level == "CRITICAL"


def test_account_state_when_fills_pay_fees_reduces_balance_and_closed_pnl() -> None:
    desk = Desk(make_config(positions={}))

    desk.fill(10.0, 50.0, ts=T0, seq=1, fee=2.5)
    opened = desk.state
    desk.fill(-10.0, 51.0, ts=T0 + S, seq=2, fee=2.5)
    closed = desk.state

    assert opened.balance == 99_997.5
    assert opened.closed_pnl == -2.5
    assert opened.equity == 99_997.5
    # realised (51 - 50) * 10 * 10 = 100, minus two fees of 2.5
    assert closed.balance == 100_095.0
    assert closed.closed_pnl == 95.0
    assert closed.positions == 0
    assert closed.open_pnl == 0.0
    assert closed.total_exposure == 0.0


def test_account_state_when_partial_close_of_marked_position_realises_into_balance() -> None:
    desk = Desk(make_config())

    desk.tick(52.0, ts=T0, seq=1)
    desk.fill(-40.0, 53.0, ts=T0 + S, seq=2)  # realises (53 - 50) * 40 * 10 = 1200
    state = desk.state

    assert state.balance == 101_200.0
    assert state.closed_pnl == 1_200.0
    assert state.open_pnl == 1_200.0  # 60 * (52 - 50) * 10, still marked at the bid
    assert state.total_pnl == 2_400.0
    assert state.total_exposure == 31_200.0  # 60 * 52 * 10


def test_account_state_when_position_flips_marks_new_side_at_ask() -> None:
    desk = Desk(make_config())

    desk.tick(52.0, 52.5, ts=T0, seq=1)
    desk.fill(-150.0, 52.0, ts=T0 + S, seq=2)  # closes 100 for +2000, opens -50 at 52
    state = desk.state

    assert state.balance == 102_000.0
    assert state.open_pnl == -250.0  # -50 * (52.5 - 52) * 10
    assert state.total_exposure == 26_250.0  # 50 * 52.5 * 10


def test_engine_when_fill_names_unknown_account_raises() -> None:
    desk = Desk(make_config())

    with pytest.raises(UnknownAccountError):
        desk.fill(1.0, 50.0, ts=T0, seq=1, account="nobody")


# --------------------------------------------------------------------------- alert levels


def test_alert_level_when_drawdown_exactly_at_warning_stays_normal() -> None:
    desk = Desk(make_config())

    events = desk.tick(49.0, ts=T0, seq=1)  # drawdown 1000 / 100000 = 0.01, the warning itself

    assert desk.state.drawdown_pct == 0.01
    assert events == []
    assert desk.state.alert_level == "NORMAL"


def test_alert_level_when_drawdown_exactly_at_hard_limit_is_warning_not_critical() -> None:
    desk = Desk(make_config())

    events = desk.tick(48.0, ts=T0, seq=1)  # 2000 / 100000 = 0.02, the hard limit itself

    assert desk.state.drawdown_pct == 0.02
    assert [(e.to_level, e.metric, e.threshold) for e in alerts(events)] == [
        ("WARNING", "drawdown_pct", 0.01)
    ]
    assert breaker_events(events) == []
    assert desk.state.breaker == "SAFE"


def test_alert_level_when_leverage_exactly_at_hard_limit_is_warning_not_critical() -> None:
    desk = Desk(make_config(balance=10_000.0))  # exposure 50_000 / equity 10_000 = 5.0

    events = desk.tick(50.0, ts=T0, seq=1)

    assert desk.state.leverage == 5.0
    assert alerts(events) == [AlertEvent("A", "NORMAL", "WARNING", "leverage", 5.0, 3.0, "t", 1, T0)]
    assert desk.state.breaker == "SAFE"


def test_alert_level_when_leverage_just_above_hard_limit_engages_at_that_tick() -> None:
    desk = Desk(make_config(balance=10_000.0))
    desk.tick(50.0, ts=T0, seq=1)

    events = desk.tick(49.99, ts=T0 + S, seq=2)  # 49_990 / 9_990 > 5

    (alert,) = alerts(events)
    assert (alert.from_level, alert.to_level, alert.metric, alert.threshold) == (
        "WARNING",
        "CRITICAL",
        "leverage",
        5.0,
    )
    assert alert.value == about(49_990.0 / 9_990.0)
    assert (alert.stream, alert.seq, alert.ts_ns) == ("t", 2, T0 + S)
    (breaker,) = breaker_events(events)
    assert (breaker.state, breaker.cause, breaker.seq) == ("ENGAGED", "limit", 2)


def test_alert_level_when_drawdown_escalates_names_each_tick() -> None:
    desk = Desk(make_config())
    seen: list[Event] = []

    seen += desk.tick(49.5, ts=T0, seq=1)  # 0.005: NORMAL
    seen += desk.tick(48.9, ts=T0 + 1 * S, seq=2)  # 0.011: WARNING
    seen += desk.tick(48.5, ts=T0 + 2 * S, seq=3)  # 0.015: still WARNING
    seen += desk.tick(47.9, ts=T0 + 3 * S, seq=4)  # 0.021: CRITICAL

    assert seen == [
        AlertEvent("A", "NORMAL", "WARNING", "drawdown_pct", about(0.011), 0.01, "t", 2, T0 + 1 * S),
        AlertEvent("A", "WARNING", "CRITICAL", "drawdown_pct", about(0.021), 0.02, "t", 4, T0 + 3 * S),
        BreakerEvent(
            Scope.ACCOUNT,
            "A",
            BreakerState.ENGAGED,
            breaker_event(seen[-1]).reason,
            EngageCause.LIMIT,
            "",
            "t",
            4,
            T0 + 3 * S,
        ),
    ]
    assert "drawdown_pct" in breaker_event(seen[-1]).reason
    assert desk.state.breaker == "ENGAGED"


def test_alert_level_when_critical_on_both_metrics_names_drawdown_first() -> None:
    desk = Desk(make_config(balance=10_000.0))

    events = desk.tick(48.0, ts=T0, seq=1)  # dd 2000/10000 = 0.2, leverage 48000/8000 = 6

    (alert,) = alerts(events)
    assert (alert.to_level, alert.metric, alert.threshold) == ("CRITICAL", "drawdown_pct", 0.02)
    assert alert.value == about(0.2)


def test_alert_level_when_recovering_steps_down_against_the_right_thresholds() -> None:
    desk = Desk(make_config(kill_switch_mode="manual"))
    desk.tick(47.5, ts=T0, seq=1)  # 0.025: CRITICAL

    to_warning = desk.tick(48.5, ts=T0 + S, seq=2)  # 0.015
    to_normal = desk.tick(49.5, ts=T0 + 2 * S, seq=3)  # 0.005

    assert to_warning == [
        AlertEvent("A", "CRITICAL", "WARNING", "drawdown_pct", about(0.015), 0.01, "t", 2, T0 + S)
    ]
    assert to_normal == [
        AlertEvent("A", "WARNING", "NORMAL", "drawdown_pct", about(0.005), 0.01, "t", 3, T0 + 2 * S)
    ]


def test_alert_level_when_fill_breaches_names_the_fill() -> None:
    desk = Desk(make_config(balance=10_000.0, positions={}))

    at_limit = desk.fill(100.0, 50.0, ts=T0, seq=7)  # 50_000 / 10_000 = 5.0
    over = desk.fill(1.0, 50.0, ts=T0 + S, seq=8)  # 50_500 / 10_000

    assert at_limit == [AlertEvent("A", "NORMAL", "WARNING", "leverage", 5.0, 3.0, "f", 7, T0)]
    assert over[0] == AlertEvent("A", "WARNING", "CRITICAL", "leverage", 5.05, 5.0, "f", 8, T0 + S)
    engaged = breaker_event(over[1])
    assert (engaged.state, engaged.stream, engaged.seq, engaged.ts_ns) == ("ENGAGED", "f", 8, T0 + S)


# --------------------------------------------------------------------------- kill switch


def test_breaker_when_kill_switch_manual_alerts_but_stays_safe() -> None:
    desk = Desk(make_config(kill_switch_mode="manual"))

    events = desk.tick(47.5, ts=T0, seq=1)

    assert [e.to_level for e in alerts(events)] == ["CRITICAL"]
    assert breaker_events(events) == []
    assert desk.state.alert_level == "CRITICAL"
    assert desk.state.breaker == "SAFE"


def test_breaker_when_engaged_monitoring_continues() -> None:
    desk = Desk(make_config())
    desk.tick(47.5, ts=T0, seq=1)  # engages

    events = desk.tick(48.5, ts=T0 + S, seq=2)
    state = desk.state

    assert [(e.from_level, e.to_level, e.seq) for e in alerts(events)] == [("CRITICAL", "WARNING", 2)]
    assert breaker_events(events) == []  # auto_reset is off
    assert state.breaker == "ENGAGED"
    assert state.open_pnl == -1_500.0
    assert state.timestamp == rfc3339_us(T0 + S)


def test_breaker_when_still_critical_does_not_engage_twice() -> None:
    desk = Desk(make_config())
    desk.tick(47.5, ts=T0, seq=1)

    events = desk.tick(47.0, ts=T0 + S, seq=2)

    assert events == []
    assert desk.state.breaker == "ENGAGED"


# --------------------------------------------------------------------------- trading day


@pytest.mark.parametrize(
    ("date", "roll_utc"),
    [("2020-01-15", "22:00"), ("2020-07-15", "21:00")],  # 17:00 New York in EST and in EDT
)
def test_trading_day_when_first_event_at_roll_resets_start_of_day(date: str, roll_utc: str) -> None:
    roll = parse_rfc3339(f"{date}T{roll_utc}:00.000000Z")
    desk = Desk(make_config())
    desk.fill(-50.0, 52.0, ts=roll - 3 * 3600 * S, seq=1)  # realises (52 - 50) * 50 * 10 = 1000; 50 left
    desk.tick(51.0, ts=roll - 3600 * S, seq=2)  # equity 101_500: the day's peak
    desk.tick(50.0, ts=roll - 1_000, seq=3)  # one µs before the roll: equity 101_000
    before = desk.state

    desk.tick(49.0, ts=roll, seq=4)  # first event at the roll; equity 100_500 after it
    after = desk.state

    assert (before.sod_equity, before.day_peak, before.closed_pnl) == (100_000.0, 101_500.0, 1_000.0)
    assert before.drawdown == 500.0
    # the day rolls with the equity of the roll instant (101_000), then the tick applies
    assert after.sod_equity == 101_000.0
    assert after.day_peak == 101_000.0
    assert after.closed_pnl == 0.0
    assert after.equity == 100_500.0
    assert after.drawdown == 500.0
    assert after.total_pnl == -500.0
    assert after.balance == 101_000.0  # the roll resets daily figures, never cash


def test_trading_day_when_winter_tick_at_21_utc_does_not_roll() -> None:
    desk = Desk(make_config())
    desk.tick(51.0, ts=parse_rfc3339("2020-01-15T20:00:00Z"), seq=1)

    desk.tick(50.0, ts=parse_rfc3339("2020-01-15T21:30:00Z"), seq=2)  # 16:30 in New York

    assert desk.state.sod_equity == 100_000.0
    assert desk.state.day_peak == 101_000.0


def test_trading_day_when_gap_spans_days_rolls_at_next_event() -> None:
    desk = Desk(make_config())
    desk.tick(51.0, ts=parse_rfc3339("2020-01-15T20:00:00Z"), seq=1)

    desk.tick(50.5, ts=parse_rfc3339("2020-01-18T03:00:00Z"), seq=2)  # two rolls passed: the day starts anew

    assert desk.state.sod_equity == 101_000.0
    assert desk.state.day_peak == 101_000.0
    assert desk.state.drawdown == 500.0


def test_trading_day_when_release_on_day_roll_releases_drawdown_breaker_at_roll_event() -> None:
    roll = parse_rfc3339("2020-01-15T22:00:00Z")
    desk = Desk(make_config(release_on_day_roll=True, recovery_cooldown_seconds=60))
    engaged = desk.tick(47.5, ts=roll - 3600 * S, seq=1)  # 0.025: CRITICAL, engaged
    desk.tick(48.5, ts=roll - 1800 * S, seq=2)  # back to WARNING; no auto_reset

    events = desk.tick(48.5, ts=roll, seq=3)

    assert breaker_events(engaged)[0].state == "ENGAGED"
    assert desk.state.breaker == "SAFE"
    assert [(e.from_level, e.to_level, e.seq) for e in alerts(events)] == [("WARNING", "NORMAL", 3)]
    (release,) = breaker_events(events)
    assert (release.state, release.cause, release.stream, release.seq, release.ts_ns) == (
        "SAFE",
        "day_roll",
        "t",
        3,
        roll,
    )


def test_trading_day_when_roll_comes_within_cooldown_releases_drawdown_breaker_once_cooldown_ends() -> None:
    # Engaged 10 s before the roll with a 60 s cooldown: the roll itself may not release it, but the new
    # day's drawdown limit starts afresh, so the release is due as soon as the cooldown is over - not a day
    # later. (DESIGN §1: at the roll, breakers engaged by daily limits may auto-release; release only after
    # recovery_cooldown_seconds.)
    roll = parse_rfc3339("2020-01-15T22:00:00Z")
    desk = Desk(make_config(release_on_day_roll=True, recovery_cooldown_seconds=60, auto_reset=False))
    desk.tick(47.5, ts=roll - 10 * S, seq=1)  # 0.025: CRITICAL, engaged

    at_roll = desk.tick(48.5, ts=roll, seq=2)  # new day: drawdown 0, but 50 s of cooldown left
    after_cooldown = desk.tick(48.5, ts=roll + 50 * S, seq=3)
    hour_later = desk.tick(48.6, ts=roll + 3600 * S, seq=4)

    assert breaker_events(at_roll) == []
    assert desk.state.alert_level == "NORMAL"
    assert [(e.state, e.cause, e.seq) for e in breaker_events(after_cooldown + hour_later)] == [
        ("SAFE", "day_roll", 3)
    ]
    assert desk.state.breaker == "SAFE"


def test_trading_day_when_release_on_day_roll_off_keeps_breaker_engaged() -> None:
    roll = parse_rfc3339("2020-01-15T22:00:00Z")
    desk = Desk(make_config(release_on_day_roll=False, recovery_cooldown_seconds=60))
    desk.tick(47.5, ts=roll - 3600 * S, seq=1)
    desk.tick(48.5, ts=roll - 1800 * S, seq=2)

    events = desk.tick(48.5, ts=roll, seq=3)

    assert breaker_events(events) == []
    assert desk.state.breaker == "ENGAGED"
    assert desk.state.alert_level == "NORMAL"


def test_trading_day_when_breaker_engaged_by_leverage_roll_does_not_release_it() -> None:
    roll = parse_rfc3339("2020-01-15T22:00:00Z")
    desk = Desk(make_config(balance=10_000.0, release_on_day_roll=True, recovery_cooldown_seconds=0))
    engaged = desk.tick(49.9, ts=roll - 3600 * S, seq=1)  # leverage 49_900 / 9_900 > 5; drawdown exactly 0.01

    events = desk.tick(50.5, ts=roll, seq=2)  # leverage 50_500 / 10_500: WARNING

    assert breaker_events(engaged)[0].reason.startswith("leverage")
    assert [e.to_level for e in alerts(events)] == ["WARNING"]
    assert breaker_events(events) == []
    assert desk.state.breaker == "ENGAGED"


# --------------------------------------------------------------------------- auto reset


def test_auto_reset_when_cooldown_not_elapsed_keeps_breaker_engaged() -> None:
    desk = Desk(make_config(auto_reset=True, recovery_cooldown_seconds=30))
    desk.tick(47.5, ts=T0, seq=1)  # engaged at T0

    early = desk.tick(48.5, ts=T0 + 10 * S, seq=2)
    just_before = desk.tick(48.6, ts=T0 + 30 * S - 1, seq=3)
    released = desk.tick(48.6, ts=T0 + 30 * S, seq=4)

    assert breaker_events(early) == []
    assert breaker_events(just_before) == []
    assert released == [
        BreakerEvent(
            Scope.ACCOUNT,
            "A",
            BreakerState.SAFE,
            breaker_event(released[0]).reason,
            ReleaseCause.AUTO_RESET,
            "",
            "t",
            4,
            T0 + 30 * S,
        )
    ]
    assert desk.state.breaker == "SAFE"


def test_auto_reset_when_still_critical_after_cooldown_waits_for_recovery() -> None:
    desk = Desk(make_config(auto_reset=True, recovery_cooldown_seconds=30))
    desk.tick(47.5, ts=T0, seq=1)

    critical = desk.tick(47.6, ts=T0 + 40 * S, seq=2)  # 0.024: still CRITICAL
    breaker_while_critical = desk.state.breaker
    recovered = desk.tick(48.5, ts=T0 + 50 * S, seq=3)

    assert critical == []
    assert breaker_while_critical == "ENGAGED"
    assert desk.state.breaker == "SAFE"
    assert [(e.state, e.cause, e.seq) for e in breaker_events(recovered)] == [("SAFE", "auto_reset", 3)]
    # the alert comes before the breaker it explains
    assert [type(e).__name__ for e in recovered] == ["AlertEvent", "BreakerEvent"]


def test_auto_reset_when_breach_returns_reengages_at_that_tick() -> None:
    desk = Desk(make_config(auto_reset=True, recovery_cooldown_seconds=0))
    desk.tick(47.5, ts=T0, seq=1)
    desk.tick(48.5, ts=T0 + S, seq=2)  # released

    events = desk.tick(47.0, ts=T0 + 2 * S, seq=3)

    assert [(e.state, e.cause, e.seq) for e in breaker_events(events)] == [("ENGAGED", "limit", 3)]


def test_auto_reset_when_off_breaker_stays_engaged_after_recovery_and_cooldown() -> None:
    desk = Desk(make_config(auto_reset=False, recovery_cooldown_seconds=0))
    desk.tick(47.5, ts=T0, seq=1)

    events = desk.tick(49.5, ts=T0 + 3600 * S, seq=2)

    assert breaker_events(events) == []
    assert desk.state.breaker == "ENGAGED"


# --------------------------------------------------------------------------- operator commands


def test_operator_engage_when_safe_engages_with_reason() -> None:
    desk = Desk(make_config())

    event = desk.engine.engage("A", T0, "alice", "desk review")

    assert event == BreakerEvent(
        Scope.ACCOUNT,
        "A",
        BreakerState.ENGAGED,
        "desk review",
        EngageCause.OPERATOR,
        "alice",
        "operator",
        None,
        T0,
    )
    assert desk.state.breaker == "ENGAGED"


def test_operator_reset_when_cooldown_not_elapsed_is_refused_with_cooldown_reason() -> None:
    desk = Desk(make_config(recovery_cooldown_seconds=60))
    desk.engine.engage("A", T0, "alice", "desk review")

    event, refusal = desk.engine.reset("A", T0 + 59 * S, "alice", "all clear")

    assert event is None
    assert refusal is not None
    assert "cooldown" in refusal
    assert desk.state.breaker == "ENGAGED"


def test_operator_reset_when_cooldown_elapsed_releases() -> None:
    desk = Desk(make_config(recovery_cooldown_seconds=60))
    desk.engine.engage("A", T0, "alice", "desk review")

    event, refusal = desk.engine.reset("A", T0 + 60 * S, "bob", "all clear")

    assert refusal is None
    assert event == BreakerEvent(
        Scope.ACCOUNT,
        "A",
        BreakerState.SAFE,
        "all clear",
        ReleaseCause.RESET,
        "bob",
        "operator",
        None,
        T0 + 60 * S,
    )
    assert desk.state.breaker == "SAFE"


def test_operator_reset_when_limit_engaged_and_still_critical_is_refused() -> None:
    desk = Desk(make_config(recovery_cooldown_seconds=0))
    desk.tick(47.5, ts=T0, seq=1)

    event, refusal = desk.engine.reset("A", T0 + 3600 * S, "alice", "try")

    assert event is None
    assert refusal is not None
    assert "cooldown" not in refusal
    assert desk.state.breaker == "ENGAGED"


def test_operator_reset_when_limit_engaged_and_recovered_releases() -> None:
    desk = Desk(make_config(recovery_cooldown_seconds=30))
    desk.tick(47.5, ts=T0, seq=1)
    desk.tick(48.5, ts=T0 + 10 * S, seq=2)  # WARNING: back within the hard limit

    during_cooldown = desk.engine.reset("A", T0 + 20 * S, "alice", "try")
    after_cooldown = desk.engine.reset("A", T0 + 30 * S, "alice", "try")

    assert during_cooldown[0] is None
    assert "cooldown" in (during_cooldown[1] or "")
    assert after_cooldown[1] is None
    assert after_cooldown[0] is not None
    assert after_cooldown[0].state == "SAFE"
    assert desk.state.breaker == "SAFE"


def test_operator_reset_when_manual_mode_operator_engaged_while_critical_releases_after_cooldown() -> None:
    desk = Desk(make_config(kill_switch_mode="manual", recovery_cooldown_seconds=10))
    desk.tick(47.5, ts=T0, seq=1)  # CRITICAL, manual: no engage
    desk.engine.engage("A", T0 + S, "alice", "halting on the alert")

    event, refusal = desk.engine.reset("A", T0 + 11 * S, "alice", "accepting the risk")

    assert desk.state.alert_level == "CRITICAL"
    assert refusal is None
    assert event is not None
    assert event.state == "SAFE"


def test_operator_reset_when_breaker_safe_is_refused_not_raised() -> None:
    desk = Desk(make_config())

    event, refusal = desk.engine.reset("A", T0, "alice", "nothing to do")

    assert event is None
    assert refusal is not None
    assert "not engaged" in refusal


def test_operator_engage_when_unknown_account_raises() -> None:
    desk = Desk(make_config())

    with pytest.raises(UnknownAccountError):
        desk.engine.engage("nobody", T0, "alice", "typo")


def test_operator_engaged_breaker_when_auto_reset_and_day_roll_never_auto_releases() -> None:
    desk = Desk(make_config(auto_reset=True, release_on_day_roll=True, recovery_cooldown_seconds=0))
    desk.engine.engage("A", T0, "alice", "desk review")

    events = desk.tick(49.5, ts=T0 + S, seq=1)
    events += desk.tick(50.5, ts=T0 + 3600 * S, seq=2)
    events += desk.tick(50.5, ts=parse_rfc3339("2020-01-15T22:00:00Z"), seq=3)  # the roll

    assert breaker_events(events) == []
    assert desk.state.breaker == "ENGAGED"


def test_operator_engage_when_limit_engaged_takes_it_over_so_it_no_longer_auto_resets() -> None:
    desk = Desk(make_config(auto_reset=True, recovery_cooldown_seconds=0))
    desk.tick(47.5, ts=T0, seq=1)  # limit engagement
    desk.engine.engage("A", T0 + S, "alice", "keep it off")

    events = desk.tick(49.5, ts=T0 + 2 * S, seq=2)

    assert breaker_events(events) == []
    assert desk.state.breaker == "ENGAGED"


# --------------------------------------------------------------------------- cash movements


def cash(desk: Desk, amount: float, *, ts: int, seq: int) -> list[Event]:
    return desk.engine.apply(EventBatch.from_events([Cash("A", amount, ts, f"c{seq}", "c", seq)], desk.ids))


def test_cash_when_deposited_after_a_loss_moves_balance_but_not_daily_pnl_or_drawdown() -> None:
    desk = Desk(make_config())
    desk.tick(55.0, 56.0, ts=T0, seq=1)  # +5,000 open: the day peak is 105,000
    desk.tick(49.0, 50.0, ts=T0 + S, seq=2)  # -1,000 open: 6,000 below the peak
    before = desk.state
    cash(desk, 50_000.0, ts=T0 + 2 * S, seq=3)
    after = desk.state
    assert after.balance == before.balance + 50_000.0
    assert after.equity == before.equity + 50_000.0
    assert after.total_pnl == before.total_pnl == -1_000.0  # moving cash is not profit
    assert after.drawdown == before.drawdown == 6_000.0  # ... and not a recovery from the drawdown
    assert (after.sod_equity, after.day_peak) == (before.sod_equity + 50_000.0, before.day_peak + 50_000.0)
    assert after.leverage == after.total_exposure / after.equity < before.leverage


def test_cash_when_withdrawn_raises_leverage_and_can_engage_the_breaker_at_that_event() -> None:
    desk = Desk(make_config(max_account_leverage=2.0, leverage_warning=1.0))  # exposure 50,000 on 100,000
    desk.tick(50.0, 51.0, ts=T0, seq=1)
    assert desk.state.alert_level == "NORMAL"
    events = cash(desk, -80_000.0, ts=T0 + S, seq=2)  # equity 20,000: leverage 2.5
    assert [(e.to_level, e.metric) for e in alerts(events)] == [("CRITICAL", "leverage")]
    (engaged,) = breaker_events(events)
    assert (engaged.state, engaged.stream, engaged.seq) == ("ENGAGED", "c", 2)
    assert desk.state.drawdown == 0.0
    assert desk.state.leverage == 2.5


def test_cash_when_it_brings_a_new_trading_day_rolls_first_then_moves_the_new_day_figures() -> None:
    desk = Desk(make_config())
    desk.tick(49.0, 50.0, ts=T0, seq=1)  # -1,000 open
    next_day = parse_rfc3339("2020-01-16T15:00:00.000000Z")
    cash(desk, 10_000.0, ts=next_day, seq=2)
    state = desk.state
    assert state.sod_equity == 99_000.0 + 10_000.0
    assert state.day_peak == 109_000.0
    assert state.total_pnl == -1_000.0
