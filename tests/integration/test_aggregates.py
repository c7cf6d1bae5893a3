"""Portfolio and firm aggregates, their breakers, operator commands and the order gate, on real Ray.

Synthetic quotes use prices that are exact in binary floating point (1.25, 1.125, 2000, ...), so
every aggregate below is hand-computed and compared exactly.

The book (4 accounts, one Ray actor each):

    account  portfolio  balance    position
    a1       desk-a     1,000,000  EURUSD +1,000,000 @ 1.25
    a2       desk-a     1,000,000  XAUUSD       -5 @ 2000   (multiplier 100)
    b1       desk-b     2,000,000  XAUUSD      +10 @ 2000
    b2       desk-b     1,000,000  EURUSD +2,000,000 @ 1.25

Phase 1 (ticks 1-2): EURUSD 1.25/1.2578125, XAUUSD 2000/2001 -> a2 (short, marked at the ask) is down 500.
Phase 2 (ticks 3-4): EURUSD drops to 1.125/1.1328125, XAUUSD unchanged -> a1 -125,000 (WARNING under
desk-a's 10 % / 20 % drawdown limits), b2 -250,000 (25 % drawdown: CRITICAL, its breaker engages),
desk-a's daily loss 125,500 breaches its max_daily_loss of 100,000.
Every account that moves in a phase moves the same way, so the aggregates the supervisor sees between
two shards' reports never leave the range between the phase's start and end (no transient breach).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from driver.gate import OrderGate
from driver.system import RiskSystem
from riskcore.errors import RiskmonError
from riskcore.events import Fill, Tick
from riskcore.gate import Order, Reason

pytestmark = pytest.mark.ray

NS = 1_000_000_000
T0 = 1_704_898_800 * NS  # 2024-01-10T15:00:00Z = 10:00 New York, well inside one FX trading day
GATE_TIMEOUT_S = 20.0

BASE_CONFIG: dict[str, Any] = {
    "symbols": {"EURUSD": {"multiplier": 1}, "XAUUSD": {"multiplier": 100}},
    "portfolios": {
        "desk-a": {
            "limits": {"max_daily_loss": 100_000, "recovery_cooldown_seconds": 30,
                       "reduce_only_when_halted": False},
            "account_limits": {"drawdown_warning": 0.1, "max_daily_drawdown": 0.2,
                               "reduce_only_when_halted": False},
        },
        "desk-b": {
            "limits": {"max_gross_exposure": 20_000_000, "max_daily_loss": 300_000,
                       "recovery_cooldown_seconds": 30, "reduce_only_when_halted": False},
        },
    },
    "firm": {
        "limits": {"max_gross_exposure": 10_000_000, "max_net_exposure_per_symbol": 9_000_000,
                   "max_daily_loss": 400_000, "recovery_cooldown_seconds": 30,
                   "reduce_only_when_halted": False},
    },
    "accounts": [
        {"id": "a1", "portfolio": "desk-a", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.25}}},
        {"id": "a2", "portfolio": "desk-a", "balance": 1_000_000,
         "positions": {"XAUUSD": {"qty": -5, "avg_price": 2000}}},
        {"id": "b1", "portfolio": "desk-b", "balance": 2_000_000,
         "positions": {"XAUUSD": {"qty": 10, "avg_price": 2000}}},
        {"id": "b2", "portfolio": "desk-b", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 2_000_000, "avg_price": 1.25}}},
    ],
    "placement": {"accounts_per_actor": 1},
    "gate": {"max_staleness_ms": 2000, "poll_interval_ms": 100},
}


def config_with(firm: dict[str, Any] | None = None) -> dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    if firm is not None:
        config["firm"]["limits"] = {"recovery_cooldown_seconds": 30, "reduce_only_when_halted": False, **firm}
    return config


class Feed:
    """Ticks on stream "ticks" and fills on stream "fills", numbered and stamped 1 ms apart."""

    def __init__(self) -> None:
        self.seq = 0
        self.fill_seq = 0
        self.ts_ns = T0
        self.last_tick: Tick | None = None

    def tick(self, symbol: str, bid: float, ask: float) -> Tick:
        self.seq += 1
        self.ts_ns += 1_000_000
        self.last_tick = Tick(symbol, bid, ask, self.ts_ns, "ticks", self.seq)
        return self.last_tick

    def fill(self, account: str, symbol: str, qty: float, price: float) -> Fill:
        self.fill_seq += 1
        self.ts_ns += 1_000_000
        return Fill(account, symbol, qty, price, self.ts_ns, fill_id=f"f{self.fill_seq}", seq=self.fill_seq)


def phase1(feed: Feed) -> list[Tick]:
    return [feed.tick("EURUSD", 1.25, 1.2578125), feed.tick("XAUUSD", 2000.0, 2001.0)]


def phase2(feed: Feed) -> list[Tick]:
    return [feed.tick("EURUSD", 1.125, 1.1328125), feed.tick("XAUUSD", 2000.0, 2001.0)]


def recovery(feed: Feed) -> list[Tick]:
    """EURUSD back where it started: nobody is beyond a limit any more (breakers stay as they are)."""
    return [feed.tick("EURUSD", 1.25, 1.2578125)]


def run(system: RiskSystem, events: Sequence[Tick | Fill]) -> None:
    system.submit(events)
    system.flush()


def levels(normal: int, warning: int, critical: int) -> dict[str, int]:
    return {"NORMAL": normal, "WARNING": warning, "CRITICAL": critical}


def breakers(safe: int, engaged: int) -> dict[str, int]:
    return {"SAFE": safe, "ENGAGED": engaged}


def breaker_events(system: RiskSystem, scope: str, target: str) -> list[dict[str, Any]]:
    return [e for e in system.events()
            if e["type"] == "breaker" and e["scope"] == scope and e["id"] == target]


def await_reason(gate: OrderGate, order: Order, reason: Reason) -> None:
    held = gate.wait_for(lambda g: g.check(order).reason == reason, GATE_TIMEOUT_S)
    assert held, f"gate gave {gate.check(order)} for {order}, expected {reason}"


def refusal(answer: Mapping[str, Any]) -> str:
    """Why an operator command was refused (it must have been)."""
    reason = answer["refusal"]
    assert isinstance(reason, str), answer
    return reason


def event(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The breaker event an operator command made (it must have made one)."""
    made = answer["event"]
    assert isinstance(made, dict), answer
    return made


