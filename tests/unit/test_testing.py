"""riskmon.testing: a gate over a given view reaches every decision reason, without Ray."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import pytest

import riskmon.testing
from riskmon import Decision, Order, Reason, Scope, parse_config
from riskmon.testing import ViewGate, view_from_config

CONFIG = parse_config({
    "symbols": {"EURUSD": {"price_band_pct": 0.05}, "GBPUSD": {}},
    "portfolios": {"desk": {}},
    "gate": {"max_staleness_ms": 500},
    "accounts": [{
        "id": "A-1", "portfolio": "desk", "balance": 1_000_000,
        "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.10}},
        "limits": {"max_order_notional": 5_000_000, "max_position_notional": 4_000_000,
                   "max_orders_per_second": 3},
    }],
})
MARKS = {"EURUSD": 1.10}


def buy(qty: float = 100_000, price: float = 1.10, account: str = "A-1", symbol: str = "EURUSD") -> Order:
    return Order(account, symbol, qty, price)


def halted(scope: Scope, target: str, order: Order, reduce_only: bool) -> Callable[[ViewGate], Decision]:
    def decide(gate: ViewGate) -> Decision:
        gate.engage(scope, target, reduce_only=reduce_only)
        return gate.check(order)

    return decide


def after_rate_limit(gate: ViewGate) -> Decision:
    for _ in range(3):  # max_orders_per_second
        assert gate.check(buy()).allowed
    return gate.check(buy())


def on_thin_equity(gate: ViewGate) -> Decision:
    gate.set_account("A-1", equity=300_000)  # 1.1M exposure, then 2.2M on 0.3M: leverage 7.3 > 5
    return gate.check(buy(1_000_000))


def after_staleness_bound(gate: ViewGate) -> Decision:
    gate.advance(0.501)
    return gate.check(buy())


# One way to each reason; a Reason added to riskcore.gate without a way here fails the test below.
WAYS: dict[Reason, Callable[[ViewGate], Decision]] = {
    Reason.OK: lambda gate: gate.check(buy()),
    Reason.REDUCE_ONLY_OK: halted(Scope.ACCOUNT, "A-1", buy(-500_000), reduce_only=True),
    Reason.CANCEL_OK: lambda gate: gate.check(Order("A-1", "EURUSD", 0.0, 0.0, cancel=True)),
    Reason.GLOBAL_HALT: halted(Scope.GLOBAL, "", buy(), reduce_only=False),
    Reason.PORTFOLIO_HALT: halted(Scope.PORTFOLIO, "desk", buy(), reduce_only=False),
    Reason.ACCOUNT_HALT: halted(Scope.ACCOUNT, "A-1", buy(), reduce_only=False),
    Reason.REDUCE_ONLY: halted(Scope.PORTFOLIO, "desk", buy(), reduce_only=True),
    Reason.STALE_STATE: after_staleness_bound,
    Reason.ORDER_NOTIONAL: lambda gate: gate.check(buy(5_000_000)),  # 5.5M > 5M
    Reason.PRICE_COLLAR: lambda gate: gate.check(buy(price=1.20)),  # 9 % off the mid, band 5 %
    Reason.POSITION_LIMIT: lambda gate: gate.check(buy(3_000_000)),  # 4M at 1.10 > 4M
    Reason.PROJECTED_LEVERAGE: on_thin_equity,
    Reason.ORDER_RATE: after_rate_limit,
    Reason.UNKNOWN_ACCOUNT: lambda gate: gate.check(buy(account="ghost")),
    Reason.UNKNOWN_SYMBOL: lambda gate: gate.check(buy(symbol="XAUUSD")),
    Reason.INVALID_ORDER: lambda gate: gate.check(buy(qty=0.0)),
}


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_view_gate_when_view_set_for_a_reason_decides_with_that_reason(reason: Reason) -> None:
    gate = ViewGate.from_config(CONFIG, marks=MARKS)

    decision = WAYS[reason](gate)

    assert decision.reason is reason
    assert decision.allowed is (reason in {Reason.OK, Reason.REDUCE_ONLY_OK, Reason.CANCEL_OK})


def test_view_gate_when_account_actor_down_denies_stale_state_and_when_back_allows() -> None:
    gate = ViewGate.from_config(CONFIG, marks=MARKS)
    gate.set_account("A-1", up=False)
    assert gate.check(buy()).reason is Reason.STALE_STATE
    gate.set_account("A-1", up=True)
    assert gate.check(buy()).reason is Reason.OK


def test_view_gate_when_breaker_released_allows_again() -> None:
    gate = ViewGate.from_config(CONFIG, marks=MARKS)
    gate.engage(Scope.GLOBAL, reduce_only=False)
    assert gate.check(buy()).reason is Reason.GLOBAL_HALT
    gate.release(Scope.GLOBAL)
    assert gate.check(buy()).reason is Reason.OK


def test_view_gate_when_mark_moves_checks_the_collar_around_the_new_mark() -> None:
    gate = ViewGate.from_config(CONFIG, marks=MARKS)
    gate.set_mark("EURUSD", 1.20)
    assert gate.check(buy(price=1.20)).reason is Reason.OK
    assert gate.check(buy(price=1.10)).reason is Reason.PRICE_COLLAR


def test_view_gate_when_new_view_installed_counts_versions_and_restarts_staleness() -> None:
    gate = ViewGate.from_config(CONFIG, marks=MARKS)
    gate.advance(0.4)
    view = view_from_config(CONFIG)  # no marks: no collar
    gate.install(view)
    gate.advance(0.4)  # 0.8 s since the first view, 0.4 s since this one
    assert gate.core.version == 1
    assert gate.check(buy(price=1.20)).reason is Reason.OK


def test_view_from_config_when_account_holds_positions_gives_their_notional_as_exposure() -> None:
    account = view_from_config(CONFIG)["accounts"]["A-1"]
    assert (account["equity"], account["exposure"]) == (1_000_000, 1_100_000)
    assert account["positions"] == {"EURUSD": 1_000_000}
    assert (account["engaged"], account["up"], account["reduce_only"]) == (False, True, True)


def test_testing_module_when_its_docstring_example_runs_every_line_passes() -> None:
    result = doctest.testmod(riskmon.testing)
    assert result.attempted >= 8
    assert result.failed == 0
