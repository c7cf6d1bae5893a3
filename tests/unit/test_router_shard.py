"""Routing (actors.router) and account shards (actors.shard) without Ray.

The router's ``send``/``put`` are injected: first they record what would go over the wire, then they call
real :class:`AccountShard` objects directly, and the resulting accounts are held against the
one-event-at-a-time :class:`ReferenceEngine` fed the same (valid) events. The generated (Hypothesis) ones are
in ``tests/property/test_router_shard_properties.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from actors.router import Router, place_accounts
from actors.shard import AccountShard
from riskcore.account import AccountBook
from riskcore.aggregate import SummaryColumns
from riskcore.clock import parse_rfc3339
from riskcore.config import RiskConfig, parse_config
from riskcore.engine import EventBatch, ReferenceEngine
from riskcore.events import Cash, Fill, Tick
from riskcore.figures import mark_price
from riskcore.messages import Halts, ShardReport
from riskcore.states import AlertLevel
from riskcore.wire import BatchFrame, decode, encode_ticks

T0 = parse_rfc3339("2020-01-15T15:00:00.000000Z")  # 10:00 New York: far from the 17:00 roll
MS = 1_000_000

SYMBOLS = ["EURUSD", "GBPUSD", "XAUUSD", "AUDUSD", "USDJPY"]


def make_config(accounts_per_actor: int = 2, max_ticks: int = 4, **limits: Any) -> RiskConfig:
    """Five accounts; with 2 per actor: shard-0000 = A1, A2; shard-0001 = A3, A4; shard-0002 = A5.

    A1 holds EURUSD, A2 GBPUSD, A3 EURUSD + XAUUSD, A4 nothing, A5 AUDUSD. Nobody holds USDJPY.
    """
    return parse_config(
        {
            "limits": limits or None,
            "symbols": {"EURUSD": {}, "GBPUSD": {}, "XAUUSD": {"multiplier": 100}, "AUDUSD": {},
                        "USDJPY": {}},
            "portfolios": {"desk": {}, "macro": {}},
            "accounts": [
                {"id": "A1", "portfolio": "desk", "balance": 1_000_000,
                 "positions": {"EURUSD": {"qty": 2_000_000, "avg_price": 1.1000}}},
                {"id": "A2", "portfolio": "desk", "balance": 500_000,
                 "positions": {"GBPUSD": {"qty": -1_000_000, "avg_price": 1.3000}}},
                {"id": "A3", "portfolio": "macro", "balance": 2_000_000,
                 "positions": {"EURUSD": {"qty": -500_000, "avg_price": 1.1000},
                               "XAUUSD": {"qty": 20, "avg_price": 1500.0}}},
                {"id": "A4", "portfolio": "macro", "balance": 300_000},
                {"id": "A5", "portfolio": "desk", "balance": 800_000,
                 "positions": {"AUDUSD": {"qty": 1_500_000, "avg_price": 0.7000}}},
            ],
            "batching": {"max_ticks": max_ticks},
            "placement": {"accounts_per_actor": accounts_per_actor},
        }
    )


def tick(symbol: str, bid: float, ask: float, seq: int, stream: str = "md") -> Tick:
    return Tick(symbol, bid, ask, T0 + seq * MS, stream, seq)


def fill(account: str, symbol: str, qty: float, price: float, seq: int, fill_id: str = "",
         fee: float = 0.0) -> Fill:
    return Fill(account, symbol, qty, price, T0 + seq * MS + 1, fee, fill_id, "exec", seq)


class Wire:
    """Injected put/send that record every frame and every (shard, frame) call."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.calls: list[tuple[str, int]] = []  # (shard, frame index)

    def put(self, frame: bytes) -> int:
        self.frames.append(frame)
        return len(self.frames) - 1

    def send(self, shard: str, ref: int) -> tuple[str, int]:
        self.calls.append((shard, ref))
        return shard, ref

    def decoded(self, index: int, config: RiskConfig) -> BatchFrame:
        frame = decode(self.frames[index], symbol_count=len(config.symbols))
        assert isinstance(frame, BatchFrame)
        return frame

    def shards_of(self, index: int) -> list[str]:
        return sorted(shard for shard, ref in self.calls if ref == index)


def make_router(config: RiskConfig | None = None) -> tuple[Router, Wire, RiskConfig]:
    config = config or make_config()
    wire = Wire()
    return Router(config, place_accounts(config), wire.send, wire.put), wire, config


def sym_names(frame: BatchFrame, config: RiskConfig) -> list[str]:
    names = list(config.symbols)
    return [names[i] for i in frame.batch.ticks.symbol.tolist()]


# --------------------------------------------------------------------------- placement


@pytest.mark.parametrize(
    ("per", "expected"),
    [
        (2, {"shard-0000": ["A1", "A2"], "shard-0001": ["A3", "A4"], "shard-0002": ["A5"]}),
        (1, {f"shard-{n:04d}": [f"A{n + 1}"] for n in range(5)}),
        (5, {"shard-0000": ["A1", "A2", "A3", "A4", "A5"]}),
        (50, {"shard-0000": ["A1", "A2", "A3", "A4", "A5"]}),
    ],
)
def test_place_accounts_when_accounts_per_actor_set_splits_in_config_order(
        per: int, expected: dict[str, list[str]]) -> None:
    assert place_accounts(make_config(accounts_per_actor=per)) == expected


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("symbol", "shards"),
    [("GBPUSD", ["shard-0000"]), ("XAUUSD", ["shard-0001"]), ("AUDUSD", ["shard-0002"]),
     ("EURUSD", ["shard-0000", "shard-0001"])],
)
def test_router_when_tick_routed_goes_only_to_shards_holding_symbol(symbol: str, shards: list[str]) -> None:
    router, wire, _ = make_router()
    handles = router.route([tick(symbol, 1.0, 1.001, 1)])
    assert len(wire.frames) == 1
    assert wire.shards_of(0) == shards
    assert handles == [(s, 0) for s in shards]
    assert router.sent == len(shards)


