"""The seed's five chaos scenarios, end to end on real Ray, asserting exact ticks and values.

Expected figures are recomputed here in plain Python from DESIGN §1 (not with riskcore),
so a wrong formula in the engine cannot agree with itself.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from riskcore.clock import NS_PER_SECOND, parse_rfc3339, rfc3339_us
from riskcore.events import AccountEvent, Cash, Fill, Tick
from riskcore.gate import Order, Reason
from tests.integration.fixtures import StartSystem

pytestmark = pytest.mark.ray

T0 = parse_rfc3339("2020-01-02T14:30:00.000000Z")  # inside one trading day (roll is 22:00 UTC)
BALANCE = 1_000_000.0
QTY = 2_000_000.0
AVG = 1.1000
SPREAD = 0.0002


def config(**limits: object) -> dict[str, Any]:
    return {
        "limits": {"recovery_cooldown_seconds": 60, **limits},
        "symbols": {"EURUSD": {"multiplier": 1}},
        "portfolios": {"desk": {}},
        "accounts": [{"id": "acct", "portfolio": "desk", "balance": BALANCE,
                      "positions": {"EURUSD": {"qty": QTY, "avg_price": AVG}}}],
    }


def ticks(bids: list[float]) -> list[Tick]:
    return [Tick("EURUSD", b, round(b + SPREAD, 6), T0 + i * NS_PER_SECOND, "EURUSD", i)
            for i, b in enumerate(bids)]


def expected_path(bids: list[float]) -> list[tuple[float, float, float]]:
    """(equity, drawdown_pct, leverage) after each tick for the long account, from first principles."""
    peak = BALANCE
    out = []
    for bid in bids:
        equity = BALANCE + QTY * (bid - AVG)
        peak = max(peak, equity)
        exposure = QTY * bid
        out.append((equity, (peak - equity) / peak, exposure / equity if equity > 0 else math.inf))
    return out


def level(dd: float, lev: float) -> str:
    if dd > 0.02 or lev > 5.0:
        return "CRITICAL"
    if dd > 0.01 or lev > 3.0:
        return "WARNING"
    return "NORMAL"


def alerts(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(e["tick_seq"], e["from"], e["to"]) for e in events if e["type"] == "alert"]


def breaker_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "breaker"]


def test_scenario_when_normal_operation_no_alerts_and_exact_figures(start_system: StartSystem) -> None:
    bids = [round(AVG + 0.00005 * math.sin(i / 7.0), 6) for i in range(300)]
    system = start_system(config())
    system.submit(ticks(bids))
    system.flush()
    state = system.states()["acct"]
    equity, dd, lev = expected_path(bids)[-1]
    assert system.events() == []
    assert state["alert_level"] == "NORMAL"
    assert state["breaker"] == "SAFE"
    assert state["equity"] == equity
    assert state["open_pnl"] == QTY * (bids[-1] - AVG)
    assert state["drawdown_pct"] == dd
    assert state["leverage"] == lev
    assert state["timestamp"] == rfc3339_us(T0 + 299 * NS_PER_SECOND)


def test_scenario_when_flash_crash_breaker_engages_on_exact_tick(start_system: StartSystem) -> None:
    bids = [round(AVG - 0.0005 * i, 6) for i in range(60)]
    path = expected_path(bids)
    first_warning = next(i for i, (_, dd, _) in enumerate(path) if dd > 0.01)
    first_critical = next(i for i, (_, dd, _) in enumerate(path) if dd > 0.02)
    system = start_system(config())
    gate = system.gate()
    system.submit(ticks(bids))
    system.flush()
    events = system.events()
    assert alerts(events) == [(first_warning, "NORMAL", "WARNING"), (first_critical, "WARNING", "CRITICAL")]
    critical = next(e for e in events if e["type"] == "alert" and e["to"] == "CRITICAL")
    assert critical["metric"] == "drawdown_pct"
    assert critical["value"] == path[first_critical][1]
    assert critical["threshold"] == 0.02
    [engaged] = breaker_events(events)
    assert (engaged["scope"], engaged["id"], engaged["state"]) == ("account", "acct", "ENGAGED")
    assert engaged["tick_seq"] == first_critical
    assert engaged["tick_ts"] == rfc3339_us(T0 + first_critical * NS_PER_SECOND)
    # Monitoring continues after the breaker engages: the figures follow the last tick.
    state = system.states()["acct"]
    assert state["breaker"] == "ENGAGED"
    assert state["equity"] == path[-1][0]
    # The gate in this process sees the halt: adding risk is denied, flattening still passes.
    buy = Order("acct", "EURUSD", 100_000, bids[-1])
    assert gate.wait_for(lambda g: g.check(buy).reason is Reason.REDUCE_ONLY, 10)
    sell = gate.check(Order("acct", "EURUSD", -500_000, bids[-1]))
    assert sell.allowed
    assert sell.reason is Reason.REDUCE_ONLY_OK


def test_scenario_when_fat_finger_fill_leverage_engages_on_the_fill(start_system: StartSystem) -> None:
    bids = [AVG] * 5
    fill = Fill("acct", "EURUSD", 4_000_000.0, AVG + SPREAD, T0 + 5 * NS_PER_SECOND, fee=10.0, fill_id="ff-1",
                stream="fills", seq=41)
    system = start_system(config())
    system.submit([*ticks(bids), fill])
    system.flush()
    events = system.events()
    # After the fill: 2M long @1.1 marked at bid 1.1, plus 4M long @1.1002 marked at bid 1.1.
    qty = QTY + 4_000_000.0
    avg = (QTY * AVG + 4_000_000.0 * (AVG + SPREAD)) / qty
    equity = BALANCE - 10.0 + qty * (AVG - avg)
    leverage = qty * AVG / equity
    assert leverage > 5.0
    [alert] = [e for e in events if e["type"] == "alert"]
    assert (alert["from"], alert["to"], alert["metric"], alert["tick_seq"], alert["stream"]) == (
        "NORMAL", "CRITICAL", "leverage", 41, "fills")
    # The average price is a weighted mean: the order of operations differs.
    assert alert["value"] == pytest.approx(leverage, rel=1e-12)
    [engaged] = breaker_events(events)
    assert engaged["state"] == "ENGAGED"
    assert engaged["tick_seq"] == 41
    assert "leverage" in engaged["reason"]
    assert system.states()["acct"]["balance"] == BALANCE - 10.0


def test_scenario_when_cash_is_withdrawn_leverage_engages_at_the_withdrawal_and_a_repeat_is_refused(
    start_system: StartSystem,
) -> None:
    bids = [AVG] * 5
    withdrawal = Cash("acct", -700_000.0, T0 + 5 * NS_PER_SECOND, cash_id="wd-1", stream="treasury", seq=7)
    system = start_system(config())
    again = Cash("acct", -700_000.0, T0 + 6 * NS_PER_SECOND, "wd-1", "treasury", 8)
    system.submit([*ticks(bids), withdrawal, again])
    system.flush()
    equity = BALANCE - 700_000.0 + QTY * (AVG - AVG)
    [alert] = [e for e in system.events() if e["type"] == "alert"]
    where = (alert["to"], alert["metric"], alert["tick_seq"], alert["stream"])
    assert where == ("CRITICAL", "leverage", 7, "treasury")
    assert alert["value"] == QTY * AVG / equity  # 2.2M on 300k
    [engaged] = breaker_events(system.events())
    assert engaged["state"] == "ENGAGED"
    assert engaged["tick_seq"] == 7
    state = system.states()["acct"]
    assert state["balance"] == equity
    assert state["total_pnl"] == 0.0
    assert state["drawdown"] == 0.0
    assert [r.code for r in system.refusals] == ["duplicate_cash"]


def test_scenario_when_extreme_volatility_escalates_warning_then_critical(start_system: StartSystem) -> None:
    # Swings of growing amplitude around the average price.
    bids = [round(AVG + (0.0004 * i) * math.sin(i * 1.3), 6) for i in range(80)]
    path = expected_path(bids)
    expected = []
    previous = "NORMAL"
    for i, (_, dd, lev) in enumerate(path):
        now = level(dd, lev)
        if now != previous:
            expected.append((i, previous, now))
        previous = now
    assert [t[2] for t in expected][:1] == ["WARNING"]
    assert "CRITICAL" in [t[2] for t in expected]
    system = start_system(config())
    system.submit(ticks(bids))
    system.flush()
    events = system.events()
    assert alerts(events) == expected
    first_critical = next(i for i, _, to in expected if to == "CRITICAL")
    assert breaker_events(events)[0]["tick_seq"] == first_critical


def test_scenario_when_recovery_reset_refused_in_cooldown_then_released(start_system: StartSystem) -> None:
    crash = [round(AVG - 0.0005 * i, 6) for i in range(50)]
    recover = [round(crash[-1] + 0.0005 * i, 6) for i in range(1, 51)]  # back to the average price
    system = start_system(config())
    gate = system.gate()
    system.submit(ticks(crash))
    system.flush()
    [engaged] = breaker_events(system.events())
    engaged_ns = T0 + engaged["tick_seq"] * NS_PER_SECOND

    early = system.reset("account", "acct", "alice", "desk flat", now_ns=engaged_ns + 10 * NS_PER_SECOND)
    assert not early["ok"]
    assert early["refusal"] is not None
    assert "cooldown" in early["refusal"]
    breached = system.reset("account", "acct", "alice", "desk flat", now_ns=engaged_ns + 61 * NS_PER_SECOND)
    assert not breached["ok"]
    assert breached["refusal"] is not None
    assert "still breached" in breached["refusal"]

    all_ticks = ticks(crash + recover)
    system.submit(all_ticks[len(crash):])
    system.flush()
    assert system.states()["acct"]["alert_level"] == "NORMAL"
    assert system.states()["acct"]["breaker"] == "ENGAGED"  # auto_reset is off: a person releases it
    done = system.reset("account", "acct", "alice", "desk flat", now_ns=engaged_ns + 61 * NS_PER_SECOND)
    assert done["ok"]
    assert done["event"] is not None
    assert done["event"]["state"] == "SAFE"
    assert done["event"]["operator"] == "alice"
    states = [e["state"] for e in breaker_events(system.events())]
    assert states == ["ENGAGED", "SAFE"]
    assert system.states()["acct"]["breaker"] == "SAFE"
    assert gate.wait_for(lambda g: g.check(Order("acct", "EURUSD", 1_000, AVG)).allowed, 10)


def test_scenario_when_manual_kill_switch_alerts_without_engaging(start_system: StartSystem) -> None:
    bids = [round(AVG - 0.0005 * i, 6) for i in range(60)]
    system = start_system(config(kill_switch_mode="manual"))
    system.submit(ticks(bids))
    system.flush()
    events = system.events()
    assert [e["to"] for e in events if e["type"] == "alert"] == ["WARNING", "CRITICAL"]
    assert breaker_events(events) == []
    assert system.states()["acct"]["breaker"] == "SAFE"


def test_placement_when_many_accounts_share_an_actor_results_are_identical(start_system: StartSystem) -> None:
    def firm(per_actor: int) -> dict[str, Any]:
        accounts = [
            {"id": f"a{i}", "portfolio": "desk", "balance": 400_000.0 + 150_000.0 * i,
             "positions": {"EURUSD": {"qty": (-1) ** i * 1_000_000.0 * (i + 1), "avg_price": AVG}}}
            for i in range(5)
        ]
        return {"symbols": {"EURUSD": {}, "GBPUSD": {}}, "portfolios": {"desk": {}}, "accounts": accounts,
                "placement": {"accounts_per_actor": per_actor}, "batching": {"max_ticks": 17}}

    bids = [round(AVG - 0.0004 * i + 0.0002 * math.sin(i), 6) for i in range(120)]
    stream: list[Tick | AccountEvent] = [*ticks(bids)]
    stream.insert(40, Fill("a1", "GBPUSD", 300_000.0, 1.3, T0 + 40 * NS_PER_SECOND, fill_id="g1", seq=1))
    stream.insert(41, Tick("GBPUSD", 1.2990, 1.2992, T0 + 40 * NS_PER_SECOND + 1, "GBPUSD", 0))
    results = []
    for per_actor in (1, 3):
        system = start_system(firm(per_actor))
        assert len(system.shards) == (5 if per_actor == 1 else 2)
        system.submit(stream)
        system.flush()
        results.append((system.states(), system.events()))
    assert results[0] == results[1]
    assert any(e["type"] == "breaker" for e in results[0][1])
