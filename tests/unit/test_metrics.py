"""The Prometheus exporter without Ray: a fake source with canned status, states and stats.

Checks the exposition text (``generate_latest``), counters that stay monotonic when a source's process
restarts, series that stay while a shard is down, the histogram buckets, and that the shipped Grafana
dashboard only queries metrics the exporter exports.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from driver.metrics import RiskmonCollector, exported_names, serve_collector
from driver.metrics_source import MonotonicTotals, Reading
from riskcore.histogram import DurationHistogram

ROOT = Path(__file__).resolve().parents[2]


def _state(account: str, portfolio: str, **figures: Any) -> dict[str, Any]:
    state = {"account": account, "portfolio": portfolio, "timestamp": None, "balance": 1_000_000.0,
             "open_pnl": 0.0, "closed_pnl": 0.0, "total_pnl": 0.0, "positions": 1,
             "total_exposure": 2_000_000.0,
             "leverage": 2.0, "drawdown": 0.0, "drawdown_pct": 0.0, "alert_level": "NORMAL",
             "equity": 1_000_000.0, "day_peak": 1_000_000.0, "sod_equity": 1_000_000.0, "breaker": "SAFE"}
    state.update(figures)
    return state


def _aggregate(scope: str, ident: str, engaged: int = 0) -> dict[str, Any]:
    return {"scope": scope, "id": ident, "accounts": 2, "gross_exposure": 3_000_000.0,
            "net_exposure": {"EURUSD": 2_500_000.0}, "equity": 1_750_000.0, "daily_pnl": -250_000.0,
            "day_peak": 2_000_000.0, "drawdown": 250_000.0,
            "by_level": {"NORMAL": 1, "WARNING": 0, "CRITICAL": 1},
            "by_breaker": {"SAFE": 2 - engaged, "ENGAGED": engaged}}


def _histogram(*seconds: float) -> dict[str, Any]:
    histogram = DurationHistogram()
    for s in seconds:
        histogram.observe(s)
    return histogram.to_dict()


def _stats(shard: str, ticks: int, started_ns: int = 1, refused: dict[str, int] | None = None,
           batch_seconds: tuple[float, ...] = (), halts: tuple[float, ...] = ()) -> dict[str, Any]:
    return {"shard": shard, "accounts": 1, "batches": ticks // 2, "ticks_applied": ticks, "fills_applied": 1,
            "refused": refused or {}, "started_ns": started_ns, "batch_seconds": _histogram(*batch_seconds),
            "breach_to_halt_seconds": _histogram(*halts)}


class FakeSource:
    """Two shards (one account each) in one portfolio; tests change ``reading`` between scrapes.

    ``status`` is the supervisor's part of ``reading`` (while a test has not replaced it).
    """

    def __init__(self) -> None:
        self.placement: Mapping[str, Sequence[str]] = {"shard-0": ["a1"], "shard-1": ["b1"]}
        self.portfolio_of: Mapping[str, str] = {"a1": "desk", "b1": "desk"}
        self.status: dict[str, Any] = {
            "firm": _aggregate("global", "firm", engaged=1),
            "portfolios": {"desk": _aggregate("portfolio", "desk", engaged=1)},
            "breakers": {"global": {"state": "SAFE"}, "portfolios": {"desk": {"state": "ENGAGED"}},
                         "accounts": {"a1": {"state": "SAFE"}, "b1": {"state": "ENGAGED"}}},
            "up": {"a1": True, "b1": True},
            "refused": {"bid_above_ask": 2},
            "event_counts": {"alert:WARNING": 1, "alert:CRITICAL": 1, "breaker:account:ENGAGED": 1,
                             "breaker:portfolio:ENGAGED": 1, "limit": 1, "command": 3},
            "started_ns": 100,
        }
        self.reading = Reading(
            status=self.status,
            states={
                "shard-0": {"a1": _state("a1", "desk", alert_level="WARNING", drawdown=10_000.0,
                                         drawdown_pct=0.01, equity=990_000.0)},
                "shard-1": {"b1": _state("b1", "desk", alert_level="CRITICAL", breaker="ENGAGED",
                                         equity=-5_000.0, leverage="inf", drawdown_pct=1.005)},
            },
            stats={"shard-0": _stats("shard-0", 10, batch_seconds=(0.0004, 0.003)),
                   "shard-1": _stats("shard-1", 6, batch_seconds=(0.02,), halts=(0.0007,))},
        )

    def read(self) -> Reading:
        return copy.deepcopy(self.reading)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value


def _scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def registry(source: FakeSource) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RiskmonCollector(source))
    return registry


# ---------------------------------------------------------------------- MonotonicTotals


def test_monotonic_totals_when_journaled_count_continues_after_restart_add_only_the_increase() -> None:
    totals = MonotonicTotals[str]()
    assert totals.add("ticks", 10) == (10.0,)
    assert totals.add("ticks", 15) == (15.0,)
    assert totals.add("ticks", 15) == (15.0,)  # a restarted shard rebuilt 15 from its journal: nothing new


def test_monotonic_totals_when_count_decreases_take_it_as_counted_from_zero() -> None:
    totals = MonotonicTotals[str]()
    totals.add("refused", 7, process=1)
    assert totals.add("refused", 2, process=1) == (9.0,)  # 7 then, 2 since a reset


def test_monotonic_totals_when_process_changes_add_the_new_process_count_whole() -> None:
    totals = MonotonicTotals[str]()
    totals.add("refused", 5, process=1)
    # The new process counted 8 before the scrape: more than the 5 last seen, yet all of them are new.
    assert totals.add("refused", 8, process=2) == (13.0,)
    assert totals.add("refused", 9, process=2) == (14.0,)


def test_monotonic_totals_when_values_are_tuples_compare_and_add_element_by_element() -> None:
    totals = MonotonicTotals[str]()
    totals.add("h", (1, 2, 0.5, 2), process=1)
    assert totals.add("h", (1, 3, 0.75, 3), process=1) == (1.0, 3.0, 0.75, 3.0)
    assert totals.add("h", (0, 1, 0.1, 1), process=2) == (1.0, 4.0, 0.85, 4.0)


# ---------------------------------------------------------------------- exposition


def test_collector_when_scraped_exports_account_figures_with_account_and_portfolio_labels(
        registry: CollectorRegistry) -> None:
    samples = _scrape(registry)
    assert _value(samples, "riskmon_account_equity", account="a1", portfolio="desk") == 990_000.0
    assert _value(samples, "riskmon_account_drawdown_ratio", account="a1", portfolio="desk") == 0.01
    assert _value(samples, "riskmon_account_alert_level", account="a1", portfolio="desk") == 1.0
    a1 = {"account": "a1", "portfolio": "desk"}
    assert _value(samples, "riskmon_account_alert_state", **a1, state="WARNING") == 1.0
    assert _value(samples, "riskmon_account_alert_state", **a1, state="NORMAL") == 0.0
    assert _value(samples, "riskmon_account_breaker_engaged", account="a1", portfolio="desk") == 0.0
    assert _value(samples, "riskmon_account_breaker_engaged", account="b1", portfolio="desk") == 1.0
    assert _value(samples, "riskmon_account_alert_level", account="b1", portfolio="desk") == 2.0
    assert _value(samples, "riskmon_account_daily_pnl", account="a1", portfolio="desk") == -10_000.0
    assert _value(samples, "riskmon_account_up", account="b1", portfolio="desk") == 1.0


def test_collector_when_equity_is_not_positive_exports_leverage_as_plus_inf(
        registry: CollectorRegistry) -> None:
    text = generate_latest(registry).decode()
    assert 'riskmon_account_leverage{account="b1",portfolio="desk"} +Inf' in text


def test_collector_when_scraped_exports_portfolio_and_firm_aggregates(registry: CollectorRegistry) -> None:
    samples = _scrape(registry)
    assert _value(samples, "riskmon_portfolio_gross_exposure", portfolio="desk") == 3_000_000.0
    assert _value(samples, "riskmon_portfolio_equity", portfolio="desk") == 1_750_000.0
    assert _value(samples, "riskmon_portfolio_daily_pnl", portfolio="desk") == -250_000.0
    assert _value(samples, "riskmon_portfolio_drawdown", portfolio="desk") == 250_000.0
    assert _value(samples, "riskmon_portfolio_engaged_accounts", portfolio="desk") == 1.0
    assert _value(samples, "riskmon_portfolio_breaker_engaged", portfolio="desk") == 1.0
    assert _value(samples, "riskmon_portfolio_net_exposure", portfolio="desk", symbol="EURUSD") == 2_500_000.0
    assert _value(samples, "riskmon_portfolio_alert_accounts", portfolio="desk", level="CRITICAL") == 1.0
    assert _value(samples, "riskmon_firm_gross_exposure") == 3_000_000.0
    assert _value(samples, "riskmon_firm_breaker_engaged") == 0.0
    assert _value(samples, "riskmon_firm_engaged_accounts") == 1.0
    assert _value(samples, "riskmon_supervisor_up") == 1.0


def test_collector_when_scraped_exports_counters_with_total_suffix_and_help(
        registry: CollectorRegistry) -> None:
    text = generate_latest(registry).decode()
    assert "# HELP riskmon_ticks_applied_total " in text
    assert "# TYPE riskmon_ticks_applied_total counter" in text
    samples = _scrape(registry)
    assert _value(samples, "riskmon_ticks_applied_total", shard="shard-0") == 10.0
    assert _value(samples, "riskmon_ticks_applied_total", shard="shard-1") == 6.0
    assert _value(samples, "riskmon_rejected_inputs_total", code="bid_above_ask") == 2.0
    assert _value(samples, "riskmon_alerts_total", level="CRITICAL") == 1.0
    assert _value(samples, "riskmon_breaker_changes_total", scope="portfolio", state="ENGAGED") == 1.0
    assert _value(samples, "riskmon_limit_breaches_total") == 1.0
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name


def test_collector_when_scraped_exports_cumulative_histogram_buckets(registry: CollectorRegistry) -> None:
    samples = _scrape(registry)
    assert _value(samples, "riskmon_batch_duration_seconds_bucket", shard="shard-0", le="0.0005") == 1.0
    assert _value(samples, "riskmon_batch_duration_seconds_bucket", shard="shard-0", le="0.005") == 2.0
    assert _value(samples, "riskmon_batch_duration_seconds_bucket", shard="shard-0", le="+Inf") == 2.0
    assert _value(samples, "riskmon_batch_duration_seconds_count", shard="shard-0") == 2.0
    assert _value(samples, "riskmon_batch_duration_seconds_sum", shard="shard-0") == pytest.approx(0.0034)
    assert _value(samples, "riskmon_breach_to_halt_seconds_bucket", shard="shard-1", le="0.001") == 1.0
    assert _value(samples, "riskmon_breach_to_halt_seconds_bucket", shard="shard-1", le="0.0005") == 0.0


def test_duration_histogram_when_value_equals_a_bound_counts_it_in_that_bucket() -> None:
    histogram = DurationHistogram((0.1, 1.0))
    histogram.observe(0.1)
    histogram.observe(5.0)
    assert histogram.to_dict() == {"le": [0.1, 1.0], "buckets": [1, 1, 2], "sum": 5.1, "count": 2}


# ---------------------------------------------------------------------- restarts


def test_collector_when_shard_restarts_keeps_counters_and_histograms_monotonic(
        source: FakeSource, registry: CollectorRegistry) -> None:
    _scrape(registry)
    # shard-1 restarted: its journal gave back ticks_applied (then 2 more), its histograms start from zero.
    source.reading.stats["shard-1"] = _stats("shard-1", 8, started_ns=2, batch_seconds=(0.02,))
    # The supervisor restarted too: its in-memory refusal count starts again (1 since); the log is journaled.
    source.status["refused"] = {"bid_above_ask": 1}
    source.status["started_ns"] = 200
    samples = _scrape(registry)
    assert _value(samples, "riskmon_ticks_applied_total", shard="shard-1") == 8.0
    assert _value(samples, "riskmon_batch_duration_seconds_count", shard="shard-1") == 2.0
    assert _value(samples, "riskmon_breach_to_halt_seconds_count", shard="shard-1") == 1.0
    assert _value(samples, "riskmon_breach_to_halt_seconds_bucket", shard="shard-1", le="+Inf") == 1.0
    assert _value(samples, "riskmon_rejected_inputs_total", code="bid_above_ask") == 3.0
    assert _value(samples, "riskmon_alerts_total", level="CRITICAL") == 1.0


def test_collector_when_shard_is_down_keeps_its_series_and_says_it_is_down(
        source: FakeSource, registry: CollectorRegistry) -> None:
    _scrape(registry)
    source.reading.states["shard-1"] = None
    source.reading.stats["shard-1"] = None
    source.status["up"] = {"a1": True, "b1": False}
    samples = _scrape(registry)
    assert _value(samples, "riskmon_account_up", account="b1", portfolio="desk") == 0.0
    assert _value(samples, "riskmon_shard_up", shard="shard-1") == 0.0
    assert _value(samples, "riskmon_account_equity", account="b1", portfolio="desk") == -5_000.0
    assert _value(samples, "riskmon_account_breaker_engaged", account="b1", portfolio="desk") == 1.0
    assert _value(samples, "riskmon_ticks_applied_total", shard="shard-1") == 6.0
    assert _value(samples, "riskmon_batch_duration_seconds_count", shard="shard-1") == 1.0


def test_collector_when_supervisor_is_down_keeps_aggregates_and_uses_shard_answers_for_up(
        source: FakeSource, registry: CollectorRegistry) -> None:
    _scrape(registry)
    source.reading.status = None
    source.reading.states["shard-1"] = None
    samples = _scrape(registry)
    assert _value(samples, "riskmon_supervisor_up") == 0.0
    assert _value(samples, "riskmon_portfolio_equity", portfolio="desk") == 1_750_000.0
    assert _value(samples, "riskmon_rejected_inputs_total", code="bid_above_ask") == 2.0
    assert _value(samples, "riskmon_account_up", account="a1", portfolio="desk") == 1.0
    assert _value(samples, "riskmon_account_up", account="b1", portfolio="desk") == 0.0


def test_collector_when_shard_never_answered_exports_it_down_without_figures() -> None:
    source = FakeSource()
    source.reading.states["shard-1"] = None
    source.reading.stats["shard-1"] = None
    source.status["up"] = {"a1": True, "b1": False}
    registry = CollectorRegistry()
    registry.register(RiskmonCollector(source))
    samples = _scrape(registry)
    assert _value(samples, "riskmon_account_up", account="b1", portfolio="desk") == 0.0
    assert ("riskmon_account_equity", (("account", "b1"), ("portfolio", "desk"))) not in samples


# ---------------------------------------------------------------------- serving and shipped files


def test_serve_collector_when_port_is_zero_serves_metrics_on_loopback(source: FakeSource) -> None:
    with serve_collector(RiskmonCollector(source), port=0) as server:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=10) as response:
            body = response.read().decode()
    assert 'riskmon_ticks_applied_total{shard="shard-0"} 10.0' in body


def test_grafana_dashboard_when_loaded_queries_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exported = exported_names(RiskmonCollector(FakeSource()))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(exprs) >= 10
    named = {name for expr in exprs for name in re.findall(r"\briskmon_[a-z_]+", expr)}
    assert named
    assert named <= exported, sorted(named - exported)
    panels = {p["title"] for p in dashboard["panels"] if p["type"] != "row"}
    assert any("histogram_quantile" in e and "breach_to_halt" in e for e in exprs)
    assert any("histogram_quantile" in e and "batch_duration" in e for e in exprs)
    assert len(panels) >= 10


def test_prometheus_example_config_when_loaded_scrapes_the_default_exporter_address() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["127.0.0.1:9464"]


def test_exported_names_when_listed_follow_prometheus_naming() -> None:
    collector = RiskmonCollector(FakeSource())
    for name in exported_names(collector):
        assert name.startswith("riskmon_"), name
        assert re.fullmatch(r"[a-z_]+", name), name
    counters = [f.name for f in collector.describe() if f.type == "counter"]
    assert counters
    assert all(f"{name}_total" in exported_names(collector) for name in counters)


def test_percentiles_when_given_values_and_none_reports_count_p50_p99_max() -> None:
    from riskcore.histogram import percentiles

    assert percentiles([]) == {"count": 0, "p50": None, "p99": None, "max": None}
    shown = percentiles([float(v) for v in range(1, 101)])
    assert shown == {"count": 100, "p50": 50.5, "p99": 99.01, "max": 100.0}
