"""Replay of real EURUSD quotes through the live system on Ray, checked against figures recomputed here.

The expected figures are recomputed in this file with plain Python over the CSV lines, parsed
here (not with ``riskcore.feeds``): EST is a fixed UTC-05:00, a long position is marked at the
bid, a short one at the ask, ``equity = balance + open_pnl``, ``day_peak`` is the highest equity
of the trading day (starting at the start-of-day equity, i.e. the balance), and a level is
WARNING / CRITICAL strictly above its soft / hard limit (DESIGN §1).

The arithmetic below runs in the order DESIGN §1 and ``riskcore/account.py`` define
(``open_pnl = Σ qty·(mark − avg)·multiplier``, starting from 0.0), so every float is expected
to be bit-identical: the assertions use exact equality on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskcore.account import AccountState
from riskcore.config import RiskConfig, parse_config
from riskmon.replay import replay
from tests.integration.fixtures import StartSystem

pytestmark = pytest.mark.ray

EST = timezone(timedelta(hours=-5))  # HistData: Eastern Standard Time, never daylight saving
NEW_YORK = ZoneInfo("America/New_York")
SYMBOL = "EURUSD"
LEVELS = ("NORMAL", "WARNING", "CRITICAL")

# Three accounts on EURUSD. `long-hi` is a 20x-levered long (200k cash, 4M EUR) with tight drawdown
# limits; `short-1` is a short whose leverage sits above its soft limit from the first quote and whose
# drawdown later goes CRITICAL; `long-manual` goes CRITICAL under kill_switch_mode: manual (alert only).
ACCOUNTS: list[dict[str, Any]] = [
    {
        "id": "long-hi", "portfolio": "fx", "balance": 200_000,
        "positions": {SYMBOL: {"qty": 4_000_000, "avg_price": 1.1212}},
        "limits": {"drawdown_warning": 0.004, "max_daily_drawdown": 0.008,
                   "leverage_warning": 30.0, "max_account_leverage": 40.0},
    },
    {
        "id": "short-1", "portfolio": "fx", "balance": 300_000,
        "positions": {SYMBOL: {"qty": -3_000_000, "avg_price": 1.12172}},
        "limits": {"drawdown_warning": 0.002, "max_daily_drawdown": 0.004,
                   "leverage_warning": 11.0, "max_account_leverage": 12.0},
    },
    {
        "id": "long-manual", "portfolio": "fx", "balance": 1_000_000,
        "positions": {SYMBOL: {"qty": 1_000_000, "avg_price": 1.1215}},
        "limits": {"drawdown_warning": 0.0003, "max_daily_drawdown": 0.0006, "kill_switch_mode": "manual"},
    },
]


def replay_config() -> RiskConfig:
    return parse_config({
        "symbols": {SYMBOL: {"multiplier": 1}},
        "portfolios": {"fx": {}},
        "accounts": ACCOUNTS,
        # Several router batches over the file, so batch boundaries are part of what is checked.
        "batching": {"max_ticks": 1000, "max_delay_ms": 5, "max_in_flight": 4},
    })


# --------------------------------------------------------------------------- the independent reference


@dataclass(frozen=True)
class Quote:
    index: int  # 0-based line number in the file
    ts: datetime  # UTC
    bid: float
    ask: float

    @property
    def rfc3339(self) -> str:
        return self.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_histdata(path: Path) -> list[Quote]:
    """Every line of a clean HistData file as a quote (fails on anything unexpected)."""
    quotes = []
    for index, line in enumerate(path.read_text(encoding="ascii").splitlines()):
        stamp, bid, ask, _volume = line.split(",")
        local = datetime.strptime(stamp, "%Y%m%d %H%M%S%f").replace(tzinfo=EST)
        quotes.append(Quote(index, local.astimezone(UTC), float(bid), float(ask)))
    return quotes


def trading_day(ts: datetime) -> Any:
    """FX trading day: rolls at 17:00 New York."""
    return (ts.astimezone(NEW_YORK) - timedelta(hours=17)).date()


def rank(value: float, warning: float, hard: float) -> int:
    return 2 if value > hard else (1 if value > warning else 0)


@dataclass
class Expected:
    state: dict[str, Any]
    alerts: list[tuple[str, str, int, str]]  # (from, to, tick_seq, tick_ts)
    breakers: list[tuple[str, int, str]]  # (state, tick_seq, tick_ts)


def expected_account(account: dict[str, Any], quotes: list[Quote]) -> Expected:
    """Apply the quotes one at a time to one single-position account (DESIGN §1)."""
    days = {trading_day(q.ts) for q in quotes}
    assert len(days) == 1, "the reference assumes no trading-day roll in the file"
    limits = {"drawdown_warning": 0.01, "max_daily_drawdown": 0.02, "leverage_warning": 3.0,
              "max_account_leverage": 5.0, "kill_switch_mode": "auto", **account["limits"]}
    balance = float(account["balance"])
    (position,) = account["positions"].values()
    qty, avg, multiplier = float(position["qty"]), float(position["avg_price"]), 1.0
    day_peak = balance  # start-of-day equity: before any quote the position is marked at its average price
    level = 0
    engaged = False
    alerts: list[tuple[str, str, int, str]] = []
    breakers: list[tuple[str, int, str]] = []
    open_pnl = exposure = equity = drawdown = drawdown_pct = leverage = math.nan
    for quote in quotes:
        mark = quote.bid if qty > 0 else quote.ask
        open_pnl = 0.0 + qty * (mark - avg) * multiplier
        exposure = 0.0 + abs(qty) * mark * multiplier
        equity = balance + open_pnl
        day_peak = max(day_peak, equity)
        drawdown = day_peak - equity
        drawdown_pct = drawdown / day_peak
        leverage = exposure / equity
        new_level = max(rank(drawdown_pct, limits["drawdown_warning"], limits["max_daily_drawdown"]),
                        rank(leverage, limits["leverage_warning"], limits["max_account_leverage"]))
        if new_level != level:
            alerts.append((LEVELS[level], LEVELS[new_level], quote.index, quote.rfc3339))
            level = new_level
        if level == 2 and not engaged and limits["kill_switch_mode"] == "auto":
            engaged = True
            breakers.append(("ENGAGED", quote.index, quote.rfc3339))
    state = {
        "account": account["id"],
        "portfolio": account["portfolio"],
        "timestamp": quotes[-1].rfc3339,
        "balance": balance,
        "open_pnl": open_pnl,
        "closed_pnl": 0.0,
        "total_pnl": 0.0 + open_pnl,
        "positions": 1,
        "total_exposure": exposure,
        "leverage": leverage,
        "drawdown": drawdown,
        "drawdown_pct": drawdown_pct,
        "alert_level": LEVELS[level],
        "equity": equity,
        "day_peak": day_peak,
        "sod_equity": balance,
        "breaker": "ENGAGED" if engaged else "SAFE",
    }
    return Expected(state, alerts, breakers)


def report_alerts(report: dict[str, Any], account_id: str) -> list[tuple[str, str, int, str]]:
    return [(e["from"], e["to"], e["tick_seq"], e["tick_ts"]) for e in report["events"]
            if e["type"] == "alert" and e["account"] == account_id]


def report_breakers(report: dict[str, Any], account_id: str) -> list[tuple[str, int, str]]:
    return [(e["state"], e["tick_seq"], e["tick_ts"]) for e in report["events"]
            if e["type"] == "breaker" and e["scope"] == "account" and e["id"] == account_id]


def first(alerts: list[tuple[str, str, int, str]], level: str) -> tuple[int, str]:
    return next((seq, ts) for _from, to, seq, ts in alerts if to == level)


# --------------------------------------------------------------------------- the clean file


@pytest.fixture(scope="module")
def quotes(eurusd_file: Path) -> list[Quote]:
    return parse_histdata(eurusd_file)


def test_replay_when_real_eurusd_file_final_states_equal_recomputed_figures(
    start_system: StartSystem, quotes: list[Quote], eurusd_file: Path
) -> None:
    config = replay_config()
    report = replay(eurusd_file, "histdata", config, symbol=SYMBOL, system=start_system(config))

    assert report["ticks"] == 9500
    assert report["rejected"] == 0
    assert report["rejections"] == []
    assert list(report["accounts"]) == [a["id"] for a in ACCOUNTS]
    for account in ACCOUNTS:
        expected = expected_account(account, quotes).state
        actual = report["accounts"][account["id"]]
        assert set(actual) == {f.name for f in dataclasses.fields(AccountState)}
        # Exact equality: same operations in the same order as DESIGN §1 / riskcore.account.
        assert actual == expected, account["id"]


def test_replay_when_real_eurusd_file_alerts_and_breakers_name_the_exact_tick(
    start_system: StartSystem, quotes: list[Quote], eurusd_file: Path
) -> None:
    config = replay_config()
    report = replay(eurusd_file, "histdata", config, symbol=SYMBOL, system=start_system(config))
    expected = {a["id"]: expected_account(a, quotes) for a in ACCOUNTS}

    # The config is built so that real data crosses the limits: guard that premise first.
    assert any(to == "WARNING" for e in expected.values() for _f, to, _s, _t in e.alerts)
    assert any(to == "CRITICAL" for e in expected.values() for _f, to, _s, _t in e.alerts)
    assert expected["long-hi"].breakers
    assert expected["short-1"].breakers

    # long-hi: first WARNING, first CRITICAL and the breaker at the ticks recomputed here.
    long_alerts = report_alerts(report, "long-hi")
    assert first(long_alerts, "WARNING") == first(expected["long-hi"].alerts, "WARNING")
    assert first(long_alerts, "CRITICAL") == first(expected["long-hi"].alerts, "CRITICAL")
    first_critical = first(expected["long-hi"].alerts, "CRITICAL")
    assert report_breakers(report, "long-hi")[:1] == [("ENGAGED", *first_critical)]

    for account_id, exp in expected.items():
        # Every change of level, in order, at its exact tick (stream sequence = line index) and time.
        assert report_alerts(report, account_id) == exp.alerts, account_id
        # Breakers: engaged once at the first CRITICAL (auto), never by kill_switch_mode: manual.
        assert report_breakers(report, account_id) == exp.breakers, account_id
    assert expected["long-manual"].breakers == []
    assert first(expected["long-manual"].alerts, "CRITICAL")

    for event in report["events"]:
        if event["type"] in ("alert", "breaker"):
            assert event["stream"] == SYMBOL
            assert event["tick_ts"] == quotes[event["tick_seq"]].rfc3339
    # Alert events carry the metric that moved and its value.
    for event in (e for e in report["events"] if e["type"] == "alert" and e["to"] == "CRITICAL"):
        assert event["metric"] == "drawdown_pct"
        assert event["value"] > event["threshold"]


# --------------------------------------------------------------------------- a corrupted copy

# line index -> (how it is broken, the rejection code the report must give it)
CORRUPTIONS: dict[int, tuple[str, str]] = {
    500: ("non-numeric bid", "bad_record"),
    1500: ("three fields", "bad_record"),
    2000: ("bid above ask", "crossed_quote"),
    5000: ("timestamp runs backwards", "stale_timestamp"),
    9499: ("NaN price", "bad_price"),
}


def corrupt(lines: list[str], index: int, how: str) -> str:
    stamp, bid, ask, volume = lines[index].split(",")
    if how == "non-numeric bid":
        return f"{stamp},1.12x1,{ask},{volume}"
    if how == "three fields":
        return f"{stamp},{bid},{ask}"
    if how == "bid above ask":
        # Had it been applied, the long accounts would set a far higher day peak.
        return f"{stamp},1.130000,1.129000,{volume}"
    if how == "timestamp runs backwards":
        # Otherwise a valid quote (far below the market: the short account would set a new day peak).
        earlier = lines[index - 1000].split(",")[0]
        return f"{earlier},1.110000,1.110100,{volume}"
    if how == "NaN price":
        return f"{stamp},nan,{ask},{volume}"
    raise AssertionError(how)


def test_replay_when_lines_corrupted_rejects_them_by_index_and_ends_as_without_them(
    start_system: StartSystem, quotes: list[Quote], tmp_path: Path, eurusd_file: Path
) -> None:
    source = eurusd_file
    lines = source.read_text(encoding="ascii").splitlines()
    broken = list(lines)
    for index, (how, _code) in CORRUPTIONS.items():
        broken[index] = corrupt(lines, index, how)
    corrupted_file = tmp_path / "EURUSD-corrupted.csv"
    corrupted_file.write_text("\n".join(broken) + "\n", encoding="ascii")
    kept = [q for q in quotes if q.index not in CORRUPTIONS]
    clean_file = tmp_path / "EURUSD-without-corrupted.csv"
    clean_file.write_text("\n".join(lines[q.index] for q in kept) + "\n", encoding="ascii")

    config = replay_config()
    report = replay(corrupted_file, "histdata", config, symbol=SYMBOL, system=start_system(config))

    assert report["ticks"] == 9500 - len(CORRUPTIONS)
    assert report["rejected"] == len(CORRUPTIONS)
    assert [(r["tick_seq"], r["code"]) for r in report["rejections"]] == [
        (index, code) for index, (_how, code) in sorted(CORRUPTIONS.items())
    ]
    assert all(r["message"] for r in report["rejections"])

    # The figures the accounts would have had without those lines: recomputed here...
    for account in ACCOUNTS:
        expected = expected_account(account, kept)
        assert report["accounts"][account["id"]] == expected.state, account["id"]
        assert report_alerts(report, account["id"]) == expected.alerts, account["id"]
        assert report_breakers(report, account["id"]) == expected.breakers, account["id"]

    # ...and as the system itself gives them for the file with the lines removed.
    clean = replay(clean_file, "histdata", config, symbol=SYMBOL, system=start_system(config))
    assert clean["ticks"] == 9500 - len(CORRUPTIONS)
    assert clean["rejected"] == 0
    assert report["accounts"] == clean["accounts"]
    original_index = [q.index for q in kept]  # line in the clean file -> line in the corrupted one
    remapped = [dict(e, tick_seq=original_index[e["tick_seq"]]) for e in clean["events"]]
    assert report["events"] == remapped
