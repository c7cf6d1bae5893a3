"""Prometheus metrics: a custom collector that reads the live system on every scrape.

    server = serve_metrics(system)                 # http://127.0.0.1:9464/metrics
    ...
    server.close()

On each scrape :class:`RiskmonCollector` asks its source for one :class:`Reading` — over Ray
(:class:`RaySource`) that is the supervisor's ``status()`` and every shard's ``states()`` and ``stats()``,
sent together and collected with one ``ray.get`` — and turns it into metric families. Nothing is cached
between scrapes except what keeps the series honest while actors restart:

- **Counters stay monotonic across actor restarts.** A shard rebuilds ``ticks_applied``, ``fills_applied``,
  ``batches`` and its refusal counts from its journal, and the supervisor rebuilds its event log (and so its
  alert and breaker-change counts), so those come back where they were. The supervisor's refusal counts and
  the shards' latency histograms live in memory only and start again from zero in a restarted process. The
  exporter keeps, per source, the last value it saw and the process it came from (``started_ns``), adds the
  increase since, and takes a value from a new process, or a smaller one, as counted from zero again
  (:class:`MonotonicTotals`). Exported counters therefore never decrease while the exporter lives; what an
  in-memory count gained between the last scrape and its process's death is lost (one scrape interval's
  worth).
- **Series do not vanish while an actor is down.** An account's, portfolio's or firm's last known figures are
  exported until fresh ones come, with ``riskmon_account_up`` (the supervisor's liveness view: 0 while the
  account's shard is dead or restarting), ``riskmon_shard_up`` and ``riskmon_supervisor_up`` (did it answer
  this scrape) saying how current they are.

Units are the account currency for money, seconds for time; ratios are fractions (``drawdown_pct`` 0.02 is
2 %, exported as ``riskmon_account_drawdown_ratio``). An infinite leverage (equity ≤ 0) is exported as +Inf.
Labels come from bounded sets: account, portfolio and shard ids from the config, symbols, refusal codes,
alert levels, breaker scopes and states.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from driver.metrics_source import MetricsSource, MonotonicTotals, RaySource, Reading
from riskcore.states import AlertLevel, BreakerState

PREFIX = "riskmon_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
ENGAGED = BreakerState.ENGAGED.value
# How Prometheus writes a bucket bound (``le``); prometheus_client leaves this helper unannotated.
go_float: Callable[[float], str] = floatToGoString


def _alert_rank(level: Any) -> float:
    """An alert level as exported (its rank: 0 NORMAL, 1 WARNING, 2 CRITICAL); NaN if it is none of them."""
    try:
        return float(AlertLevel(level).rank)
    except ValueError:
        return math.nan


def _number(value: Any) -> float:
    """A figure as exported: JSON-style ``"inf"`` strings become infinities; missing is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return float(value)  # "inf", "-inf"
    return float(value)


# name (without the prefix), help text. Counters are named without ``_total``, which prometheus_client adds.
ACCOUNT_GAUGES = {
    "account_equity": "Account equity: balance + open PnL (account currency).",
    "account_daily_pnl": "Account PnL since the start of the trading day: equity - start-of-day equity.",
    "account_drawdown": "Account drawdown from the day's peak equity (account currency).",
    "account_drawdown_ratio": "Account drawdown_pct: drawdown / day peak equity, as a fraction (0.02 = 2 %).",
    "account_exposure": "Account gross exposure: sum of |qty| * mark * multiplier (account currency).",
    "account_leverage": "Account leverage: gross exposure / equity; +Inf when equity <= 0.",
    "account_alert_level": "Account alert level: 0 NORMAL, 1 WARNING, 2 CRITICAL.",
    "account_breaker_engaged": "Account circuit breaker: 1 ENGAGED (orders denied), 0 SAFE.",
}
SCOPE_GAUGES = {
    "gross_exposure": "Gross exposure of every account in it (account currency).",
    "equity": "Equity of every account in it.",
    "daily_pnl": "PnL since the start of the trading day.",
    "drawdown": "Drawdown from the aggregate day peak equity.",
    "engaged_accounts": "Accounts whose own breaker is engaged.",
    "breaker_engaged": "Its own circuit breaker (the global one for the firm): 1 ENGAGED, 0 SAFE.",
}


