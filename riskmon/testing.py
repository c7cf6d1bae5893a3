"""An order gate over a view you give it, without Ray: to test an order path against every decision.

A trading engine that embeds :class:`~driver.gate.OrderGate` asks ``gate.check(order)`` before each order
and acts on the :class:`~riskcore.gate.Decision`. :class:`ViewGate` has the same ``check(order)``, but its
view of breakers, figures, marks and limits is the one you set, and its clock moves only when you say, so
each :class:`~riskcore.gate.Reason` can be produced on purpose. Decisions are made by the very code the
live gate runs (:class:`riskcore.gate.GateCore`)::

    >>> from riskmon import Order, Reason, Scope, parse_config
    >>> from riskmon.testing import ViewGate
    >>> config = parse_config({
    ...     "symbols": {"EURUSD": {"price_band_pct": 0.05}},
    ...     "portfolios": {"desk": {}},
    ...     "accounts": [{"id": "A-1", "portfolio": "desk", "balance": 1_000_000,
    ...                   "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.10}}}],
    ... })
    >>> gate = ViewGate.from_config(config, marks={"EURUSD": 1.10})
    >>> gate.check(Order("A-1", "EURUSD", 100_000, 1.10)).reason
    <Reason.OK: 'OK'>
    >>> gate.engage(Scope.ACCOUNT, "A-1", reduce_only=False)
    >>> gate.check(Order("A-1", "EURUSD", 100_000, 1.10)).reason
    <Reason.ACCOUNT_HALT: 'ACCOUNT_HALT'>
    >>> gate.advance(2.0)  # past the config's gate.max_staleness_ms with no new view
    >>> gate.check(Order("A-1", "EURUSD", -100_000, 1.10)).reason
    <Reason.STALE_STATE: 'STALE_STATE'>
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from riskcore.clock import NS_PER_SECOND
from riskcore.config import GateConfig, RiskConfig
from riskcore.gate import Decision, GateCore, Order
from riskcore.messages import MESSAGE_VERSION, GateAccount, GateView
from riskcore.states import Scope

__all__ = ["ViewGate", "view_from_config"]


def view_from_config(config: RiskConfig, marks: Mapping[str, float] | None = None) -> GateView:
    """The view a gate gets for ``config`` with every breaker SAFE and every account up.

    Each account holds its configured positions at its balance's equity; its exposure is those positions'
    notional at their average price. ``marks`` are the mid prices the price collar is checked against (a
    symbol without a mark has no collar). The result is the supervisor's :class:`~riskcore.messages.GateView`,
    as :meth:`ViewGate.install` takes it; change it freely, or use :class:`ViewGate`'s methods.
    """
    accounts: dict[str, GateAccount] = {}
    for spec in config.accounts:
        limits = spec.limits
        accounts[spec.id] = {
            "portfolio": spec.portfolio,
            "engaged": False,
            "reduce_only": limits.reduce_only_when_halted,
            "up": True,
            "equity": spec.balance,
            "exposure": sum(abs(p.qty) * p.avg_price * config.symbols[p.symbol].multiplier
                            for p in spec.positions),
            "positions": {p.symbol: p.qty for p in spec.positions},
            "max_account_leverage": limits.max_account_leverage,
            "max_order_notional": limits.max_order_notional,
            "max_position_notional": limits.max_position_notional,
            "max_orders_per_second": limits.max_orders_per_second,
        }
    return {
        "schema": MESSAGE_VERSION,
        "version": 0,
        "figures_version": 0,
        "global_engaged": False,
        "global_reduce_only": config.firm.reduce_only_when_halted,
        "portfolios": {pid: (False, portfolio.limits.reduce_only_when_halted)
                       for pid, portfolio in config.portfolios.items()},
        "accounts": accounts,
        "marks": dict(marks or {}),
        "multipliers": {name: spec.multiplier for name, spec in config.symbols.items()},
        "price_bands": {name: spec.price_band_pct for name, spec in config.symbols.items()},
    }


class ViewGate:
    """``OrderGate.check`` over a view you set, with a clock you move; no supervisor, no Ray.

    Every change installs a new view version, received at the gate's current time, as a push from the
    supervisor would be; the per-account order-rate history carries over, as it does in a live gate.
    """

    def __init__(self, view: GateView, max_staleness_ms: float | None = None) -> None:
        """``max_staleness_ms`` is the config's ``gate.max_staleness_ms`` (its default when not given)."""
        staleness_ms = GateConfig().max_staleness_ms if max_staleness_ms is None else max_staleness_ms
        self.now_ns = 0
        self.core = GateCore(int(staleness_ms * 1_000_000))
        self.view: GateView = copy.deepcopy(view)
        self.core.update(self.view, self.now_ns)

    @classmethod
    def from_config(cls, config: RiskConfig, marks: Mapping[str, float] | None = None) -> ViewGate:
        """A gate over :func:`view_from_config`, with the config's staleness bound."""
        return cls(view_from_config(config, marks), config.gate.max_staleness_ms)

    def check(self, order: Order) -> Decision:
        """Allow or deny one order, as ``OrderGate.check`` does, at the gate's current time."""
        return self.core.check(order, self.now_ns)

    def advance(self, seconds: float) -> None:
        """Move the clock on without a new view: past the staleness bound every order is ``STALE_STATE``."""
        self.now_ns += round(seconds * NS_PER_SECOND)

    def install(self, view: GateView | None = None) -> None:
        """Install ``view`` (or the edited :attr:`view`) as the next version, received now."""
        if view is not None:
            self.view = copy.deepcopy(view)
        self.view["version"] += 1
        self.view["figures_version"] = self.view["version"]
        self.core.update(self.view, self.now_ns)

    def engage(self, scope: Scope, target: str = "", *, reduce_only: bool | None = None) -> None:
        """Engage the account's, the portfolio's or (``Scope.GLOBAL``) the firm's breaker.

        ``reduce_only`` overrides the config's ``reduce_only_when_halted`` for that breaker: with it on,
        orders that only reduce a position still pass.
        """
        self._set_breaker(scope, target, True, reduce_only)

    def release(self, scope: Scope, target: str = "") -> None:
        """Release a breaker :meth:`engage` engaged."""
        self._set_breaker(scope, target, False, None)

    def set_account(
        self,
        account: str,
        *,
        up: bool | None = None,
        equity: float | None = None,
        exposure: float | None = None,
        positions: Mapping[str, float] | None = None,
    ) -> None:
        """Change an account's figures as its shard would report them; ``up=False``: its actor is down."""
        view = self.view["accounts"][account]
        if up is not None:
            view["up"] = up
        if equity is not None:
            view["equity"] = equity
        if exposure is not None:
            view["exposure"] = exposure
        if positions is not None:
            view["positions"] = dict(positions)
        self.install()

    def set_mark(self, symbol: str, mid: float) -> None:
        """Set the mid price a symbol's price collar is checked against."""
        self.view["marks"][symbol] = mid
        self.install()

    def _set_breaker(self, scope: Scope, target: str, engaged: bool, reduce_only: bool | None) -> None:
        view = self.view
        if scope is Scope.GLOBAL:
            view["global_engaged"] = engaged
            if reduce_only is not None:
                view["global_reduce_only"] = reduce_only
        elif scope is Scope.PORTFOLIO:
            was_reduce_only = view["portfolios"][target][1]
            view["portfolios"][target] = (engaged, was_reduce_only if reduce_only is None else reduce_only)
        else:
            account = view["accounts"][target]
            account["engaged"] = engaged
            if reduce_only is not None:
                account["reduce_only"] = reduce_only
        self.install()
