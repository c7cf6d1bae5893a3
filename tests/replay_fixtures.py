"""A small FX book and generated HistData quote files, shared by the replay, audit and chart tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

EST = timezone(timedelta(hours=-5))  # HistData's clock: EST all year

# long-1 (4M EURUSD on 200k) breaches on a fall of a few dozen pips; short-1 (3M short on 300k) on a rise.
SMALL_CONFIG: dict[str, Any] = {
    "symbols": {"EURUSD": {"multiplier": 1}},
    "portfolios": {"fx": {"limits": {"max_daily_loss": 1_000_000}}},
    "accounts": [
        {"id": "long-1", "portfolio": "fx", "balance": 200_000,
         "positions": {"EURUSD": {"qty": 4_000_000, "avg_price": 1.1212}},
         "limits": {"drawdown_warning": 0.004, "max_daily_drawdown": 0.008,
                    "leverage_warning": 30.0, "max_account_leverage": 40.0}},
        {"id": "short-1", "portfolio": "fx", "balance": 300_000,
         "positions": {"EURUSD": {"qty": -3_000_000, "avg_price": 1.12172}},
         "limits": {"drawdown_warning": 0.002, "max_daily_drawdown": 0.004,
                    "leverage_warning": 30.0, "max_account_leverage": 40.0}},
    ],
}


def write_falling_quotes(path: Path, count: int = 3000, fall: float = 0.01) -> Path:
    """A HistData file whose EURUSD falls steadily by ``fall``, a quote every 250 ms from 18:00 EST.

    All inside one trading day: SMALL_CONFIG's long account breaches, its short account only gains.
    """
    start = datetime(2020, 1, 1, 18, 0, tzinfo=EST)
    lines = []
    for i in range(count):
        mid = 1.1212 * (1.0 - fall * i / count)
        stamp = start + timedelta(milliseconds=250 * i)
        lines.append(f"{stamp:%Y%m%d %H%M%S}{stamp.microsecond // 1000:03d},{mid:.6f},{mid + 0.00003:.6f},0")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
