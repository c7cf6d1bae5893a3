"""The compiled tick kernel: the reference loop, in machine code.

:func:`run_ticks` applies ticks in arrival order to every account holding the
tick's symbol, in account order, doing exactly what
:meth:`riskcore.account.AccountBook.on_tick` does — the same sums over
position slots in slot order, the same comparisons, the same breaker steps —
so its results are bit-identical to the reference engine. What it does not do
is build Python objects: each alert or breaker change is written as one row of
``out_i`` / ``out_f`` and the caller turns rows into events.

State lives in arrays (one row per account, slots padded to a fixed width);
:class:`riskcore.engine.BatchedEngine` packs and unpacks it around each batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Row kinds written to out_i[:, 0].
ALERT = 0
ENGAGE = 1
AUTO_RESET = 2
DAY_ROLL = 3
OUT_INT_COLS = 7  # kind, tick, account, from_rank, to_rank, dd_rank, lev_rank(or old dd_rank for alerts)
OUT_FLOAT_COLS = 2  # dd_pct, leverage

# Status codes returned by run_ticks.
DONE = 0
OUT_FULL = 1
NO_ROLL_BOUNDARY = 2
ENGAGED = 3  # stopped after a tick that engaged a breaker, so the caller can publish it before going on


@njit(cache=True, nogil=True)
def run_ticks(
    t_sym, t_bid, t_ask, t_ts, start, end,
    m_bid, m_ask, m_has,
    hold_n, hold_acc, hold_slot,
    slot_n, slot_sym, slot_qty, slot_avg, slot_mult, slot_upnl, slot_expo,
    a_balance, a_closed, a_open, a_expo, a_sod, a_peak, a_rank, a_ddr, a_levr, a_ts, a_has_ts, a_next_roll,
    a_eng, a_cause_limit, a_eng_at, a_eng_dd, a_day_rolled, a_touched,
    l_ddw, l_ddh, l_levw, l_levh, l_auto, l_autoreset, l_cool_s, l_roll_release,
    rolls,
    out_i, out_f, n_out, stop_on_engage,
):
    """Apply ticks ``[start, end)``; return ``(status, next tick, rows written)``.

    Stops early (status OUT_FULL) before a tick whose events might not fit, so the caller can drain
    the rows and call again from the returned tick; with ``stop_on_engage``, also (status ENGAGED) after
    a tick that engaged a breaker, once every holder has had that tick.
    """
    cap = out_i.shape[0]
    i = start
    while i < end:
        s = t_sym[i]
        holders = hold_n[s]
        # Worst case a tick writes two rows per holder (an alert and a breaker change).
        if n_out + 2 * holders > cap:
            return OUT_FULL, i, n_out
        bid = t_bid[i]
        ask = t_ask[i]
        m_bid[s] = bid
        m_ask[s] = ask
        m_has[s] = True
        ts = t_ts[i]
        engaged_here = False
        for h in range(holders):
            a = hold_acc[s, h]
            # Trading-day roll at the first event at or after the boundary (AccountBook.begin_event).
            next_roll = a_next_roll[a]
            if next_roll < 0 or ts >= next_roll:
                if next_roll >= 0:
                    equity = a_balance[a] + a_open[a]
                    a_sod[a] = equity
                    a_peak[a] = equity
                    a_closed[a] = 0.0
                    if a_eng[a]:
                        a_day_rolled[a] = True
                k = np.searchsorted(rolls, ts, side="right")
                if k >= rolls.shape[0]:
                    return NO_ROLL_BOUNDARY, i, n_out
                a_next_roll[a] = rolls[k]
            a_ts[a] = ts
            a_has_ts[a] = True
            a_touched[a] = True  # reached: its figures go in the next report, and its book lags the arrays
            # AccountBook.remark. Only the ticked slot's mark moved: recompute its terms, then sum every
            # slot's terms in slot order. A flat slot's terms are +0.0, which leaves a sum unchanged exactly
            # as skipping it does, so the totals are bit-identical to the reference's.
            j = hold_slot[s, h]
            qty = slot_qty[a, j]
            if qty != 0.0:
                mark = bid if qty > 0.0 else ask
                mult = slot_mult[a, j]
                slot_upnl[a, j] = qty * (mark - slot_avg[a, j]) * mult
                slot_expo[a, j] = abs(qty) * mark * mult
            open_pnl = 0.0
            exposure = 0.0
            upnl_row = slot_upnl[a]
            expo_row = slot_expo[a]
            for j in range(slot_n[a]):
                open_pnl += upnl_row[j]
                exposure += expo_row[j]
            a_open[a] = open_pnl
            a_expo[a] = exposure
            # AccountBook.evaluate.
            equity = a_balance[a] + open_pnl
            peak = a_peak[a]
            if equity > peak:
                peak = equity
                a_peak[a] = peak
            drawdown = peak - equity
            if peak > 0.0:
                dd_pct = drawdown / peak
            elif drawdown > 0.0:
                dd_pct = np.inf
            else:
                dd_pct = 0.0
            lev = exposure / equity if equity > 0.0 else np.inf
            dd_rank = 2 if dd_pct > l_ddh[a] else (1 if dd_pct > l_ddw[a] else 0)
            lev_rank = 2 if lev > l_levh[a] else (1 if lev > l_levw[a] else 0)
            rank = dd_rank if dd_rank > lev_rank else lev_rank
            # AccountBook.step_levels.
            if rank != a_rank[a]:
                out_i[n_out, 0] = ALERT
                out_i[n_out, 1] = i
                out_i[n_out, 2] = a
                out_i[n_out, 3] = a_rank[a]
                out_i[n_out, 4] = rank
                out_i[n_out, 5] = dd_rank
                out_i[n_out, 6] = a_ddr[a]  # the previous drawdown rank names a fall to NORMAL
                out_f[n_out, 0] = dd_pct
                out_f[n_out, 1] = lev
                n_out += 1
            a_rank[a] = rank
            a_ddr[a] = dd_rank
            a_levr[a] = lev_rank
            # AccountBook.step_breaker.
            if a_eng[a]:
                if rank != 2 and a_cause_limit[a]:
                    day_release = a_day_rolled[a] and l_roll_release[a] and a_eng_dd[a]
                    if l_autoreset[a] or day_release:
                        left = l_cool_s[a] - (ts - a_eng_at[a]) / 1e9
                        if not left > 0.0:
                            a_eng[a] = False
                            a_cause_limit[a] = False
                            a_eng_dd[a] = False
                            a_day_rolled[a] = False
                            out_i[n_out, 0] = DAY_ROLL if day_release else AUTO_RESET
                            out_i[n_out, 1] = i
                            out_i[n_out, 2] = a
                            n_out += 1
            elif rank == 2 and l_auto[a]:
                a_eng[a] = True
                a_cause_limit[a] = True
                a_eng_at[a] = ts
                a_eng_dd[a] = dd_rank == 2
                a_day_rolled[a] = False
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
