"""The portfolio and firm limit policy, a pure function: breach -> engage, back within limits -> release."""

from __future__ import annotations

from riskcore.aggregate import Aggregate
from riskcore.clock import NS_PER_SECOND
from riskcore.config import AggregateLimits
from riskcore.policy import judge_limits, reset_refusal
from riskcore.states import Breaker, EngageCause, KillSwitchMode, Scope

LIMITS = AggregateLimits(max_daily_loss=1_000.0, max_gross_exposure=50_000.0, recovery_cooldown_seconds=30.0)
CALM = Aggregate("portfolio", "desk", gross_exposure=10_000.0, daily_pnl=-10.0)
LOSING = Aggregate("portfolio", "desk", gross_exposure=60_000.0, daily_pnl=-1_500.0)


def engaged_by_limit(at_ns: int) -> Breaker:
    breaker = Breaker(Scope.PORTFOLIO, "desk")
    breaker.engage(at_ns, EngageCause.LIMIT, "daily_loss 1500 beyond 1000", "limit", "daily_loss")
    return breaker


def test_policy_when_limits_first_breached_in_auto_mode_engages_for_the_first_breach() -> None:
    decision = judge_limits(LOSING, LIMITS, Breaker(Scope.PORTFOLIO, "desk"), frozenset(), 0)
    assert [b.metric for b in decision.breaches] == ["gross_exposure", "daily_loss"]  # check order
    assert decision.new == decision.breaches
    assert decision.engage is not None
    assert decision.engage.metric == "gross_exposure"
    assert not decision.release
    assert decision.in_breach == {"gross_exposure", "daily_loss"}


def test_policy_when_breach_already_in_force_it_is_not_new_and_an_engaged_breaker_stays() -> None:
    decision = judge_limits(LOSING, LIMITS, engaged_by_limit(0), frozenset({"gross_exposure"}), NS_PER_SECOND)
    assert [b.metric for b in decision.new] == ["daily_loss"]
    assert decision.engage is None  # engaged already
    assert not decision.release


def test_policy_when_kill_switch_manual_a_breach_is_only_reported() -> None:
    manual = AggregateLimits(max_daily_loss=1_000.0, kill_switch_mode=KillSwitchMode.MANUAL)
    decision = judge_limits(LOSING, manual, Breaker(Scope.PORTFOLIO, "desk"), frozenset(), 0)
    assert [b.metric for b in decision.new] == ["daily_loss"]
    assert decision.engage is None


def test_policy_when_back_within_limits_auto_reset_releases_only_after_the_cooldown() -> None:
    auto = AggregateLimits(max_daily_loss=1_000.0, recovery_cooldown_seconds=30.0, auto_reset=True)
    early = judge_limits(CALM, auto, engaged_by_limit(0), frozenset({"daily_loss"}), 29 * NS_PER_SECOND)
    late = judge_limits(CALM, auto, engaged_by_limit(0), frozenset({"daily_loss"}), 30 * NS_PER_SECOND)
    assert (early.release, late.release) == (False, True)
    assert late.breaches == ()
    assert late.in_breach == frozenset()
    no_auto = judge_limits(CALM, LIMITS, engaged_by_limit(0), frozenset(), 60 * NS_PER_SECOND)
    assert not no_auto.release  # auto_reset is off


def test_policy_when_an_operator_engaged_the_breaker_auto_reset_leaves_it() -> None:
    auto = AggregateLimits(max_daily_loss=1_000.0, recovery_cooldown_seconds=0.0, auto_reset=True)
    breaker = Breaker(Scope.PORTFOLIO, "desk")
    breaker.engage(0, EngageCause.OPERATOR, "desk review", "alice")
    assert not judge_limits(CALM, auto, breaker, frozenset(), 60 * NS_PER_SECOND).release


def test_policy_reset_refusal_when_cooling_down_or_still_breached_says_why() -> None:
    assert "cooldown" in str(reset_refusal(CALM, LIMITS, engaged_by_limit(0), 10 * NS_PER_SECOND))
    still = reset_refusal(LOSING, LIMITS, engaged_by_limit(0), 60 * NS_PER_SECOND)
    assert still == "hard limit still breached"
    assert reset_refusal(CALM, LIMITS, engaged_by_limit(0), 60 * NS_PER_SECOND) is None
    assert "not engaged" in str(reset_refusal(CALM, LIMITS, Breaker(Scope.PORTFOLIO, "desk"), 0))
