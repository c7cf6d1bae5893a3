"""Synthetic firms and tick streams for `riskmon stress` and the benchmarks.

Prices are random walks with jumps; the tick volatility and spread are those
of the real EURUSD file (:mod:`riskmon.loadgen.quotes`). Ticks come from ``streams``
feeds (stream ``k`` quotes symbol ``k % symbols``, as several venues quote one
pair) interleaved at random; each stream numbers its quotes with the global
tick index, so a tick's ``seq`` also says when it was sent. Fills arrive on
about 1 % of ticks, each for an account already holding the ticked symbol.
Everything is generated as columns, so a driver measures
the risk system, not the creation of Python objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from riskcore.config import RiskConfig, parse_config
from riskcore.engine import TickColumns
from riskcore.events import AccountEvent, Fill
from riskmon.loadgen.quotes import EURUSD_REL_SPREAD, EURUSD_TICK_VOL

SCENARIOS = ("normal", "flash_crash", "fat_finger", "volatility", "mixed")
T0_NS = 1_578_000_000_000_000_000  # 2020-01-02T21:20:00Z, inside one trading day
TICK_NS = 10_000  # 100,000 simulated ticks per second
JUMP_PROBABILITY = 2e-4  # per tick: a jump of JUMP_SIZE tick volatilities
JUMP_SIZE = 25.0


def firm_config(accounts: int, portfolios: int, symbols: int, *, seed: int = 7,
                accounts_per_actor: int | None = None, max_ticks: int = 65_536, min_positions: int = 1,
                max_positions: int = 8, desk_limits: dict[str, Any] | None = None,
                firm_limits: dict[str, Any] | None = None) -> RiskConfig:
    """A firm: ``accounts`` in ``portfolios``, each holding 1-8 of ``symbols`` long or short, ~1.4x levered.

    ``desk_limits`` / ``firm_limits``: the ``limits`` of every portfolio / of the firm (default: none).
    """
    rng = np.random.default_rng(seed)
    names = [f"SYM{i:03d}" for i in range(symbols)]
    rows = []
    for a in range(accounts):
        count = int(rng.integers(min_positions, min(max_positions, symbols) + 1))
        held = rng.choice(symbols, size=count, replace=False)
        rows.append({
            "id": f"acct-{a:05d}", "portfolio": f"desk-{a % portfolios:02d}", "balance": 1_000_000,
            "positions": {
                names[s]: {"qty": float(rng.choice([-1, 1]) * rng.integers(5, 50) * 10_000), "avg_price": 1.0}
                for s in held
            },
        })
    per_actor = accounts_per_actor or max(1, -(-accounts // 2))  # two shards: one per core here
    return parse_config({
        "symbols": {name: {"multiplier": 1} for name in names},
        "portfolios": {f"desk-{p:02d}": {"limits": desk_limits} for p in range(portfolios)},
        "firm": {"limits": firm_limits},
        "accounts": rows,
        "placement": {"accounts_per_actor": per_actor},
        "batching": {"max_ticks": max_ticks, "max_delay_ms": 5, "max_in_flight": 4},
        "gate": {"max_staleness_ms": 2000, "poll_interval_ms": 200},
    })


def start_prices(config: RiskConfig) -> np.ndarray:
    """Where each symbol's walk starts: the mean entry price of the positions held in it (a firm's own
    config), else 1.0 (the synthetic firm's)."""
    ids = config.symbol_ids()
    total, count = np.zeros(len(ids)), np.zeros(len(ids))
    for spec in config.accounts:
        for pos in spec.positions:
            total[ids[pos.symbol]] += pos.avg_price
            count[ids[pos.symbol]] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 1.0)


@dataclass
class Chunk:
    """One submission: columns of ticks and the fills placed between them."""

    ticks: TickColumns
    fills: list[AccountEvent] = field(default_factory=list)
    fill_pos: list[int] = field(default_factory=list)
    first: int = 0  # global index of the first tick


