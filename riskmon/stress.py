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
from collections.abc import Iterator
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
from riskcore.histogram import percentiles
from riskmon.loadgen.generator import Chunk, LoadGenerator
from riskmon.loadgen.probe import create_gate_probe

DEFAULT_DURATION_S = 10.0
CALIBRATION_S = (0.5, 1.5)  # warm-up, then the measured second and a half the run is sized from


def run_stress(config: RiskConfig, *, streams: int = 128, ticks: int | None = None,
               duration: float | None = None, scenario: str = "mixed", seed: int = 7,
               rate: float | None = None, chunk: int = 16_384,
               console: Console | None = None, progress: bool = True, system: RiskSystem | None = None,
               breach_every: int | None = None, audit: AuditTrail | None = None,
               latencies: list[float] | None = None, parts: list[Chunk] | None = None,
               events_out: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Drive ``config``'s firm with generated load; return the summary (see the module docstring).

    ``ticks``: exactly that many, so one seed gives the same ticks, fills, alerts and breaches every run.
    Otherwise ``duration`` seconds (default 10) of sending: paced at ``rate``, or as fast as the system takes
    them, the scenario placed by a calibration run first (not counted; ``summary["calibration"]``), so the
    tick count depends on the machine's speed and load.

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
        generator = LoadGenerator(config, streams=streams, scenario=scenario, seed=seed,
                                  breach_every=breach_every)
        calibration: dict[str, Any] | None = None
        seconds_of_load = None if ticks is not None else duration or DEFAULT_DURATION_S
        # A duration: the plan is sized from the rate, or from real load through this system, so the
        # scenario's effects land about where they should; the run itself ends at the deadline.
        if ticks is not None:
            planned = ticks
        elif rate:
            planned = int(rate * (seconds_of_load or 0.0))
        else:
            calibration = _calibrate(system, generator, chunk, parts)
            planned = int(calibration["ticks_per_s"] * (seconds_of_load or 0.0))
        generator.plan(planned)
        first, fills_before = generator.sent, generator.fills_sent
        sent: list[tuple[int, int]] = []  # (first global tick index of a batch, monotonic ns when submitted)
        account_ticks = 0
        started = time.monotonic()
        deadline = None if seconds_of_load is None else started + seconds_of_load
        with Progress(TextColumn("[bold]stress"), BarColumn(), TextColumn("{task.completed:,} ticks"),
                      TimeElapsedColumn(), console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task("ticks", total=planned)
            for part in _measured_chunks(generator, chunk, first + planned, rate, started, deadline):
                sent.append((part.first, time.monotonic_ns()))
                system.submit_columns(part.ticks, list(part.fills), part.fill_pos)
                if parts is not None:
                    parts.append(part)
                account_ticks += generator.account_ticks(part.ticks)
                done = part.first - first + len(part.ticks)
                bar.update(task, completed=done, total=max(planned, done))
            system.flush()
        seconds = time.monotonic() - started
        ticks = generator.sent - first
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
            "accounts": len(config.accounts), "portfolios": len(config.portfolios),
            "symbols": len(config.symbols),
            "streams": streams, "scenario": scenario, "seed": seed, "rate": rate,
            "duration": seconds_of_load, "calibration": calibration,
            "ticks": ticks, "fills": generator.fills_sent - fills_before, "seconds": round(seconds, 3),
            "ticks_per_s": round(ticks / seconds), "account_ticks": account_ticks,
            "account_ticks_per_s": round(account_ticks / seconds),
            "alerts": sum(1 for e in events if e.get("type") == "alert" and e["tick_seq"] >= first),
            "breaches": {scope: sum(1 for e in engaged if e["scope"] == scope)
                         for scope in ("account", "portfolio", "global")},
            "breach_to_deny_ms": percentiles(measured),
            "undenied_breaches": sorted(set(first_engaged) - set(denied)),
            "rejected": len(system.refusals),
        }
    finally:
        ray.kill(probe, no_restart=True)
        if own:
            system.shutdown()


def _measured_chunks(generator: LoadGenerator, chunk: int, end: int, rate: float | None, started: float,
                     deadline: float | None) -> Iterator[Chunk]:
    """The measured run's chunks: up to tick ``end``, or with a ``deadline`` as many as fall before it (past
    ``end`` if the system is faster than planned); paced at ``rate`` ticks/s if given."""
    first = generator.sent
    while deadline is not None or generator.sent < end:
        due = started + (generator.sent - first) / rate if rate else time.monotonic()
        if deadline is not None and max(due, time.monotonic()) >= deadline:
            return
        time.sleep(max(0.0, due - time.monotonic()))  # paced: wait until this chunk is due
        yield generator.chunk(chunk if deadline is not None else min(chunk, end - generator.sent))


def _calibrate(system: RiskSystem, generator: LoadGenerator, chunk: int,
               parts: list[Chunk] | None) -> dict[str, Any]:
    """Ticks per second this system sustains on this load: half a second to warm up, then a second and a half
    of it, applied and reported (a first second alone ran well below the steady rate). Returns the rate, the
    seconds it took and the ticks it sent (both phases)."""
    began = time.monotonic()
    sent = generator.sent
    rate = 0.0
    for seconds in CALIBRATION_S:
        started = time.monotonic()
        done = 0
        while time.monotonic() - started < seconds:
            part = generator.chunk(chunk)
            system.submit_columns(part.ticks, list(part.fills), part.fill_pos)
            if parts is not None:
                parts.append(part)
            done += len(part.ticks)
        system.flush()
        rate = done / (time.monotonic() - started)
    return {"ticks_per_s": round(rate), "seconds": round(time.monotonic() - began, 3),
            "ticks": generator.sent - sent}


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"riskmon stress: {summary['scenario']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    latency = summary["breach_to_deny_ms"]
    paced = f"paced at {summary['rate']:,.0f} ticks/s" if summary["rate"] else "unpaced"
    run = (f"{summary['duration']:g} s of load" if summary.get("duration") is not None
           else f"--ticks {summary['ticks']:,}")
    rows = [
        ("accounts / portfolios / symbols / streams",
         f"{summary['accounts']:,} / {summary['portfolios']} / {summary['symbols']} / {summary['streams']}"),
        ("run", f"{run}, {paced}, seed {summary['seed']}"),
        ("ticks (fills)", f"{summary['ticks']:,} ({summary['fills']:,})"),
        ("seconds, to the applied watermark", f"{summary['seconds']:.2f}"),
        ("ticks/s", f"{summary['ticks_per_s']:,}"),
        ("account-ticks/s", f"{summary['account_ticks_per_s']:,}"),
        ("alert changes", f"{summary['alerts']:,}"),
        ("breaches account / portfolio / global", " / ".join(str(v) for v in summary["breaches"].values())),
        (f"breach-to-deny ms p50 / p99 / max (n), {paced}",
         "-" if not latency["count"]
         else f"{latency['p50']} / {latency['p99']} / {latency['max']} ({latency['count']})"),
        ("rejected inputs", f"{summary['rejected']:,}"),
    ]
    calibration = summary.get("calibration")
    if calibration:
        rows.insert(2, ("calibration before the run (not counted)",
                        (f"{calibration['seconds']:.2f} s, {calibration['ticks']:,} ticks, "
                         f"{calibration['ticks_per_s']:,} ticks/s")))
    if "wall_s" in summary:
        rows.append(("wall time: Ray's start, calibration, run, stop", f"{summary['wall_s']:.1f} s"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if not summary["rate"]:
        console.print(UNPACED_NOTE)


UNPACED_NOTE = ("Unpaced, the feed sends as fast as the system takes it: a breaching tick waits behind the "
                "batches already queued (batching.max_in_flight per shard) before it is applied, so this "
                "breach-to-deny latency is mostly queueing. Paced below capacity (--rate 100000, as in "
                "BENCHMARKS.md) it measures the path itself.")


def account_series(config: RiskConfig, parts: list[Chunk], accounts: list[str],
                   max_points: int = 4_000) -> dict[str, list[tuple[int, float, float]]]:
    """``(ts_ns, equity, drawdown_pct)`` of each of ``accounts`` through a stress run, for its charts: the
    same chunks again through the batched engine (the shards' own, compiled) hosting those accounts only,
    read every few hundred ticks so each account gets about ``max_points`` points. Ray-free; paid only with
    --plot.
    """
    engine = BatchedEngine(config, accounts)
    hosted = set(accounts)
    total = sum(len(part.ticks) for part in parts)
    step = max(64, total // max(1, max_points))
    out: dict[str, list[tuple[int, float, float]]] = {a: [] for a in accounts}
    rows = [engine.index_of[a] for a in accounts]
    for part in parts:
        fills = [(f, p) for f, p in zip(part.fills, part.fill_pos, strict=True) if f.account in hosted]
        for lo in range(0, max(len(part.ticks), 1), step):
            hi = min(lo + step, len(part.ticks))
            last = hi == len(part.ticks)
            mine = [(f, p - lo) for f, p in fills if lo <= p < hi or (last and p == hi)]
            ticks = TickColumns(part.ticks.symbol[lo:hi], part.ticks.bid[lo:hi], part.ticks.ask[lo:hi],
                                part.ticks.ts_ns[lo:hi], part.ticks.seq[lo:hi], part.ticks.stream[lo:hi],
                                part.ticks.streams)
            engine.apply(EventBatch(ticks, [f for f, _ in mine], [p for _, p in mine]))
            for account, row in zip(accounts, rows, strict=True):
                if not engine.a_has_ts[row]:
                    continue
                equity = float(engine.a_balance[row] + engine.a_open[row])
                peak = float(engine.a_peak[row])
                out[account].append((int(engine.a_ts[row]), equity, drawdown_pct(peak, peak - equity)))
    return out
