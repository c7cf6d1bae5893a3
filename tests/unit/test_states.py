"""Breaker transition table, picklable errors, RFC 3339 time and trading-day boundaries."""

from __future__ import annotations

import pickle

import pytest

from riskcore.clock import TradingCalendar, parse_rfc3339, rfc3339_us
from riskcore.errors import (
    ConfigError,
    InputError,
    RiskmonError,
    SnapshotError,
    TransitionError,
    UnknownAccountError,
)
from riskcore.states import (
    AlertLevel,
    Breaker,
    BreakerState,
    BreakerTrigger,
    EngageCause,
    KillSwitchMode,
    Scope,
    next_breaker_state,
)

S = 1_000_000_000


# --------------------------------------------------------------------------- breaker transitions


@pytest.mark.parametrize(
    ("state", "trigger", "expected"),
    [
        (BreakerState.SAFE, BreakerTrigger.ENGAGE, BreakerState.ENGAGED),
        (BreakerState.ENGAGED, BreakerTrigger.ENGAGE, BreakerState.ENGAGED),
        (BreakerState.ENGAGED, BreakerTrigger.RESET, BreakerState.SAFE),
    ],
)
def test_next_breaker_state_when_pair_in_table_returns_next_state(
    state: BreakerState, trigger: BreakerTrigger, expected: BreakerState
) -> None:
    assert next_breaker_state(state, trigger) is expected


def test_next_breaker_state_when_safe_reset_raises_naming_state_and_trigger() -> None:
    with pytest.raises(TransitionError) as info:
        next_breaker_state(BreakerState.SAFE, BreakerTrigger.RESET)

    assert info.value.machine == "breaker"
    assert info.value.state == "SAFE"
    assert info.value.trigger == "reset"
    assert "SAFE" in str(info.value)
    assert "reset" in str(info.value)


def test_breaker_when_safe_and_reset_raises_and_stays_safe() -> None:
    breaker = Breaker(Scope.ACCOUNT, "A")

    with pytest.raises(TransitionError) as info:
        breaker.reset()

    assert (info.value.state, info.value.trigger) == ("SAFE", "reset")
    assert breaker.state is BreakerState.SAFE


def test_breaker_when_engaged_then_reset_clears_cause_and_reason() -> None:
    breaker = Breaker(Scope.PORTFOLIO, "fx-desk")

    breaker.engage(5 * S, EngageCause.LIMIT, "gross exposure", "limit", "gross_exposure")
    engaged = breaker.snapshot()
    breaker.reset()

    assert engaged["state"] == "ENGAGED"
    assert engaged["cause"] == "limit"
    assert engaged["metric"] == "gross_exposure"
    assert engaged["engaged_at_ns"] == 5 * S
    assert breaker.state is BreakerState.SAFE
    assert breaker.cause is None
    assert breaker.reason == ""
    assert breaker.metric == ""


def test_breaker_when_operator_engages_engaged_breaker_takes_it_over_and_restarts_cooldown() -> None:
    breaker = Breaker(Scope.ACCOUNT, "A")
    breaker.engage(0, EngageCause.LIMIT, "drawdown", "limit", "drawdown_pct")

    breaker.engage(100 * S, EngageCause.OPERATOR, "hold", "alice")

    assert breaker.state is BreakerState.ENGAGED
    assert breaker.cause is EngageCause.OPERATOR
    assert breaker.engaged_by == "alice"
    assert breaker.cooldown_left_seconds(130 * S, 60.0) == 30.0


@pytest.mark.parametrize("engaged", [False, True])
def test_breaker_from_snapshot_when_given_its_snapshot_equals_the_breaker(engaged: bool) -> None:
    breaker = Breaker(Scope.ACCOUNT, "A")
    if engaged:
        breaker.engage(7 * S, EngageCause.LIMIT, "drawdown", "limit", "drawdown_pct")
        breaker.day_rolled = True

    restored = Breaker.from_snapshot(breaker.snapshot())

    assert restored == breaker
    assert type(restored.scope) is Scope
    assert type(restored.state) is BreakerState


def test_breaker_reset_refusal_when_cooldown_left_mentions_cooldown() -> None:
    breaker = Breaker(Scope.ACCOUNT, "A")
    breaker.engage(0, EngageCause.OPERATOR, "hold", "alice")

    refusal = breaker.reset_refusal(59 * S, 60.0, still_breached=False, mode=KillSwitchMode.AUTO)

    assert refusal is not None
    assert "cooldown" in refusal
    assert breaker.reset_refusal(60 * S, 60.0, still_breached=False, mode=KillSwitchMode.AUTO) is None


