"""The naive design riskmon is measured against: an actor per account, an actor call per tick per account.

It is built honestly: each account actor runs riskmon's own ``AccountBook.on_tick`` (the same arithmetic,
so the comparison is about the architecture, not the maths); ticks are routed by symbol to the accounts
holding it, like riskmon; calls are asynchronous with no ``ray.get`` per call, only back-pressure when
``max_in_flight`` calls are outstanding; and the clock stops when every account has applied every tick
(the same watermark riskmon's figures use), checked by each actor's count.

``python -m bench.naive --ticks 2000`` runs it alone on firm-10 and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import ray

from riskcore.account import AccountBook
from riskcore.clock import TradingCalendar
from riskcore.config import AccountSpec, RiskConfig
from riskcore.events import Tick
from riskmon.loadgen.generator import LoadGenerator, firm_config


class NaiveAccount:
    """One account, one actor: every tick is its own remote call."""

    def __init__(self, config: RiskConfig, spec: AccountSpec) -> None:
        self.symbol_ids = config.symbol_ids()
        calendar = TradingCalendar(config.trading_day.roll_time, config.trading_day.timezone)
        multipliers = [s.multiplier for s in config.symbols.values()]
        self.book = AccountBook(spec, self.symbol_ids, multipliers, calendar)
        self.marks: dict[int, tuple[float, float]] = {}
        self.applied = 0

    def on_tick(self, symbol: str, bid: float, ask: float, ts_ns: int, stream: str, seq: int) -> None:
        symbol_id = self.symbol_ids[symbol]
        self.marks[symbol_id] = (bid, ask)
        self.book.on_tick(self.marks, ts_ns, stream, seq)
        self.applied += 1

    def count(self) -> int:
        return self.applied


def run_naive(config: RiskConfig, ticks: list[Tick], *, max_in_flight: int = 10_000) -> dict[str, Any]:
    """Apply ``ticks`` the naive way on an initialised Ray; return ticks/s to the applied watermark."""
    actor = ray.remote(NaiveAccount).options(num_cpus=0)
    accounts: dict[str, Any] = {spec.id: actor.remote(config, spec) for spec in config.accounts}
    holders: dict[str, list[Any]] = {}
    for spec in config.accounts:
        for position in spec.positions:
            holders.setdefault(position.symbol, []).append(accounts[spec.id])
    expected = {spec.id: 0 for spec in config.accounts}
    for tick in ticks:
        for spec in config.accounts:
            if any(p.symbol == tick.symbol for p in spec.positions):
                expected[spec.id] += 1
    try:
        ray.get([handle.count.remote() for handle in accounts.values()])  # all up before the clock starts
        started = time.perf_counter()
        in_flight: list[Any] = []
        for tick in ticks:
            args = (tick.symbol, tick.bid, tick.ask, tick.ts_ns, tick.stream, tick.seq)
            in_flight.extend(handle.on_tick.remote(*args) for handle in holders.get(tick.symbol, ()))
            if len(in_flight) > max_in_flight:
                _, in_flight = ray.wait(in_flight, num_returns=len(in_flight) - max_in_flight)
        ray.get(in_flight)
        seconds = time.perf_counter() - started
        applied = ray.get([handle.count.remote() for handle in accounts.values()])
        counts = dict(zip(accounts, applied, strict=True))
        if counts != expected:
            raise AssertionError(f"naive run lost ticks: applied {counts}, expected {expected}")
    finally:
        for handle in accounts.values():
            ray.kill(handle, no_restart=True)
    account_ticks = sum(expected.values())
    return {"ticks": len(ticks), "account_ticks": account_ticks, "seconds": seconds,
            "ticks_per_s": len(ticks) / seconds, "account_ticks_per_s": account_ticks / seconds}


def naive_run(ticks: int) -> dict[str, Any]:
    config = firm_config(10, 2, 5)
    generator = LoadGenerator(config, seed=7, fill_rate=0.0)
    columns = generator.chunk(ticks).ticks
    names = list(config.symbols)
    events = [Tick(names[int(columns.symbol[i])], float(columns.bid[i]), float(columns.ask[i]),
                   int(columns.ts_ns[i]), columns.streams[int(columns.stream[i])], int(columns.seq[i]))
              for i in range(ticks)]
    return run_naive(config, events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=2000)
    args = parser.parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        result = naive_run(args.ticks)
    finally:
        ray.shutdown()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