class Families:
    """One scrape's metric families by name (without the prefix), kept in the order they are exported."""

    def __init__(self) -> None:
        self.scalars: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        self.histograms: dict[str, HistogramMetricFamily] = {}
        self.ordered: list[Metric] = []

    def __getitem__(self, name: str) -> GaugeMetricFamily | CounterMetricFamily:
        return self.scalars[name]

    def gauge(self, name: str, doc: str, label_names: Sequence[str] = ()) -> None:
        self.scalars[name] = family = GaugeMetricFamily(PREFIX + name, doc, labels=list(label_names))
        self.ordered.append(family)

    def counter(self, name: str, doc: str, label_names: Sequence[str] = ()) -> None:
        self.scalars[name] = family = CounterMetricFamily(PREFIX + name, doc, labels=list(label_names))
        self.ordered.append(family)

    def histogram(self, name: str, doc: str, label_names: Sequence[str] = ()) -> None:
        self.histograms[name] = family = HistogramMetricFamily(PREFIX + name, doc, labels=list(label_names))
        self.ordered.append(family)


class RiskmonCollector(Collector):
    """A prometheus_client collector over a :class:`MetricsSource`, for a :class:`CollectorRegistry`.

    Exported (with the ``riskmon_`` prefix): per account (labels ``account``, ``portfolio``) the gauges in
    ``ACCOUNT_GAUGES`` plus ``account_alert_state{state}`` (1 for the current level) and ``account_up``; per
    portfolio (``portfolio``) and for the firm the gauges in ``SCOPE_GAUGES`` (``portfolio_*``, ``firm_*``),
    net exposure per ``symbol`` and accounts per alert ``level``; counters ``ticks_applied_total``,
    ``fills_applied_total``, ``batches_applied_total`` (per ``shard``: a tick routed to two shards counts at
    each), ``rejected_inputs_total{code}`` (every refusal the supervisor heard of, from routers and shards),
    ``alerts_total{level}`` (alert changes, by the level entered), ``breaker_changes_total{scope, state}``,
    ``limit_breaches_total``; histograms ``batch_duration_seconds{shard}`` (a live batch, taken to reported)
    and ``breach_to_halt_seconds{shard}`` (a batch's arrival at the shard to its account breaker's ENGAGED
    going out); ``shard_up{shard}``, ``supervisor_up``. See the module docstring on restarts.
    """

    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self._lock = threading.Lock()  # the HTTP server may run two scrapes at once
        self._totals = MonotonicTotals[tuple[str, str]]()  # (counter name, its label)
        self._states: dict[str, dict[str, dict[str, Any]]] = {}  # shard -> last known account states
        self._status: dict[str, Any] | None = None  # last known supervisor status
        self._le: dict[str, list[float]] = {}  # histogram name -> bucket bounds last seen

    # ------------------------------------------------------------------ families

    @staticmethod
    def _families() -> Families:
        labels = ["account", "portfolio"]
        fams = Families()
        gauge, counter = fams.gauge, fams.counter

        for name, doc in ACCOUNT_GAUGES.items():
            gauge(name, doc, labels)
        gauge("account_alert_state", "Account alert level as a state set: 1 for the current state.",
              [*labels, "state"])
        gauge("account_up", "1 while the account's shard is up (supervisor's view); 0 while it is dead or "
                            "restarting, when its figures are the last known and gates deny it.", labels)
        for name, doc in SCOPE_GAUGES.items():
            gauge(f"portfolio_{name}", f"Portfolio: {doc}", ["portfolio"])
            gauge(f"firm_{name}", f"Firm: {doc}")
        gauge("portfolio_net_exposure", "Portfolio net exposure per symbol (signed, account currency).",
              ["portfolio", "symbol"])
        gauge("firm_net_exposure", "Firm net exposure per symbol (signed, account currency).", ["symbol"])
        gauge("portfolio_alert_accounts", "Portfolio: accounts at each alert level.", ["portfolio", "level"])
        gauge("firm_alert_accounts", "Firm: accounts at each alert level.", ["level"])
        counter("ticks_applied", "Ticks applied by each shard (a tick reaching two shards counts at each).",
                ["shard"])
        counter("fills_applied", "Fills and cash movements applied by each shard.", ["shard"])
        counter("batches_applied", "Batches applied by each shard.", ["shard"])
        counter("rejected_inputs", "Refused input records (ticks, fills, frames), by refusal code.", ["code"])
        counter("alerts", "Account alert level changes, by the level entered.", ["level"])
        counter("breaker_changes", "Circuit breaker changes, by scope (account, portfolio, global) and the "
                                   "state entered.", ["scope", "state"])
        counter("limit_breaches", "Portfolio and firm limit breaches recorded.")
        fams.histogram("batch_duration_seconds",
                       "Time a shard takes to apply a live batch and send its report.", ["shard"])
        fams.histogram("breach_to_halt_seconds",
                       "From a batch's arrival at a shard to an account breaker's ENGAGED going out from it.",
                       ["shard"])
        gauge("shard_up", "1 if the shard answered this scrape; its accounts' figures are otherwise the last "
                          "known.", ["shard"])
        gauge("supervisor_up", "1 if the supervisor answered this scrape; portfolio and firm figures are "
                               "otherwise the last known.")
        return fams

    def describe(self) -> Iterable[Metric]:
        """Every family, without samples: lets a registry check names without reading the system."""
        return self._families().ordered

    def collect(self) -> Iterable[Metric]:
        reading = self.source.read()
        with self._lock:
            return self._collect(reading)

    # ------------------------------------------------------------------ one scrape

    def _collect(self, reading: Reading) -> list[Metric]:
        fams = self._families()
        if reading.status is not None:
            self._status = reading.status
        status = self._status
        for shard, states in reading.states.items():
            if states is not None:
                self._states[shard] = states
        # Liveness is the supervisor's view; without it, whether the shard answered this scrape.
        up = reading.status.get("up", {}) if reading.status is not None else None
        self._accounts(fams, reading, up)
        if status is not None:
            self._scopes(fams, status)
        self._counters(fams, reading)
        fams["supervisor_up"].add_metric([], 1.0 if reading.status is not None else 0.0)
        for shard in self.source.placement:
            fams["shard_up"].add_metric([shard], 1.0 if reading.stats.get(shard) is not None else 0.0)
        return fams.ordered

    def _accounts(self, fams: Families, reading: Reading, up: Mapping[str, bool] | None) -> None:
        for shard, accounts in self.source.placement.items():
            answered = reading.states.get(shard) is not None
            known = self._states.get(shard, {})
            for account in accounts:
                labels = [account, self.source.portfolio_of.get(account, "")]
                alive = bool(up.get(account, answered)) if up is not None else answered
                fams["account_up"].add_metric(labels, 1.0 if alive else 0.0)
                state = known.get(account)
                if state is None:
                    continue  # never read yet: nothing to say but that it is down
                equity = _number(state.get("equity"))
                values = {
                    "account_equity": equity,
                    "account_daily_pnl": equity - _number(state.get("sod_equity")),
                    "account_drawdown": _number(state.get("drawdown")),
                    "account_drawdown_ratio": _number(state.get("drawdown_pct")),
                    "account_exposure": _number(state.get("total_exposure")),
                    "account_leverage": _number(state.get("leverage")),
                    "account_alert_level": _alert_rank(state.get("alert_level")),
                    "account_breaker_engaged": 1.0 if state.get("breaker") == ENGAGED else 0.0,
                }
                for name, value in values.items():
                    fams[name].add_metric(labels, value)
                for level in AlertLevel:
                    fams["account_alert_state"].add_metric([*labels, level.value],
                                                           1.0 if state.get("alert_level") == level else 0.0)

    def _scopes(self, fams: Families, status: Mapping[str, Any]) -> None:
        breakers = status.get("breakers", {})
        scopes: list[tuple[str, list[str], Mapping[str, Any], Mapping[str, Any]]] = [
            ("firm", [], status.get("firm", {}), breakers.get("global", {}))]
        for pid, aggregate in status.get("portfolios", {}).items():
            scopes.append(("portfolio", [pid], aggregate, breakers.get("portfolios", {}).get(pid, {})))
        for kind, labels, aggregate, breaker in scopes:
            values = {
                "gross_exposure": _number(aggregate.get("gross_exposure")),
                "equity": _number(aggregate.get("equity")),
                "daily_pnl": _number(aggregate.get("daily_pnl")),
                "drawdown": _number(aggregate.get("drawdown")),
                "engaged_accounts": float(aggregate.get("by_breaker", {}).get(ENGAGED, 0)),
                "breaker_engaged": 1.0 if breaker.get("state") == ENGAGED else 0.0,
            }
            for name, value in values.items():
                fams[f"{kind}_{name}"].add_metric(labels, value)
            for symbol, net in sorted(aggregate.get("net_exposure", {}).items()):
                fams[f"{kind}_net_exposure"].add_metric([*labels, symbol], _number(net))
            for level in AlertLevel:
                fams[f"{kind}_alert_accounts"].add_metric(
                    [*labels, level.value], float(aggregate.get("by_level", {}).get(level.value, 0)))

    def _counters(self, fams: Families, reading: Reading) -> None:
        totals = self._totals
        for shard, stats in reading.stats.items():
            if stats is None:
                continue  # down: its totals below stay as they were
            process = stats.get("started_ns")
            # Rebuilt from the journal by a restarted shard: continue, not from zero (no process key).
            totals.add(("ticks_applied", shard), stats.get("ticks_applied", 0))
            totals.add(("fills_applied", shard), stats.get("fills_applied", 0))
            totals.add(("batches_applied", shard), stats.get("batches", 0))
            for stat, name in (("batch_seconds", "batch_duration_seconds"),
                               ("breach_to_halt_seconds", "breach_to_halt_seconds")):
                histogram = stats.get(stat)
                if histogram is None:
                    continue
                self._le[name] = list(histogram["le"])
                values = [*histogram["buckets"], histogram["sum"], histogram["count"]]
                totals.add((name, shard), values, process)
        status = reading.status
        if status is not None:
            process = status.get("started_ns")
            for code, count in status.get("refused", {}).items():
                # In memory: a restarted supervisor counts from zero again.
                totals.add(("rejected_inputs", str(code)), count, process)
            for kind, count in status.get("event_counts", {}).items():
                totals.add(("event", str(kind)), count)  # the event log is journaled: it continues
        for key in sorted(totals.keys(), key=str):
            name, label = key
            value = totals.total(key)
            assert value is not None
            if name in ("ticks_applied", "fills_applied", "batches_applied", "rejected_inputs"):
                fams[name].add_metric([label], value[0])
            elif name == "event":
                self._event_counter(fams, label, value[0])
            elif name in self._le:
                bounds = self._le[name]
                buckets = [(go_float(le), n) for le, n in zip(bounds, value[:len(bounds)], strict=True)]
                buckets.append(("+Inf", value[len(bounds)]))
                fams.histograms[name].add_metric([label], buckets, sum_value=value[len(bounds) + 1])

    @staticmethod
    def _event_counter(fams: Families, kind: str, count: float) -> None:
        parts = kind.split(":")
        if parts[0] == "alert" and len(parts) == 2:
            fams["alerts"].add_metric([parts[1]], count)
        elif parts[0] == "breaker" and len(parts) == 3:
            fams["breaker_changes"].add_metric(parts[1:], count)
        elif parts[0] == "limit":
            fams["limit_breaches"].add_metric([], count)


