"""The compiled tick kernel: the reference loop, in machine code.

:func:`run_ticks` applies ticks in arrival order to every account holding the
tick's symbol, in account order, doing exactly what
:meth:`riskcore.account.AccountBook.on_tick` does — the same sums over
position slots in slot order, the same comparisons, the same breaker steps,
and the same scalar rules (marking, drawdown, leverage, levels: the functions of
:mod:`riskcore.figures`, compiled) — so its results are bit-identical to the
reference engine. What it does not do is build Python objects: each alert or
breaker change is written as one row of ``OutRows`` and the caller turns
rows into events.

State lives in arrays (one row per account, slots padded to a fixed width), in
groups of one kind each (:mod:`riskcore.arrays`): a group passed where another is
expected is a type error.
:class:`riskcore.engine.BatchedEngine` packs and unpacks them around each batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from riskcore.arrays import (
    F64,
    I64,
    AccountArrays,
    Flags,
    HolderArrays,
    LimitArrays,
    MarkArrays,
    OutRows,
    SlotArrays,
    TickArrays,
)
from riskcore.figures import CRITICAL, drawdown_pct, leverage, mark_price, metric_rank
from riskcore.states import cooldown_left_seconds

# Row kinds written to OutRows.ints[:, 0].
ALERT = 0
ENGAGE = 1
AUTO_RESET = 2
DAY_ROLL = 3

# Status codes returned by run_ticks.
DONE = 0
OUT_FULL = 1
NO_ROLL_BOUNDARY = 2
ENGAGED = 3  # stopped after a tick that engaged a breaker, so the caller can publish it before going on


_mark_price = njit(cache=True, nogil=True)(mark_price)
_drawdown_pct = njit(cache=True, nogil=True)(drawdown_pct)
_leverage = njit(cache=True, nogil=True)(leverage)
_metric_rank = njit(cache=True, nogil=True)(metric_rank)
_cooldown_left_seconds = njit(cache=True, nogil=True)(cooldown_left_seconds)


@njit(cache=True, nogil=True)
def mark_prices(qty: F64, avg: F64, bid: F64, ask: F64, quoted: Flags) -> F64:
    """:func:`riskcore.figures.mark_price` of each position (each argument a column, one row a position)."""
    out = np.empty_like(qty)
    for k in range(qty.shape[0]):
        out[k] = _mark_price(qty[k], avg[k], bid[k], ask[k], quoted[k])
    return out


@njit(cache=True, nogil=True)
def run_ticks(
    ticks: TickArrays, start: int, end: int, marks: MarkArrays, holders: HolderArrays, slots: SlotArrays,
    acc: AccountArrays, limits: LimitArrays, rolls: I64, out: OutRows, n_out: int, stop_on_engage: bool,
) -> tuple[int, int, int]:
    """Apply ticks ``[start, end)``; return ``(status, next tick, rows written)``.

    ``rolls``: the trading-day boundaries, ascending, around the ticks. Stops early (status OUT_FULL) before
    a tick whose events might not fit, so the caller can drain the rows and call again from the returned tick;
    with ``stop_on_engage``, also (status ENGAGED) after a tick that engaged a breaker, once every holder has
    had that tick.
    """
    out_i, out_f = out.ints, out.floats
    cap = out_i.shape[0]
    i = start
    while i < end:
        s = ticks.symbol[i]
        n_holders = holders.n_holders[s]
        # Worst case a tick writes two rows per holder (an alert and a breaker change).
        if n_out + 2 * n_holders > cap:
            return OUT_FULL, i, n_out
        bid = ticks.bid[i]
        ask = ticks.ask[i]
        marks.bid[s] = bid
        marks.ask[s] = ask
        marks.quoted[s] = True
        ts = ticks.ts_ns[i]
        engaged_here = False
        for h in range(n_holders):
            a = holders.account[s, h]
            # Trading-day roll at the first event at or after the boundary (AccountBook.begin_event).
            next_roll = acc.next_roll_ns[a]
            if next_roll < 0 or ts >= next_roll:
                if next_roll >= 0:
                    equity = acc.balance[a] + acc.open_pnl[a]
                    acc.sod_equity[a] = equity
                    acc.day_peak[a] = equity
                    acc.closed_pnl[a] = 0.0
                    if acc.engaged[a]:
                        acc.day_rolled[a] = True
                k = np.searchsorted(rolls, ts, side="right")
                if k >= rolls.shape[0]:
                    return NO_ROLL_BOUNDARY, i, n_out
                acc.next_roll_ns[a] = rolls[k]
            acc.ts_ns[a] = ts
            acc.has_ts[a] = True
            acc.touched[a] = True  # reached: its figures go in the next report, and its book lags the arrays
            # AccountBook.remark. Only the ticked slot's mark moved: recompute its terms, then sum every
            # slot's terms in slot order. A flat slot's terms are +0.0, which leaves a sum unchanged exactly
            # as skipping it does, so the totals are bit-identical to the reference's.
            j = holders.slot[s, h]
            qty = slots.qty[a, j]
            if qty != 0.0:
                avg = slots.avg[a, j]
                mark = _mark_price(qty, avg, bid, ask, True)
                mult = slots.mult[a, j]
                slots.upnl[a, j] = qty * (mark - avg) * mult
                slots.expo[a, j] = abs(qty) * mark * mult
            open_pnl = 0.0
            exposure = 0.0
            upnl_row = slots.upnl[a]
            expo_row = slots.expo[a]
            for j in range(slots.n_slots[a]):
                open_pnl += upnl_row[j]
                exposure += expo_row[j]
            acc.open_pnl[a] = open_pnl
            acc.exposure[a] = exposure
            # AccountBook.evaluate.
            equity = acc.balance[a] + open_pnl
            peak = acc.day_peak[a]
            if equity > peak:
                peak = equity
                acc.day_peak[a] = peak
            dd_pct = _drawdown_pct(peak, peak - equity)
            lev = _leverage(exposure, equity)
            dd_rank = _metric_rank(dd_pct, limits.drawdown_warning[a], limits.max_daily_drawdown[a])
            lev_rank = _metric_rank(lev, limits.leverage_warning[a], limits.max_account_leverage[a])
            rank = max(dd_rank, lev_rank)
            # AccountBook.step_levels.
            if rank != acc.rank[a]:
                out_i[n_out, 0] = ALERT
                out_i[n_out, 1] = i
                out_i[n_out, 2] = a
                out_i[n_out, 3] = acc.rank[a]
                out_i[n_out, 4] = rank
                out_i[n_out, 5] = dd_rank
                out_i[n_out, 6] = acc.dd_rank[a]  # the previous drawdown rank names a fall to NORMAL
                out_f[n_out, 0] = dd_pct
                out_f[n_out, 1] = lev
                n_out += 1
            acc.rank[a] = rank
            acc.dd_rank[a] = dd_rank
            acc.lev_rank[a] = lev_rank
            # AccountBook.step_breaker.
            if acc.engaged[a]:
                if rank != CRITICAL and acc.cause_limit[a]:
                    day_release = acc.day_rolled[a] and limits.release_on_day_roll[a] and acc.engaged_dd[a]
                    if limits.auto_reset[a] or day_release:
                        left = _cooldown_left_seconds(limits.cooldown_s[a], acc.engaged_at_ns[a], ts)
                        if not left > 0.0:
                            acc.engaged[a] = False
                            acc.cause_limit[a] = False
                            acc.engaged_dd[a] = False
                            acc.day_rolled[a] = False
                            out_i[n_out, 0] = DAY_ROLL if day_release else AUTO_RESET
                            out_i[n_out, 1] = i
                            out_i[n_out, 2] = a
                            n_out += 1
            elif rank == CRITICAL and limits.auto_engage[a]:
                acc.engaged[a] = True
                acc.cause_limit[a] = True
                acc.engaged_at_ns[a] = ts
                acc.engaged_dd[a] = dd_rank == CRITICAL
                acc.day_rolled[a] = False
                out_i[n_out, 0] = ENGAGE
                out_i[n_out, 1] = i
                out_i[n_out, 2] = a
                out_i[n_out, 5] = dd_rank
                out_f[n_out, 0] = dd_pct
                out_f[n_out, 1] = lev
                n_out += 1
                engaged_here = True
        i += 1
        if engaged_here and stop_on_engage:
            return ENGAGED, i, n_out
    return DONE, end, n_out
