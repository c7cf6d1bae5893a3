"""The order gate's decision logic (riskcore.gate.GateCore), from a hand-built pushed view.

The view dict has the shape of ``supervisor.supervisor.Supervisor.gate_view()``. Time is an argument
(``now_ns``), so every staleness and order-rate boundary is hit exactly.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from riskcore.gate import GateCore, Order, Reason

MS = 1_000_000
S = 1_000_000_000
T0 = 1_700_000_000 * S
STALENESS_NS = 1000 * MS


# --------------------------------------------------------------------------- helpers


def account_view(**overrides: Any) -> dict[str, Any]:
    """Account ``A`` of portfolio ``desk``: equity 100k, 100 XYZ long (exposure 10k), no optional limits."""
    view = {
        "portfolio": "desk",
        "engaged": False,
        "reduce_only": True,
        "up": True,
        "equity": 100_000.0,
        "exposure": 10_000.0,
        "positions": {"XYZ": 100.0},
        "max_account_leverage": 5.0,
        "max_order_notional": None,
        "max_position_notional": None,
        "max_orders_per_second": None,
    }
    view.update(overrides)
    return view


def gate_view(
    accounts: dict[str, dict[str, Any]] | None = None,
    *,
    version: int = 1,
    global_engaged: bool = False,
    global_reduce_only: bool = True,
    portfolios: dict[str, tuple[bool, bool]] | None = None,
    marks: dict[str, float] | None = None,
    multipliers: dict[str, float] | None = None,
    price_bands: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    return {
        "version": version,
        "global_engaged": global_engaged,
        "global_reduce_only": global_reduce_only,
        "portfolios": {"desk": (False, True)} if portfolios is None else portfolios,
        "accounts": {"A": account_view()} if accounts is None else accounts,
        "marks": {"XYZ": 100.0, "GLD": 2000.0} if marks is None else marks,
        "multipliers": {"XYZ": 1.0, "GLD": 100.0} if multipliers is None else multipliers,
        "price_bands": {"XYZ": 0.01, "GLD": None} if price_bands is None else price_bands,
    }


def make_gate(view: dict[str, Any] | None = None, received_ns: int = T0) -> GateCore:
    gate = GateCore(STALENESS_NS)
    gate.update(gate_view() if view is None else view, received_ns)
    return gate


def buy(qty: float = 10.0, price: float = 100.0, symbol: str = "XYZ", account: str = "A") -> Order:
    return Order(account, symbol, qty, price)


# --------------------------------------------------------------------------- baseline


def test_gate_when_view_fresh_and_order_sane_allows_with_ok() -> None:
    decision = make_gate().check(buy(), T0)
    assert decision.allowed
    assert bool(decision)
    assert decision.reason is Reason.OK


def test_gate_when_update_installs_view_reports_its_version() -> None:
    gate = GateCore(STALENESS_NS)
    assert gate.version == -1
    gate.update(gate_view(version=7), T0)
    assert gate.version == 7


# --------------------------------------------------------------------------- unknown account, stale state


def test_gate_when_account_not_in_view_denies_unknown_account() -> None:
    decision = make_gate().check(buy(account="nobody"), T0)
    assert not decision.allowed
    assert decision.reason is Reason.UNKNOWN_ACCOUNT


def test_gate_when_view_older_than_bound_denies_stale_state() -> None:
    gate = make_gate()
    decision = gate.check(buy(), T0 + STALENESS_NS + 1)
    assert not decision.allowed
    assert decision.reason is Reason.STALE_STATE


def test_gate_when_view_exactly_at_staleness_bound_allows() -> None:
    assert make_gate().check(buy(), T0 + STALENESS_NS).reason is Reason.OK


def test_gate_when_view_never_received_denies() -> None:
    decision = GateCore(STALENESS_NS).check(buy(), T0)
    assert not decision.allowed  # fails closed whatever the code


def test_gate_when_view_never_received_denies_stale_state() -> None:
    decision = GateCore(STALENESS_NS).check(buy(), T0)
    assert decision.reason is Reason.STALE_STATE


def test_gate_when_received_time_unset_for_known_account_denies_stale_state() -> None:
    # The `received_ns is None` branch: a view is installed but its arrival time is unknown.
    gate = make_gate()
    gate.received_ns = None
    decision = gate.check(buy(), T0)
    assert not decision.allowed
    assert decision.reason is Reason.STALE_STATE


def test_gate_when_account_actor_down_denies_stale_state() -> None:
    gate = make_gate(gate_view({"A": account_view(up=False)}))
    decision = gate.check(buy(), T0)
    assert not decision.allowed
    assert decision.reason is Reason.STALE_STATE
    assert "down" in decision.detail


def test_gate_when_account_actor_down_denies_cancel_too() -> None:
    gate = make_gate(gate_view({"A": account_view(up=False)}))
    decision = gate.check(Order("A", "XYZ", 10.0, 100.0, cancel=True), T0)
    assert decision.reason is Reason.STALE_STATE


def test_gate_when_touched_after_view_stays_fresh_past_original_bound() -> None:
    gate = make_gate()
    now = T0 + STALENESS_NS + 500 * MS
    assert gate.check(buy(), now).reason is Reason.STALE_STATE
    gate.touch(T0 + 900 * MS)
    assert gate.check(buy(), now).reason is Reason.OK
    assert gate.check(buy(), T0 + 900 * MS + STALENESS_NS + 1).reason is Reason.STALE_STATE


# --------------------------------------------------------------------------- halts


@pytest.mark.parametrize(
    ("level", "expected"),
    [("global", Reason.GLOBAL_HALT), ("portfolio", Reason.PORTFOLIO_HALT), ("account", Reason.ACCOUNT_HALT)],
)
@pytest.mark.parametrize("qty", [-50.0, 10.0], ids=["reducing", "increasing"])
def test_gate_when_halted_without_reduce_only_denies_with_halt_level(
    level: str, expected: Reason, qty: float
) -> None:
    view = halted_view(level, reduce_only=False)
    decision = make_gate(view).check(buy(qty), T0)
    assert not decision.allowed
    assert decision.reason is expected


def halted_view(level: str, reduce_only: bool) -> dict[str, Any]:
    if level == "global":
        return gate_view(global_engaged=True, global_reduce_only=reduce_only)
    if level == "portfolio":
        return gate_view(portfolios={"desk": (True, reduce_only)})
    return gate_view({"A": account_view(engaged=True, reduce_only=reduce_only)})


@pytest.mark.parametrize("level", ["global", "portfolio", "account"])
@pytest.mark.parametrize(
    ("position", "qty"),
    [(100.0, 10.0), (100.0, -150.0), (-100.0, 150.0), (0.0, 5.0), (0.0, -5.0), (-100.0, -1.0)],
    ids=["long-grows", "long-flips", "short-flips", "flat-buy", "flat-sell", "short-grows"],
)
def test_gate_when_halted_reduce_only_and_order_not_reducing_denies_reduce_only(
    level: str, position: float, qty: float
) -> None:
    view = halted_view(level, reduce_only=True)
    view["accounts"]["A"]["positions"] = {"XYZ": position} if position else {}
    decision = make_gate(view).check(buy(qty), T0)
    assert not decision.allowed
    assert decision.reason is Reason.REDUCE_ONLY


@pytest.mark.parametrize("level", ["global", "portfolio", "account"])
@pytest.mark.parametrize(
    ("position", "qty"),
    [(100.0, -40.0), (100.0, -100.0), (-100.0, 40.0), (-100.0, 100.0)],
    ids=["long-partial", "long-to-flat", "short-partial", "short-to-flat"],
)
def test_gate_when_halted_reduce_only_and_order_reduces_allows_reduce_only_ok(
    level: str, position: float, qty: float
) -> None:
    view = halted_view(level, reduce_only=True)
    view["accounts"]["A"]["positions"] = {"XYZ": position}
    decision = make_gate(view).check(buy(qty), T0)
    assert decision.allowed
    assert decision.reason is Reason.REDUCE_ONLY_OK
    assert "engaged" in decision.detail


def test_gate_when_halted_reduce_only_and_reducing_order_outside_collar_denies_price_collar() -> None:
    view = halted_view("account", reduce_only=True)
    decision = make_gate(view).check(buy(-40.0, price=120.0), T0)
    assert decision.reason is Reason.PRICE_COLLAR


@pytest.mark.parametrize("level", ["global", "portfolio", "account"])
@pytest.mark.parametrize("reduce_only", [False, True])
def test_gate_when_cancel_while_halted_allows_cancel_ok(level: str, reduce_only: bool) -> None:
    gate = make_gate(halted_view(level, reduce_only))
    decision = gate.check(Order("A", "XYZ", 1e9, 100.0, cancel=True), T0)
    assert decision.allowed
    assert decision.reason is Reason.CANCEL_OK


def test_gate_when_global_portfolio_and_account_halted_reports_global_halt() -> None:
    view = gate_view(
        {"A": account_view(engaged=True, reduce_only=False)},
        global_engaged=True,
        global_reduce_only=False,
        portfolios={"desk": (True, False)},
    )
    assert make_gate(view).check(buy(), T0).reason is Reason.GLOBAL_HALT


def test_gate_when_portfolio_and_account_halted_reports_portfolio_halt() -> None:
    view = gate_view({"A": account_view(engaged=True, reduce_only=False)}, portfolios={"desk": (True, False)})
    assert make_gate(view).check(buy(), T0).reason is Reason.PORTFOLIO_HALT


def test_gate_when_other_portfolio_halted_allows() -> None:
    view = gate_view(portfolios={"desk": (False, True), "other": (True, False)})
    assert make_gate(view).check(buy(), T0).reason is Reason.OK


def test_gate_when_global_halt_reduce_only_and_account_halt_strict_denies_reducing_order() -> None:
    view = gate_view(
        {"A": account_view(engaged=True, reduce_only=False)},
        global_engaged=True,
        global_reduce_only=True,
    )
    decision = make_gate(view).check(buy(-40.0), T0)
    assert not decision.allowed


# --------------------------------------------------------------------------- order notional, collar, limits


def test_gate_when_order_notional_above_limit_denies_order_notional() -> None:
    gate = make_gate(gate_view({"A": account_view(max_order_notional=10_000.0)}))
    decision = gate.check(buy(100.5, price=100.0), T0)
    assert not decision.allowed
    assert decision.reason is Reason.ORDER_NOTIONAL


def test_gate_when_order_notional_exactly_at_limit_allows() -> None:
    gate = make_gate(gate_view({"A": account_view(max_order_notional=10_000.0)}))
    assert gate.check(buy(100.0, price=100.0), T0).reason is Reason.OK
    assert gate.check(buy(-100.0, price=100.0), T0).reason is Reason.OK


def test_gate_when_order_notional_counts_multiplier_denies_order_notional() -> None:
    # 1 lot of GLD at 2000 with multiplier 100 is 200k notional.
    gate = make_gate(gate_view({"A": account_view(max_order_notional=150_000.0)}))
    assert gate.check(buy(1.0, price=2000.0, symbol="GLD"), T0).reason is Reason.ORDER_NOTIONAL


@pytest.mark.parametrize("price", [101.0, 99.0, 100.0])
def test_gate_when_price_within_or_exactly_at_collar_allows(price: float) -> None:
    assert 0.01 * 100.0 == 1.0  # the band edge is exact in binary floating point
    assert make_gate().check(buy(price=price), T0).reason is Reason.OK


@pytest.mark.parametrize("price", [101.0001, 98.9999, 150.0, 1.0])
def test_gate_when_price_outside_collar_denies_price_collar(price: float) -> None:
    decision = make_gate().check(buy(price=price), T0)
    assert not decision.allowed
    assert decision.reason is Reason.PRICE_COLLAR


def test_gate_when_symbol_has_no_band_skips_collar() -> None:
    gate = make_gate(gate_view({"A": account_view(equity=10_000_000.0)}))
    assert gate.check(buy(1.0, price=5000.0, symbol="GLD"), T0).reason is Reason.OK


def test_gate_when_position_notional_above_limit_denies_position_limit() -> None:
    # 100 held + 401 bought = 501 * 100 = 50,100 > 50,000.
    gate = make_gate(gate_view({"A": account_view(max_position_notional=50_000.0)}))
    decision = gate.check(buy(401.0), T0)
    assert not decision.allowed
    assert decision.reason is Reason.POSITION_LIMIT


def test_gate_when_position_notional_exactly_at_limit_allows() -> None:
    gate = make_gate(gate_view({"A": account_view(max_position_notional=50_000.0)}))
    assert gate.check(buy(400.0), T0).reason is Reason.OK


def test_gate_when_position_flips_past_limit_denies_position_limit() -> None:
    # 100 long, sell 701: -601 * 100 = 60,100 > 50,000.
    gate = make_gate(gate_view({"A": account_view(max_position_notional=50_000.0)}))
    assert gate.check(buy(-701.0), T0).reason is Reason.POSITION_LIMIT


def test_gate_when_reducing_position_already_over_limit_allows() -> None:
    gate = make_gate(gate_view({"A": account_view(max_position_notional=5_000.0)}))  # 100 * 100 = 10k held
    assert gate.check(buy(-10.0), T0).reason is Reason.OK


def test_gate_when_projected_leverage_above_limit_denies_projected_leverage() -> None:
    # Equity 10k, 100 XYZ held (exposure 10k): buying 401 more makes 501 * 100 = 50.1k, leverage 5.01 > 5.
    gate = make_gate(gate_view({"A": account_view(equity=10_000.0)}))
    decision = gate.check(buy(401.0), T0)
    assert not decision.allowed
    assert decision.reason is Reason.PROJECTED_LEVERAGE
    assert "5.010" in decision.detail


def test_gate_when_projected_leverage_exactly_at_limit_allows() -> None:
    gate = make_gate(gate_view({"A": account_view(equity=10_000.0)}))
    assert gate.check(buy(400.0), T0).reason is Reason.OK


def test_gate_when_projected_leverage_counts_other_symbols_exposure_denies() -> None:
    # Exposure 40k, of which 10k is the 100 XYZ held: buying 100 more makes 40k - 10k + 20k = 50k,
    # leverage 5.0; one more share is over.
    view = gate_view({"A": account_view(equity=10_000.0, exposure=40_000.0)})
    gate = make_gate(view)
    assert gate.check(buy(100.0), T0).reason is Reason.OK
    assert gate.check(buy(101.0), T0).reason is Reason.PROJECTED_LEVERAGE


@pytest.mark.parametrize("equity", [0.0, -5_000.0])
def test_gate_when_equity_not_positive_denies_projected_leverage_inf(equity: float) -> None:
    gate = make_gate(gate_view({"A": account_view(equity=equity)}))
    decision = gate.check(buy(1.0), T0)
    assert not decision.allowed
    assert decision.reason is Reason.PROJECTED_LEVERAGE
    assert "inf" in decision.detail


def test_gate_when_equity_not_positive_still_allows_reducing_order() -> None:
    gate = make_gate(gate_view({"A": account_view(equity=-5_000.0)}))
    assert gate.check(buy(-50.0), T0).reason is Reason.OK


# --------------------------------------------------------------------------- order rate


def test_gate_when_order_rate_reached_within_one_second_denies_order_rate() -> None:
    gate = make_gate(gate_view({"A": account_view(max_orders_per_second=3)}))
    for k in range(3):
        assert gate.check(buy(), T0 + k * MS).reason is Reason.OK
    decision = gate.check(buy(), T0 + 3 * MS)
    assert not decision.allowed
    assert decision.reason is Reason.ORDER_RATE


def test_gate_when_order_rate_window_slides_with_now_allows_again() -> None:
    gate = make_gate(gate_view({"A": account_view(max_orders_per_second=3)}))
    for k in range(3):
        assert gate.check(buy(), T0 + k * MS).reason is Reason.OK
    assert gate.check(buy(), T0 + 999 * MS).reason is Reason.ORDER_RATE
    # The first order leaves the window exactly 1 s after it was sent; only then is one slot free.
    gate.touch(T0 + S)
    assert gate.check(buy(), T0 + S - 1).reason is Reason.ORDER_RATE
    assert gate.check(buy(), T0 + S).reason is Reason.OK
    assert gate.check(buy(), T0 + S + MS // 2).reason is Reason.ORDER_RATE
    assert gate.check(buy(), T0 + S + MS).reason is Reason.OK


def test_gate_when_order_denied_for_other_reason_does_not_count_toward_rate() -> None:
    gate = make_gate(gate_view({"A": account_view(max_orders_per_second=2, max_order_notional=5_000.0)}))
    for k in range(5):
        assert gate.check(buy(1000.0), T0 + k).reason is Reason.ORDER_NOTIONAL
    assert gate.check(buy(), T0 + 10).reason is Reason.OK
    assert gate.check(buy(), T0 + 11).reason is Reason.OK
    assert gate.check(buy(), T0 + 12).reason is Reason.ORDER_RATE


def test_gate_when_cancels_sent_do_not_count_toward_rate() -> None:
    gate = make_gate(gate_view({"A": account_view(max_orders_per_second=1)}))
    for k in range(5):
        assert gate.check(Order("A", "XYZ", 1.0, 100.0, cancel=True), T0 + k).reason is Reason.CANCEL_OK
    assert gate.check(buy(), T0 + 10).reason is Reason.OK


def test_gate_when_order_rate_is_per_account_other_account_unaffected() -> None:
    view = gate_view({"A": account_view(max_orders_per_second=1), "B": account_view(max_orders_per_second=1)})
    gate = make_gate(view)
    assert gate.check(buy(account="A"), T0).reason is Reason.OK
    assert gate.check(buy(account="A"), T0 + 1).reason is Reason.ORDER_RATE
    assert gate.check(buy(account="B"), T0 + 2).reason is Reason.OK


def test_gate_when_new_view_installed_keeps_order_rate_history() -> None:
    gate = make_gate(gate_view({"A": account_view(max_orders_per_second=2)}, version=1))
    assert gate.check(buy(), T0).reason is Reason.OK
    assert gate.check(buy(), T0 + MS).reason is Reason.OK
    gate.update(
        gate_view({"A": account_view(max_orders_per_second=2, equity=200_000.0)}, version=2), T0 + 2 * MS
    )
    assert gate.version == 2
    assert gate.check(buy(), T0 + 3 * MS).reason is Reason.ORDER_RATE
    assert gate.check(buy(), T0 + S).reason is Reason.OK


# --------------------------------------------------------------------------- unknown symbol, invalid order


def test_gate_when_symbol_unknown_denies_unknown_symbol() -> None:
    decision = make_gate().check(buy(symbol="NOPE"), T0)
    assert not decision.allowed
    assert decision.reason is Reason.UNKNOWN_SYMBOL


@pytest.mark.parametrize(
    ("qty", "price"),
    [
        (math.nan, 100.0),
        (math.inf, 100.0),
        (-math.inf, 100.0),
        (0.0, 100.0),
        (10.0, -1.0),
        (10.0, 0.0),
        (10.0, math.nan),
        (10.0, math.inf),
    ],
    ids=[
        "nan-qty",
        "inf-qty",
        "-inf-qty",
        "zero-qty",
        "negative-price",
        "zero-price",
        "nan-price",
        "inf-price",
    ],
)
def test_gate_when_order_malformed_denies_invalid_order(qty: float, price: float) -> None:
    decision = make_gate().check(buy(qty, price=price), T0)
    assert not decision.allowed
    assert decision.reason is Reason.INVALID_ORDER


def test_gate_when_malformed_order_while_halted_reduce_only_denies_invalid_order() -> None:
    # A NaN quantity must not slip through the reduce-only test either.
    gate = make_gate(halted_view("account", reduce_only=True))
    assert gate.check(buy(math.nan), T0).reason is Reason.INVALID_ORDER


# --------------------------------------------------------------------------- breaker tables


def breaker_table(
    version: int = 2,
    engaged: tuple[str, ...] = (),
    down: tuple[str, ...] = (),
    global_engaged: bool = False,
    portfolios: dict[str, bool] | None = None,
) -> dict[str, Any]:
    return {
        "version": version,
        "global_engaged": global_engaged,
        "portfolios": {"desk": False} if portfolios is None else portfolios,
        "engaged": list(engaged),
        "down": list(down),
    }


def test_gate_when_breaker_table_engages_account_denies_and_keeps_figures_and_flags() -> None:
    gate = make_gate(gate_view({"A": account_view(), "B": account_view()}))
    gate.update_breakers(breaker_table(engaged=("A",)), T0 + 1)
    assert gate.version == 2
    assert gate.received_ns == T0 + 1
    assert gate.check(buy(10.0), T0 + 1).reason is Reason.REDUCE_ONLY  # reduce-only kept from the whole view
    assert gate.check(buy(-50.0), T0 + 1).reason is Reason.REDUCE_ONLY_OK  # positions kept: 100 XYZ long
    assert gate.check(buy(10.0, account="B"), T0 + 1).allowed
    gate.update_breakers(breaker_table(version=3), T0 + 2)
    assert gate.check(buy(10.0), T0 + 2).allowed


def test_gate_when_breaker_table_marks_account_down_or_scope_engaged_denies() -> None:
    gate = make_gate(gate_view(portfolios={"desk": (False, False)}, global_reduce_only=False))
    gate.update_breakers(breaker_table(down=("A",)), T0)
    assert gate.check(buy(), T0).reason is Reason.STALE_STATE
    gate.update_breakers(breaker_table(version=3, portfolios={"desk": True}), T0)
    assert gate.check(buy(), T0).reason is Reason.PORTFOLIO_HALT  # not reduce-only: the whole view said so
    gate.update_breakers(breaker_table(version=4, global_engaged=True), T0)
    assert gate.check(buy(-10.0), T0).reason is Reason.GLOBAL_HALT


def test_gate_when_shard_reports_account_halted_denies_before_the_view_knows() -> None:
    gate = make_gate(gate_view({"A": account_view(), "B": account_view()}))
    gate.set_shard_halts(frozenset({"A"}))
    assert gate.check(buy(10.0), T0).reason is Reason.REDUCE_ONLY
    assert gate.check(buy(-10.0), T0).reason is Reason.REDUCE_ONLY_OK
    assert gate.check(buy(10.0, account="B"), T0).allowed
    assert [a for a, *_ in gate.halted_accounts()] == ["A"]
    gate.set_shard_halts(frozenset())
    assert gate.check(buy(10.0), T0).allowed
