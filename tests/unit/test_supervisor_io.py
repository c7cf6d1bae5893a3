"""The supervisor's parts that talk to the outside, without Ray: its journal, the audit writer, the long-poll
host, shard liveness and the views."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from riskcore.aggregate import Aggregator
from riskcore.audit import verify
from riskcore.clock import parse_rfc3339
from riskcore.config import parse_config
from riskcore.errors import RiskmonError
from riskcore.journal import Journal
from riskcore.messages import GateView, Halts
from riskcore.states import BreakerState, EngageCause
from supervisor import views
from supervisor.account_breakers import AccountBreakerTable
from supervisor.audit_writer import AuditWriter
from supervisor.durability import SupervisorJournal
from supervisor.liveness import Liveness, watch
from supervisor.longpoll import LongPollHost
from supervisor.upper import UpperBreakers

T0 = parse_rfc3339("2020-01-02T14:30:00.000000Z")
CONFIG = parse_config({
    "symbols": {"EURUSD": {"price_band_pct": 0.05}},
    "portfolios": {"desk": {}},
    "accounts": [{"id": "a", "portfolio": "desk", "balance": 1_000},
                 {"id": "b", "portfolio": "desk", "balance": 2_000}],
})


# --------------------------------------------------------------------------- journal


def test_supervisor_journal_when_a_write_fails_keeps_the_record_and_says_so(tmp_path: Path) -> None:
    journal = SupervisorJournal(str(tmp_path / "j"), fsync=False, snapshot_bytes=1 << 20)
    journal.add({"k": "log", "n": 1})
    journal.flush()
    assert journal.journal is not None

    def broken(record: Any) -> None:
        raise OSError(5, "Input/output error")

    # A failing disk in place of the method (mypy refuses assigning to a method).
    journal.journal.append = broken  # type: ignore[method-assign]
    journal.add({"k": "log", "n": 2})
    with pytest.raises(RiskmonError, match="journal write failed"):
        journal.flush()
    assert journal.error is not None
    assert journal.waiting == [{"k": "log", "n": 2}]  # not lost: written when the journal is repaired
    assert Journal.read(tmp_path / "j") == [{"k": "log", "n": 1}]


def test_supervisor_journal_when_past_its_threshold_compacts_and_again_only_once_doubled(
        tmp_path: Path) -> None:
    journal = SupervisorJournal(str(tmp_path / "j"), fsync=False, snapshot_bytes=64)
    state = [{"k": "closed", "next_batch": 3, "peak": [1.0] * 20}]  # itself over the threshold
    for n in range(4):
        journal.add({"k": "log", "n": n, "pad": "x" * 20})
    journal.flush()
    journal.compact_if_due(lambda: state)
    assert journal.compactions == 1
    assert Journal.read(tmp_path / "j") == state
    journal.compact_if_due(lambda: state)
    assert journal.compactions == 1  # not rewritten on every change
    unjournaled = SupervisorJournal(None, fsync=False, snapshot_bytes=64)
    unjournaled.add({"k": "log"})
    assert unjournaled.waiting == []  # nothing outlives this process: nothing is kept


# --------------------------------------------------------------------------- audit writer


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_writer_when_journaled_records_are_missing_from_the_trail_writes_them_once(
        tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    first = AuditWriter(str(trail), fsync=False, started_ns=1)
    first.open([])
    journal = first.record("rejected_input", {"source": "router", "refused": 1})
    assert journal is not None
    assert journal["k"] == "audit"
    first.event((5, 0, 0), {"type": "alert", "to": "WARNING", "tick_ts": "2020-01-02T14:30:00.000000Z"}, {})
    first.write()
    written = records(trail)
    assert [(r["kind"], r["key"]) for r in written] == [("rejected_input", "rejected_input:1:1"),
                                                         ("alert", "log:5:0:0")]
    assert written[1]["ts"] == "2020-01-02T14:30:00.000000Z"  # the event's own time
    # A restart: the journal holds both and one more of each; the trail has the first two.
    again = AuditWriter(str(trail), fsync=False, started_ns=2)
    again.replay(journal)
    again.replay({"k": "audit", "key": "command:1:2", "kind": "command", "fields": {"refused": "no reason"}})
    again.open([((5, 0, 0), {"type": "alert", "to": "WARNING"}),
                ((6, 1, 0), {"type": "alert", "to": "NORMAL"})])
    again.write()
    keys = [r["key"] for r in records(trail)]
    assert keys == ["rejected_input:1:1", "log:5:0:0", "log:6:1:0", "command:1:2"]
    assert verify(trail).ok


def test_audit_writer_when_the_disk_is_full_counts_the_failure_and_catches_up_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from riskcore import audit as audit_module

    trail = tmp_path / "audit.jsonl"
    writer = AuditWriter(str(trail), fsync=False, started_ns=1)
    writer.open([])
    real_append = audit_module.AuditTrail.append
    full = {"disk": True}

    def append(self: Any, *args: Any, **kwargs: Any) -> Any:
        if full["disk"]:
            raise OSError(28, "No space left on device")
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(audit_module.AuditTrail, "append", append)
    writer.record("command", {"action": "engage"})
    writer.write()
    status = writer.status()
    assert (status["failures"], status["waiting"]) == (1, 1)
    assert "No space left on device" in str(status["error"])
    assert writer.records() == [{"k": "audit", "key": "command:1:1", "kind": "command",
                                 "fields": {"action": "engage"}}]  # kept in a compacted journal meanwhile
    full["disk"] = False
    writer.write()
    assert writer.status() == {"failures": 1, "error": None, "waiting": 0}
    assert [r["kind"] for r in records(trail)] == ["command"]


def test_audit_writer_without_a_trail_queues_nothing() -> None:
    writer = AuditWriter(None, fsync=False, started_ns=1)
    writer.open([((1, 0, 0), {"type": "alert"})])
    assert writer.record("command", {}) is None
    writer.event((1, 0, 0), {"type": "alert"}, {})
    assert writer.status()["waiting"] == 0


# --------------------------------------------------------------------------- long-poll host


def a_view(host: LongPollHost) -> GateView:
    return views.gate_view(host.version, host.figures_version, CONFIG, Aggregator(CONFIG),
                           UpperBreakers(CONFIG), AccountBreakerTable(["a", "b"]), {"a": True, "b": True}, {})


def test_long_poll_host_answers_a_new_gate_with_the_view_a_change_with_the_table_else_a_heartbeat() -> None:
    host = LongPollHost()
    upper, table = UpperBreakers(CONFIG), AccountBreakerTable(["a", "b"])

    def breakers() -> Any:
        return views.breaker_table(host.version, upper, table, {"a": True, "b": False})

    async def run() -> list[Any]:
        first = await host.poll(-1, 0.01, -1, lambda: a_view(host), breakers)
        quiet = await host.poll(first.version, 0.01, host.figures_version, lambda: a_view(host), breakers)
        waiting = asyncio.ensure_future(host.poll(first.version, 5.0, host.figures_version,
                                                  lambda: a_view(host), breakers))
        await asyncio.sleep(0.01)
        host.bump()  # a breaker changed
        changed = await waiting
        host.figures_dirty = True  # figures moved: published by the next heartbeat
        beat = await host.poll(changed.version, 0.01, host.figures_version, lambda: a_view(host), breakers)
        return [first, quiet, changed, beat]

    first, quiet, changed, beat = asyncio.run(run())
    assert first.view is not None
    assert first.view["accounts"]["b"]["equity"] == 2_000  # its balance until it reports
    assert quiet.unchanged
    assert quiet.version == first.version
    assert changed.breakers is not None
    assert changed.breakers["down"] == ["b"]
    assert beat.view is not None
    assert beat.view["figures_version"] == 1
    assert beat.version == changed.version + 1


def test_long_poll_host_wait_until_returns_when_it_holds_or_at_the_timeout() -> None:
    host = LongPollHost()
    done = {"now": False}

    async def run() -> float:
        loop = asyncio.get_event_loop()
        waiting = asyncio.ensure_future(host.wait_until(lambda: done["now"], 5.0))
        await asyncio.sleep(0.01)
        done["now"] = True
        host.notify()
        await waiting
        started = loop.time()
        await host.wait_until(lambda: False, 0.05)
        return loop.time() - started

    assert 0.04 <= asyncio.run(run()) < 2.0


def test_long_poll_host_builds_the_view_once_per_version() -> None:
    host = LongPollHost()
    built: list[int] = []

    def build() -> GateView:
        built.append(host.version)
        return a_view(host)

    assert host.cached_view(build) is host.cached_view(build)
    host.version += 1
    host.cached_view(build)
    assert len(built) == 2


# --------------------------------------------------------------------------- liveness


def test_liveness_when_a_shard_dies_and_comes_back_its_accounts_go_down_and_up() -> None:
    liveness = Liveness(["a", "b", "c"])
    assert liveness.up == {"a": False, "b": False, "c": False}  # fail closed until registered
    liveness.set_up(["a", "b", "c"])
    assert liveness.note("s0", ["a", "b"], alive=False)
    assert liveness.up == {"a": False, "b": False, "c": True}
    assert not liveness.note("s0", ["a", "b"], alive=False)  # as it was
    assert liveness.note("s0", ["a", "b"], alive=True)
    assert all(liveness.up.values())


def test_liveness_watch_when_the_call_fails_notes_the_shard_down_and_counts_why() -> None:
    liveness = Liveness(["a"])
    noted: list[tuple[str, bool, bool]] = []
    answers: list[Any] = [Halts(7, ()), ConnectionError("unreachable"), Halts(8, ("a",))]
    asked: list[int] = []

    async def call(version: int) -> Halts:
        asked.append(version)
        if not answers:
            raise asyncio.CancelledError  # ends the watch (it runs for ever)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, Halts)
        return answer

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(watch("s0", call, 0.001, liveness, lambda *args: noted.append(args)))
    assert noted == [("s0", True, False), ("s0", False, False), ("s0", True, False)]
    assert asked == [-1, 7, 7, 8]  # each watch asks for news after the last version it got
    assert liveness.watch_failures == {"s0: ConnectionError": 1}


# --------------------------------------------------------------------------- views


def test_views_breaker_table_and_accounts_view_show_breakers_liveness_and_figures() -> None:
    upper, table = UpperBreakers(CONFIG), AccountBreakerTable(["a", "b"])
    upper.portfolio_breakers["desk"].engage(T0, EngageCause.OPERATOR, "review", "alice")
    table.set("b", BreakerState.ENGAGED, "drawdown")
    shown = views.breaker_table(9, upper, table, {"a": True, "b": False})
    assert shown == {"schema": 1, "version": 9, "global_engaged": False, "portfolios": {"desk": True},
                     "engaged": ["b"], "down": ["b"]}
    rows = views.accounts_view(CONFIG, Aggregator(CONFIG), table, {"a": True, "b": False})
    assert rows["b"]["breaker"] is BreakerState.ENGAGED
    assert (rows["a"]["reported"], rows["a"]["alert_level"], rows["a"]["up"]) == (False, "NORMAL", True)
    view = views.gate_view(9, 2, CONFIG, Aggregator(CONFIG), upper, table, {"a": True, "b": False},
                           {"EURUSD": 1.1})
    assert view["portfolios"] == {"desk": (True, True)}
    assert view["price_bands"] == {"EURUSD": 0.05}
    assert (view["accounts"]["b"]["engaged"], view["accounts"]["b"]["up"]) == (True, False)
