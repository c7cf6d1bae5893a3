"""``riskmon demo``: the whole system on embedded Ray, with a flash crash, in about half a minute."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from config import DEFAULT_CONFIG
from driver.system import RiskSystem
from riskcore.clock import parse_rfc3339
from riskcore.config import load_config
from riskcore.events import Fill, Tick
from riskcore.gate import Order
from riskmon.loadgen.quotes import QuoteWalk

START = {"EURUSD": 1.1215, "GBPUSD": 1.3250, "AUDUSD": 0.7010, "XAUUSD": 1520.0}
LEVEL_STYLE = {"NORMAL": "green", "WARNING": "yellow", "CRITICAL": "bold red"}


def _fmt(value: Any, spec: str) -> str:
    return value if isinstance(value, str) else format(value, spec)


def account_table(states: dict[str, dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("account", "portfolio", "equity", "total_pnl", "drawdown_pct", "leverage", "alert",
                   "breaker"):
        table.add_column(column, justify="right" if column not in ("account", "portfolio") else "left")
    for account, s in states.items():
        level = s["alert_level"]
        table.add_row(
            account, s["portfolio"], _fmt(s["equity"], ",.0f"), _fmt(s["total_pnl"], ",.0f"),
            _fmt(s["drawdown_pct"], ".3%"), _fmt(s["leverage"], ".2f"),
            f"[{LEVEL_STYLE[level]}]{level}[/]",
            "[bold red]ENGAGED[/]" if s["breaker"] == "ENGAGED" else "SAFE",
        )
    return table


def run_demo(config_path: Path = DEFAULT_CONFIG, seconds: float = 12.0, ticks_per_step: int = 2000,
             seed: int = 7, console: Console | None = None) -> dict[str, Any]:
    # Off a terminal (CI logs, pipes) rich assumes 80 columns; the table needs more.
    console = console or Console(width=None if sys.stdout.isatty() else 130)
    config = load_config(config_path)
    console.print(f"[bold]riskmon demo[/]: {len(config.accounts)} accounts, {len(config.portfolios)} "
                  f"portfolios, {len(config.symbols)} symbols from {config_path}")
    console.print("starting embedded Ray ...")
    walk = QuoteWalk({s: START.get(s, 100.0) for s in config.symbols}, seed=seed)
    symbols = walk.symbols
    accounts = [spec.id for spec in config.accounts]
    clock_ns = parse_rfc3339("2020-01-02T14:30:00.000000Z")  # a quiet hour well inside one trading day
    steps = max(8, int(seconds / 0.25))
    crash_step = int(steps * 0.6)
    seq = dict.fromkeys(symbols, 0)
    fills = 0
    with RiskSystem.start(config) as system:
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            for step in range(steps):
                if step == crash_step:
                    walk.crash("EURUSD", -0.04, 400)  # a 4 % flash crash over 400 EURUSD quotes
                which, bids, asks = walk.next(ticks_per_step)
                events: list[Tick | Fill] = []
                for i in range(ticks_per_step):
                    symbol = symbols[int(which[i])]
                    clock_ns += 2_500_000  # 400 quotes per simulated second
                    seq[symbol] += 1
                    events.append(Tick(symbol, float(bids[i]), float(asks[i]), clock_ns, symbol, seq[symbol]))
                    if walk.rng.random() < 0.01:  # fills on ~1 % of ticks: small trades at the touch
                        fills += 1
                        qty = float(walk.rng.choice([-1, 1]) * walk.rng.integers(1, 5) * 10_000)
                        price = float(asks[i] if qty > 0 else bids[i])
                        if symbol == "XAUUSD":
                            qty /= 10_000
                        events.append(Fill(str(walk.rng.choice(accounts)), symbol, qty, price, clock_ns,
                                           fee=2.0, fill_id=f"demo-{fills}", stream="fills", seq=fills))
                system.submit(events)
                system.flush()
                phase = "[bold red]FLASH CRASH[/]" if crash_step <= step < crash_step + 2 else ""
                live.update(Group(account_table(system.states(), f"step {step + 1}/{steps}  {phase}")))
                time.sleep(max(0.0, started + (step + 1) * seconds / steps - time.monotonic()))
        states = system.states()
        events_log = system.events()
        status = system.status()
        gate = system.gate()
        gate.wait_for(lambda g: g.version >= 0, timeout_s=5)
        probe = gate.check(Order("acct-002", "EURUSD", 100_000, START["EURUSD"] * 0.96))
        elapsed = time.monotonic() - started
    summary = {"ticks": system.ticks_applied, "fills": fills, "seconds": round(elapsed, 1), "states": states,
               "events": events_log, "status": status,
               "gate_probe": {"allowed": probe.allowed, "reason": str(probe.reason)}}
    print_summary(console, summary)
    return summary


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    console.print(f"\n[bold]Summary[/]: {summary['ticks']:,} ticks and {summary['fills']} fills applied "
                  f"in {summary['seconds']} s")
    breakers = [e for e in summary["events"] if e.get("type") == "breaker" and e["state"] == "ENGAGED"]
    table = Table(title="Breakers engaged", title_justify="left")
    for column in ("scope", "id", "why", "tick", "at"):
        table.add_column(column)
    for e in breakers:
        table.add_row(e["scope"], e["id"], e["reason"], f"{e['stream']}#{e['tick_seq']}", e["tick_ts"])
    console.print(table if breakers else "no breaker engaged")
    alerts = sum(1 for e in summary["events"] if e.get("type") == "alert")
    firm = summary["status"]["firm"]
    console.print(f"{alerts} alert changes; firm equity {firm['equity']:,.0f}, daily PnL "
                  f"{firm['daily_pnl']:,.0f}, gross exposure {firm['gross_exposure']:,.0f}")
    probe = summary["gate_probe"]
    console.print(f"order gate, acct-002 buys 100,000 EURUSD: "
                  f"{'ALLOWED' if probe['allowed'] else 'DENIED'} ({probe['reason']})")