def test_router_when_tick_of_unheld_symbol_sends_nothing_but_keeps_mark() -> None:
    router, wire, config = make_router()
    assert router.route([tick("USDJPY", 110.0, 110.02, 1)]) == []
    assert wire.frames == []
    assert wire.calls == []
    assert router.marks == {config.symbol_ids()["USDJPY"]: (110.0, 110.02)}
    assert router.refusals == []


def test_router_when_batch_reaches_many_shards_puts_frame_once() -> None:
    router, wire, _ = make_router()
    router.route([tick("EURUSD", 1.1, 1.1001, 1), tick("AUDUSD", 0.7, 0.7001, 2)])
    assert len(wire.frames) == 1
    assert wire.shards_of(0) == ["shard-0000", "shard-0001", "shard-0002"]


def test_router_when_fill_routed_goes_to_its_account_shard_and_subscribes_it() -> None:
    router, wire, config = make_router()
    router.route([fill("A4", "USDJPY", 10_000, 110.0, 1)])
    assert wire.shards_of(0) == ["shard-0001"]
    frame = wire.decoded(0, config)
    assert frame.batch.fills == [fill("A4", "USDJPY", 10_000, 110.0, 1)]
    assert frame.batch.fill_pos == [0]
    # A later USDJPY tick now reaches shard-0001, and only it.
    router.route([tick("USDJPY", 110.1, 110.12, 2)])
    assert wire.shards_of(1) == ["shard-0001"]


def test_router_when_batch_mixes_symbols_frame_carries_all_ticks_in_arrival_order() -> None:
    router, wire, config = make_router(make_config(max_ticks=100))
    router.route([tick("EURUSD", 1.1, 1.1001, 1), tick("GBPUSD", 1.3, 1.3001, 2),
                  fill("A5", "EURUSD", 5, 1.1, 3), tick("XAUUSD", 1500.0, 1500.5, 4)])
    frame = wire.decoded(0, config)
    assert sym_names(frame, config) == ["EURUSD", "GBPUSD", "XAUUSD"]
    assert frame.batch.fill_pos == [2]
    assert frame.batch.ticks.seq.tolist() == [1, 2, 4]
    assert wire.shards_of(0) == ["shard-0000", "shard-0001", "shard-0002"]


def test_router_when_ticks_exceed_max_ticks_cuts_batches_at_max_ticks() -> None:
    router, wire, config = make_router(make_config(max_ticks=4))
    events: list[Tick | Fill] = [tick("EURUSD", 1.1 + k * 1e-5, 1.1002 + k * 1e-5, k) for k in range(1, 11)]
    events.insert(2, fill("A1", "EURUSD", 1000, 1.1, 0))  # fills do not count toward the size
    router.route(events)
    frames = [wire.decoded(i, config) for i in range(len(wire.frames))]
    assert [len(f.batch.ticks) for f in frames] == [4, 4, 2]
    assert [len(f.batch.fills) for f in frames] == [1, 0, 0]
    assert [f.number for f in frames] == [0, 1, 2]
    assert [f.base_pos for f in frames] == [0, 5, 9]
    assert router.batches == 3
    assert router.position == 11


def test_router_when_route_called_twice_numbers_batches_and_positions_continuously() -> None:
    router, wire, config = make_router(make_config(max_ticks=100))
    router.route([tick("EURUSD", 1.1, 1.1001, 1), tick("EURUSD", 1.1, 1.1001, 2)])
    router.route([tick("EURUSD", 1.1, 1.1001, 3)])
    numbering = [(wire.decoded(i, config).number, wire.decoded(i, config).base_pos) for i in range(2)]
    assert numbering == [(0, 0), (1, 2)]


def test_router_when_tick_symbol_unknown_refuses_and_does_not_send_it() -> None:
    router, wire, config = make_router(make_config(max_ticks=100))
    router.route([tick("EURUSD", 1.1, 1.1001, 1), tick("DOGEUSD", 0.1, 0.11, 2),
                  fill("A1", "EURUSD", 1000, 1.1, 3), tick("EURUSD", 1.1, 1.1001, 4)])
    assert [(r.code, r.seq) for r in router.refusals] == [("unknown_symbol", 2)]
    frame = wire.decoded(0, config)
    assert frame.batch.ticks.seq.tolist() == [1, 4]
    assert frame.batch.fill_pos == [1]
    assert router.tick_screen.refused["unknown_symbol"] == 1


@pytest.mark.parametrize(("bid", "ask", "code"), [(math.nan, 1.1, "bad_price"), (-1.0, 1.1, "bad_price"),
                                                  (1.2, 1.1, "crossed_quote")])
def test_router_when_tick_price_bad_refuses_and_does_not_send_it(bid: float, ask: float, code: str) -> None:
    router, wire, config = make_router(make_config(max_ticks=100))
    router.route([tick("EURUSD", 1.1, 1.1001, 1), tick("EURUSD", bid, ask, 2),
                  fill("A1", "EURUSD", 1000, 1.1, 3), tick("EURUSD", 1.1002, 1.1003, 4)])
    assert [(r.code, r.seq) for r in router.refusals] == [(code, 2)]
    frame = wire.decoded(0, config)
    assert frame.batch.ticks.seq.tolist() == [1, 4]
    assert frame.batch.fill_pos == [1]  # the fill still follows tick 1 and precedes tick 4
    assert router.marks[config.symbol_ids()["EURUSD"]] == (1.1002, 1.1003)