def order(account: str, symbol: str = "EURUSD", qty: float = 1_000.0) -> Order:
    return Order(account, symbol, qty, 1.25 if symbol == "EURUSD" else 2000.0)


# --------------------------------------------------------------------------- aggregates


def test_status_when_two_phases_applied_aggregates_equal_hand_computed(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    feed = Feed()

    run(system, phase1(feed))
    status = system.status()
    assert status["portfolios"]["desk-a"] == {
        "scope": "portfolio", "id": "desk-a", "accounts": 2,
        "gross_exposure": 1_250_000.0 + 1_000_500.0,
        "net_exposure": {"EURUSD": 1_250_000.0, "XAUUSD": -1_000_500.0},
        "equity": 1_000_000.0 + 999_500.0, "daily_pnl": -500.0, "day_peak": 2_000_000.0, "drawdown": 500.0,
        "by_level": levels(2, 0, 0), "by_breaker": breakers(2, 0),
    }
    assert status["portfolios"]["desk-b"] == {
        "scope": "portfolio", "id": "desk-b", "accounts": 2,
        "gross_exposure": 2_000_000.0 + 2_500_000.0,
        "net_exposure": {"XAUUSD": 2_000_000.0, "EURUSD": 2_500_000.0},
        "equity": 3_000_000.0, "daily_pnl": 0.0, "day_peak": 3_000_000.0, "drawdown": 0.0,
        "by_level": levels(2, 0, 0), "by_breaker": breakers(2, 0),
    }
    assert status["firm"] == {
        "scope": "global", "id": "firm", "accounts": 4,
        "gross_exposure": 6_750_500.0,
        "net_exposure": {"EURUSD": 3_750_000.0, "XAUUSD": 999_500.0},
        "equity": 4_999_500.0, "daily_pnl": -500.0, "day_peak": 5_000_000.0, "drawdown": 500.0,
        "by_level": levels(4, 0, 0), "by_breaker": breakers(4, 0),
    }

    run(system, phase2(feed))
    status = system.status()
    assert status["portfolios"]["desk-a"] == {
        "scope": "portfolio", "id": "desk-a", "accounts": 2,
        "gross_exposure": 1_125_000.0 + 1_000_500.0,
        "net_exposure": {"EURUSD": 1_125_000.0, "XAUUSD": -1_000_500.0},
        "equity": 875_000.0 + 999_500.0, "daily_pnl": -125_500.0,
        "day_peak": 2_000_000.0, "drawdown": 125_500.0,
        "by_level": levels(1, 1, 0), "by_breaker": breakers(2, 0),
    }
    assert status["portfolios"]["desk-b"] == {
        "scope": "portfolio", "id": "desk-b", "accounts": 2,
        "gross_exposure": 2_000_000.0 + 2_250_000.0,
        "net_exposure": {"XAUUSD": 2_000_000.0, "EURUSD": 2_250_000.0},
        "equity": 2_000_000.0 + 750_000.0, "daily_pnl": -250_000.0,
        "day_peak": 3_000_000.0, "drawdown": 250_000.0,
        "by_level": levels(1, 0, 1), "by_breaker": breakers(1, 1),
    }
    assert status["firm"] == {
        "scope": "global", "id": "firm", "accounts": 4,
        "gross_exposure": 6_375_500.0,
        "net_exposure": {"EURUSD": 3_375_000.0, "XAUUSD": 999_500.0},
        "equity": 4_624_500.0, "daily_pnl": -375_500.0, "day_peak": 5_000_000.0, "drawdown": 375_500.0,
        "by_level": levels(2, 1, 1), "by_breaker": breakers(3, 1),
    }
    states = system.states()
    assert (states["a1"]["alert_level"], states["b2"]["alert_level"]) == ("WARNING", "CRITICAL")
    assert states["b2"]["breaker"] == "ENGAGED"


# --------------------------------------------------------------------------- portfolio breaker


def test_portfolio_breaker_when_daily_loss_breached_engages_only_that_portfolio(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    await_reason(gate, order("a1"), Reason.OK)
    assert breaker_events(system, "portfolio", "desk-a") == []

    batch = phase2(feed)
    run(system, batch)
    last_tick = batch[-1]

    events = system.events()
    limit = [e for e in events if e["type"] == "limit" and e["scope"] == "portfolio"]
    assert [(e["id"], e["metric"], e["value"], e["threshold"], e["tick_seq"]) for e in limit] == [
        ("desk-a", "daily_loss", 125_500.0, 100_000.0, last_tick.seq)
    ]
    engaged = breaker_events(system, "portfolio", "desk-a")
    assert len(engaged) == 1
    assert {k: engaged[0][k] for k in ("type", "scope", "id", "state", "cause", "stream", "tick_seq")} == {
        "type": "breaker", "scope": "portfolio", "id": "desk-a", "state": "ENGAGED", "cause": "limit",
        "stream": "ticks", "tick_seq": last_tick.seq,
    }
    assert engaged[0]["tick_ts"] == "2024-01-10T15:00:00.004000Z"
    assert "daily_loss" in engaged[0]["reason"]
    # Only that portfolio: desk-b, the firm and desk-a's own accounts stay as their own limits say.
    assert breaker_events(system, "portfolio", "desk-b") == []
    assert breaker_events(system, "global", "firm") == []
    status = system.status()
    assert status["breakers"]["portfolios"]["desk-a"]["state"] == "ENGAGED"
    assert status["breakers"]["portfolios"]["desk-a"]["engaged_at_ns"] == last_tick.ts_ns
    assert status["breakers"]["portfolios"]["desk-b"]["state"] == "SAFE"
    assert status["breakers"]["global"]["state"] == "SAFE"
    states = system.states()
    assert (states["a1"]["breaker"], states["a2"]["breaker"]) == ("SAFE", "SAFE")

    await_reason(gate, order("a1"), Reason.PORTFOLIO_HALT)
    assert gate.check(order("a2", "XAUUSD", 1.0)).reason is Reason.PORTFOLIO_HALT
    # desk-a has reduce_only_when_halted: false, so even a reducing order is denied.
    assert gate.check(order("a1", qty=-1_000.0)).reason is Reason.PORTFOLIO_HALT
    assert gate.check(order("b1", "XAUUSD", 1.0)).reason is Reason.OK
    # b2's own (account) breaker engaged at its CRITICAL tick; b2 keeps reduce-only (the default).
    assert gate.check(order("b2", qty=1_000.0)).reason is Reason.REDUCE_ONLY
    assert gate.check(order("b2", qty=-1_000.0)).reason is Reason.REDUCE_ONLY_OK
    b2 = breaker_events(system, "account", "b2")
    assert [(e["state"], e["cause"], e["tick_seq"]) for e in b2] == [("ENGAGED", "limit", batch[0].seq)]
    # The halt also reached the gate straight from b2's shard (its deny-only channel), not only via the view.
    assert gate.wait_for(lambda g: g.core.shard_halts == {"b2"}, GATE_TIMEOUT_S), gate.core.shard_halts


def test_portfolio_reset_when_in_cooldown_or_still_breached_refused_then_accepted_after_recovery(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    run(system, phase2(feed))
    engaged_at = system.status()["breakers"]["portfolios"]["desk-a"]["engaged_at_ns"]
    assert engaged_at == feed.ts_ns
    await_reason(gate, order("a1"), Reason.PORTFOLIO_HALT)

    during = system.reset("portfolio", "desk-a", "alice", "loss understood", now_ns=engaged_at + 29 * NS)
    assert during["ok"] is False
    assert during["event"] is None
    assert "cooldown" in refusal(during)

    breached = system.reset("portfolio", "desk-a", "alice", "loss understood", now_ns=engaged_at + 31 * NS)
    assert breached["ok"] is False
    assert "breached" in refusal(breached)
    assert system.status()["breakers"]["portfolios"]["desk-a"]["state"] == "ENGAGED"
    assert gate.check(order("a1")).reason is Reason.PORTFOLIO_HALT

    run(system, recovery(feed))  # desk-a's daily loss back to 500: within its limit
    assert system.status()["portfolios"]["desk-a"]["daily_pnl"] == -500.0
    assert system.status()["breakers"]["portfolios"]["desk-a"]["state"] == "ENGAGED"  # auto_reset: false

    accepted = system.reset("portfolio", "desk-a", "alice", "loss understood", now_ns=engaged_at + 31 * NS)
    assert accepted["ok"] is True
    assert accepted["refusal"] is None
    assert {k: event(accepted)[k] for k in ("scope", "id", "state", "operator", "reason")} == {
        "scope": "portfolio", "id": "desk-a", "state": "SAFE", "operator": "alice",
        "reason": "loss understood",
    }
    assert system.status()["breakers"]["portfolios"]["desk-a"]["state"] == "SAFE"
    await_reason(gate, order("a1"), Reason.OK)

    commands = [e for e in system.events() if e["type"] == "command" and e["scope"] == "portfolio"]
    assert [(c["operator"], c["refused"] is not None) for c in commands] == [("alice", True), ("alice", True)]
    assert [e["state"] for e in breaker_events(system, "portfolio", "desk-a")] == ["ENGAGED", "SAFE"]


def test_portfolio_breaker_when_operator_engages_halts_desk_and_reset_waits_for_cooldown(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    now = feed.ts_ns + NS

    reply = system.engage("portfolio", "desk-b", "bob", "desk review", now_ns=now)
    assert reply["ok"] is True
    keys = ("type", "scope", "id", "state", "cause", "operator", "reason")
    assert {k: event(reply)[k] for k in keys} == {
        "type": "breaker", "scope": "portfolio", "id": "desk-b", "state": "ENGAGED", "cause": "operator",
        "operator": "bob", "reason": "desk review",
    }
    snapshot = system.status()["breakers"]["portfolios"]["desk-b"]
    assert (snapshot["state"], snapshot["cause"], snapshot["engaged_by"], snapshot["engaged_at_ns"]) == (
        "ENGAGED", "operator", "bob", now)
    await_reason(gate, order("b1", "XAUUSD", 1.0), Reason.PORTFOLIO_HALT)
    assert gate.check(order("b2")).reason is Reason.PORTFOLIO_HALT
    assert gate.check(order("a1")).reason is Reason.OK  # the other desk trades on

    early = system.reset("portfolio", "desk-b", "bob", "review done", now_ns=now + 29 * NS)
    assert early["ok"] is False
    assert "cooldown" in refusal(early)
    assert gate.check(order("b1", "XAUUSD", 1.0)).reason is Reason.PORTFOLIO_HALT

    late = system.reset("portfolio", "desk-b", "bob", "review done", now_ns=now + 31 * NS)
    assert late["ok"] is True
    assert event(late)["state"] == "SAFE"
    await_reason(gate, order("b1", "XAUUSD", 1.0), Reason.OK)
    assert [e["state"] for e in breaker_events(system, "portfolio", "desk-b")] == ["ENGAGED", "SAFE"]


def test_operator_command_when_operator_or_reason_missing_raises_and_changes_nothing(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    feed = Feed()
    run(system, phase1(feed))
    now = feed.ts_ns
    log_before = system.events()

    with pytest.raises(RiskmonError, match="operator"):
        system.engage("portfolio", "desk-a", "", "no name given", now_ns=now)
    with pytest.raises(RiskmonError, match="reason"):
        system.engage("account", "a1", "alice", "   ", now_ns=now)
    system.engage("portfolio", "desk-b", "alice", "to have something to reset", now_ns=now)
    with pytest.raises(RiskmonError, match="operator"):
        system.reset("portfolio", "desk-b", "  ", "cleared", now_ns=now + 3600 * NS)
    with pytest.raises(RiskmonError, match="reason"):
        system.reset("portfolio", "desk-b", "alice", "", now_ns=now + 3600 * NS)

    status = system.status()["breakers"]
    assert status["portfolios"]["desk-a"]["state"] == "SAFE"
    assert status["portfolios"]["desk-b"]["state"] == "ENGAGED"
    assert system.states()["a1"]["breaker"] == "SAFE"
    added = system.events()[len(log_before):]
    assert [(e["type"], e["id"], e["state"]) for e in added] == [("breaker", "desk-b", "ENGAGED")]


# --------------------------------------------------------------------------- global breaker


def test_global_breaker_when_fill_and_tick_push_firm_gross_over_limit_engages_and_gate_halts_all(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    run(system, phase2(feed))
    await_reason(gate, order("b1", "XAUUSD", 1.0), Reason.OK)

    # b1 buys 20 more oz-lots of gold: its exposure 2M -> 6M, the firm's gross 6,375,500 -> 10,375,500.
    batch: list[Tick | Fill] = [feed.fill("b1", "XAUUSD", 20, 2000.0), feed.tick("XAUUSD", 2000.0, 2001.0)]
    run(system, batch)

    status = system.status()
    assert status["firm"]["gross_exposure"] == 10_375_500.0
    assert status["firm"]["net_exposure"] == {"EURUSD": 3_375_000.0, "XAUUSD": 4_999_500.0}
    assert status["portfolios"]["desk-b"]["gross_exposure"] == 8_250_000.0
    assert status["breakers"]["global"]["state"] == "ENGAGED"
    assert status["breakers"]["global"]["metric"] == "gross_exposure"
    assert status["breakers"]["portfolios"]["desk-b"]["state"] == "SAFE"  # desk-b's 20M gross limit holds
    glob = breaker_events(system, "global", "firm")
    assert [(e["state"], e["cause"], e["tick_seq"]) for e in glob] == [("ENGAGED", "limit", batch[1].seq)]
    assert "gross_exposure" in glob[0]["reason"]
    limits = [e for e in system.events() if e["type"] == "limit" and e["scope"] == "global"]
    assert [(e["metric"], e["value"], e["threshold"]) for e in limits] == [
        ("gross_exposure", 10_375_500.0, 10_000_000.0)
    ]

    for account, symbol in (("a1", "EURUSD"), ("a2", "XAUUSD"), ("b1", "XAUUSD"), ("b2", "EURUSD")):
        await_reason(gate, order(account, symbol, 1.0), Reason.GLOBAL_HALT)


def test_global_breaker_when_fill_alone_pushes_firm_gross_over_limit_engages_within_that_batch(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    run(system, phase2(feed))

    run(system, [feed.fill("b1", "XAUUSD", 20, 2000.0)])  # a batch with the fill and no tick

    status = system.status()
    assert status["firm"]["gross_exposure"] == 10_375_500.0  # the supervisor has the fill's effect...
    assert status["breakers"]["global"]["state"] == "ENGAGED"  # ...and must act on it within the batch
    await_reason(gate, order("a1"), Reason.GLOBAL_HALT)


def test_global_breaker_when_firm_net_exposure_per_symbol_breached_engages(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with(firm={"max_net_exposure_per_symbol": 4_000_000}))
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))  # firm net: EURUSD 3,750,000, XAUUSD 999,500 - within 4M
    assert system.status()["breakers"]["global"]["state"] == "SAFE"

    batch: list[Tick | Fill] = [feed.fill("b1", "XAUUSD", 20, 2000.0), feed.tick("XAUUSD", 2000.0, 2001.0)]
    run(system, batch)  # XAUUSD net: 6,000,000 - 1,000,500 = 4,999,500

    status = system.status()
    assert status["firm"]["net_exposure"]["XAUUSD"] == 4_999_500.0
    assert status["breakers"]["global"]["state"] == "ENGAGED"
    assert status["breakers"]["global"]["metric"] == "net_exposure[XAUUSD]"
    glob = breaker_events(system, "global", "firm")
    assert [(e["state"], e["tick_seq"]) for e in glob] == [("ENGAGED", batch[1].seq)]
    await_reason(gate, order("a1"), Reason.GLOBAL_HALT)


def test_global_breaker_when_firm_daily_loss_breached_engages_at_last_tick_of_batch(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with(firm={"max_daily_loss": 300_000}))
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    assert system.status()["breakers"]["global"]["state"] == "SAFE"

    batch = phase2(feed)  # firm daily PnL -375,500
    run(system, batch)

    status = system.status()
    assert status["firm"]["daily_pnl"] == -375_500.0
    assert status["breakers"]["global"]["state"] == "ENGAGED"
    assert status["breakers"]["global"]["metric"] == "daily_loss"
    glob = breaker_events(system, "global", "firm")
    assert [(e["state"], e["tick_seq"], e["tick_ts"]) for e in glob] == [
        ("ENGAGED", batch[-1].seq, "2024-01-10T15:00:00.004000Z")
    ]
    await_reason(gate, order("b1", "XAUUSD", 1.0), Reason.GLOBAL_HALT)


# --------------------------------------------------------------------------- account breakers by hand


def test_account_breaker_when_operator_engages_gate_denies_and_reset_waits_for_cooldown(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    now = feed.ts_ns + NS

    reply = system.engage("account", "a2", "carol", "suspicious fills", now_ns=now)
    assert reply["ok"] is True
    assert {k: event(reply)[k] for k in ("scope", "id", "state", "cause", "operator", "reason")} == {
        "scope": "account", "id": "a2", "state": "ENGAGED", "cause": "operator", "operator": "carol",
        "reason": "suspicious fills",
    }
    assert system.states()["a2"]["breaker"] == "ENGAGED"
    # desk-a's account_limits have reduce_only_when_halted: false: a plain ACCOUNT_HALT.
    await_reason(gate, order("a2", "XAUUSD", 1.0), Reason.ACCOUNT_HALT)
    assert gate.check(order("a1")).reason is Reason.OK

    early = system.reset("account", "a2", "carol", "checked", now_ns=now + 59 * NS)  # default cooldown 60 s
    assert early["ok"] is False
    assert "cooldown" in refusal(early)
    assert system.states()["a2"]["breaker"] == "ENGAGED"

    late = system.reset("account", "a2", "carol", "checked", now_ns=now + 61 * NS)
    assert late["ok"] is True
    assert event(late)["state"] == "SAFE"
    assert system.states()["a2"]["breaker"] == "SAFE"
    await_reason(gate, order("a2", "XAUUSD", 1.0), Reason.OK)
    assert [(e["state"], e["operator"]) for e in breaker_events(system, "account", "a2")] == [
        ("ENGAGED", "carol"), ("SAFE", "carol")
    ]


def test_account_reset_when_limit_engaged_and_still_critical_refused_then_accepted_after_recovery(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    gate = system.gate()
    feed = Feed()
    run(system, phase1(feed))
    batch = phase2(feed)
    run(system, batch)
    engaged_at = batch[0].ts_ns  # b2 went CRITICAL at the EURUSD tick
    assert system.states()["b2"]["breaker"] == "ENGAGED"

    still = system.reset("account", "b2", "dave", "margin call met", now_ns=engaged_at + 61 * NS)
    assert still["ok"] is False
    assert "breached" in refusal(still)

    run(system, recovery(feed))
    assert system.states()["b2"]["alert_level"] == "NORMAL"
    assert system.states()["b2"]["breaker"] == "ENGAGED"
    early = system.reset("account", "b2", "dave", "margin call met", now_ns=engaged_at + 59 * NS)
    assert early["ok"] is False
    assert "cooldown" in refusal(early)
    accepted = system.reset("account", "b2", "dave", "margin call met", now_ns=engaged_at + 61 * NS)
    assert accepted["ok"] is True
    assert system.states()["b2"]["breaker"] == "SAFE"
    await_reason(gate, order("b2", qty=1_000.0), Reason.OK)


def test_status_when_account_breaker_engaged_by_operator_counts_it_engaged(
    start_system: Callable[..., RiskSystem],
) -> None:
    system = start_system(config_with())
    feed = Feed()
    run(system, phase1(feed))
    system.engage("account", "a2", "carol", "suspicious fills", now_ns=feed.ts_ns + NS)

    status = system.status()
    assert status["breakers"]["accounts"]["a2"]["state"] == "ENGAGED"
    # DESIGN §1: accounts report at once on any change of breaker, so the counts follow the command.
    assert status["portfolios"]["desk-a"]["by_breaker"] == breakers(1, 1)
    assert status["firm"]["by_breaker"] == breakers(3, 1)
