"""Hypothesis strategies for the engine property tests: configs, event streams, batches, operator commands.

Hypothesis draws a config (2-4 symbols, 1-5 accounts in 1-2 portfolios, positions long and short,
random limits) and a stream of *steps*: which symbol moves and by how much, which account trades what
kind of fill (open, grow, reduce, exact close, flip), how far time jumps. :func:`build_events` turns the
steps into ticks and fills deterministically, tracking prices, positions and time, so every drawn stream
is valid and a shrunk one still is. Prices random-walk within a *segment* of the stream and restart at
each segment, which keeps a step's effect local and lets the shrinker delete steps and segments.
:func:`scenarios` then splits the stream into random batches and adds operator engage/reset commands
between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hypothesis import strategies as st

from riskcore.clock import NS_PER_SECOND, TradingCalendar, parse_rfc3339, rfc3339_us
from riskcore.config import RiskConfig, parse_config
from riskcore.engine import BatchedEngine, ReferenceEngine
from riskcore.events import AccountEvent, Cash, Fill, Tick

S = NS_PER_SECOND
HOUR = 3600 * S
MAX_SYMBOLS = 4
MAX_ACCOUNTS = 5
START_PRICE = 100.0
NOTIONAL_PER_LOT = 10_000.0  # a lot is 10k of notional whatever the multiplier, so leverage is comparable
# Start days around both 2020 DST changes and in plain winter / summer; the hour varies the distance to
# 17:00 New York.
START_DAYS = ("2020-01-15", "2020-03-07", "2020-07-15", "2020-10-31")
FILL_KINDS = ("open", "grow", "reduce", "close", "flip", "cash")  # "cash": a deposit or withdrawal instead


# --------------------------------------------------------------------------- config


@st.composite
def account_limits(draw: st.DrawFn) -> dict[str, Any]:
    max_dd = draw(st.sampled_from([0.005, 0.01, 0.02, 0.05, 0.1]))
    max_lev = draw(st.sampled_from([1.5, 2.0, 3.0, 5.0, 10.0]))
    return {
        "max_daily_drawdown": max_dd,
        "drawdown_warning": max_dd * draw(st.sampled_from([0.25, 0.5, 0.9])),
        "max_account_leverage": max_lev,
        "leverage_warning": max_lev * draw(st.sampled_from([0.3, 0.6, 0.95])),
        "kill_switch_mode": draw(st.sampled_from(["auto", "manual"])),
        "auto_reset": draw(st.booleans()),
        "release_on_day_roll": draw(st.booleans()),
        "recovery_cooldown_seconds": draw(st.sampled_from([0, 1, 30])),
    }


@st.composite
def raw_configs(draw: st.DrawFn) -> dict[str, Any]:
    n_symbols = draw(st.integers(2, MAX_SYMBOLS))
    multipliers = [draw(st.sampled_from([1, 10, 100])) for _ in range(n_symbols)]
    symbols = {f"S{i}": {"multiplier": m} for i, m in enumerate(multipliers)}
    n_portfolios = draw(st.integers(1, 2))
    accounts = []
    for a in range(draw(st.integers(1, MAX_ACCOUNTS))):
        positions = {}
        gross = 0.0
        for i, m in enumerate(multipliers):
            lots = draw(st.integers(-20, 20))
            if lots:
                avg = START_PRICE * (1 + draw(st.integers(-200, 200)) / 10_000)
                qty = lots * NOTIONAL_PER_LOT / (START_PRICE * m)
                positions[f"S{i}"] = {"qty": qty, "avg_price": avg}
                gross += abs(qty) * avg * m
        # Balances small against the positions (starting leverage up to 8): limits do breach, some at once,
        # most only after prices move.
        start_leverage = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0, 8.0]))
        balance = gross / start_leverage + draw(st.integers(1, 20)) * 1_000
        accounts.append(
            {
                "id": f"A{a}",
                "portfolio": f"P{draw(st.integers(0, n_portfolios - 1))}",
                "balance": balance,
                "positions": positions,
                "limits": draw(account_limits()),
            }
        )
    raw = {
        "symbols": symbols,
        "portfolios": {f"P{p}": {} for p in range(n_portfolios)},
        "accounts": accounts,
    }
    return raw


# --------------------------------------------------------------------------- steps -> events


FEES = (0.0, 1.25, 7.5)


@dataclass(frozen=True)
class Step:
    """One event of the stream, before it is placed in a price walk and in time.

    ``kind`` 0-2 is a tick, 3 a fill (three ticks to a fill). For a tick: symbol ``who % 4``, price move
    ``move_bps``, spread ``size // 2`` bps on stream ``t{size % 2}``. For a fill: account ``who % 5``
    trades symbol ``who // 5``; ``detail`` picks the fill kind (open, grow, reduce, close, flip) and the
    fee; ``size + 1`` half lots; the price is the symbol's current price moved by ``move_bps``.
    ``gap`` codes the time since the previous event (see :func:`advance`).
    """

    kind: int
    gap: int
    move_bps: int
    size: int
    detail: int
    who: int


# A time gap code: mostly sub-second, one in ten none at all (several events at one instant), one in ten
# a whole 1 s or 30 s, sometimes hours or days, sometimes straight to the next 17:00 New York roll or to
# 1 ns before it.
_LONG_GAPS = (S, 30 * S, 600 * S, HOUR, 3 * HOUR, 7 * HOUR, 25 * HOUR, 49 * HOUR)
_TO_ROLL = 200 + len(_LONG_GAPS)
_GAP_CODES = _TO_ROLL + 2


def advance(ts_ns: int, code: int, calendar: TradingCalendar) -> int:
    """The time of the next event, ``code`` steps of :data:`_GAP_CODES` after ``ts_ns``."""
    if code >= _TO_ROLL:
        roll = calendar.next_roll_after(ts_ns)
        return roll if code == _TO_ROLL else max(ts_ns, roll - 1)
    if code >= 200:
        return ts_ns + _LONG_GAPS[code - 200]
    if code % 10 == 0:
        return ts_ns
    if code % 20 == 5:
        return ts_ns + S  # whole seconds land exactly on the end of a 1 s or 30 s cooldown
    if code % 20 == 15:
        return ts_ns + 30 * S
    return ts_ns + code * 500_000 + code % 7  # up to 0.1 s, not all on round numbers


# Four draws per step, each over at most 256 values: Hypothesis draws integers uniformly only within
# +-256 and thins out beyond (a packed field would make nearly every step a tick at the same instant).
# Minimising a draw simplifies it: a fill becomes a tick, a gap shrinks to none, a move to zero.
_KINDS_WHO = 4 * MAX_ACCOUNTS * MAX_SYMBOLS
_SIZES = 17
_DETAILS = len(FILL_KINDS) * len(FEES)


def decode_step(kind_who: int, gap: int, move_bps: int, size_detail: int) -> Step:
    kind, who = divmod(kind_who, MAX_ACCOUNTS * MAX_SYMBOLS)
    size, detail = divmod(size_detail, _DETAILS)
    return Step(kind=kind, gap=gap, move_bps=move_bps, size=size, detail=detail, who=who)


steps = st.builds(
    decode_step,
    st.integers(0, _KINDS_WHO - 1),
    st.integers(0, _GAP_CODES - 1),
    st.integers(-150, 150),  # volatile: a few dozen ticks move prices by several percent
    st.integers(0, _SIZES * _DETAILS - 1),
)


MAX_EVENTS = 300


@dataclass(frozen=True)
class Segment:
    """A stretch of the stream: prices restart at ``level_bps`` from START_PRICE, then random-walk.

    Restarting the walk per segment keeps a step's effect local, so the shrinker can delete a step or a
    whole segment without moving every later price (a stream-long walk made failures nearly unshrinkable).
    Between segments prices jump, as on news.
    """

    level_bps: int
    runs: list[list[Step]]


# Segments of runs of steps: lengths spread over 1..300 (a flat st.lists averages a handful of elements),
# and the shrinker can still delete any step, run or segment. Steps past MAX_EVENTS are dropped.
segment_lists = st.lists(
    st.builds(
        Segment,
        level_bps=st.integers(-250, 250),
        runs=st.lists(st.lists(steps, min_size=1, max_size=10), min_size=1, max_size=10),
    ),
    min_size=1,
    max_size=10,
)


def build_events(config: RiskConfig, segments: list[Segment], start_ns: int) -> list[Tick | AccountEvent]:
    """Turn segments of steps into a valid stream: positive prices, bid <= ask, time never running back."""
    names = list(config.symbols)
    multipliers = [spec.multiplier for spec in config.symbols.values()]
    accounts = [spec.id for spec in config.accounts]
    position = {(spec.id, p.symbol): p.qty for spec in config.accounts for p in spec.positions}
    calendar = TradingCalendar(config.trading_day.roll_time, config.trading_day.timezone)
    ts = start_ns
    events: list[Tick | AccountEvent] = []
    for segment in segments:
        price = [START_PRICE * (1 + segment.level_bps / 10_000)] * len(names)
        for step in (step for run in segment.runs for step in run):
            if len(events) == MAX_EVENTS:
                return events
            seq = len(events)
            ts = advance(ts, step.gap, calendar) if events else start_ns  # the first event at start_ns
            if step.kind < 3:
                s = step.who % MAX_SYMBOLS % len(names)
                price[s] *= 1 + step.move_bps / 10_000
                bid = round(price[s], 4)
                ask = round(bid * (1 + (step.size // 2) / 10_000), 4)
                events.append(Tick(names[s], bid, ask, ts, stream=f"t{step.size % 2}", seq=seq))
                continue
            account = accounts[step.who % MAX_ACCOUNTS % len(accounts)]
            s = step.who // MAX_ACCOUNTS % len(names)
            kind = FILL_KINDS[step.detail % len(FILL_KINDS)]
            fee = FEES[step.detail // len(FILL_KINDS)]
            side = (
                1.0 if step.size % 2 else -1.0
            )  # direction of a fresh position (of a cash movement: in or out)
            if (
                kind == "cash"
            ):  # up to 170k: a withdrawal can leave equity at or below zero (infinite leverage)
                events.append(
                    Cash(account, side * (step.size + 1) * NOTIONAL_PER_LOT, ts, f"c{seq}", "c", seq)
                )
                continue
            held = position.get((account, names[s]), 0.0)
            size = (step.size + 1) * NOTIONAL_PER_LOT / (2 * START_PRICE * multipliers[s])
            direction = math.copysign(1.0, held) if held else side
            if kind == "close" and held:
                qty = -held  # exactly flat
            elif kind == "flip" and held:
                qty = -held - direction * size
            elif kind == "reduce" and held:
                qty = -held / 2
            elif kind == "grow":
                qty = direction * size
            else:  # open, or close/flip/reduce of nothing
                qty = side * size
            position[(account, names[s])] = 0.0 if qty == -held else held + qty
            fill_price = round(price[s] * (1 + step.move_bps / 15_000), 4)  # within 1% of the market
            events.append(Fill(account, names[s], qty, fill_price, ts, fee=fee, stream="f", seq=seq))
    return events


@dataclass(frozen=True)
class OperatorStep:
    after_batch: int
    action: str
    account: int

    def apply(self, engine: ReferenceEngine | BatchedEngine, now_ns: int) -> object:
        """Run the command on ``engine``: the engage event, or the reset's ``(event, refusal)``."""
        account = engine.books[self.account % len(engine.books)].id
        if self.action == "engage":
            return engine.engage(account, now_ns, "op", "property test")
        return engine.reset(account, now_ns, "op", "property test")