def test_breaker_reset_refusal_when_limit_engaged_and_still_breached_refuses_in_both_modes() -> None:
    breaker = Breaker(Scope.ACCOUNT, "A")
    breaker.engage(0, EngageCause.LIMIT, "drawdown", "limit", "drawdown_pct")

    for mode in KillSwitchMode:
        assert breaker.reset_refusal(3600 * S, 0.0, still_breached=True, mode=mode) is not None
    assert breaker.reset_refusal(3600 * S, 0.0, still_breached=False, mode=KillSwitchMode.AUTO) is None


def test_alert_level_when_ranked_orders_normal_warning_critical() -> None:
    assert [level.rank for level in AlertLevel] == [0, 1, 2]
    assert [AlertLevel.from_rank(rank) for rank in (0, 1, 2)] == [
        AlertLevel.NORMAL,
        AlertLevel.WARNING,
        AlertLevel.CRITICAL,
    ]
    assert str(AlertLevel.CRITICAL) == "CRITICAL"


# --------------------------------------------------------------------------- errors pickle


def test_transition_error_when_pickled_keeps_fields_and_message() -> None:
    error = TransitionError("breaker", "SAFE", "reset")

    restored = pickle.loads(pickle.dumps(error))

    assert type(restored) is TransitionError
    assert (restored.machine, restored.state, restored.trigger) == ("breaker", "SAFE", "reset")
    assert str(restored) == str(error)


def test_transition_error_when_raised_by_breaker_pickles() -> None:
    with pytest.raises(TransitionError) as info:
        Breaker(Scope.GLOBAL, "firm").reset()

    restored = pickle.loads(pickle.dumps(info.value))

    assert (restored.state, restored.trigger) == ("SAFE", "reset")


