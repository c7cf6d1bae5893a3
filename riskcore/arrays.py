"""The compiled kernel's state as named groups of arrays, one group per kind, and their constructors.

A group is a ``NamedTuple`` of NumPy arrays (numba compiles attribute access on it): passing one group where
another is expected is a type error, and each array is named where it is read. Per-account arrays have one
row per account; per-symbol arrays one row per symbol id; 2-D slot and holder arrays are padded to a width
that :func:`grow` widens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from riskcore.batch import TickColumns
from riskcore.config import AccountLimits
from riskcore.states import KillSwitchMode

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
Flags = NDArray[np.bool_]
_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])

OUT_INT_COLS = 7  # kind, tick, account, from_rank, to_rank, dd_rank, lev_rank(or old dd_rank for alerts)
OUT_FLOAT_COLS = 2  # dd_pct, leverage


class TickArrays(NamedTuple):
    """The ticks' numeric columns (of :class:`riskcore.engine.TickColumns`), one row per tick."""

    symbol: I32
    bid: F64
    ask: F64
    ts_ns: I64


class MarkArrays(NamedTuple):
    """Each symbol's latest quote; ``quoted`` is false before its first."""

    bid: F64
    ask: F64
    quoted: Flags


class HolderArrays(NamedTuple):
    """Who holds each symbol: ``n_holders[s]`` accounts ``account[s, :n_holders[s]]`` (in account order), each
    keeping it in position slot ``slot[s, h]``."""

    n_holders: I64
    account: I64  # [symbol, holder]
    slot: I64  # [symbol, holder]


class SlotArrays(NamedTuple):
    """Each account's ``n_slots[a]`` position slots ([account, slot]), in the order it first held each
    symbol."""

    n_slots: I64
    symbol: I64
    qty: F64
    avg: F64
    mult: F64
    upnl: F64  # the slot's open-PnL term at its symbol's current mark (the kernel re-sums the terms)
    expo: F64  # the slot's exposure term


class AccountArrays(NamedTuple):
    """Each account's figures, level and breaker (:class:`riskcore.account.AccountBook`'s fields)."""

    balance: F64
    closed_pnl: F64
    open_pnl: F64
    exposure: F64
    sod_equity: F64
    day_peak: F64
    rank: I64
    dd_rank: I64
    lev_rank: I64
    ts_ns: I64
    has_ts: Flags  # an event has reached it (ts_ns is valid)
    next_roll_ns: I64  # -1: not known before its first event
    engaged: Flags
    cause_limit: Flags  # engaged by a limit (not an operator)
    engaged_at_ns: I64
    engaged_dd: Flags  # engaged on the drawdown limit
    day_rolled: Flags
    touched: Flags  # reached by a tick since the caller last cleared it


class LimitArrays(NamedTuple):
    """Each account's limits (:class:`riskcore.config.AccountLimits`)."""

    drawdown_warning: F64
    max_daily_drawdown: F64
    leverage_warning: F64
    max_account_leverage: F64
    auto_engage: Flags  # kill_switch_mode auto
    auto_reset: Flags
    cooldown_s: F64
    release_on_day_roll: Flags


class OutRows(NamedTuple):
    """One row per alert or breaker change: ``ints[r]`` as :data:`OUT_INT_COLS`, ``floats[r]`` as
    :data:`OUT_FLOAT_COLS`."""

    ints: I64
    floats: F64


def grow(array: _Array, rows: int | None = None, cols: int | None = None) -> _Array:
    """A copy of a 2-D array with at least ``rows`` rows and ``cols`` columns (zero-filled)."""
    r = max(array.shape[0], rows or 0)
    c = max(array.shape[1], cols or 0)
    out = np.zeros((r, c), dtype=array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out  # type: ignore[return-value]  # np.zeros of the input's dtype: the input's array type


def account_arrays(n: int) -> AccountArrays:
    def f64() -> F64:
        return np.zeros(n)

    def i64() -> I64:
        return np.zeros(n, np.int64)

    def flags() -> Flags:
        return np.zeros(n, np.bool_)

    return AccountArrays(
        balance=f64(), closed_pnl=f64(), open_pnl=f64(), exposure=f64(), sod_equity=f64(), day_peak=f64(),
        rank=i64(), dd_rank=i64(), lev_rank=i64(), ts_ns=i64(), has_ts=flags(),
        next_roll_ns=np.full(n, -1, np.int64),
        engaged=flags(), cause_limit=flags(), engaged_at_ns=i64(), engaged_dd=flags(), day_rolled=flags(),
        touched=flags(),
    )


def slot_arrays(n: int, width: int) -> SlotArrays:
    return SlotArrays(
        n_slots=np.zeros(n, np.int64), symbol=np.zeros((n, width), np.int64), qty=np.zeros((n, width)),
        avg=np.zeros((n, width)), mult=np.zeros((n, width)), upnl=np.zeros((n, width)),
        expo=np.zeros((n, width)),
    )


def holder_arrays(n_symbols: int) -> HolderArrays:
    return HolderArrays(
        n_holders=np.zeros(n_symbols, np.int64), account=np.zeros((n_symbols, 1), np.int64),
        slot=np.zeros((n_symbols, 1), np.int64),
    )


def quote_arrays(n_symbols: int) -> MarkArrays:
    return MarkArrays(bid=np.zeros(n_symbols), ask=np.zeros(n_symbols), quoted=np.zeros(n_symbols, np.bool_))


def limit_arrays(limits: list[AccountLimits]) -> LimitArrays:
    def number(values: Iterable[float]) -> F64:
        return np.fromiter(values, np.float64, len(limits))

    def flag(values: Iterable[bool]) -> Flags:
        return np.fromiter(values, np.bool_, len(limits))

    return LimitArrays(
        drawdown_warning=number(x.drawdown_warning for x in limits),
        max_daily_drawdown=number(x.max_daily_drawdown for x in limits),
        leverage_warning=number(x.leverage_warning for x in limits),
        max_account_leverage=number(x.max_account_leverage for x in limits),
        auto_engage=flag(x.kill_switch_mode is KillSwitchMode.AUTO for x in limits),
        auto_reset=flag(x.auto_reset for x in limits),
        cooldown_s=number(x.recovery_cooldown_seconds for x in limits),
        release_on_day_roll=flag(x.release_on_day_roll for x in limits),
    )


def out_rows(rows: int) -> OutRows:
    return OutRows(np.zeros((rows, OUT_INT_COLS), np.int64), np.zeros((rows, OUT_FLOAT_COLS)))


def tick_arrays(ticks: TickColumns) -> TickArrays:
    return TickArrays(ticks.symbol, ticks.bid, ticks.ask, ticks.ts_ns)


__all__ = [
    "F64",
    "I32",
    "I64",
    "OUT_FLOAT_COLS",
    "OUT_INT_COLS",
    "AccountArrays",
    "Flags",
    "HolderArrays",
    "LimitArrays",
    "MarkArrays",
    "OutRows",
    "SlotArrays",
    "TickArrays",
    "account_arrays",
    "grow",
    "holder_arrays",
    "limit_arrays",
    "out_rows",
    "quote_arrays",
    "slot_arrays",
    "tick_arrays",
]
