"""The supervisor's columnar aggregation (riskcore.aggregate.Aggregator) against plain per-account sums.

The reference below is the definition written the obvious way: for each scope, walk its accounts in config
order and add each figure, and each position's net notional per symbol, one term at a time. The columnar
aggregator must give the same totals bit for bit, whatever subset of accounts each update carries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from riskcore.aggregate import Aggregator, SummaryColumns
from riskcore.states import AlertLevel
from tests.unit.test_aggregate import CONFIG

money = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False, allow_infinity=False)


@st.composite
def updates(draw: Any) -> list[SummaryColumns]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        rows = sorted(draw(st.sets(st.integers(0, 6), min_size=1)))
        pos_account, pos_symbol, pos_qty, pos_net = [], [], [], []
        for r, _ in enumerate(rows):
            for s in draw(st.lists(st.integers(0, 3), unique=True, max_size=4)):
                pos_account.append(r)
                pos_symbol.append(s)
                pos_qty.append(draw(st.sampled_from([-3.0, 1.0, 2.5])))
                pos_net.append(draw(money))
        n = len(rows)
        out.append(
            SummaryColumns(
                index=np.asarray(rows, np.int32),
                equity=np.asarray([draw(money) for _ in rows]),
                sod_equity=np.asarray([draw(money) for _ in rows]),
                exposure=np.asarray([abs(draw(money)) for _ in rows]),
                rank=np.asarray([draw(st.integers(0, 2)) for _ in rows], np.int8),
                engaged=np.zeros(n, np.bool_),
                ts_ns=np.full(n, -1),
                pos_account=np.asarray(pos_account, np.int32),
                pos_symbol=np.asarray(pos_symbol, np.int32),
                pos_qty=np.asarray(pos_qty),
                pos_net=np.asarray(pos_net),
            )
        )
    return out


def reported(columns: SummaryColumns) -> dict[str, dict[str, Any]]:
    """Each row of ``columns`` as a plain per-account record, read one element at a time."""
    symbols = list(CONFIG.symbols)
    out: dict[str, dict[str, Any]] = {}
    for row, index in enumerate(columns.index.tolist()):
        out[CONFIG.accounts[index].id] = {
            "equity": float(columns.equity[row]),
            "sod_equity": float(columns.sod_equity[row]),
            "exposure": float(columns.exposure[row]),
            "net": {},
            "alert_level": str(AlertLevel.from_rank(int(columns.rank[row]))),
        }
    rows = columns.index.tolist()
    for k in range(columns.pos_account.size):
        account = CONFIG.accounts[rows[int(columns.pos_account[k])]].id
        out[account]["net"][symbols[int(columns.pos_symbol[k])]] = float(columns.pos_net[k])
    return out


def reference_total(
    latest: dict[str, dict[str, Any]], accounts: list[str], engaged: set[str]
) -> dict[str, Any]:
    total: dict[str, Any] = {
        "accounts": 0,
        "gross_exposure": 0.0,
        "equity": 0.0,
        "sod": 0.0,
        "net": {},
        "levels": {str(level): 0 for level in AlertLevel},
        "engaged": 0,
    }
    for account in accounts:
        summary = latest.get(account)
        if summary is None:
            continue
        total["accounts"] += 1
        total["gross_exposure"] += summary["exposure"]
        total["equity"] += summary["equity"]
        total["sod"] += summary["sod_equity"]
        for symbol, value in summary["net"].items():
            total["net"][symbol] = total["net"].get(symbol, 0.0) + value
        total["levels"][summary["alert_level"]] += 1
        total["engaged"] += account in engaged
    return total


@settings(max_examples=200, deadline=None)
@given(updates(), st.sets(st.sampled_from([f"A{i}" for i in range(7)])))
def test_aggregator_when_updated_with_any_subsets_totals_equal_plain_sums(
    batches: list[SummaryColumns], engaged: set[str]
) -> None:
    aggregator = Aggregator(CONFIG)
    latest: dict[str, dict[str, Any]] = {}
    for columns in batches:
        aggregator.update(columns)
        latest.update(reported(columns))
    for account in engaged:
        aggregator.set_engaged(account, True)
    scopes = [
        (aggregator.portfolio(p), [a.id for a in CONFIG.accounts if a.portfolio == p])
        for p in CONFIG.portfolios
    ]
    scopes.append((aggregator.firm(), [a.id for a in CONFIG.accounts]))
    for aggregate, members in scopes:
        expected = reference_total(latest, members, engaged & set(latest))
        assert aggregate.accounts == expected["accounts"]
        assert aggregate.gross_exposure == expected["gross_exposure"]
        assert (aggregate.equity, aggregate.sod_equity) == (expected["equity"], expected["sod"])
        assert aggregate.net_exposure == expected["net"]
        assert aggregate.by_level == expected["levels"]
        assert aggregate.by_breaker == {
            "SAFE": expected["accounts"] - expected["engaged"],
            "ENGAGED": expected["engaged"],
        }
        assert aggregate.day_peak == max(expected["sod"], expected["equity"])


@settings(max_examples=100, deadline=None)
@given(updates())
def test_aggregator_columns_when_installed_in_a_fresh_aggregator_give_the_same_figures(
    batches: list[SummaryColumns],
) -> None:
    aggregator = Aggregator(CONFIG)
    for columns in batches:
        aggregator.update(columns)
    copy = Aggregator(CONFIG)
    copy.update(aggregator.columns())
    assert [copy.positions(a) for a in copy.account_ids] == [
        aggregator.positions(a) for a in aggregator.account_ids
    ]
    for name in ("has", "equity", "sod_equity", "exposure", "rank"):
        assert np.array_equal(getattr(copy, name), getattr(aggregator, name)), name
    assert copy.firm() == aggregator.firm()
    assert [copy.portfolio(p) for p in CONFIG.portfolios] == [
        aggregator.portfolio(p) for p in CONFIG.portfolios
    ]