class LoadGenerator:
    def __init__(self, config: RiskConfig, *, streams: int = 128, scenario: str = "normal", seed: int = 7,
                 fill_rate: float = 0.01, total_ticks: int | None = None,
                 breach_every: int | None = None) -> None:
        """``breach_every``: every that many ticks, a fat-finger fill on the next account not yet hit.

        (Latency runs: each of those fills breaches its account.)
        """
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
        self.config = config
        self.streams = streams
        self.scenario = scenario
        self.rng = np.random.default_rng(seed)
        self.fill_rate = fill_rate
        self.total = total_ticks
        self.n_symbols = len(config.symbols)
        self.log_mid = np.log(start_prices(config))
        self.accounts = [spec.id for spec in config.accounts]
        self.symbols = list(config.symbols)
        self.sent = 0
        self.fills_sent = 0
        self.stream_names = tuple(f"feed-{k:03d}" for k in range(streams))
        self.breach_every = breach_every
        self.victims = 0
        self.starts: dict[str, int] = {}
        if total_ticks:
            self.plan(total_ticks)
        # Accounts that hold each symbol, for counting account-ticks (the work a tick causes).
        self.holders = np.zeros(self.n_symbols, np.int64)
        self.holder_ids: list[list[str]] = [[] for _ in range(self.n_symbols)]
        ids = config.symbol_ids()
        for spec in config.accounts:
            for pos in spec.positions:
                self.holders[ids[pos.symbol]] += 1
                self.holder_ids[ids[pos.symbol]].append(spec.id)

    def plan(self, ticks: int) -> None:
        """Place the scenario's effects within the next ``ticks`` ticks (a fraction of the way in)."""
        mixed = {"flash_crash": 0.3, "fat_finger": 0.5, "volatility": 0.7}
        at = mixed if self.scenario == "mixed" else {self.scenario: 0.5}
        self.total = self.sent + ticks
        self.starts = {name: self.sent + int(ticks * f) for name, f in at.items() if name != "normal"}

    def chunk(self, size: int) -> Chunk:
        """The next ``size`` ticks, with fills and any scenario effect that falls in them."""
        lo = self.sent
        stream = self.rng.integers(0, self.streams, size).astype(np.int32)
        symbol = (stream % self.n_symbols).astype(np.int32)
        shocks = self.rng.normal(0.0, EURUSD_TICK_VOL, size)
        jumps = self.rng.random(size) < JUMP_PROBABILITY
        shocks[jumps] += self.rng.choice([-1.0, 1.0], int(jumps.sum())) * JUMP_SIZE * EURUSD_TICK_VOL
        if "volatility" in self.starts:
            shocks[max(0, self.starts["volatility"] - lo):] *= 10.0  # ten times the tick volatility from then
        crash_at = self.starts.get("flash_crash", -1) - lo
        if 0 <= crash_at < size:
            crash = np.flatnonzero(symbol[crash_at:] == 0)[:300] + crash_at
            shocks[crash] += np.log(0.95) / max(1, crash.size)  # -5 % over symbol 0's next 300 quotes
        # Each symbol's path: its running sum of shocks, continuing from where it stood.
        order = np.argsort(symbol, kind="stable")
        sorted_symbol = symbol[order]
        path = np.cumsum(shocks[order])
        starts = np.flatnonzero(np.r_[True, sorted_symbol[1:] != sorted_symbol[:-1]])
        offsets = np.zeros(size)
        for k, begin in enumerate(starts):
            end = starts[k + 1] if k + 1 < starts.size else size
            s = int(sorted_symbol[begin])
            base = self.log_mid[s] - (path[begin - 1] if begin > 0 else 0.0)
            offsets[begin:end] = base
            self.log_mid[s] = path[end - 1] + base
        log_mid = np.empty(size)
        log_mid[order] = path + offsets
        mid = np.exp(log_mid)
        half = mid * EURUSD_REL_SPREAD / 2.0
        bid, ask = mid - half, mid + half
        index = np.arange(lo, lo + size, dtype=np.int64)
        ticks = TickColumns(symbol, bid, ask, T0_NS + index * TICK_NS, index, stream, self.stream_names)
        fills, fill_pos = self._fills(size, symbol, bid, ask, lo)
        self.sent += size
        return Chunk(ticks, fills, fill_pos, lo)

    def _fills(self, size: int, symbol: np.ndarray, bid: np.ndarray, ask: np.ndarray,
               lo: int) -> tuple[list[AccountEvent], list[int]]:
        fills: list[AccountEvent] = []
        positions = np.flatnonzero(self.rng.random(size) < self.fill_rate)
        fat = {self.starts.get("fat_finger", -1) - lo: self.accounts[0]}
        if self.breach_every:
            for at in range(-lo % self.breach_every, size, self.breach_every):
                if self.victims < len(self.accounts):
                    fat[at] = self.accounts[self.victims]
                    self.victims += 1
        fat = {at: account for at, account in fat.items() if 0 <= at < size}
        if fat:
            positions = np.unique(np.append(positions, list(fat)))
        for pos in positions.tolist():
            s = int(symbol[pos])
            # A desk trades its book: the fill goes to an account already holding the ticked symbol, so
            # positions stay 1-8 per account and the fan-out (accounts per tick) holds steady over a run.
            book = self.holder_ids[s] or self.accounts
            account = fat.get(pos) or book[int(self.rng.integers(len(book)))]
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            # A fat finger is 8x the balance.
            qty = sign * (8_000_000.0 if pos in fat else float(self.rng.integers(1, 20) * 1_000))
            price = float(ask[pos] if qty > 0 else bid[pos])
            self.fills_sent += 1
            fills.append(Fill(account, self.symbols[s], qty, price, T0_NS + (lo + pos) * TICK_NS, fee=1.0,
                              fill_id=f"f{lo + pos}-{self.fills_sent}", stream="fills", seq=lo + pos))
        return fills, [int(p) + 1 for p in positions.tolist()]  # each fill follows the tick it was priced on

    def chunks(self, size: int, total: int) -> Iterator[Chunk]:
        while self.sent < total:
            yield self.chunk(min(size, total - self.sent))

    def account_ticks(self, ticks: TickColumns) -> int:
        """How many account-ticks these ticks cause at the configured positions (fills add a few more)."""
        return int(self.holders[ticks.symbol].sum())
