"""The supervisor as a plain class (no Ray): aggregates must not depend on the order reports arrive in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest

from actors.router import Router, place_accounts
from actors.shard import AccountShard
from riskcore.clock import NS_PER_SECOND, parse_rfc3339
from riskcore.config import parse_config
from riskcore.errors import RiskmonError
from riskcore.events import BreakerEvent, Tick
from riskcore.messages import OperatorAnswer, PollReply, ShardReport, Status
from riskcore.states import BreakerState
from supervisor.supervisor import Supervisor

T0 = parse_rfc3339("2020-01-02T14:30:00.000000Z")

CONFIG = parse_config({
    "symbols": {"EURUSD": {}},
    "portfolios": {"desk": {}},
    # A long and a short in different shards: their equities move in opposite directions on every tick.
    "accounts": [
        {"id": "long", "portfolio": "desk", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 3_000_000, "avg_price": 1.1}}},
        {"id": "short", "portfolio": "desk", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": -1_000_000, "avg_price": 1.1}}},
    ],
    "firm": {"limits": {"max_daily_loss": 4_000}},
    "batching": {"max_ticks": 5},
})


def shard_reports(config: Any = CONFIG) -> list[ShardReport]:
    placement = place_accounts(config)
    shards = {sid: AccountShard(config, sid, accounts) for sid, accounts in placement.items()}
    router = Router(config, placement, send=lambda sid, frame: shards[sid].apply(frame))
    bids = [1.1 + 0.002 * (i if i < 10 else 10 - 2 * (i - 10)) for i in range(20)]  # up, then well below
    return router.route(Tick("EURUSD", b, b + 0.0001, T0 + i * NS_PER_SECOND, "f", i)
                        for i, b in enumerate(bids))


def supervise(reports: list[ShardReport]) -> Supervisor:
    supervisor = Supervisor(CONFIG)

    async def run() -> None:
        await supervisor.register({}, place_accounts(CONFIG), [])
        for report in reports:
            await supervisor.report(report)

    asyncio.run(run())
    return supervisor


def view(supervisor: Supervisor) -> dict[str, Any]:
    status = supervisor.status()
    return {"firm": status["firm"], "portfolios": status["portfolios"], "events": supervisor.event_log(),
            "breakers": status["breakers"]}


def test_supervisor_when_reports_arrive_in_any_order_aggregates_and_events_are_identical() -> None:
    reports = shard_reports()
    assert len({r.shard for r in reports}) == 2
    assert len({r.batch for r in reports}) == 4
    by_batch = sorted(reports, key=lambda r: (r.batch, r.shard))
    by_shard = sorted(reports, key=lambda r: (r.shard, r.batch))
    reversed_shards = sorted(reports, key=lambda r: (r.shard != "shard-0001", r.batch))
    expected = view(supervise(by_batch))
    assert expected["firm"]["day_peak"] > expected["firm"]["equity"]  # the peak mattered in this run
    for order in (by_shard, reversed_shards):
        assert view(supervise(order)) == expected


def test_supervisor_when_firm_daily_loss_breached_engages_global_breaker_at_batch_end() -> None:
    supervisor = supervise(shard_reports())
    engaged = [e for e in supervisor.event_log() if e.get("type") == "breaker" and e["scope"] == "global"]
    assert [e["state"] for e in engaged] == ["ENGAGED"]
    assert engaged[0]["tick_seq"] % 5 == 4  # the last tick of the batch that revealed it
    assert supervisor.upper.global_breaker.engaged


def test_supervisor_when_a_batch_shard_is_gone_later_batches_still_apply() -> None:
    reports = shard_reports()
    survivors = [r for r in reports if not (r.shard == "shard-0001" and r.batch >= 2)]
    supervisor = supervise(survivors)
    assert supervisor.batches.next_batch == 2  # waiting for shard-0001's report of batch 2
    supervisor._set_shard_alive("shard-0001", alive=False)  # restarting: its batches wait for it
    assert supervisor.batches.next_batch == 2
    supervisor._set_shard_alive("shard-0001", alive=False, gone=True)  # Ray will not bring it back
    assert supervisor.batches.next_batch == 4
    assert supervisor.batches.pending == {}
    assert supervisor.batches.targets_of == {}


def test_supervisor_when_operator_command_lacks_reason_refuses() -> None:
    supervisor = Supervisor(CONFIG)
    for operator, reason in (("", "x"), ("alice", " ")):
        with pytest.raises(RiskmonError, match="operator"):
            asyncio.run(supervisor.engage("global", "firm", operator, reason, now_ns=T0))
    assert not supervisor.upper.global_breaker.engaged




def test_supervisor_when_portfolio_and_firm_breach_in_one_batch_engages_both_at_that_tick() -> None:
    # The same daily-loss limit on the desk and the firm: one report reveals both breaches at once.
    config = parse_config({
        "symbols": {"EURUSD": {}},
        "portfolios": {"desk": {"limits": {"max_daily_loss": 4_000}}},
        "accounts": [
            {"id": "long", "portfolio": "desk", "balance": 1_000_000,
             "positions": {"EURUSD": {"qty": 3_000_000, "avg_price": 1.1}}},
            {"id": "short", "portfolio": "desk", "balance": 1_000_000,
             "positions": {"EURUSD": {"qty": -1_000_000, "avg_price": 1.1}}},
        ],
        "firm": {"limits": {"max_daily_loss": 4_000}},
        "batching": {"max_ticks": 5},
    })
    supervisor = Supervisor(config)

    async def run() -> None:
        await supervisor.register({}, place_accounts(config), [])
        for report in shard_reports(config):
            await supervisor.report(report)

    asyncio.run(run())
    engaged = [(e["scope"], e["tick_seq"]) for e in supervisor.event_log()
               if e.get("type") == "breaker" and e["scope"] != "account"]
    assert [scope for scope, _ in engaged] == ["portfolio", "global"]
    assert engaged[0][1] == engaged[1][1]
    assert supervisor.upper.states() == {"global": "ENGAGED", "portfolio:desk": "ENGAGED"}


def test_supervisor_when_a_report_arrives_twice_records_and_counts_it_once() -> None:
    reports = shard_reports()
    once, twice = supervise(reports), supervise(reports + reports[::-1])
    assert view(twice) == view(once)
    assert once.intake.reports == twice.intake.reports == len(reports)


def test_supervisor_when_figures_change_every_polling_gate_gets_them_not_only_the_first() -> None:
    reports = shard_reports()
    supervisor = Supervisor(CONFIG)

    async def run() -> tuple[PollReply, PollReply, PollReply]:
        await supervisor.register({}, place_accounts(CONFIG), [])
        first = await supervisor.poll(-1, 0.01)  # both gates install the whole view
        assert first.view is not None
        a = b = (first.version, first.view["figures_version"])
        for report in reports:  # figures move
            await supervisor.report(report)
        beat = await supervisor.poll(a[0], 0.01, a[1])  # a breaker changed too: the table comes first
        if beat.breakers is not None:
            beat = await supervisor.poll(beat.version, 0.01, a[1])  # then gate A's heartbeat publishes them
        late = await supervisor.poll(b[0], 0.01, b[1])  # gate B, still on the old figures, gets them too
        assert beat.view is not None
        again = await supervisor.poll(beat.version, 0.01, beat.view["figures_version"])
        return beat, late, again

    beat, late, again = asyncio.run(run())
    assert beat.view is not None
    assert late.view is not None
    assert late.view["accounts"] == beat.view["accounts"]
    assert late.view["accounts"]["long"]["equity"] != 1_000_000  # the moved figures, not the first ones
    assert again == PollReply(beat.version)
    assert again.unchanged


def test_supervisor_when_a_restarted_shard_lost_a_report_batches_still_close() -> None:
    # Shard "long" was killed after journaling batch 1 but before reporting it; its recovery report says it
    # has applied every batch below 2. The supervisor must close batch 1 and go on, not wait for ever.
    reports = sorted(shard_reports(), key=lambda r: (r.batch, r.shard))
    lost = next(r for r in reports if r.batch == 1 and r.shard == "shard-0000")
    assert lost.seq is not None
    recovery = ShardReport("shard-0000", -1, 0, 0, [], [], lost.summaries, recovered_upto=lost.seq,
                           recovered_batch=2)
    supervisor = Supervisor(CONFIG)

    async def run() -> None:
        await supervisor.register({}, place_accounts(CONFIG), [])
        for report in reports:
            if report is lost:
                await supervisor.report(recovery)
            else:
                await supervisor.report(report)

    asyncio.run(run())
    assert supervisor.batches.next_batch == len({r.batch for r in reports})
    assert not supervisor.batches.pending


def test_supervisor_when_restarted_on_its_journal_keeps_breakers_log_and_active_breaches(
        tmp_path: Any) -> None:
    journal = str(tmp_path / "supervisor.journal")
    first = Supervisor(CONFIG, journal_path=journal)

    async def feed() -> None:
        await first.register({}, place_accounts(CONFIG), [])
        for report in shard_reports():
            await first.report(report)

    asyncio.run(feed())
    assert first.upper.global_breaker.engaged
    assert first.upper.active_breaches
    again = Supervisor(CONFIG, journal_path=journal)
    assert again.upper.global_breaker.snapshot() == first.upper.global_breaker.snapshot()
    assert again.upper.active_breaches == first.upper.active_breaches  # so the breach is not logged again
    assert again.event_log() == first.event_log()


def test_supervisor_when_a_restarted_shard_resends_lost_reports_aggregates_and_events_are_exact(
        tmp_path: Any) -> None:
    # Shard-0000 journals every batch; its process "dies" after applying batch 1 without reporting it. Rebuilt
    # from its journal, it sends batch 1's report again inside its recovery report: the supervisor closes
    # batch 1 with batch 1's own figures, so aggregates and firm events equal the undisturbed run's.
    expected = view(supervise(sorted(shard_reports(), key=lambda r: (r.batch, r.shard))))
    placement = place_accounts(CONFIG)
    journal = str(tmp_path / "shard-0000.journal")
    shards = {sid: AccountShard(CONFIG, sid, accounts, journal_path=journal if sid == "shard-0000" else None)
              for sid, accounts in placement.items()}
    router = Router(CONFIG, placement, send=lambda sid, frame: shards[sid].apply(frame))
    bids = [1.1 + 0.002 * (i if i < 10 else 10 - 2 * (i - 10)) for i in range(20)]
    reports = router.route(Tick("EURUSD", b, b + 0.0001, T0 + i * NS_PER_SECOND, "f", i)
                           for i, b in enumerate(bids))
    lost = [r for r in reports if r.shard == "shard-0000" and r.batch >= 1]
    sent: list[ShardReport] = []
    # The shard rebuilt from its journal sends one recovery report to its supervisor (captured here).
    capture = type("Capture", (), {"report": type("R", (), {"remote": staticmethod(sent.append)})()})()
    AccountShard(CONFIG, "shard-0000", placement["shard-0000"], supervisor=capture, journal_path=journal)
    (recovery,) = sent
    assert [r.batch for r in recovery.resent] == [r.batch for r in reports if r.shard == "shard-0000"]
    supervisor = Supervisor(CONFIG)

    async def run() -> None:
        await supervisor.register({}, placement, [])
        for report in sorted(reports, key=lambda r: (r.batch, r.shard)):
            if report not in lost:
                await supervisor.report(report)
        await supervisor.report(recovery)

    asyncio.run(run())
    assert lost
    assert view(supervisor) == expected
    assert supervisor.batches.next_batch == len({r.batch for r in reports})
    assert not supervisor.batches.pending


def test_supervisor_when_a_report_arrives_after_the_operator_reset_keeps_the_reset() -> None:
    # The shard applied a batch that engaged "long", then the operator's reset; the batch's report reaches the
    # supervisor only after the reset's answer. Its ENGAGED is older news than the reset and must not undo it.
    reports = sorted(shard_reports(), key=lambda r: (r.batch, r.shard))
    engaging = next(r for r in reports
                    if any(isinstance(e[3], BreakerEvent) and e[3].id == "long" for e in r.events))
    supervisor = Supervisor(CONFIG)

    async def run(reset_version: int) -> str:
        await supervisor.register({}, place_accounts(CONFIG), [])
        supervisor.intake.set_account_breaker("long", BreakerState.SAFE, "", reset_version)  # reset's answer
        for report in reports:
            await supervisor.report(report)
        return supervisor.account_breakers.state("long")

    assert asyncio.run(run(engaging.halts_version + 1)) == "SAFE"
    supervisor = Supervisor(CONFIG)
    assert asyncio.run(run(engaging.halts_version - 1)) == "ENGAGED"  # a reset before the batch is overtaken


def test_supervisor_audit_trail_when_restarted_writes_each_record_once_and_the_chain_verifies(
        tmp_path: Any) -> None:
    from riskcore.audit import verify
    from riskcore.ingest import Refusal

    journal, trail = str(tmp_path / "supervisor.journal"), tmp_path / "audit.jsonl"
    first = Supervisor(CONFIG, journal_path=journal, audit_path=str(trail))
    reports = shard_reports()
    reports[0] = replace(reports[0], refusals=[Refusal("f", 3, "crossed_quote", "bid 1.2 above ask 1.1")])

    async def feed() -> None:
        await first.register({}, place_accounts(CONFIG), [])
        for report in reports:
            await first.report(report)
        await first.engage("portfolio", "desk", "alice", "desk review", now_ns=T0)
        await first.reset("portfolio", "desk", "alice", "too early", now_ns=T0 + 1)  # refused: cooldown
        with contextlib.suppress(RiskmonError):
            await first.engage("global", "firm", "", "no operator named", now_ns=T0 + 2)
        await first.input_refused("router", [{"stream": "f", "seq": 9, "code": "unknown_symbol",
                                              "message": "XXX"}])

    asyncio.run(feed())
    lines = trail.read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds[0] == "config_load"
    assert {"alert", "breaker", "limit", "command", "rejected_input"} <= set(kinds)
    engage = next(json.loads(line) for line in lines if json.loads(line).get("action") == "engage")
    assert engage["operator"] == "alice"
    assert engage["reason"] == "desk review"
    assert engage["before"]["breaker"]["state"] == "SAFE"
    assert engage["after"]["breaker"]["state"] == "ENGAGED"
    no_name = "an operator command needs an operator name and a reason"
    refused = [json.loads(line) for line in lines if json.loads(line).get("refused") == no_name]
    assert len(refused) == 1
    assert sum(json.loads(line)["kind"] == "rejected_input" for line in lines) == 2
    assert verify(trail).ok
    # The process dies after journaling its last four records but before they reach the trail (an engage, a
    # refused reset, a refused engage, a router's refusals): a restart writes them, once each, in order.
    keys = [json.loads(line)["key"] for line in lines]
    assert all(keys)
    assert len(set(keys)) == len(keys)
    trail.write_text("\n".join(lines[:-4]) + "\n")
    Supervisor(CONFIG, journal_path=journal, audit_path=str(trail))
    again = [json.loads(line) for line in trail.read_text().splitlines()]
    assert verify(trail).ok
    assert [r["key"] for r in again][:-1] == keys  # back, in order, once each; then this start's config_load
    assert again[-1]["kind"] == "config_load"
    assert again[-1]["restart"] is True


def test_supervisor_when_its_journal_is_compacted_restarts_to_the_same_state(tmp_path: Any) -> None:
    from riskcore.config import DurabilityConfig
    from riskcore.journal import Journal

    small = replace(CONFIG, durability=DurabilityConfig(snapshot_mb=1 / 1024))  # compacts past 1 KiB
    whole, compacted = str(tmp_path / "whole.journal"), str(tmp_path / "compacted.journal")
    fed = [Supervisor(CONFIG, journal_path=whole), Supervisor(small, journal_path=compacted)]

    async def feed(supervisor: Supervisor) -> None:
        await supervisor.register({}, place_accounts(CONFIG), [])
        for n, report in enumerate(shard_reports()):
            if n == 3:
                await supervisor.engage("portfolio", "desk", "alice", "desk review", now_ns=T0)
            await supervisor.report(report)

    for supervisor in fed:
        asyncio.run(feed(supervisor))
    assert fed[1].durable.compactions >= 2
    assert fed[0].durable.compactions == 0
    assert len(Journal.read(compacted)) < len(Journal.read(whole))

    def state(s: Supervisor) -> Any:
        return (view(s), s.upper.active_breaches, s.batches.next_batch, s.reported.seen,
                s.aggregator.peak.tolist(), s.upper.portfolio_breakers["desk"].snapshot(),
                s.upper.global_breaker.snapshot())

    again = [Supervisor(CONFIG, journal_path=whole), Supervisor(small, journal_path=compacted)]
    assert state(again[1]) == state(again[0])
    assert again[1].upper.portfolio_breakers["desk"].engaged
    assert again[1].upper.active_breaches


def test_supervisor_when_the_trail_cannot_be_written_gates_still_see_changes_and_it_catches_up(
        tmp_path: Any, monkeypatch: Any) -> None:
    from riskcore import audit as audit_module
    from riskcore.audit import verify

    trail = tmp_path / "audit.jsonl"
    supervisor = Supervisor(CONFIG, journal_path=str(tmp_path / "j"), audit_path=str(trail))
    real_append = audit_module.AuditTrail.append
    full = {"disk": True}

    def append(self: Any, *args: Any, **kwargs: Any) -> Any:
        if full["disk"]:
            raise OSError(28, "No space left on device")
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(audit_module.AuditTrail, "append", append)

    async def run() -> Status:
        await supervisor.register({}, place_accounts(CONFIG), [])
        before = supervisor.longpoll.version
        await supervisor.engage("portfolio", "desk", "alice", "desk review", now_ns=T0)
        assert supervisor.longpoll.version > before  # the halt still reaches gates
        answer = await supervisor.poll(before, 0.1, supervisor.longpoll.figures_version)
        assert answer.breakers is not None
        assert answer.breakers["portfolios"]["desk"] is True
        status = supervisor.status()
        assert status["audit"]["failures"] >= 1
        assert status["audit"]["waiting"] >= 1
        full["disk"] = False
        await supervisor.reset("portfolio", "desk", "alice", "too early", now_ns=T0 + 1)  # the next change
        return supervisor.status()

    status = asyncio.run(run())
    assert status["audit"]["waiting"] == 0
    assert status["audit"]["error"] is None
    kinds = [json.loads(line).get("action") for line in trail.read_text().splitlines()]
    assert kinds.count("engage") == 1
    assert kinds.count("reset") == 1
    assert verify(trail).ok


def test_supervisor_when_its_journal_cannot_be_written_refuses_gates_so_they_go_stale(tmp_path: Any) -> None:
    supervisor = Supervisor(CONFIG, journal_path=str(tmp_path / "j"))

    def broken(record: Any) -> None:
        raise OSError(5, "Input/output error")

    async def run() -> None:
        await supervisor.register({}, place_accounts(CONFIG), [])
        assert supervisor.durable.journal is not None
        # A failing disk in place of the method (mypy refuses assigning to a method).
        supervisor.durable.journal.append = broken  # type: ignore[method-assign]
        before = supervisor.longpoll.version
        with pytest.raises(RiskmonError, match="journal write failed"):  # the command cannot be made durable
            await supervisor.engage("global", "firm", "alice", "halt", now_ns=T0)
        assert supervisor.longpoll.version > before
        with pytest.raises(RiskmonError, match="journal write failed"):  # gates must not stay fresh
            await supervisor.poll(before, 0.1)

    asyncio.run(run())


def test_supervisor_when_a_restarted_shard_resends_reports_from_before_a_reset_keeps_the_reset(
        tmp_path: Any) -> None:
    # The shard engaged "long" in a batch whose report never left its process; the operator reset it; then
    # the shard was killed and rebuilt from its journal. Its resent reports are old news: they must not
    # engage "long" again at the supervisor while the shard holds it SAFE.
    from riskcore.events import Tick as T

    config = parse_config({
        "symbols": {"EURUSD": {}}, "portfolios": {"desk": {}}, "limits": {"recovery_cooldown_seconds": 0},
        "accounts": [{"id": "long", "portfolio": "desk", "balance": 1_000_000,
                      "positions": {"EURUSD": {"qty": 3_000_000, "avg_price": 1.1}}}],
        "batching": {"max_ticks": 5},
    })
    placement = place_accounts(config)
    journal = str(tmp_path / "shard.journal")
    outbox: list[Any] = []  # the shard's calls to the supervisor that died with its process
    lost = type("Lost", (), {
        "report": type("R", (), {"remote": staticmethod(outbox.append)})(),
        "breaker_now": type("B", (), {"remote": staticmethod(lambda *a: outbox.append(a))})()})()
    shard = AccountShard(config, "shard-0000", placement["shard-0000"], supervisor=lost, journal_path=journal)
    supervisor = Supervisor(config)

    class Handle:  # the supervisor's handle on the shard, in process
        def __init__(self, target: AccountShard) -> None:
            self.target = target

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.target, name)

            class Call:
                @staticmethod
                def remote(*args: Any) -> Any:
                    done = asyncio.get_event_loop().create_future()
                    done.set_result(method(*args))
                    return done
            return Call

    router = Router(config, placement, send=lambda sid, frame: shard.apply(frame))
    bids = [1.1, 1.11, 1.12, 1.12, 1.12, 1.1, 1.09, 1.09, 1.09, 1.09, 1.12, 1.12, 1.12, 1.12, 1.12]

    async def run() -> tuple[str, str]:
        await supervisor.register({"shard-0000": Handle(shard)}, placement, [shard.summaries()])
        router.route(T("EURUSD", b, b + 0.0001, T0 + i * NS_PER_SECOND, "f", i) for i, b in enumerate(bids))
        assert shard.states()["long"]["breaker"] == "ENGAGED"
        done = await supervisor.reset("account", "long", "alice", "back in limits",
                                      now_ns=T0 + 60 * NS_PER_SECOND)
        assert done["ok"]
        assert supervisor.account_breakers.state("long") == "SAFE"
        sent: list[Any] = []
        capture = type("C", (), {"report": type("R", (), {"remote": staticmethod(sent.append)})()})()
        again = AccountShard(config, "shard-0000", placement["shard-0000"], supervisor=capture,
                             journal_path=journal)
        supervisor.wiring.shards["shard-0000"] = Handle(again)
        for report in sent:
            await supervisor.report(report)
        return again.states()["long"]["breaker"], supervisor.account_breakers.state("long")

    assert asyncio.run(run()) == ("SAFE", "SAFE")


def test_supervisor_when_cash_moves_keeps_the_firm_drawdown_and_a_day_roll_restarts_the_peak() -> None:
    from riskcore.events import Cash

    config = parse_config({
        "symbols": {"EURUSD": {}}, "portfolios": {"desk": {}}, "batching": {"max_ticks": 1},
        "accounts": [
            {"id": "a", "portfolio": "desk", "balance": 1_000_000,
             "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.1}},
             "limits": {"max_account_leverage": 50, "leverage_warning": 40}},
            {"id": "b", "portfolio": "desk", "balance": 1_000_000},
        ],
    })
    placement = place_accounts(config)
    shards = {sid: AccountShard(config, sid, accounts) for sid, accounts in placement.items()}
    supervisor = Supervisor(config)
    reports: list[ShardReport] = []
    router = Router(config, placement, send=lambda sid, frame: reports.append(shards[sid].apply(frame)))

    async def feed(events: list[Any]) -> tuple[float, float]:
        reports.clear()
        router.route(events)
        for report in reports:
            await supervisor.report(report)
        firm = supervisor.aggregator.firm()
        return firm.drawdown, firm.day_peak

    async def run() -> list[tuple[float, float]]:
        await supervisor.register({}, placement, [s.summaries() for s in shards.values()])
        seen = [await feed([Tick("EURUSD", 1.1, 1.1001, T0, "f", 0),
                            Tick("EURUSD", 1.15, 1.1501, T0 + NS_PER_SECOND, "f", 1),
                            Tick("EURUSD", 1.12, 1.1201, T0 + 2 * NS_PER_SECOND, "f", 2)])]
        seen.append(await feed([Cash("b", 1.0, T0 + 3 * NS_PER_SECOND, "D1", "cash", 0)]))
        seen.append(await feed([Cash("a", -500_000.0, T0 + 4 * NS_PER_SECOND, "W1", "cash", 1)]))
        next_day = parse_rfc3339("2020-01-03T15:00:00.000000Z")
        seen.append(await feed([Tick("EURUSD", 1.12, 1.1201, next_day, "f", 3)]))  # a rolls its day
        return seen

    moved, deposit, withdrawal, rolled = asyncio.run(run())
    def approx(value: float) -> Any:
        return pytest.approx(value, rel=1e-12)  # sums of binary fractions
    assert moved[0] == approx(30_000.0)  # up 50k, down 30k
    # Cash is not PnL: the drawdown stays, the peak moves with the cash.
    assert deposit == (approx(moved[0]), approx(moved[1] + 1.0))
    assert withdrawal == (approx(moved[0]), approx(moved[1] + 1.0 - 500_000.0))
    assert rolled[0] == 0.0  # a new day: the peak starts again from start-of-day equity


def test_supervisor_when_a_command_is_delivered_again_after_a_restart_answers_it_without_acting_twice(
        tmp_path: Any) -> None:
    journal = str(tmp_path / "supervisor.journal")
    first = Supervisor(CONFIG, journal_path=journal)

    async def engage(supervisor: Supervisor) -> OperatorAnswer:
        return await supervisor.engage("portfolio", "desk", "alice", "desk review", now_ns=T0)

    async def run_first() -> OperatorAnswer:
        await first.register({}, place_accounts(CONFIG), [])
        return await engage(first)

    answer = asyncio.run(run_first())
    # The process died before the answer left; Ray delivers the same call to the restarted supervisor.
    again = Supervisor(CONFIG, journal_path=journal)
    assert asyncio.run(engage(again)) == answer
    assert sum(e.get("cause") == "operator" for e in again.event_log()) == 1  # logged (and audited) once
    assert again.upper.portfolio_breakers["desk"].engaged_at_ns == T0  # its cooldown not restarted
