"""Routing and account shards (actors.router, actors.shard) on generated streams, without Ray.

Random streams routed through real :class:`AccountShard` objects leave the accounts as the one-event-at-a-time
:class:`ReferenceEngine` does; hostile events slipped in are each refused with their code and change nothing;
mutated frames fed to a shard never make it fail.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.router import Router, place_accounts
from actors.shard import AccountShard
from riskcore.config import RiskConfig
from riskcore.engine import EventBatch, ReferenceEngine
from riskcore.events import AccountEvent, Cash, Fill, Tick
from riskcore.messages import ShardReport
from tests.unit.test_router_shard import (
    ACCOUNTS,
    MS,
    SYMBOLS,
    T0,
    fill,
    make_config,
    make_shards,
    merged_events,
    recorded_frames,
    shard_states,
    stream_with_breaches,
    tick,
)

Event = Tick | AccountEvent


def route_through_shards(
    config: RiskConfig, events: list[Event]
) -> tuple[Router, dict[str, AccountShard], list[ShardReport]]:
    """The events routed straight into real shards (no wire in between)."""
    shards = make_shards(config)
    router = Router(config, place_accounts(config), lambda shard, frame: shards[shard].apply(frame))
    return router, shards, router.route(events)


def reference(config: RiskConfig, events: list[Event]) -> tuple[ReferenceEngine, list[Any]]:
    engine = ReferenceEngine(config)
    return engine, engine.apply(EventBatch.from_events(events, config.symbol_ids()))

_MIDS = {"EURUSD": 1.10, "GBPUSD": 1.30, "XAUUSD": 1500.0, "AUDUSD": 0.70, "USDJPY": 110.0}
_QTY = {"EURUSD": 1_000_000, "GBPUSD": 1_000_000, "XAUUSD": 20, "AUDUSD": 1_000_000, "USDJPY": 10_000}


@st.composite
def event_streams(draw: st.DrawFn) -> list[Tick | Fill]:
    mids = dict(_MIDS)
    events: list[Tick | Fill] = []
    for seq in range(1, draw(st.integers(1, 40)) + 1):
        symbol = draw(st.sampled_from(SYMBOLS))
        if draw(st.integers(0, 4)) == 0:
            account = draw(st.sampled_from(["A1", "A2", "A3", "A4", "A5"]))
            qty = _QTY[symbol] * draw(st.sampled_from([-3, -1, -0.5, 0.5, 1, 3]))
            fee = draw(st.sampled_from([0.0, 10.0]))
            events.append(fill(account, symbol, qty, mids[symbol], seq, fee=fee))
        else:
            mids[symbol] *= 1.0 + draw(st.sampled_from([-0.01, -0.004, -0.001, 0.0, 0.001, 0.004, 0.01]))
            half = mids[symbol] * 1e-4
            events.append(tick(symbol, round(mids[symbol] - half, 6), round(mids[symbol] + half, 6), seq))
    return events


SLOW_AND_LARGE = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_AND_LARGE)
@given(event_streams(), st.sampled_from([1, 2, 3, 5]), st.sampled_from([1, 2, 5, 64]))
def test_router_and_shards_when_random_events_equal_reference_engine(
    events: list[Tick | Fill], per: int, max_ticks: int
) -> None:
    config = make_config(accounts_per_actor=per, max_ticks=max_ticks)
    router, shards, reports = route_through_shards(config, list(events))
    ref, ref_events = reference(config, list(events))
    assert router.refusals == []
    assert shard_states(shards) == ref.states()
    assert merged_events(reports) == ref_events


_NAN, _INF = math.nan, math.inf
HOSTILE_KINDS = ["none"] * 6 + [
    "price", "crossed", "symbol", "dup", "older", "stale", "qty", "fill_price", "account", "fill_symbol",
    "fill_id", "cash", "cash_amount", "cash_account", "cash_id",
]


@st.composite
def hostile_streams(draw: st.DrawFn) -> tuple[list[Event], list[Event], list[str]]:
    """A valid stream with hostile events slipped in: (everything, the valid events, the codes expected).

    Every hostile event must be refused with its code and change nothing, so the accounts must end as the
    reference engine fed only the valid events leaves them.
    """
    mixed: list[Event] = []
    valid: list[Event] = []
    codes: list[str] = []
    last: Tick | None = None
    for event in draw(event_streams()):
        kind = draw(st.sampled_from(HOSTILE_KINDS))
        seq = event.seq
        bad: Event | None = None
        if kind == "price" and last is not None:
            price = draw(st.sampled_from([_NAN, _INF, -_INF, 0.0, -1.1, 1e9, 1e300]))
            if draw(st.booleans()):
                bad = tick(last.symbol, price, last.ask, seq)
            else:
                bad = tick(last.symbol, last.bid, price, seq)
            code = "bad_price"
            if bad.bid > bad.ask and math.isfinite(bad.bid) and bad.bid > 0 and bad.bid < 1e9:
                code = "crossed_quote" if math.isfinite(bad.ask) and 0 < bad.ask < 1e9 else "bad_price"
        elif kind == "crossed" and last is not None:
            bad, code = tick(last.symbol, last.ask + 0.01, last.ask, seq), "crossed_quote"
        elif kind == "symbol":
            bad, code = tick("NOPE", 1.0, 1.1, seq), "unknown_symbol"
        elif kind in ("dup", "older") and last is not None and last.seq > 1:
            again = last.seq if kind == "dup" else last.seq - 1
            bad, code = tick(last.symbol, last.bid, last.ask, again), "duplicate_seq"
        elif kind == "stale" and last is not None:
            bad, code = Tick(last.symbol, last.bid, last.ask, last.ts_ns - MS, "md", seq), "stale_timestamp"
        elif kind == "qty":
            qty = draw(st.sampled_from([0.0, _NAN, _INF, 1e13, -1e13]))
            bad, code = fill("A1", "EURUSD", qty, 1.1, seq), "bad_qty"
        elif kind == "fill_price":
            price = draw(st.sampled_from([0.0, -1.0, _NAN, _INF, 1e9]))
            bad, code = fill("A1", "EURUSD", 1000.0, price, seq), "bad_price"
        elif kind == "account":
            bad, code = fill("ghost", "EURUSD", 1000.0, 1.1, seq), "unknown_account"
        elif kind == "fill_symbol":
            bad, code = fill("A1", "NOPE", 1000.0, 1.1, seq), "unknown_symbol"
        elif kind == "fill_id":
            first: Event = fill("A3", "EURUSD", 1000.0, 1.1, seq, fill_id=f"id-{seq}")
            mixed.append(first)
            valid.append(first)
            bad, code = fill("A3", "EURUSD", 1000.0, 1.1, seq, fill_id=f"id-{seq}"), "duplicate_fill"
        elif kind == "cash":  # a valid deposit or withdrawal, among the hostile ones
            amount = draw(st.sampled_from([50_000.0, -120_000.0, -2e6]))
            good = Cash("A2", amount, T0 + seq * MS, "", "cash", seq)
            mixed.append(good)
            valid.append(good)
        elif kind == "cash_amount":
            amount = draw(st.sampled_from([0.0, _NAN, _INF, -_INF, 1e13, -1e13]))
            bad, code = Cash("A2", amount, T0 + seq * MS, "", "cash", seq), "bad_amount"
        elif kind == "cash_account":
            bad, code = Cash("ghost", 1000.0, T0 + seq * MS, "", "cash", seq), "unknown_account"
        elif kind == "cash_id":
            first = Cash("A5", 1000.0, T0 + seq * MS, f"c-{seq}", "cash", seq)
            mixed.append(first)
            valid.append(first)
            bad, code = Cash("A5", 1000.0, T0 + seq * MS, f"c-{seq}", "cash", seq), "duplicate_cash"
        if bad is not None:
            mixed.append(bad)
            codes.append(code)
        mixed.append(event)
        valid.append(event)
        if isinstance(event, Tick):
            last = event
    return mixed, valid, codes


@settings(max_examples=1500, deadline=None, suppress_health_check=SLOW_AND_LARGE)
@given(hostile_streams(), st.sampled_from([1, 2, 5]), st.sampled_from([1, 3, 64]))
def test_router_and_shards_when_hostile_events_slipped_in_refuse_each_and_change_nothing(
    streams: tuple[list[Event], list[Event], list[str]], per: int, max_ticks: int
) -> None:
    mixed, valid, codes = streams
    config = make_config(accounts_per_actor=per, max_ticks=max_ticks)
    router, shards, reports = route_through_shards(config, mixed)
    refused = sorted(r.code for r in router.refusals + [r for rep in reports for r in rep.refusals])
    assert refused == sorted(codes)
    ref, ref_events = reference(config, valid)
    assert shard_states(shards) == ref.states()
    assert merged_events(reports) == ref_events


# With the decoder's fuzz tests (test_wire_properties.py, 6,500 inputs) these make over 10,000 generated
# hostile inputs a run.
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_account_shard_when_fed_mutated_frames_never_fails_and_a_refused_frame_changes_nothing(
    data: st.DataObject,
) -> None:
    # The shard's own entry point, bytes in: flipped, cut and spliced real batch frames (and pure junk).
    config = make_config(accounts_per_actor=5)
    frames = [f for _, f in recorded_frames(config, stream_with_breaches())]
    shard = AccountShard(config, "shard-0000", ACCOUNTS)
    for frame in frames[:2]:
        shard.apply(frame)
    buf = bytearray(data.draw(st.sampled_from(frames[2:])))
    for _ in range(data.draw(st.integers(0, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    blob = bytes(buf[: data.draw(st.integers(0, len(buf)))]) + data.draw(st.binary(max_size=16))
    before, refused_before = shard.states(), sum(shard.tick_screen.refused.values())
    report = shard.apply(blob)
    if report.batch == -1:  # refused as a whole: counted, and nothing moved
        # A frame the decoder cannot take whole (a malformed fill in it included) is refused whole.
        assert [r.code for r in report.refusals] in (["bad_frame"], ["oversize_frame"], ["bad_fill"])
        assert shard.states() == before
        assert sum(shard.tick_screen.refused.values()) == refused_before + 1
    for frame in frames[2:]:  # and the shard goes on working
        shard.apply(frame)
