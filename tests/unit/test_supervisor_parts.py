"""The supervisor's parts on their own, without Ray: the event log, the command book, the account breaker
table, the reported sequences, the batch closer, the portfolio and global breakers, the wiring, the views."""

from __future__ import annotations

import numpy as np
import pytest

from riskcore.aggregate import Aggregate, SummaryColumns
from riskcore.clock import NS_PER_SECOND, parse_rfc3339, rfc3339_us
from riskcore.config import parse_config
from riskcore.errors import RiskmonError, UnknownAccountError
from riskcore.events import BreakerEvent
from riskcore.messages import ShardReport, Watermark
from riskcore.states import BreakerState, EngageCause, ReleaseCause, Scope
from supervisor.account_breakers import AccountBreakerTable
from supervisor.batches import BatchCloser, ReportedSequences
from supervisor.commands import CommandBook, check_command
from supervisor.eventlog import EventLog, audit_key, event_kind
from supervisor.upper import UpperBreakers
from supervisor.wiring import Wiring

T0 = parse_rfc3339("2020-01-02T14:30:00.000000Z")
CONFIG = parse_config({
    "symbols": {"EURUSD": {}},
    "portfolios": {"desk": {"limits": {"max_daily_loss": 1_000, "recovery_cooldown_seconds": 30}}},
    "accounts": [{"id": "a", "portfolio": "desk", "balance": 1_000_000},
                 {"id": "b", "portfolio": "desk", "balance": 1_000_000}],
    "firm": {"limits": {"max_gross_exposure": 50_000, "auto_reset": True, "recovery_cooldown_seconds": 0}},
})
NO_FIGURES = SummaryColumns(*(np.zeros(0) for _ in range(11)))


def at(ts_ns: int) -> Watermark:
    """A batch's watermark: its last tick, at ``ts_ns``."""
    return {"pos": 41, "stream": "f", "seq": 7, "ts_ns": ts_ns}


def report(shard: str, batch: int, targets: tuple[str, ...], seq: int | None = None) -> ShardReport:
    return ShardReport(shard, batch, 0, 0, [], [], NO_FIGURES, targets=targets, seq=seq)


# --------------------------------------------------------------------------- event log and command book


def test_event_log_when_events_added_counts_them_by_kind_and_gives_them_in_stream_order() -> None:
    log = EventLog(accounts=2)
    late = BreakerEvent(Scope.GLOBAL, "firm", BreakerState.ENGAGED, "loss", EngageCause.LIMIT, "", "f", 9, T0)
    record = log.add(log.next_key(9, log.limit_row + 1), late.to_dict())
    log.add((3, 0, 1), {"type": "alert", "to": "WARNING"})
    assert record == {"k": "log", "key": [9, 3, 0], "body": late.to_dict()}
    assert [body["type"] for body in log.in_order()] == ["alert", "breaker"]
    assert log.counts == {"alert:WARNING": 1, "breaker:global:ENGAGED": 1}
    assert event_kind({"type": "limit"}) == "limit"
    assert audit_key((9, 3, 0)) == "log:9:3:0"


def test_event_log_when_an_account_event_key_comes_again_it_is_refused_and_replay_restores_all() -> None:
    log = EventLog(accounts=2)
    assert log.take((4, 1, 0))
    assert not log.take((4, 1, 0))  # a restarted shard resent it
    again = EventLog(accounts=2)
    body = again.replay(log.add((4, 1, 0), {"type": "alert", "to": "CRITICAL"}))
    assert body == {"type": "alert", "to": "CRITICAL"}
    assert (again.entries, again.counts, again.last_pos) == (log.entries, log.counts, 4)
    assert not again.take((4, 1, 0))
    assert again.command_key() == (4, 4, 1)  # after every account and the two scope rows


def test_command_book_when_a_command_changed_a_breaker_answers_it_again_as_before() -> None:
    book = CommandBook()
    engaged = BreakerEvent(Scope.PORTFOLIO, "desk", BreakerState.ENGAGED, "review", EngageCause.OPERATOR,
                           "alice", "operator", None, T0)
    book.note(engaged.to_dict())
    book.note({"type": "command", "action": "reset", "refused": "cooldown"})  # refused: judged again
    answer = book.answer("engage", "portfolio", "desk", "alice", "review", T0)
    assert answer is not None
    assert (answer["ok"], answer["event"]) == (True, engaged.to_dict())
    assert book.answer("engage", "portfolio", "desk", "alice", "review", T0 + 1_000) is None  # another µs
    assert book.answer("engage", "portfolio", "desk", "alice", "review", None) is None  # no time: always new
    firm = BreakerEvent(Scope.GLOBAL, "firm", BreakerState.SAFE, "ok", ReleaseCause.RESET, "bob", "operator",
                        None, T0)
    book.note(firm.to_dict())
    assert book.answer("reset", "global", "anything", "bob", "ok", T0) is not None  # the firm's, by any name


