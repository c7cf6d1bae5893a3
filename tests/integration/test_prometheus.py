"""A real Prometheus scrapes riskmon's exporter; its query API shows the values the system reached.

The book: two accounts in one portfolio, each on its own shard, both long EURUSD bought at 1.25.

    account  balance    position             after EURUSD drops to 1.125 bid
    a1       1,000,000  +1,000,000 @ 1.25    -125,000: 12.5 % drawdown, WARNING (10 % / 20 % limits)
    b1       1,000,000  +2,000,000 @ 1.25    -250,000: 25 % drawdown, CRITICAL, its breaker engages

One quote in between has its bid above its ask and is refused (``crossed_quote``). Prices are exact in binary
floating point, so the figures are compared exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driver.metrics import serve_metrics
from riskcore.events import Tick
from riskmon.drills.common import crash_shard
from tests.integration.prometheus_server import PrometheusServer, prometheus_binary, wait_until

pytestmark = pytest.mark.ray

NS = 1_000_000_000
T0 = 1_704_898_800 * NS  # 2024-01-10T15:00:00Z, inside one FX trading day
ROOT = Path(__file__).resolve().parents[2]

CONFIG: dict[str, Any] = {
    "symbols": {"EURUSD": {"multiplier": 1}},
    "portfolios": {"desk": {"account_limits": {"drawdown_warning": 0.1, "max_daily_drawdown": 0.2}}},
    "accounts": [
        {"id": "a1", "portfolio": "desk", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.25}}},
        {"id": "b1", "portfolio": "desk", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 2_000_000, "avg_price": 1.25}}},
    ],
    "placement": {"accounts_per_actor": 1},
}


def test_prometheus_when_it_scrapes_the_exporter_sees_breaker_ticks_and_refusals(
        start_system: Callable[..., Any], tmp_path: Path) -> None:
    binary = prometheus_binary()
    system = start_system(CONFIG)
    server = serve_metrics(system, port=0, timeout_s=0.8)  # inside Prometheus's 1 s scrape timeout
    prometheus = PrometheusServer(binary, tmp_path, f"127.0.0.1:{server.port}")
    try:
        system.submit([
            Tick("EURUSD", 1.25, 1.2578125, T0, "feed-1", 0),
            Tick("EURUSD", 1.26, 1.25, T0 + NS, "feed-1", 1),  # bid above ask: refused
            Tick("EURUSD", 1.125, 1.1328125, T0 + 2 * NS, "feed-1", 2),
        ])
        system.flush()
        assert [r.code for r in system.refusals] == ["crossed_quote"]
        applied = system.ticks_applied  # 2 good ticks, applied at each of the 2 shards
        assert applied == 4

        expected = {
            'riskmon_account_breaker_engaged{account="b1", portfolio="desk"}': 1.0,
            'riskmon_account_breaker_engaged{account="a1", portfolio="desk"}': 0.0,
            'riskmon_account_alert_level{account="a1"}': 1.0,
            'riskmon_account_alert_level{account="b1"}': 2.0,
            'riskmon_account_drawdown_ratio{account="b1"}': 0.25,
            'riskmon_account_equity{account="a1"}': 875_000.0,
            "sum(riskmon_ticks_applied_total)": float(applied),
            'riskmon_ticks_applied_total{shard="shard-0000"}': 2.0,
            'riskmon_rejected_inputs_total{code="crossed_quote"}': 1.0,
            'riskmon_alerts_total{level="CRITICAL"}': 1.0,
            'riskmon_alerts_total{level="WARNING"}': 1.0,  # a1; b1 goes straight to CRITICAL
            'riskmon_breaker_changes_total{scope="account", state="ENGAGED"}': 1.0,
            "sum(riskmon_breach_to_halt_seconds_count)": 1.0,
            'riskmon_portfolio_engaged_accounts{portfolio="desk"}': 1.0,
            "riskmon_firm_equity": 1_625_000.0,
            "riskmon_firm_daily_pnl": -375_000.0,
            "min(riskmon_account_up)": 1.0,
            'up{job="riskmon"}': 1.0,
        }
        seen: dict[str, float | None] = {}

        def all_seen() -> bool:
            seen.update({expr: prometheus.value(expr) for expr in expected})
            return seen == expected

        wait_until(prometheus, f"{expected} (last seen: {seen})", all_seen)

        # Every query of the shipped dashboard is valid PromQL over these series.
        dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                answer = prometheus.query(target["expr"].replace("$portfolio", ".*"))
                assert answer["status"] == "success", (panel["title"], target["expr"], answer)
    finally:
        prometheus.stop()
        server.close()
    assert prometheus.process.returncode is not None


def test_prometheus_when_a_shard_is_killed_and_restarts_sees_no_counter_reset(
        start_system: Callable[..., Any], tmp_path: Path) -> None:
    binary = prometheus_binary()
    system = start_system(CONFIG)
    server = serve_metrics(system, port=0, timeout_s=0.8)
    prometheus = PrometheusServer(binary, tmp_path, f"127.0.0.1:{server.port}")
    try:
        system.submit([Tick("EURUSD", 1.25, 1.2578125, T0, "feed-1", 0),
                       Tick("EURUSD", 1.125, 1.1328125, T0 + NS, "feed-1", 1)])
        system.flush()
        before = {"sum(riskmon_ticks_applied_total)": 4.0, "sum(riskmon_batch_duration_seconds_count)": 2.0,
                  'riskmon_account_breaker_engaged{account="b1"}': 1.0}
        wait_until(prometheus, str(before), lambda: {e: prometheus.value(e) for e in before} == before)

        # kill -9 b1's shard: Ray restarts it, it rebuilds ticks_applied from its journal, and its in-memory
        # batch histogram starts again from zero in the new process.
        crash_shard(system, "shard-0001")
        system.submit([Tick("EURUSD", 1.125, 1.1328125, T0 + 2 * NS, "feed-1", 2)])
        system.flush()
        after = {"sum(riskmon_ticks_applied_total)": 6.0, "sum(riskmon_batch_duration_seconds_count)": 4.0,
                 'riskmon_account_breaker_engaged{account="b1"}': 1.0, "min(riskmon_account_up)": 1.0,
                 "min(riskmon_shard_up)": 1.0,
                 # Prometheus saw every counter only ever rise
                 "sum(resets(riskmon_ticks_applied_total[10m]))": 0.0,
                 "sum(resets(riskmon_batch_duration_seconds_count[10m]))": 0.0,
                 "sum(resets(riskmon_alerts_total[10m]))": 0.0}
        seen: dict[str, float | None] = {}

        def all_seen() -> bool:
            seen.update({expr: prometheus.value(expr) for expr in after})
            return seen == after

        wait_until(prometheus, f"{after} (last seen: {seen})", all_seen)
    finally:
        prometheus.stop()
        server.close()