def test_router_when_batch_only_has_refused_ticks_sends_nothing() -> None:
    router, wire, _ = make_router()
    assert router.route([tick("EURUSD", math.nan, 1.0, 1), tick("NOPE", 1.0, 1.1, 2)]) == []
    assert wire.frames == []
    assert router.batches == 0
    assert router.position == 0
    assert len(router.refusals) == 2


@pytest.mark.parametrize(
    ("bad", "code"),
    [(fill("ghost", "EURUSD", 1000, 1.1, 2), "unknown_account"),
     (fill("A1", "DOGE", 1000, 1.1, 2), "unknown_symbol"),
     (fill("A1", "EURUSD", 0.0, 1.1, 2), "bad_qty"), (fill("A1", "EURUSD", 1000, -1.1, 2), "bad_price")],
)
def test_router_when_fill_invalid_refuses_and_does_not_send_it(bad: Fill, code: str) -> None:
    router, wire, config = make_router()
    router.route([bad, fill("A5", "AUDUSD", 10, 0.7, 3)])
    assert [(r.code, r.seq) for r in router.refusals] == [(code, 2)]
    assert wire.decoded(0, config).batch.fills == [fill("A5", "AUDUSD", 10, 0.7, 3)]
    assert wire.shards_of(0) == ["shard-0002"]


def test_router_when_fill_id_repeats_refuses_duplicate_fill() -> None:
    router, wire, _ = make_router()
    router.route([fill("A5", "AUDUSD", 10, 0.7, 1, fill_id="x-1")])
    router.route([fill("A5", "AUDUSD", 10, 0.7, 2, fill_id="x-1")])
    assert [r.code for r in router.refusals] == ["duplicate_fill"]
    assert len(wire.frames) == 1


def test_router_when_fill_symbol_has_earlier_mark_batch_carries_that_mark() -> None:
    router, wire, config = make_router(make_config(max_ticks=2))
    ids = config.symbol_ids()
    router.route([tick("GBPUSD", 1.2900, 1.2902, 1), tick("GBPUSD", 1.2910, 1.2912, 2),
                  fill("A4", "GBPUSD", 100_000, 1.2911, 3), fill("A5", "AUDUSD", 10, 0.7, 4)])
    frame = wire.decoded(1, config)
    assert isinstance(frame.batch.fills[0], Fill)
    assert frame.batch.fills[0].symbol == "GBPUSD"
    # Only the fills' symbols travel, as of the batch start: GBPUSD's last quote; AUDUSD has none yet.
    assert frame.batch.marks == {ids["GBPUSD"]: (1.2910, 1.2912)}


def test_router_when_fill_batch_has_no_fill_symbol_mark_sends_no_marks() -> None:
    router, wire, config = make_router()
    router.route([tick("GBPUSD", 1.29, 1.2902, 1), fill("A4", "XAUUSD", 1, 1500.0, 2)])
    assert wire.decoded(0, config).batch.marks == {}


# --------------------------------------------------------------------------- shards


def make_shards(config: RiskConfig) -> dict[str, AccountShard]:
    return {shard: AccountShard(config, shard, list(accounts))
            for shard, accounts in place_accounts(config).items()}


def route_through_shards(config: RiskConfig, events: list[Tick | Fill],
                         ) -> tuple[Router, dict[str, AccountShard], list[ShardReport]]:
    shards = make_shards(config)
    router = Router(config, place_accounts(config), lambda shard, frame: shards[shard].apply(frame))
    reports = router.route(events)
    return router, shards, reports