operator_steps = st.lists(
    st.builds(
        OperatorStep,
        after_batch=st.integers(0, 60),
        action=st.sampled_from(["engage", "reset"]),
        account=st.integers(0, MAX_ACCOUNTS - 1),
    ),
    max_size=4,
)


def describe(event: Tick | AccountEvent) -> str:
    when = rfc3339_us(event.ts_ns)
    if isinstance(event, Tick):
        return f"{event.stream}#{event.seq} {when} tick {event.symbol} {event.bid!r}/{event.ask!r}"
    if isinstance(event, Cash):
        return f"{event.stream}#{event.seq} {when} cash {event.account} {event.amount!r}"
    return (
        f"{event.stream}#{event.seq} {when} fill {event.account} {event.symbol} "
        f"{event.qty!r} @ {event.price!r} fee {event.fee!r}"
    )


@dataclass(frozen=True)
class Scenario:
    raw_config: dict[str, Any]
    config: RiskConfig
    events: list[Tick | AccountEvent]
    batches: list[tuple[int, int]]  # [start, end) into events
    operator: list[OperatorStep]
    publish: bool = False  # the batched engine publishes breaker changes mid-batch, as account shards run it

    def operator_after(self) -> dict[int, list[OperatorStep]]:
        """The operator commands to run after each batch, by batch number."""
        after: dict[int, list[OperatorStep]] = {}
        for step in self.operator:
            after.setdefault(step.after_batch % len(self.batches), []).append(step)
        return after

    def __repr__(self) -> str:
        # Printed by Hypothesis for a falsifying example: short enough to read, exact enough to replay.
        lines = [f"config: {self.raw_config}", f"batch sizes: {[end - start for start, end in self.batches]}"]
        lines += [f"operator: {step}" for step in self.operator] + [f"publish: {self.publish}"]
        lines += [describe(event) for event in self.events]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis pretty-prints dataclasses field by field otherwise


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    raw = draw(raw_configs())
    config = parse_config(raw)
    # The stream starts at a whole hour of the day, often exactly on the 17:00 New York roll: an account
    # whose first event sits on a roll must not roll at its next event.
    day_start = parse_rfc3339(f"{draw(st.sampled_from(START_DAYS))}T00:00:00Z")
    if draw(st.booleans()):
        start_ns = TradingCalendar("17:00", "America/New_York").next_roll_after(day_start)
    else:
        start_ns = day_start + draw(st.integers(0, 23)) * HOUR
    events = build_events(config, draw(segment_lists), start_ns)
    n = len(events)
    # Batch sizes 1..max_batch: max_batch 1 is the reference's own one-event batches, n allows one batch;
    # half the time batches stay small, so a stream is cut in many places.
    max_batch = draw(st.integers(1, 8) | st.integers(1, n))
    batches = []
    start = 0
    while start < n:
        size = draw(st.integers(1, min(max_batch, n - start)))
        batches.append((start, start + size))
        start += size
    return Scenario(raw, config, events, batches, draw(operator_steps), draw(st.booleans()))


def one_account_scenario(
    limits: dict[str, Any], events: Sequence[Tick | AccountEvent], sizes: list[int]
) -> Scenario:
    """Account A0 holding 1,000 S0 (S1 it does not hold), fed ``events`` in batches of ``sizes``."""
    raw = {
        "symbols": {"S0": {"multiplier": 1}, "S1": {"multiplier": 10}},
        "portfolios": {"P0": {}},
        "accounts": [
            {
                "id": "A0",
                "portfolio": "P0",
                "balance": 100_000.0,
                "positions": {"S0": {"qty": 1_000.0, "avg_price": 100.0}},
                "limits": limits,
            }
        ],
    }
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    assert bounds[-1] == len(events)
    return Scenario(raw, parse_config(raw), list(events), list(pairwise(bounds)), [])


def breakers(engine: ReferenceEngine | BatchedEngine) -> dict[str, dict[str, object]]:
    return {book.id: book.breaker.snapshot() for book in engine.books}
