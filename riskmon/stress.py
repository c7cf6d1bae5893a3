"""``riskmon stress``: a synthetic firm under load, end to end on Ray, with breach-to-deny latency.

Throughput is measured to a watermark: the clock stops when every tick sent has
been applied by every account holding its symbol and the supervisor has seen
every report (``RiskSystem.flush``), not when the producer finished sending.
Breach-to-deny latency runs from the moment the batch holding a breaching tick
(or fill) was handed to the system to the moment an order gate in another
process first denied that account.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driver.system import RiskSystem
from riskcore.account import drawdown_pct
from riskcore.audit import AuditTrail, refusal_summary
from riskcore.config import RiskConfig
from riskcore.engine import BatchedEngine, EventBatch, TickColumns
from riskmon.loadgen.generator import Chunk, LoadGenerator
from riskmon.loadgen.probe import create_gate_probe


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p99": None, "max": None}
    array = np.asarray(values)
    return {"count": len(values), "p50": round(float(np.percentile(array, 50)), 3),
            "p99": round(float(np.percentile(array, 99)), 3), "max": round(float(array.max()), 3)}


def run_stress(config: RiskConfig, *, streams: int = 128, ticks: int | None = None, duration: float | None = None,
               scenario: str = "mixed", seed: int = 7, rate: float | None = None, chunk: int = 16_384,
               console: Console | None = None, progress: bool = True, system: RiskSystem | None = None,
               breach_every: int | None = None, audit: AuditTrail | None = None,
               latencies: list[float] | None = None, parts: list[Chunk] | None = None,
               events_out: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Drive ``config``'s firm with generated load; return the summary (see the module docstring).

    With ``audit``, every event and a summary of refused input go on that trail after the measured run.
    With ``latencies``, each breach-to-deny latency measured (ms) is appended to it (the summary keeps only
    percentiles). With ``parts`` and ``events_out``, every chunk submitted (the calibration's too) and every
    event are appended to them, for charts drawn afterwards (:func:`account_series`).
    """
    console = console or Console(stderr=True)
    own = system is None
    system = system or RiskSystem.start(config)
    probe = create_gate_probe(system.supervisor, config)
    try:
        ray.get(probe.ready.remote())
        generator = LoadGenerator(config, streams=streams, scenario=scenario, seed=seed, breach_every=breach_every)
        if ticks is None:
            # A duration: size the run from the rate, or from a second of real load through this system (not
            # counted), so the scenario's effects land where they should and the run takes about that long.
            ticks = int((rate or _calibrate(system, generator, chunk, parts)) * (duration or 10.0))
        generator.plan(ticks)
        first, fills_before = generator.sent, generator.fills_sent
        sent: list[tuple[int, int]] = []  # (first global tick index of a batch, monotonic ns when submitted)
        account_ticks = 0
        started = time.monotonic()
        with Progress(TextColumn("[bold]stress"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} ticks"),
                      TimeElapsedColumn(), console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task("ticks", total=ticks)
            for part in generator.chunks(chunk, first + ticks):
                if rate:
                    # Pace to the requested rate: wait until this chunk is due.
                    time.sleep(max(0.0, started + (part.first - first) / rate - time.monotonic()))
                sent.append((part.first, time.monotonic_ns()))
                system.submit_columns(part.ticks, part.fills, part.fill_pos)
                if parts is not None:
                    parts.append(part)
                account_ticks += generator.account_ticks(part.ticks)
                bar.update(task, completed=part.first - first + len(part.ticks))
            system.flush()
        seconds = time.monotonic() - started
        events = system.events()
        if events_out is not None:
            events_out.extend(events)
        if audit is not None:
            for event in events:
                audit.append_event(event)
            if system.refusals:
                audit.append("rejected_input", **refusal_summary(r.to_dict() for r in system.refusals))
        engaged = [e for e in events if e.get("type") == "breaker" and e["state"] == "ENGAGED"
                   and (e["tick_seq"] is None or e["tick_seq"] >= first)]
        first_engaged: dict[str, int] = {}
        for e in engaged:
            if e["scope"] == "account" and e["id"] not in first_engaged:
                first_engaged[e["id"]] = int(e["tick_seq"])
        denied = ray.get(probe.wait_denied.remote(list(first_engaged), 10.0))
        starts = np.asarray([first for first, _ in sent])
        measured: list[float] = []
        for account, seq in first_engaged.items():
            if account in denied:
                submitted = sent[int(np.searchsorted(starts, seq, side="right")) - 1][1]
                measured.append((denied[account] - submitted) / 1e6)
        if latencies is not None:
            latencies.extend(measured)
        return {
            "accounts": len(config.accounts), "portfolios": len(config.portfolios), "symbols": len(config.symbols),
            "streams": streams, "scenario": scenario, "seed": seed, "rate": rate,
            "ticks": ticks, "fills": generator.fills_sent - fills_before, "seconds": round(seconds, 3),
            "ticks_per_s": round(ticks / seconds), "account_ticks": account_ticks,
            "account_ticks_per_s": round(account_ticks / seconds),
            "alerts": sum(1 for e in events if e.get("type") == "alert" and e["tick_seq"] >= first),
            "breaches": {scope: sum(1 for e in engaged if e["scope"] == scope) for scope in ("account", "portfolio", "global")},
            "breach_to_deny_ms": percentiles(measured),
            "undenied_breaches": sorted(set(first_engaged) - set(denied)),
            "rejected": len(system.refusals),
        }
    finally:
        ray.kill(probe, no_restart=True)
        if own:
            system.shutdown()


def _calibrate(system: RiskSystem, generator: LoadGenerator, chunk: int, parts: list[Chunk] | None) -> float:
    """Ticks per second this system sustains on this load: half a second to warm up, then a second and a half
    of it, applied and reported (a first second alone ran well below the steady rate)."""
    rate = 0.0
    for seconds in (0.5, 1.5):
        started = time.monotonic()
        done = 0
        while time.monotonic() - started < seconds:
            part = generator.chunk(chunk)
            system.submit_columns(part.ticks, part.fills, part.fill_pos)
            if parts is not None:
                parts.append(part)
            done += len(part.ticks)
        system.flush()
        rate = done / (time.monotonic() - started)
    return rate


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"riskmon stress: {summary['scenario']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    latency = summary["breach_to_deny_ms"]
    rows = [
        ("accounts / portfolios / symbols / streams",
         f"{summary['accounts']:,} / {summary['portfolios']} / {summary['symbols']} / {summary['streams']}"),
        ("ticks (fills)", f"{summary['ticks']:,} ({summary['fills']:,})"),
        ("seconds, to the applied watermark", f"{summary['seconds']:.2f}"),
        ("ticks/s", f"{summary['ticks_per_s']:,}"),
        ("account-ticks/s", f"{summary['account_ticks_per_s']:,}"),
        ("alert changes", f"{summary['alerts']:,}"),
        ("breaches account / portfolio / global", " / ".join(str(v) for v in summary["breaches"].values())),
        ("breach-to-deny ms p50 / p99 / max (n)" + ("" if summary["rate"] else "\n  (unpaced feed: includes queueing; see --rate)"),
         "-" if not latency["count"] else f"{latency['p50']} / {latency['p99']} / {latency['max']} ({latency['count']})"),
        ("rejected inputs", f"{summary['rejected']:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def account_series(config: RiskConfig, parts: list[Chunk], accounts: list[str],
                   max_points: int = 4_000) -> dict[str, list[tuple[int, float, float]]]:
    """``(ts_ns, equity, drawdown_pct)`` of each of ``accounts`` through a stress run, for its charts: the same
    chunks again through the batched engine (the shards' own, compiled) hosting those accounts only, read
    every few hundred ticks so each account gets about ``max_points`` points. Ray-free; paid only with --plot.
    """
    engine = BatchedEngine(config, accounts)
    hosted = set(accounts)
    total = sum(len(part.ticks) for part in parts)
    step = max(64, total // max(1, max_points))
    out: dict[str, list[tuple[int, float, float]]] = {a: [] for a in accounts}
    rows = [engine.index_of[a] for a in accounts]
    for part in parts:
        fills = [(f, p) for f, p in zip(part.fills, part.fill_pos) if f.account in hosted]
        for lo in range(0, max(len(part.ticks), 1), step):
            hi = min(lo + step, len(part.ticks))
            last = hi == len(part.ticks)
            mine = [(f, p - lo) for f, p in fills if lo <= p < hi or (last and p == hi)]
            ticks = TickColumns(part.ticks.symbol[lo:hi], part.ticks.bid[lo:hi], part.ticks.ask[lo:hi],
                                part.ticks.ts_ns[lo:hi], part.ticks.seq[lo:hi], part.ticks.stream[lo:hi],
                                part.ticks.streams)
            engine.apply(EventBatch(ticks, [f for f, _ in mine], [p for _, p in mine]))
            for account, row in zip(accounts, rows):
                if not engine.a_has_ts[row]:
                    continue
                equity = float(engine.a_balance[row] + engine.a_open[row])
                peak = float(engine.a_peak[row])
                out[account].append((int(engine.a_ts[row]), equity, drawdown_pct(peak, peak - equity)))
    return out