def exported_names(collector: Collector) -> set[str]:
    """Every sample name a collector can export (``_total`` on counters, ``_bucket``/``_sum``/``_count`` on
    histograms): what a dashboard's queries may name."""
    names: set[str] = set()
    for family in collector.describe():  # type: ignore[attr-defined]
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


class MetricsServer:
    """The HTTP endpoint serving one collector's ``/metrics``; :meth:`close` stops it."""

    def __init__(self, collector: RiskmonCollector, registry: CollectorRegistry, httpd: Any,
                 thread: Any) -> None:
        self.collector = collector
        self.registry = registry
        self._httpd = httpd
        self._thread = thread
        self.host, self.port = httpd.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(system: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  timeout_s: float = 5.0) -> MetricsServer:
    """Serve ``system``'s metrics at ``http://host:port/metrics`` from a daemon thread of this process.

    Bound to the loopback interface unless ``host`` says otherwise; ``port=0`` takes a free one (see
    ``MetricsServer.port``). The collector sits in a registry of its own, not prometheus_client's global one,
    so two systems in one process do not collide. ``timeout_s``: how long a scrape waits for the actors.
    """
    return serve_collector(RiskmonCollector(RaySource(system, timeout_s)), host, port)


def serve_collector(collector: RiskmonCollector, host: str = DEFAULT_HOST,
                    port: int = DEFAULT_PORT) -> MetricsServer:
    """As :func:`serve_metrics`, for a collector over any source."""
    registry = CollectorRegistry()
    registry.register(collector)
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(collector, registry, httpd, thread)
