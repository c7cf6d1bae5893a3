"""The supervisor's columnar aggregation (riskcore.aggregate.Aggregator): the day peak of a scope's totals.

Its totals against plain per-account sums, over generated updates, are in
``tests/property/test_aggregate_properties.py``.
"""

from __future__ import annotations

import numpy as np

from riskcore.aggregate import Aggregator, SummaryColumns
from riskcore.config import parse_config

SYMBOLS = ["EURUSD", "GBPUSD", "XAUUSD", "USDJPY"]
CONFIG = parse_config(
    {
        "symbols": {s: {} for s in SYMBOLS},
        "portfolios": {"desk": {}, "macro": {}, "idle": {}},
        "accounts": [
            {"id": f"A{i}", "portfolio": ("desk", "macro")[i % 2], "balance": 1_000_000} for i in range(7)
        ],
    }
)


def test_aggregator_day_peak_holds_the_highest_total_until_start_of_day_changes() -> None:
    aggregator = Aggregator(CONFIG)

    def report(equity: float, sod: float) -> None:
        aggregator.update(
            SummaryColumns(
                np.asarray([0], np.int32),
                np.asarray([equity]),
                np.asarray([sod]),
                np.zeros(1),
                np.zeros(1, np.int8),
                np.zeros(1, np.bool_),
                np.full(1, -1),
                *(np.zeros(0, t) for t in (np.int32, np.int32, float, float)),
            )
        )
        aggregator.totals()

    report(100.0, 100.0)
    report(130.0, 100.0)
    report(90.0, 100.0)
    assert (aggregator.firm().day_peak, aggregator.firm().drawdown) == (130.0, 40.0)
    report(90.0, 95.0)  # the account rolled its day: the peak restarts from the new start-of-day total
    assert (aggregator.firm().day_peak, aggregator.firm().drawdown) == (95.0, 5.0)