@pytest.mark.parametrize(
    ("error", "fields"),
    [
        (RiskmonError("plain"), {}),
        (
            ConfigError("accounts[3].limits.max_daily_drawdown", "must be in (0, 1]"),
            {"path": "accounts[3].limits.max_daily_drawdown", "message": "must be in (0, 1]"},
        ),
        (ConfigError("", "cannot read /nowhere"), {"path": "", "message": "cannot read /nowhere"}),
        (
            InputError("crossed_quote", "bid 2 above ask 1"),
            {"code": "crossed_quote", "message": "bid 2 above ask 1"},
        ),
        (
            TransitionError("breaker", "SAFE", "reset"),
            {"machine": "breaker", "state": "SAFE", "trigger": "reset"},
        ),
        (UnknownAccountError("ACC-404"), {"account": "ACC-404"}),
        (SnapshotError("snapshot has version 2"), {"message": "snapshot has version 2"}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_riskmon_errors_when_pickled_round_trip(error: RiskmonError, fields: dict[str, str]) -> None:
    restored = pickle.loads(pickle.dumps(error))

    assert type(restored) is type(error)
    assert isinstance(restored, RiskmonError)
    assert restored.args == error.args
    assert str(restored) == str(error)
    for name, value in fields.items():
        assert getattr(restored, name) == value


def test_riskmon_errors_when_listed_all_derive_from_base() -> None:
    for cls in (ConfigError, InputError, SnapshotError, TransitionError, UnknownAccountError):
        assert issubclass(cls, RiskmonError)
    assert issubclass(RiskmonError, Exception)


def test_config_error_when_path_given_prefixes_message_with_path() -> None:
    assert str(ConfigError("limits.max_drawdown", "unknown key")) == "limits.max_drawdown: unknown key"
    assert str(ConfigError("", "file missing")) == "file missing"


# --------------------------------------------------------------------------- RFC 3339


@pytest.mark.parametrize(
    "text",
    [
        "2020-01-01T22:00:00.065000Z",
        "2020-03-08T06:59:59.123456Z",
        "2020-11-01T05:30:00.000001Z",
        "1999-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00.000000Z",
    ],
)
def test_rfc3339_us_when_parsed_text_formatted_again_round_trips(text: str) -> None:
    assert rfc3339_us(parse_rfc3339(text)) == text


def test_parse_rfc3339_when_text_has_microseconds_returns_exact_ns() -> None:
    assert parse_rfc3339("1970-01-01T00:00:01.000001Z") == 1_000_001_000
    assert parse_rfc3339("2020-01-01T00:00:00Z") == 1_577_836_800 * S


def test_parse_rfc3339_when_text_has_offset_converts_to_utc() -> None:
    assert parse_rfc3339("2020-01-15T17:00:00.000001-05:00") == parse_rfc3339("2020-01-15T22:00:00.000001Z")


def test_parse_rfc3339_when_text_has_no_offset_raises() -> None:
    with pytest.raises(ValueError, match="has no UTC offset"):
        parse_rfc3339("2020-01-15T17:00:00")


def test_rfc3339_us_when_ns_below_a_microsecond_truncates() -> None:
    base = parse_rfc3339("2020-01-15T22:00:00.000001Z")

    assert rfc3339_us(base + 999) == "2020-01-15T22:00:00.000001Z"


def test_rfc3339_us_when_before_epoch_formats_the_earlier_instant() -> None:
    assert rfc3339_us(-1_000) == "1969-12-31T23:59:59.999999Z"
    assert parse_rfc3339("1969-12-31T23:59:59.999999Z") == -1_000


# --------------------------------------------------------------------------- trading calendar


NY = TradingCalendar("17:00", "America/New_York")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # winter: 17:00 EST = 22:00 UTC
        ("2020-03-06T12:00:00Z", "2020-03-06T22:00:00Z"),
        # strictly after: at the roll itself, the next one
        ("2020-03-06T22:00:00Z", "2020-03-07T22:00:00Z"),
        # DST starts 2020-03-08 02:00 local: Sunday's roll is 17:00 EDT = 21:00 UTC
        ("2020-03-07T22:00:00Z", "2020-03-08T21:00:00Z"),
        ("2020-03-08T06:30:00Z", "2020-03-08T21:00:00Z"),
        ("2020-03-08T21:00:00Z", "2020-03-09T21:00:00Z"),
        # DST ends 2020-11-01 02:00 local: Saturday is still EDT, Sunday's roll is 17:00 EST = 22:00 UTC
        ("2020-10-31T12:00:00Z", "2020-10-31T21:00:00Z"),
        ("2020-10-31T21:00:00Z", "2020-11-01T22:00:00Z"),
        ("2020-11-01T05:30:00Z", "2020-11-01T22:00:00Z"),  # 01:30 local, the hour that happens twice
        ("2020-11-01T21:30:00Z", "2020-11-01T22:00:00Z"),  # past 17:00 EDT, before 17:00 EST
        # summer: 17:00 EDT = 21:00 UTC
        ("2020-07-15T20:59:59.999999Z", "2020-07-15T21:00:00Z"),
        # late in the UTC day, already the next New York evening's roll
        ("2020-01-15T23:30:00Z", "2020-01-16T22:00:00Z"),
    ],
)
def test_next_roll_after_when_around_dst_changes_follows_new_york_wall_clock(now: str, expected: str) -> None:
    assert NY.next_roll_after(parse_rfc3339(now)) == parse_rfc3339(expected)


def test_next_roll_after_when_one_ns_before_roll_returns_that_roll() -> None:
    roll = parse_rfc3339("2020-01-15T22:00:00Z")

    assert NY.next_roll_after(roll - 1) == roll
    assert NY.next_roll_after(roll) == roll + 24 * 3600 * S


def test_next_roll_after_when_other_zone_and_time_uses_them() -> None:
    tokyo_midnight = TradingCalendar("00:00", "Asia/Tokyo")  # UTC+9, no DST

    assert tokyo_midnight.next_roll_after(parse_rfc3339("2020-07-15T10:00:00Z")) == parse_rfc3339(
        "2020-07-15T15:00:00Z"
    )


def test_next_roll_after_when_stepping_through_a_dst_week_gives_one_roll_per_day() -> None:
    ts = parse_rfc3339("2020-03-05T12:00:00Z")
    rolls = []
    for _ in range(7):
        ts = NY.next_roll_after(ts)
        rolls.append(rfc3339_us(ts))

    assert rolls == [
        "2020-03-05T22:00:00.000000Z",
        "2020-03-06T22:00:00.000000Z",
        "2020-03-07T22:00:00.000000Z",
        "2020-03-08T21:00:00.000000Z",
        "2020-03-09T21:00:00.000000Z",
        "2020-03-10T21:00:00.000000Z",
        "2020-03-11T21:00:00.000000Z",
    ]