def shard_states(shards: dict[str, AccountShard]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shard in shards.values():
        out.update(shard.engine.states())
    return out


def reference(config: RiskConfig, events: Iterable[Tick | Fill]) -> tuple[ReferenceEngine, list[Any]]:
    engine = ReferenceEngine(config)
    emitted = engine.apply(EventBatch.from_events(list(events), config.symbol_ids()))
    return engine, emitted


def merged_events(reports: list[ShardReport]) -> list[Any]:
    keyed = [item for report in reports for item in report.events]
    keyed.sort(key=lambda item: item[:3])
    return [event for *_, event in keyed]


def scenario() -> list[Tick | Fill]:
    """GBPUSD ticks are first seen only by shard-0000 (A2); then A4 (shard-0001) opens GBPUSD by a fill."""
    return [
        tick("EURUSD", 1.1000, 1.1002, 1),
        tick("GBPUSD", 1.2900, 1.2902, 2),
        tick("XAUUSD", 1500.0, 1500.5, 3),
        tick("GBPUSD", 1.2950, 1.2952, 4),
        tick("AUDUSD", 0.7010, 0.7012, 5),
        tick("GBPUSD", 1.3100, 1.3102, 6),  # A2 (short 1M at 1.30) loses ~10k
        tick("EURUSD", 1.0950, 1.0952, 7),
        tick("GBPUSD", 1.3150, 1.3152, 8),
        fill("A4", "GBPUSD", 1_000_000, 1.3160, 9, fill_id="f-a4"),  # first GBPUSD on shard-0001
        tick("EURUSD", 1.0800, 1.0802, 10),  # A1 (long 2M) drawdown past 2 %: alert and breaker
        tick("XAUUSD", 1490.0, 1490.5, 11),
        fill("A1", "EURUSD", -1_000_000, 1.0800, 12, fee=25.0),
        tick("GBPUSD", 1.3200, 1.3202, 13),
        fill("A5", "XAUUSD", -10, 1489.0, 14),
        tick("XAUUSD", 1480.0, 1480.5, 15),
        fill("A3", "EURUSD", 2_000_000, 1.0805, 16),  # A3 flips short -> long
        tick("EURUSD", 1.0820, 1.0822, 17),
        tick("AUDUSD", 0.6950, 0.6952, 18),
    ]


@pytest.mark.parametrize("per", [1, 2, 3, 5])
@pytest.mark.parametrize("max_ticks", [1, 3, 4, 100])
def test_router_and_shards_when_fed_scenario_equal_reference_engine(per: int, max_ticks: int) -> None:
    config = make_config(accounts_per_actor=per, max_ticks=max_ticks)
    router, shards, reports = route_through_shards(config, scenario())
    ref, ref_events = reference(config, scenario())
    assert router.refusals == []
    assert shard_states(shards) == ref.states()
    assert merged_events(reports) == ref_events
    assert any(getattr(e, "state", None) == "ENGAGED" for e in ref_events)  # the scenario trips a breaker


def test_router_and_shards_when_fill_opens_symbol_seen_only_by_other_shard_starts_from_latest_mark() -> None:
    config = make_config(accounts_per_actor=2, max_ticks=2)
    events: list[Tick | Fill] = [
        tick("GBPUSD", 1.2900, 1.2902, 1),
        tick("GBPUSD", 1.2950, 1.2952, 2),
        tick("GBPUSD", 1.3100, 1.3102, 3),
        tick("AUDUSD", 0.7000, 0.7002, 4),
        fill("A4", "GBPUSD", 1_000_000, 1.3150, 5),
    ]
    _, shards, _ = route_through_shards(config, events)
    # shard-0001 (A3, A4) saw none of the GBPUSD ticks: its only batch is the one with A4's fill.
    assert shards["shard-0001"].batches == 1
    assert shards["shard-0001"].ticks_applied == 0
    assert shards["shard-0001"].engine.marks.get(config.symbol_ids()["GBPUSD"]) == (1.3100, 1.3102)
    a4 = shard_states(shards)["A4"]
    # Long 1M bought at 1.3150, marked at the latest bid 1.3100 (not at its own price).
    assert a4.open_pnl == pytest.approx(1_000_000 * (1.3100 - 1.3150))
    assert a4.total_exposure == pytest.approx(1_000_000 * 1.3100)
    assert a4 == reference(config, events)[0].states()["A4"]


def test_router_and_shards_when_fill_precedes_ticks_of_its_new_symbol_in_same_batch_equal_reference() -> None:
    config = make_config(accounts_per_actor=2, max_ticks=100)
    events: list[Tick | Fill] = [
        tick("GBPUSD", 1.2900, 1.2902, 1),
        fill("A4", "GBPUSD", 500_000, 1.2910, 2),
        tick("GBPUSD", 1.2800, 1.2802, 3),
        tick("GBPUSD", 1.2700, 1.2702, 4),
    ]
    _, shards, _ = route_through_shards(config, events)
    assert shard_states(shards) == reference(config, events)[0].states()
    assert shard_states(shards)["A4"].open_pnl == pytest.approx(500_000 * (1.2700 - 1.2910))


def test_router_and_shards_when_bad_ticks_interleaved_with_fills_equal_reference_on_valid_events() -> None:
    config = make_config(accounts_per_actor=2, max_ticks=3)
    events: list[Tick | Fill] = [
        tick("EURUSD", 1.1000, 1.1002, 1),
        tick("EURUSD", math.nan, 1.1002, 2),
        fill("A1", "EURUSD", 500_000, 1.1001, 3),
        tick("NOPE", 1.0, 1.1, 4),
        tick("EURUSD", 1.0990, 1.0992, 5),
        tick("EURUSD", 1.0999, 1.0980, 6),  # crossed
        fill("ghost", "EURUSD", 1.0, 1.0, 7),
        tick("EURUSD", 1.0970, 1.0972, 8),
    ]
    router, shards, reports = route_through_shards(config, events)
    refused = sorted(r.code for r in router.refusals)
    assert refused == ["bad_price", "crossed_quote", "unknown_account", "unknown_symbol"]
    valid = [e for e in events
             if (isinstance(e, Tick) and e.seq in (1, 5, 8)) or (isinstance(e, Fill) and e.seq == 3)]
    ref, ref_events = reference(config, valid)
    assert shard_states(shards) == ref.states()
    assert merged_events(reports) == ref_events


# --------------------------------------------------------------------------- shard robustness


@pytest.mark.parametrize(
    "frame",
    [b"\xc1 garbage", b"", encode_ticks("md", ["EURUSD"], [0], [1.1], [1.2], [T0], [1])],
    ids=["garbage", "empty", "ticks-frame"],
)
def test_account_shard_when_frame_not_a_batch_reports_bad_frame_and_changes_nothing(frame: bytes) -> None:
    config = make_config()
    shard = AccountShard(config, "shard-0000", ["A1", "A2"])
    router = Router(config, {"shard-0000": ["A1", "A2"]}, lambda s, f: shard.apply(f))
    router.route([tick("EURUSD", 1.0900, 1.0902, 1), fill("A2", "EURUSD", 1000, 1.09, 2)])
    before = shard.states()
    marks_before = dict(shard.engine.marks)
    report = shard.apply(frame)
    assert report.batch == -1
    assert [(r.stream, r.code) for r in report.refusals] == [("frame", "bad_frame")]
    assert (report.ticks_applied, report.fills_applied, report.events) == (0, 0, [])
    assert shard.states() == before
    assert shard.engine.marks == marks_before
    assert (shard.batches, shard.ticks_applied, shard.fills_applied) == (1, 1, 1)
    assert shard.stats()["refused"] == {"bad_frame": 1}


def test_account_shard_when_batch_frame_redelivered_applies_it_once() -> None:
    config = make_config()
    frames: list[bytes] = []
    router = Router(config, {"shard-0000": ["A1", "A2"]}, lambda s, f: frames.append(f))
    router.route([tick("EURUSD", 1.0900, 1.0902, 1), tick("EURUSD", 1.0800, 1.0802, 2)])
    shard = AccountShard(config, "shard-0000", ["A1", "A2"])
    shard.apply(frames[0])
    once = shard.states()
    again = shard.apply(frames[0])
    assert shard.states() == once
    assert (again.ticks_applied, again.refusals, shard.redelivered) == (0, [], 1)  # a re-delivery


def test_account_shard_when_fill_for_account_hosted_elsewhere_ignores_it() -> None:
    config = make_config()
    frames: list[bytes] = []
    router = Router(config, place_accounts(config), lambda s, f: frames.append(f))
    router.route([tick("EURUSD", 1.09, 1.0902, 1), fill("A3", "EURUSD", 1000, 1.09, 2)])
    shard = AccountShard(config, "shard-0000", ["A1", "A2"])
    report = shard.apply(frames[0])
    assert (report.ticks_applied, report.fills_applied, report.refusals) == (1, 0, [])


@dataclass(slots=True)
class AccountSummary:
    """One account's summary, built one book at a time: the oracle for the shard's columns."""

    account: str
    portfolio: str
    equity: float
    sod_equity: float
    exposure: float
    net: dict[str, float]  # symbol -> signed notional at the account's marks
    positions: dict[str, float]  # symbol -> signed quantity
    alert_level: str
    breaker: str
    ts_ns: int | None


def summarize(
    book: AccountBook, marks: Mapping[int, tuple[float, float]], symbols: list[str]
) -> AccountSummary:
    net: dict[str, float] = {}
    positions: dict[str, float] = {}
    for slot, symbol_id in enumerate(book.slot_symbols):
        qty = book.qty[slot]
        if qty == 0.0:
            continue
        quote = marks.get(symbol_id)
        bid, ask = (0.0, 0.0) if quote is None else quote
        mark = mark_price(qty, book.avg[slot], bid, ask, quote is not None)
        net[symbols[symbol_id]] = qty * mark * book.mult[slot]
        positions[symbols[symbol_id]] = qty
    return AccountSummary(book.id, book.portfolio, book.equity, book.sod_equity, book.exposure, net,
                          positions, str(AlertLevel.from_rank(book.rank)), str(book.breaker.state),
                          book.ts_ns)


def from_columns(columns: SummaryColumns, config: RiskConfig) -> list[AccountSummary]:
    specs, symbols = config.accounts, list(config.symbols)
    out = [
        AccountSummary(specs[i].id, specs[i].portfolio, equity, sod, exposure, {}, {},
                       str(AlertLevel.from_rank(rank)), "ENGAGED" if engaged else "SAFE",
                       None if ts < 0 else ts)
        for i, equity, sod, exposure, rank, engaged, ts in zip(
            columns.index.tolist(), columns.equity.tolist(), columns.sod_equity.tolist(),
            columns.exposure.tolist(), columns.rank.tolist(), columns.engaged.tolist(),
            columns.ts_ns.tolist(), strict=True)
    ]
    for a, s, qty, net in zip(columns.pos_account.tolist(), columns.pos_symbol.tolist(),
                              columns.pos_qty.tolist(), columns.pos_net.tolist(), strict=True):
        out[a].positions[symbols[s]] = qty
        out[a].net[symbols[s]] = net
    return out


def test_account_shard_when_summarising_columns_equal_per_book_summaries() -> None:
    # The shard sends columns built from the engine's arrays; summarize above is the per-book definition.
    # After ticks, fills (a flip, a symbol opened) and an operator halt they must agree exactly.

    config = make_config(accounts_per_actor=5)
    shard = AccountShard(config, "shard-0000", ["A1", "A2", "A3", "A4", "A5"])
    router = Router(config, place_accounts(config), lambda s, f: shard.apply(f))
    router.route([
        tick("EURUSD", 1.0900, 1.0902, 1), fill("A4", "GBPUSD", 50_000, 1.2990, 2),
        tick("GBPUSD", 1.2980, 1.2982, 3), fill("A1", "EURUSD", -2_500_000, 1.0900, 4),
        tick("XAUUSD", 1490.0, 1490.5, 5), tick("EURUSD", 1.0950, 1.0952, 6),
    ])
    shard.engage("A2", T0 + 10 * MS, "ops", "check")
    columns = from_columns(shard.summaries(), config)
    shard.engine.sync()
    expected = [summarize(book, shard.engine.marks, shard.engine.symbol_names) for book in shard.engine.books]
    assert columns == expected
    assert columns[0].positions == {"EURUSD": -500_000.0}
    assert columns[1].breaker == "ENGAGED"
    assert "GBPUSD" in columns[3].positions


def test_account_shard_when_reporting_sends_only_accounts_an_event_reached() -> None:
    config = make_config(accounts_per_actor=5)
    shard = AccountShard(config, "shard-0000", ["A1", "A2", "A3", "A4", "A5"])
    reports: list[ShardReport] = []
    router = Router(config, place_accounts(config), lambda s, f: reports.append(shard.apply(f)))
    # The first report carries every account (nothing reported yet); then only those the batch reached.
    router.route([tick("EURUSD", 1.0900, 1.0902, 1)])
    router.route([tick("GBPUSD", 1.2980, 1.2982, 2)])
    router.route([tick("EURUSD", 1.0910, 1.0912, 3), fill("A4", "AUDUSD", 1_000, 0.7, 4)])
    router.route([tick("XAUUSD", 1490.0, 1490.5, 5)])
    reported = [[config.accounts[i].id for i in r.summaries.index.tolist()] for r in reports]
    assert reported == [["A1", "A2", "A3", "A4", "A5"], ["A2"], ["A1", "A3", "A4"], ["A3"]]
    # Mids of the symbols the batch quoted (AUDUSD, only traded, has no quote yet).
    assert [set(r.mids) for r in reports][1:] == [{"GBPUSD"}, {"EURUSD"}, {"XAUUSD"}]


def test_account_shard_when_tick_engages_breaker_publishes_it_before_applying_later_ticks() -> None:
    config = make_config(accounts_per_actor=5)
    calls: list[tuple[str, Any]] = []

    class Remote:
        def __init__(self, name: str, probe: Any = None) -> None:
            self.name, self.probe = name, probe

        def remote(self, *args: Any) -> None:
            calls.append((self.name, args if self.probe is None else (*args, self.probe())))

    shard: AccountShard

    class Supervisor:
        report = Remote("report")
        breaker_now = Remote("breaker_now", lambda: float(shard.engine.m_bid[0]))  # EURUSD's bid right now

    shard = AccountShard(config, "shard-0000", ["A1", "A2", "A3", "A4", "A5"], Supervisor())
    router = Router(config, place_accounts(config), lambda s, f: shard.apply(f))
    # A1: 2,000,000 EURUSD long from 1.10 on 1,000,000: a fall to 1.085 is a 3 % drawdown (CRITICAL).
    router.route([tick("EURUSD", 1.0990, 1.0992, 1), tick("EURUSD", 1.0850, 1.0852, 2),
                  tick("EURUSD", 1.0800, 1.0802, 3), tick("EURUSD", 1.0700, 1.0702, 4)])
    assert [name for name, _ in calls] == ["breaker_now", "report"]
    # Published at the tick that engaged it, numbered after every breaker change before it.
    assert calls[0][1] == ("A1", "ENGAGED", calls[0][1][2], shard.halts.version, 1.0850)
    assert calls[0][1][2].startswith("drawdown_pct")


def test_account_shard_when_watched_for_halts_wakes_the_watcher_inside_the_batch() -> None:
    import threading

    config = make_config(accounts_per_actor=5)
    shard = AccountShard(config, "shard-0000", ["A1", "A2", "A3", "A4", "A5"])
    v0 = shard.halts.version  # numbered from the clock: newer than any a previous process of the shard gave
    assert shard.watch_halts(-1, 0.0) == Halts(v0, ())  # the current state at once for a new watcher
    woke: list[Halts] = []
    watcher = threading.Thread(target=lambda: woke.append(shard.watch_halts(v0, 30.0)))
    watcher.start()
    router = Router(config, place_accounts(config), lambda s, f: shard.apply(f))
    router.route([tick("EURUSD", 1.0990, 1.0992, 1), tick("EURUSD", 1.0850, 1.0852, 2)])  # A1 engages
    watcher.join(timeout=30.0)
    assert woke == [Halts(v0 + 1, ("A1",))]
    assert shard.watch_halts(v0 + 1, 0.0) == Halts(v0 + 1, ("A1",))  # nothing newer: the same at the timeout
    shard.engage("A2", T0 + 10 * MS, "ops", "check")
    assert shard.watch_halts(v0 + 1, 0.0) == Halts(v0 + 2, ("A1", "A2"))
    shard.reset("A2", T0 + 10 * MS + 10**12, "ops", "done")
    assert shard.watch_halts(v0 + 2, 0.0) == Halts(v0 + 3, ("A1",))


# --------------------------------------------------------------------------- delivery order and recovery


def recorded_frames(config: RiskConfig, events: list[Tick | Fill]) -> list[tuple[str, bytes]]:
    frames: list[tuple[str, bytes]] = []
    Router(config, place_accounts(config), lambda s, f: frames.append((s, f))).route(events)
    return frames


def stream_with_breaches() -> list[Tick | Fill]:
    """Ticks and fills over every symbol; A1 (2M EURUSD long on 1M) engages when EURUSD falls 3 %."""
    events: list[Tick | Fill] = []
    for i in range(40):
        eur = 1.0990 - 0.0006 * i
        events.append(tick("EURUSD", round(eur, 5), round(eur + 0.0002, 5), 3 * i))
        events.append(tick("XAUUSD", 1490.0 + i, 1490.5 + i, 3 * i + 1))
        if i % 7 == 3:
            account = ("A3", "A5", "A2")[i % 3]
            events.append(fill(account, "EURUSD", 10_000, round(eur, 5), 3 * i + 2, f"f{i}"))
    return events


class RecordingSupervisor:
    """Stands in for the supervisor's Ray handle: keeps every report a shard sends."""

    def __init__(self) -> None:
        self.sent: list[ShardReport] = []
        outer = self

        class _Report:
            @staticmethod
            def remote(report: ShardReport) -> None:
                outer.sent.append(report)

        class _Ignore:
            @staticmethod
            def remote(*args: Any) -> None:
                pass

        self.report = _Report
        self.breaker_now = _Ignore

    def events(self) -> list[Any]:
        return sorted(e for r in self.sent for e in r.events)


ACCOUNTS = ["A1", "A2", "A3", "A4", "A5"]


def test_account_shard_when_batches_arrive_out_of_order_or_twice_applies_each_once_in_turn() -> None:
    config = make_config(accounts_per_actor=5)
    frames = [f for _, f in recorded_frames(config, stream_with_breaches())]
    assert len(frames) >= 8
    in_order, shuffled = RecordingSupervisor(), RecordingSupervisor()
    first = AccountShard(config, "shard-0000", ACCOUNTS, in_order)
    for frame in frames:
        first.apply(frame)
    second = AccountShard(config, "shard-0000", ACCOUNTS, shuffled)
    delivery = frames[3:6] + frames[:2] + frames[1:4] + frames[6:] + frames[:3]  # early, late and repeated
    for frame in delivery:
        second.apply(frame)
    assert second.states() == first.states()
    assert second.next_seq == len(frames)
    assert not second.held
    assert second.redelivered == len(delivery) - len(frames)
    assert [r.seq for r in shuffled.sent] == list(range(len(frames)))  # reported once each, in turn
    assert shuffled.events() == in_order.events()
    assert any(e[3].state == "ENGAGED" for e in in_order.events()
                                                           if hasattr(e[3], "state"))


def test_account_shard_when_restarted_from_its_journal_equals_one_that_never_stopped(tmp_path: Any) -> None:
    config = make_config(accounts_per_actor=5)
    frames = [f for _, f in recorded_frames(config, stream_with_breaches())]
    journal = str(tmp_path / "shard-0000.journal")
    supervisor = RecordingSupervisor()
    first = AccountShard(config, "shard-0000", ACCOUNTS, supervisor, journal_path=journal)
    for frame in frames[:5]:
        first.apply(frame)
    first.engage("A4", T0 + 10**12, "ops", "desk call")
    assert first.journal is not None
    first.journal.close()
    before = supervisor.events()
    # The process dies here. Its replacement replays the journal, then takes the rest (and a re-delivery).
    again = AccountShard(config, "shard-0000", ACCOUNTS, supervisor, journal_path=journal)
    recovery = supervisor.sent[-1]
    assert recovery.recovered_upto == 4
    assert again.next_seq == 5
    assert sorted(recovery.events) == before
    assert again.halts.halted == first.halts.halted
    assert "A4" in again.halts.halted
    for frame in frames[4:]:
        again.apply(frame)
    assert again.redelivered == 1
    never_stopped = AccountShard(config, "shard-0000", ACCOUNTS)
    for n, frame in enumerate(frames):
        if n == 5:
            never_stopped.engage("A4", T0 + 10**12, "ops", "desk call")
        never_stopped.apply(frame)
    assert again.states() == never_stopped.states()
    assert {a: b.breaker.snapshot() for a, b in again.engine.book_by_id.items()} == {
        a: b.breaker.snapshot() for a, b in never_stopped.engine.book_by_id.items()}


def test_journal_when_last_write_was_torn_keeps_every_complete_record(tmp_path: Any) -> None:
    from riskcore.journal import Journal

    path = tmp_path / "j"
    journal = Journal(path)
    for n in range(3):
        journal.append({"k": "batch", "n": n, "f": bytes(100)})
    journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # a crash in the middle of the last write
    assert [r["n"] for r in Journal.read(path)] == [0, 1]
    again = Journal(path)
    again.append({"k": "batch", "n": 9, "f": b""})
    again.close()
    assert [r["n"] for r in Journal.read(path)] == [0, 1, 9]


def test_account_shard_when_restarted_holding_an_early_batch_applies_it_once_the_gap_fills(
        tmp_path: Any) -> None:
    config = make_config(accounts_per_actor=5)
    frames = [f for _, f in recorded_frames(config, stream_with_breaches())]
    journal = str(tmp_path / "shard-0000.journal")
    first = AccountShard(config, "shard-0000", ACCOUNTS, RecordingSupervisor(), journal_path=journal)
    first.apply(frames[0])
    first.apply(frames[2])  # early: acknowledged and held, so its sender will not send it again
    assert first.journal is not None
    first.journal.close()
    again = AccountShard(config, "shard-0000", ACCOUNTS, RecordingSupervisor(), journal_path=journal)
    assert again.next_seq == 1
    assert set(again.held) == {2}
    for frame in frames[1:]:
        again.apply(frame)
    never_stopped = AccountShard(config, "shard-0000", ACCOUNTS)
    for frame in frames:
        never_stopped.apply(frame)
    assert again.states() == never_stopped.states()
    assert again.next_seq == len(frames)


# --------------------------------------------------------------------------- journal and frame limits


def test_journal_when_larger_than_one_record_buffer_reads_every_record(tmp_path: Any,
                                                                       monkeypatch: Any) -> None:
    from riskcore import journal as journal_module

    monkeypatch.setattr(journal_module, "MAX_RECORD_BYTES", 4096)  # a journal many times one record's bound
    path = tmp_path / "j"
    journal = journal_module.Journal(path)
    for n in range(200):
        journal.append({"k": "batch", "n": n, "f": bytes(1000)})
    journal.close()
    assert path.stat().st_size > 40 * 4096
    assert [r["n"] for r in journal_module.Journal.read(path)] == list(range(200))


def test_router_when_a_batch_would_encode_over_the_frame_limit_cuts_it_and_accounts_end_the_same() -> None:
    # A frame over the limit would be refused by every shard, and each would then hold every later batch of
    # its sequence for ever. The router cuts such a batch instead, in arrival order.
    config = make_config(accounts_per_actor=2, max_ticks=10_000)
    events = stream_with_breaches()
    whole: list[tuple[str, bytes]] = []
    Router(config, place_accounts(config), lambda s, f: whole.append((s, f))).route(events)
    limit = max(len(f) for _, f in whole) // 5
    shards = make_shards(config)
    sent: list[bytes] = []

    def send(shard: str, frame: bytes) -> ShardReport:
        sent.append(frame)
        return shards[shard].apply(frame)

    router = Router(config, place_accounts(config), send, max_frame_bytes=limit)
    reports = router.route(events)
    assert len(whole) < len(sent)
    assert max(len(f) for f in sent) <= limit
    assert not [r for report in reports for r in report.refusals]
    ref, ref_events = reference(config, events)
    assert shard_states(shards) == ref.states()
    assert merged_events(reports) == ref_events


@pytest.mark.parametrize("snapshot_kb", [1, 2, 4])
def test_account_shard_when_its_journal_is_compacted_restarts_from_the_snapshot_as_if_it_never_stopped(
    tmp_path: Any, snapshot_kb: int
) -> None:
    # A small snapshot threshold makes the shard compact its journal several times over the stream; each
    # restart (one after every batch) rebuilds from snapshot + tail and must go on exactly as one that never
    # stopped: accounts, breakers, input screens, sequence counters and the events a supervisor may ask for.
    from dataclasses import replace as replace_config

    from riskcore.config import DurabilityConfig
    from riskcore.journal import Journal

    config = replace_config(make_config(accounts_per_actor=5),
                            durability=DurabilityConfig(snapshot_mb=snapshot_kb / 1024))
    events = stream_with_breaches()
    events.insert(20, fill("A3", "EURUSD", 10_000, 1.09, 500, "dup"))
    events.insert(50, fill("A3", "EURUSD", 10_000, 1.09, 501, "dup"))  # the same id: refused after a restart
    frames: list[bytes] = []
    router = Router(config, place_accounts(config), lambda s, f: frames.append(f))
    router.route(events[:50])
    router.fill_screen.seen_ids.clear()  # so the second "dup" reaches the shard, which must know the first
    router.route(events[50:])
    journal = str(tmp_path / "shard-0000.journal")
    never_stopped, reference_supervisor = AccountShard(config, "shard-0000", ACCOUNTS), RecordingSupervisor()
    never_stopped.supervisor = reference_supervisor
    compactions, refused = 0, []
    for n, frame in enumerate(frames):
        shard = AccountShard(config, "shard-0000", ACCOUNTS, RecordingSupervisor(), journal_path=journal)
        if n == 4:
            shard.engage("A4", T0 + 10**12, "ops", "desk call")
            never_stopped.engage("A4", T0 + 10**12, "ops", "desk call")
        got, want = shard.apply(frame), never_stopped.apply(frame)
        assert [r.code for r in got.refusals] == [r.code for r in want.refusals]
        refused += [r.code for r in got.refusals]
        compactions += shard.snapshots
        assert shard.states() == never_stopped.states()
        assert shard.events_since(0)[-3:] == never_stopped.events_since(0)[-3:]
        assert (shard.next_seq, shard.batches, shard.fills_applied) == (
            never_stopped.next_seq, never_stopped.batches, never_stopped.fills_applied)
        assert shard.journal is not None
        shard.journal.close()
    assert compactions >= 2
    assert Journal.read(journal)[0]["k"] == "snapshot"
    assert refused == ["duplicate_fill"]
    again = AccountShard(config, "shard-0000", ACCOUNTS, RecordingSupervisor(), journal_path=journal)
    assert again.apply(frames[-1]).seq == len(frames) - 1
    assert again.redelivered == 1
    assert again.events_since(0) == never_stopped.events_since(0)
    assert {a: b.breaker.snapshot() for a, b in again.engine.book_by_id.items()} == {
        a: b.breaker.snapshot() for a, b in never_stopped.engine.book_by_id.items()}


def test_router_when_an_id_or_stream_name_is_huge_refuses_the_event_and_later_batches_flow() -> None:
    # One event can be made as large as a frame by its strings alone; it must be refused before it is
    # numbered, or the shard would refuse its frame and hold every later batch for ever.
    config = make_config(accounts_per_actor=5)
    shard = AccountShard(config, "shard-0000", ACCOUNTS)
    router = Router(config, place_accounts(config), lambda s, f: shard.apply(f))
    router.route([fill("A1", "EURUSD", 1000.0, 1.1, 0, fill_id="X" * 10_000),
                  Tick("EURUSD", 1.1, 1.1002, T0, "s" * 10_000, 1)])
    router.route([tick("EURUSD", 1.1, 1.1002, 2), tick("EURUSD", 1.1001, 1.1003, 3)])
    assert [r.code for r in router.refusals] == ["bad_name", "bad_name"]
    assert shard.next_seq == 1
    assert not shard.held
    assert shard.ticks_applied == 2


def test_fill_screen_when_a_fill_id_looks_like_a_cash_id_both_are_applied() -> None:
    from riskcore.ingest import FillScreen

    screen = FillScreen(["A1"], {"EURUSD": 0})
    screen.note(fill("A1", "EURUSD", 1.0, 1.1, 0, fill_id="cash:WD-9"))
    assert screen.problem(Cash("A1", -5.0, T0, "WD-9")) is None
    screen.note(Cash("A1", -5.0, T0, "WD-9"))
    problem = screen.problem(Cash("A1", -5.0, T0, "WD-9"))
    assert problem is not None
    assert problem[0] == "duplicate_cash"


def test_account_shard_when_its_snapshot_outgrows_the_threshold_does_not_compact_every_batch(
        tmp_path: Any) -> None:
    from dataclasses import replace as replace_config

    from riskcore.config import DurabilityConfig

    config = replace_config(make_config(accounts_per_actor=5),
                            durability=DurabilityConfig(snapshot_mb=1 / 4096))
    shard = AccountShard(config, "shard-0000", ACCOUNTS, journal_path=str(tmp_path / "j"))
    frames = [f for _, f in recorded_frames(config, stream_with_breaches())]
    for frame in frames:
        shard.apply(frame)
    # Every snapshot is bigger than the 256-byte threshold: compactions happen as the journal doubles, not
    # after each of the batches.
    assert 1 <= shard.snapshots < len(frames) // 2