def test_check_command_when_scope_unknown_or_operator_or_reason_missing_refuses() -> None:
    check_command("account", "alice", "why")
    with pytest.raises(RiskmonError, match="scope must be one of account, portfolio, global"):
        check_command("desk", "alice", "why")
    with pytest.raises(RiskmonError, match="operator name and a reason"):
        check_command("global", " ", "why")


# --------------------------------------------------------------------------- account breakers


def test_account_breakers_when_news_is_older_than_what_is_known_it_is_ignored() -> None:
    table = AccountBreakerTable(["a", "b"])
    assert table.set("a", BreakerState.SAFE, "", version=10)  is False  # as it was: no change
    assert table.set("a", BreakerState.ENGAGED, "drawdown", version=9) is False  # older than 10
    assert table.set("a", BreakerState.ENGAGED, "drawdown", version=11)
    assert table.set("a", BreakerState.ENGAGED, "drawdown", version=12) is False  # known already
    assert table.engaged_accounts() == ["a"]
    assert table.state("a") is BreakerState.ENGAGED
    assert table.snapshot()["a"] == {"state": "ENGAGED", "reason": "drawdown"}


def test_account_breakers_when_replayed_from_logged_strings_hold_enums() -> None:
    table = AccountBreakerTable(["a"])
    table.replay({"type": "breaker", "scope": "account", "id": "a", "state": "ENGAGED", "reason": "by hand"})
    firm = {"type": "breaker", "scope": "global", "id": "firm", "state": "SAFE", "reason": ""}
    table.replay(firm)  # not an account's: the table ignores it
    assert table.state("a") is BreakerState.ENGAGED
    assert table.engaged("a")


# --------------------------------------------------------------------------- reported sequences, batch close


def test_reported_sequences_when_reports_arrive_out_of_order_count_each_once_and_replay_alike() -> None:
    seen = ReportedSequences()
    assert seen.take(report("s0", 5, ("s0",), seq=1)) == (1, {"k": "reported", "shard": "s0", "seq": 1})
    assert seen.below("s0") == 0
    assert seen.take(report("s0", 4, ("s0",), seq=0)) == (1, {"k": "reported", "shard": "s0", "seq": 0})
    assert seen.below("s0") == 2
    assert seen.take(report("s0", 4, ("s0",), seq=0)) is None  # delivered again
    assert seen.take(report("s0", 3, ())) == (1, None)  # no sequence number: counted, nothing to journal
    seen.mark("s0", 4)
    recovery = ShardReport("s0", -1, 0, 0, [], [], NO_FIGURES, recovered_upto=5)
    assert seen.take(recovery) == (3, {"k": "reported", "shard": "s0", "through": 6})  # 2, 3 and 5 are new
    again = ReportedSequences()
    for record in seen.records():
        again.replay(record)
    assert again.seen == seen.seen == {"s0": (6, set())}


def test_batch_closer_when_reports_come_in_any_order_closes_batches_in_the_routers_order() -> None:
    closer = BatchCloser()
    closer.hold(report("s1", 1, ("s0", "s1")))
    closer.hold(report("s0", 1, ("s0", "s1")))
    assert list(closer.closable()) == []  # batch 0 not heard of yet: batch 1 waits for it
    closer.hold(report("s1", 0, ("s0", "s1")))
    assert list(closer.closable()) == []  # batch 0 still waits for s0
    closer.hold(report("s0", 0, ("s0", "s1")))
    closed = [[(r.batch, r.shard) for r in reports] for reports in closer.closable()]
    assert closed == [[(0, "s0"), (0, "s1")], [(1, "s0"), (1, "s1")]]  # each in target order
    assert (closer.next_batch, closer.pending, closer.targets_of) == (2, {}, {})


def test_batch_closer_when_a_shard_is_gone_or_caught_up_its_batches_close_without_its_report() -> None:
    closer = BatchCloser()
    closer.hold(report("s0", 0, ("s0", "s1")))
    closer.hold(report("s0", 2, ("s0",)))
    closer.gone.add("s1")
    # Batch 0 closes without s1; batch 1 (never heard of, its shards may be dead) is skipped for batch 2.
    assert [[r.batch for r in reports] for reports in closer.closable()] == [[0], [2]]
    rebuilt = BatchCloser()
    rebuilt.caught_up["s0"] = 2  # s0 rebuilt from its journal past batches 0 and 1; their reports may be lost
    assert list(rebuilt.closable()) == []
    assert rebuilt.next_batch == 2


