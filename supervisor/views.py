"""What the supervisor shows: the gates' view and breaker table, and the account table (``riskmon status``).

Plain functions of the supervisor's parts; nothing here changes them.
"""

from __future__ import annotations

from riskcore.aggregate import Aggregator
from riskcore.config import RiskConfig
from riskcore.messages import MESSAGE_VERSION, AccountRow, BreakerTable, GateAccount, GateView
from riskcore.states import AlertLevel
from supervisor.account_breakers import AccountBreakerTable
from supervisor.upper import UpperBreakers


def breaker_table(version: int, upper: UpperBreakers, accounts: AccountBreakerTable,
                  up: dict[str, bool]) -> BreakerTable:
    return {
        "schema": MESSAGE_VERSION,
        "version": version,
        "global_engaged": upper.global_breaker.engaged,
        "portfolios": {pid: b.engaged for pid, b in upper.portfolio_breakers.items()},
        "engaged": accounts.engaged_accounts(),
        "down": [a for a, is_up in up.items() if not is_up],
    }


def gate_view(version: int, figures_version: int, config: RiskConfig, aggregator: Aggregator,
              upper: UpperBreakers, accounts: AccountBreakerTable, up: dict[str, bool],
              mids: dict[str, float]) -> GateView:
    """Every account's figures as of its last report (its config balance before one), limits and breakers."""
    agg = aggregator
    equity, exposure = agg.equity.tolist(), agg.exposure.tolist()
    rows: dict[str, GateAccount] = {}
    for index, spec in enumerate(config.accounts):
        account, limits, reported = spec.id, spec.limits, bool(agg.has[index])
        rows[account] = {
            "portfolio": spec.portfolio,
            "engaged": accounts.engaged(account),
            "reduce_only": limits.reduce_only_when_halted,
            "up": up[account],
            "equity": equity[index] if reported else spec.balance,
            "exposure": exposure[index] if reported else 0.0,
            "positions": agg.positions(account) if reported else {},
            "max_account_leverage": limits.max_account_leverage,
            "max_order_notional": limits.max_order_notional,
            "max_position_notional": limits.max_position_notional,
            "max_orders_per_second": limits.max_orders_per_second,
        }
    return {
        "schema": MESSAGE_VERSION,
        "version": version,
        "figures_version": figures_version,
        "global_engaged": upper.global_breaker.engaged,
        "global_reduce_only": config.firm.reduce_only_when_halted,
        "portfolios": {pid: (b.engaged, config.portfolios[pid].limits.reduce_only_when_halted)
                       for pid, b in upper.portfolio_breakers.items()},
        "accounts": rows,
        "marks": dict(mids),
        "multipliers": {name: spec.multiplier for name, spec in config.symbols.items()},
        "price_bands": {name: spec.price_band_pct for name, spec in config.symbols.items()},
    }


def accounts_view(config: RiskConfig, aggregator: Aggregator, accounts: AccountBreakerTable,
                  up: dict[str, bool]) -> dict[str, AccountRow]:
    """Every account's figures as of its last report, its breaker and liveness."""
    agg = aggregator
    equity, sod, exposure = agg.equity.tolist(), agg.sod_equity.tolist(), agg.exposure.tolist()
    rank = agg.rank.tolist()
    return {
        spec.id: {"portfolio": spec.portfolio, "reported": bool(agg.has[i]), "equity": equity[i],
                  "daily_pnl": equity[i] - sod[i], "exposure": exposure[i],
                  "alert_level": str(AlertLevel.from_rank(rank[i])),
                  "breaker": accounts.state(spec.id), "up": up[spec.id]}
        for i, spec in enumerate(config.accounts)
    }
