"""The order gate's decision logic: a pure function of an order, a pushed view and the time.

A trading engine asks :meth:`GateCore.check` before every order. It reads only
local state — the versioned view of breakers, positions and marks the
supervisor last pushed — and fails closed: an unknown account, a view older
than ``max_staleness_ms`` or an account whose actor is down is a denial.
A denial is a value with a reason code, never an exception.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    OK = "OK"
    REDUCE_ONLY_OK = "REDUCE_ONLY_OK"  # allowed while halted: it only reduces a position
    CANCEL_OK = "CANCEL_OK"
    GLOBAL_HALT = "GLOBAL_HALT"
    PORTFOLIO_HALT = "PORTFOLIO_HALT"
    ACCOUNT_HALT = "ACCOUNT_HALT"
    REDUCE_ONLY = "REDUCE_ONLY"  # halted with reduce-only on, and this order does not reduce
    STALE_STATE = "STALE_STATE"
    ORDER_NOTIONAL = "ORDER_NOTIONAL"
    PRICE_COLLAR = "PRICE_COLLAR"
    POSITION_LIMIT = "POSITION_LIMIT"
    PROJECTED_LEVERAGE = "PROJECTED_LEVERAGE"
    ORDER_RATE = "ORDER_RATE"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INVALID_ORDER = "INVALID_ORDER"


@dataclass(frozen=True, slots=True)
class Order:
    """``qty`` is signed (buy > 0). ``cancel=True`` asks to cancel a resting order."""

    account: str
    symbol: str
    qty: float
    price: float
    cancel: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    detail: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True, Reason.OK)
ALLOW_CANCEL = Decision(True, Reason.CANCEL_OK)


@dataclass(slots=True)
class AccountView:
    portfolio: str
    engaged: bool
    reduce_only: bool
    up: bool
    equity: float
    exposure: float
    positions: dict[str, float]
    max_account_leverage: float
    max_order_notional: float | None
    max_position_notional: float | None
    max_orders_per_second: int | None
    recent_orders: deque[int] = field(default_factory=deque)


def _reduces(position: float, qty: float) -> bool:
    """True when the order only moves the position toward zero (never across it)."""
    return (position > 0.0 and -position <= qty < 0.0) or (position < 0.0 and 0.0 < qty <= -position)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    figures_version: int
    global_halt: tuple[bool, bool]
    portfolios: Mapping[str, tuple[bool, bool]]
    accounts: Mapping[str, AccountView]
    marks: Mapping[str, float]
    multipliers: Mapping[str, float]
    bands: Mapping[str, float | None]


_EMPTY = _Snapshot(-1, -1, (False, False), {}, {}, {}, {}, {})


class GateCore:
    """Decisions from the last pushed view.

    A pushed view is installed by swapping one reference, so a check running on
    another thread sees either the old view or the new one, never a mix.
    """

    def __init__(self, max_staleness_ns: int) -> None:
        self.max_staleness_ns = max_staleness_ns
        self.received_ns: int | None = None
        self._snap = _EMPTY
        # Accounts whose shard said their breaker engaged (sooner than the supervisor's view can): deny-only.
        self.shard_halts: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        return self._snap.version

    @property
    def figures_version(self) -> int:
        """Which published figures the installed view holds (the supervisor's count)."""
        return self._snap.figures_version

    def update(self, view: Mapping[str, Any], received_ns: int) -> None:
        """Install a pushed view (``Supervisor.gate_view()`` form), keeping per-account order-rate history."""
        old_accounts = self._snap.accounts
        accounts: dict[str, AccountView] = {}
        for account_id, raw in view["accounts"].items():
            old = old_accounts.get(account_id)
            accounts[account_id] = AccountView(
                portfolio=raw["portfolio"], engaged=raw["engaged"], reduce_only=raw["reduce_only"],
                up=raw["up"], equity=raw["equity"], exposure=raw["exposure"],
                positions=dict(raw["positions"]), max_account_leverage=raw["max_account_leverage"],
                max_order_notional=raw["max_order_notional"],
                max_position_notional=raw["max_position_notional"],
                max_orders_per_second=raw["max_orders_per_second"],
                recent_orders=old.recent_orders if old is not None else deque(),
            )
        self._snap = _Snapshot(
            version=view["version"],
            figures_version=view.get("figures_version", view["version"]),
            global_halt=(bool(view["global_engaged"]), bool(view["global_reduce_only"])),
            portfolios={k: (bool(v[0]), bool(v[1])) for k, v in view["portfolios"].items()},
            accounts=accounts,
            marks=dict(view["marks"]),
            multipliers=dict(view["multipliers"]),
            bands=dict(view["price_bands"]),
        )
        self.received_ns = received_ns

    def update_breakers(self, table: Mapping[str, Any], received_ns: int) -> None:
        """Install a pushed breaker table (``Supervisor.breaker_table()`` form) over the current view.

        Breaker states and liveness change; every other figure stays as the last whole view gave it. Accounts
        whose state did not change keep their view object, so this costs little beyond the changed accounts.
        """
        snap = self._snap
        engaged, down = set(table["engaged"]), set(table["down"])
        accounts = dict(snap.accounts)
        for account_id, view in snap.accounts.items():
            now_engaged, now_up = account_id in engaged, account_id not in down
            if view.engaged != now_engaged or view.up != now_up:
                accounts[account_id] = replace(view, engaged=now_engaged, up=now_up)
        self._snap = replace(
            snap, version=table["version"], global_halt=(bool(table["global_engaged"]), snap.global_halt[1]),
            portfolios={
                k: (bool(v), snap.portfolios.get(k, (False, True))[1]) for k, v in table["portfolios"].items()
            },
            accounts=accounts,
        )
        self.received_ns = received_ns

    def set_shard_halts(self, accounts: frozenset[str]) -> None:
        """Install the engaged accounts the shards reported. Staleness does not apply: they only deny."""
        self.shard_halts = accounts

    def halted_accounts(self) -> list[tuple[str, str, float]]:
        """Accounts whose own breaker is engaged, each with a symbol and a quantity that would add risk."""
        snap = self._snap
        out = []
        shard_halts = self.shard_halts
        for account_id, view in snap.accounts.items():
            if view.engaged or account_id in shard_halts:
                symbol, position = next(iter(view.positions.items()), (next(iter(snap.multipliers), ""), 0.0))
                out.append((account_id, symbol, 1.0 if position >= 0.0 else -1.0))
        return out

    def touch(self, received_ns: int) -> None:
        """The supervisor confirmed the view is still current (a long-poll heartbeat)."""
        self.received_ns = received_ns

    def check(self, order: Order, now_ns: int) -> Decision:
        snap = self._snap
        # Staleness first: a view that never arrived, or is too old, may not know the account yet.
        received_ns = self.received_ns
        if received_ns is None or now_ns - received_ns > self.max_staleness_ns:
            return Decision(False, Reason.STALE_STATE, "breaker view older than the staleness bound")
        account = snap.accounts.get(order.account)
        if account is None:
            return Decision(False, Reason.UNKNOWN_ACCOUNT, f"unknown account {order.account!r}")
        if not account.up:
            return Decision(False, Reason.STALE_STATE, f"account {order.account} actor is down")
        if order.cancel:
            return ALLOW_CANCEL  # a cancel never adds risk
        multiplier = snap.multipliers.get(order.symbol)
        if multiplier is None:
            return Decision(False, Reason.UNKNOWN_SYMBOL, f"unknown symbol {order.symbol!r}")
        qty, price = order.qty, order.price
        if not (math.isfinite(qty) and math.isfinite(price)) or qty == 0.0 or price <= 0.0:
            return Decision(
                False, Reason.INVALID_ORDER, "quantity must be non-zero and price positive and finite"
            )
        position = account.positions.get(order.symbol, 0.0)
        reducing = _reduces(position, qty)

        # Every engaged breaker above the account must let the order through; the widest one names the denial.
        halts = []
        if snap.global_halt[0]:
            halts.append((Reason.GLOBAL_HALT, snap.global_halt[1], "global breaker engaged"))
        portfolio = snap.portfolios.get(account.portfolio)
        if portfolio is not None and portfolio[0]:
            halts.append(
                (Reason.PORTFOLIO_HALT, portfolio[1], f"portfolio {account.portfolio} breaker engaged")
            )
        if account.engaged or order.account in self.shard_halts:
            halts.append(
                (Reason.ACCOUNT_HALT, account.reduce_only, f"account {order.account} breaker engaged")
            )
        halt = halts[0] if halts else None
        if halts:
            for reason, reduce_only, detail in halts:
                if not reduce_only:
                    return Decision(False, reason, detail)
            if not reducing:
                return Decision(
                    False, Reason.REDUCE_ONLY, f"{halts[0][2]}; only position-reducing orders pass"
                )

        if account.max_orders_per_second is not None:
            recent = account.recent_orders
            while recent and now_ns - recent[0] >= 1_000_000_000:
                recent.popleft()
            if len(recent) >= account.max_orders_per_second:
                return Decision(False, Reason.ORDER_RATE, f"{account.max_orders_per_second} orders/s reached")
        notional = abs(qty) * price * multiplier
        if account.max_order_notional is not None and notional > account.max_order_notional:
            return Decision(
                False, Reason.ORDER_NOTIONAL,
                f"order notional {notional:.2f} > {account.max_order_notional:g}",
            )
        band = snap.bands.get(order.symbol)
        mid = snap.marks.get(order.symbol)
        if band is not None and mid is not None and abs(price - mid) > band * mid:
            return Decision(False, Reason.PRICE_COLLAR, f"price {price} outside {band:.2%} of mid {mid}")
        if not reducing:
            new_position = position + qty
            new_notional = abs(new_position) * price * multiplier
            if account.max_position_notional is not None and new_notional > account.max_position_notional:
                return Decision(
                    False, Reason.POSITION_LIMIT,
                    f"position notional {new_notional:.2f} > {account.max_position_notional:g}",
                )
            exposure = account.exposure - abs(position) * price * multiplier + new_notional
            if account.equity <= 0.0 or exposure / account.equity > account.max_account_leverage:
                projected = math.inf if account.equity <= 0.0 else exposure / account.equity
                return Decision(
                    False, Reason.PROJECTED_LEVERAGE,
                    f"projected leverage {projected:.3f} > {account.max_account_leverage:g}",
                )
        if account.max_orders_per_second is not None:
            account.recent_orders.append(now_ns)
        return Decision(True, Reason.REDUCE_ONLY_OK, halt[2]) if halt is not None else ALLOW