def test_batch_closer_open_before_counts_earlier_batches_closed_and_gives_their_reports() -> None:
    closer = BatchCloser()
    closer.hold(report("s0", 3, ("s0", "s1")))
    closer.hold(report("s0", 7, ("s0", "s1")))
    assert [[r.batch for r in reports] for reports in closer.open_before(5)] == [[3]]
    assert closer.next_batch == 5
    assert list(closer.pending) == [7]


# --------------------------------------------------------------------------- portfolio and global breakers


def test_upper_breakers_when_a_limit_is_breached_log_it_once_engage_and_journal_it() -> None:
    upper = UpperBreakers(CONFIG)
    losing = Aggregate("portfolio", "desk", daily_pnl=-1_500.0)
    first = upper.check(losing, CONFIG.portfolios["desk"].limits, at(T0))
    assert [(e["type"], e["metric"], e["tick_ts"]) for e in first.limit_events] == [("limit", "daily_loss",
                                                                                      rfc3339_us(T0))]
    assert first.breaker_event is not None
    assert (first.breaker_event.state, first.breaker_event.cause) == (BreakerState.ENGAGED, EngageCause.LIMIT)
    assert [r["k"] for r in first.records] == ["breaches", "upper"]
    assert upper.portfolio_breakers["desk"].engaged
    again = upper.check(losing, CONFIG.portfolios["desk"].limits, at(T0 + 1))
    assert (again.limit_events, again.records, again.breaker_event) == ([], [], None)  # still in force
    rebuilt = UpperBreakers(CONFIG)
    for record in upper.records():
        rebuilt.replay(record)
    assert rebuilt.portfolio_breakers["desk"].snapshot() == upper.portfolio_breakers["desk"].snapshot()
    assert rebuilt.active_breaches == upper.active_breaches == {("portfolio", "desk", "daily_loss")}


def test_upper_breakers_when_back_within_limits_with_auto_reset_release_the_firm() -> None:
    upper = UpperBreakers(CONFIG)
    upper.check(Aggregate("global", "firm", gross_exposure=60_000.0), CONFIG.firm, at(T0))
    calm = upper.check(Aggregate("global", "firm", gross_exposure=10.0), CONFIG.firm, at(T0 + 1))
    assert calm.breaker_event is not None
    assert calm.breaker_event.state is BreakerState.SAFE
    assert calm.breaker_event.cause is ReleaseCause.AUTO_RESET
    assert not upper.global_breaker.engaged
    assert upper.in_breach(("global", "firm")) == frozenset()


def test_upper_breakers_operator_reset_when_cooling_down_is_refused_and_changes_nothing() -> None:
    upper = UpperBreakers(CONFIG)
    calm = Aggregate("portfolio", "desk")
    event, before, after, record = upper.engage("portfolio", "desk", calm, T0, "alice", "review")
    assert (event.cause, event.operator, record["op"]) == (EngageCause.OPERATOR, "alice", "engage")
    assert (before["breaker"]["state"], after["breaker"]["state"]) == ("SAFE", "ENGAGED")
    early = upper.reset("portfolio", "desk", calm, T0 + 29 * NS_PER_SECOND, "alice", "done")
    assert (early[0], early[4]) == (None, None)
    assert "cooldown" in str(early[1])
    late = upper.reset("portfolio", "desk", calm, T0 + 30 * NS_PER_SECOND, "alice", "done")
    assert late[0] is not None
    assert late[0].cause is ReleaseCause.RESET
    with pytest.raises(RiskmonError, match="unknown portfolio"):
        upper.breaker("portfolio", "nope")


# --------------------------------------------------------------------------- wiring


def test_wiring_when_an_account_is_unknown_or_its_shard_not_rejoined_says_so() -> None:
    wiring = Wiring()
    record = wiring.place({"s0": ["a"], "s1": ["b"]}, {"s0": "svc-s0", "s1": "svc-s1"})
    wiring.shards = {"s0": "handle-0"}
    assert wiring.handle("a") == "handle-0"
    with pytest.raises(UnknownAccountError):
        wiring.handle("ghost")
    with pytest.raises(RiskmonError, match="not reachable yet"):
        wiring.handle("b")
    again = Wiring()
    again.replay(record)
    assert again.shard_of == wiring.shard_of
    assert (again.accounts_of, again.names) == (wiring.accounts_of, wiring.names)
