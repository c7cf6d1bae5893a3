"""The supervisor: aggregates, portfolio and global breakers, the event log, the gates' view.

A plain class; ``supervisor.deploy`` makes it a named, detached Ray actor. It is the single writer of
breaker states: account breakers trip inside their account actor at the exact tick (and the supervisor
records them from the report), portfolio and global breakers trip here, and every operator command comes
through here. Gates long-poll :meth:`poll` for a versioned view.

A shell over plain parts, each in its own module: the journal (``durability``), the audit trail
(``audit_writer``), the event log, the book of operator commands, the account breaker table, the reported
sequences and batch-ordered close (``batches``), the portfolio and global breakers (``upper``, judged by
``riskcore.policy``), the long-poll host, the views, shard liveness, the wiring and the rejoin of a
restarted supervisor. This class takes each call and hands it to them in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors.shard import HALTS_GROUP
from riskcore.aggregate import Aggregator, SummaryColumns
from riskcore.audit import config_summary, refusal_summary
from riskcore.config import RiskConfig, resolve_config
from riskcore.errors import RiskmonError
from riskcore.messages import (
    MESSAGE_VERSION,
    AccountRow,
    BreakerTable,
    GateView,
    Halts,
    OperatorAnswer,
    PollReply,
    ShardNumbering,
    ShardReport,
    Status,
)
from riskcore.states import BreakerState
from supervisor import views
from supervisor.account_breakers import AccountBreakerTable
from supervisor.audit_writer import AuditWriter
from supervisor.batches import closed_record, replay_closed
from supervisor.commands import CommandBook
from supervisor.durability import SupervisorJournal
from supervisor.eventlog import EventLog
from supervisor.intake import ReportIntake
from supervisor.liveness import Liveness, watch
from supervisor.longpoll import LongPollHost
from supervisor.operator import OperatorCommands
from supervisor.recorder import Recorder
from supervisor.rejoin import reconstructed, rejoin_states
from supervisor.upper import UpperBreakers
from supervisor.wiring import Wiring


class Supervisor:
    def __init__(self, config: RiskConfig | str, journal_path: str | None = None,
                 audit_path: str | None = None) -> None:
        """``config``: the config, or where the service stored it (``riskcore.config.save_config``).
        ``journal_path``: where portfolio and global breaker changes, the event log and the shard wiring are
        journaled, and from which a restarted supervisor rebuilds them (None: nothing outlives the process).
        ``audit_path``: the audit trail this supervisor is the single writer of (None: none)."""
        self.config = config = resolve_config(config)
        self.started_ns = time.time_ns()  # tells a restarted supervisor from this one (metrics)
        accounts = [spec.id for spec in config.accounts]
        self.aggregator = Aggregator(config)
        self.upper = UpperBreakers(config)
        self.account_breakers = AccountBreakerTable(accounts)
        self.events = EventLog(len(accounts))
        self.commands = CommandBook()
        self.wiring = Wiring()
        self.liveness = Liveness(accounts)
        self.longpoll = LongPollHost()
        self.audit = AuditWriter(audit_path, config.durability.fsync, self.started_ns)
        records = SupervisorJournal.read(journal_path)
        self.durable = SupervisorJournal(journal_path, config.durability.fsync,
                                         int(config.durability.snapshot_mb * 1024 * 1024))
        self.recorder = Recorder(self.events, self.commands, self.durable, self.audit)
        self.intake = ReportIntake(config, self.aggregator, self.upper, self.account_breakers, self.recorder,
                                   self.wiring)
        self.reported, self.batches = self.intake.reported, self.intake.batches
        self.operator = OperatorCommands(self.intake, self.recorder, self.aggregator, self.upper, self.wiring,
                                         self._flush, self._bump)
        self.feeds: dict[str, dict[str, int]] = {}  # feed server -> its counts (riskmon run reports them)
        self.watch_interval_s = 0.5
        self._rejoin: asyncio.Task[None] | None = None
        self._replay(records)
        self.audit.open(self.events.entries)
        if audit_path is not None:
            self.recorder.audit_record("config_load", config_summary(config, config.source, hash_file=False,
                                                                     restart=bool(records)))
            self._flush()

    # ------------------------------------------------------------------ durability

    def _replay(self, records: list[dict[str, Any]]) -> None:
        """Every part as the journal left it."""
        for record in records:
            kind = record.get("k")
            if kind == "register":
                self.wiring.replay(record)
            elif kind in ("upper", "breaches"):
                self.upper.replay(record)
            elif kind == "audit":
                self.audit.replay(record)
            elif kind == "closed":
                replay_closed(record, self.batches, self.aggregator)
            elif kind == "reported":
                self.reported.replay(record)
            elif kind == "log":
                body = self.events.replay(record)
                self.commands.note(body)
                self.account_breakers.replay(body)
        for account in self.account_breakers.states:  # the aggregates count them from here
            self.aggregator.set_engaged(account, self.account_breakers.engaged(account))

    def _flush(self) -> None:
        """Write what this call changed before anyone is told of it (gates, the caller): the journal, then the
        audit trail (a record journaled but not audited when the process died is audited on restart)."""
        self.recorder.flush(lambda: [
            self.wiring.record(), *self.upper.records(), *self.reported.records(),
            closed_record(self.batches.next_batch, self.aggregator), *self.events.records(),
            *self.audit.records()])

    def rejoin_if_restarted(self) -> None:
        """After Ray restarted this actor: find the shards again, take their figures, watch them (once)."""
        if self._rejoin is None and not self.wiring.shards and self.wiring.names and reconstructed():
            self.intake.paused = True
            self._rejoin = asyncio.get_event_loop().create_task(self._rejoin_shards())

    async def _rejoin_shards(self) -> None:
        """A shard that cannot be found or answered is gone: its accounts stay down, batches close without
        it."""
        try:
            answered = await rejoin_states(self.wiring.names, self.batches.next_batch, self.reported)
            self.intake.rejoin(answered)
            self.wiring.shards = {sid: handle for sid, (handle, _state) in answered.items()}
            for sid in self.wiring.shards:  # a gone shard's accounts stay down: gates deny them
                self.liveness.set_up(self.wiring.accounts_of.get(sid, ()))
        finally:
            self.intake.paused = False
        self.intake.close_complete()
        self._bump()
        await self.start_watch(self.watch_interval_s)

    # ------------------------------------------------------------------ wiring

    async def register(self, shards: dict[str, Any], placement: dict[str, list[str]],
                       summaries: list[SummaryColumns], names: dict[str, str] | None = None,
                       resume: dict[str, ShardNumbering] | None = None) -> int:
        """Wire the shards in. ``resume``: each shard's numbering when a service restarts on its journals."""
        self.wiring.shards = dict(shards)
        for sid, point in (resume or {}).items():
            self.reported.through(sid, point.next_seq)
            self.batches.next_batch = max(self.batches.next_batch, point.next_batch)
        self.durable.add(self.wiring.place(placement, names or {}))
        for columns in summaries:
            self.aggregator.update(columns)
            self.intake.take_breakers(columns, -1)
        self.liveness.set_up(self.wiring.shard_of)
        self._bump()
        return self.longpoll.version

    def _bump(self) -> None:
        """A change gates must see at once (a breaker, an account's liveness): a new view version. (If the
        journal cannot be written, gates are refused by ``poll`` and go stale: they deny.)"""
        try:
            self._flush()
        finally:
            self.longpoll.bump()

    def _publish(self) -> None:
        if self.intake.breaker_changed:
            self.intake.breaker_changed = False
            self._bump()

    # ------------------------------------------------------------------ reports

    async def report(self, report: ShardReport) -> None:
        """Take one shard's report (``supervisor.intake``)."""
        self.rejoin_if_restarted()
        # A restarted shard first sends again the last batches it replayed: those whose report never came
        # (its process died first) complete their batches with their own figures, exactly.
        for resent in report.resent:
            self.intake.take(resent)
        self.intake.take(report)
        self._flush()
        if not self.intake.breaker_changed:
            self.longpoll.figures_dirty = True
            self.longpoll.notify()  # wakes wait_reported; gates keep waiting for a new version
        self._publish()

    async def breaker_now(self, account: str, state: BreakerState, reason: str, version: int) -> None:
        """An account breaker changed inside a batch: tell the gates now; the batch's report records it."""
        self.rejoin_if_restarted()
        self.intake.set_account_breaker(account, state, reason, version)
        self._publish()

    # ------------------------------------------------------------------ operator commands

    async def engage(self, scope: str, target: str, operator: str, reason: str,
                     now_ns: int | None = None) -> OperatorAnswer:
        """Engage a breaker by hand. Always allowed."""
        self.rejoin_if_restarted()
        return await self.operator.engage(scope, target, operator, reason, now_ns)

    async def reset(self, scope: str, target: str, operator: str, reason: str,
                    now_ns: int | None = None) -> OperatorAnswer:
        """Release a breaker if its cooldown has passed and its limits are no longer breached."""
        self.rejoin_if_restarted()
        return await self.operator.reset(scope, target, operator, reason, now_ns)

    async def input_refused(self, source: str, refusals: list[dict[str, Any]]) -> None:
        """Input refused before it reached a shard (by the router of ``source``): counted, and summarised in
        the audit trail. (Shards' refusals arrive in their reports.)"""
        for refusal in refusals:
            self.intake.refused[str(refusal["code"])] += 1
        if refusals:
            self.recorder.audit_record("rejected_input", {"source": source, **refusal_summary(refusals)})
            self._flush()

    # ------------------------------------------------------------------ views

    async def wait_reported(self, upto: dict[str, int], timeout_s: float) -> dict[str, int]:
        """Wait until every shard has reported every batch of its sequence below ``upto[shard]`` (and a
        restarted supervisor has closed the batches it had open); return the shards still short (shard ->
        first batch not reported), empty when all are in."""
        self.rejoin_if_restarted()

        def short() -> dict[str, int]:
            return {s: self.reported.below(s) for s, n in upto.items()
                    if self.reported.below(s) < n or self.intake.paused}

        await self.longpoll.wait_until(lambda: not short(), timeout_s)
        return short()

    async def poll(self, known_version: int, timeout_s: float, known_figures: int = -1) -> PollReply:
        """Long-poll: news as soon as the view is newer than ``known_version``, else a heartbeat at the
        timeout (``supervisor.longpoll``)."""
        self.rejoin_if_restarted()
        if self.durable.error is not None:
            raise RiskmonError(f"{self.durable.error}: no view until it is repaired (gates go stale, deny)")
        return await self.longpoll.poll(known_version, timeout_s, known_figures, self._gate_view,
                                        self.breaker_table)

    def shard_handles(self) -> dict[str, Any]:
        """Every account shard's actor handle (gates watch them for halts)."""
        return dict(self.wiring.shards)

    def breaker_table(self) -> BreakerTable:
        return views.breaker_table(self.longpoll.version, self.upper, self.account_breakers, self.liveness.up)

    def _gate_view(self) -> GateView:
        return views.gate_view(self.longpoll.version, self.longpoll.figures_version, self.config,
                               self.aggregator, self.upper, self.account_breakers, self.liveness.up,
                               self.intake.mids)

    def gate_view(self) -> GateView:
        return self.longpoll.cached_view(self._gate_view)

    def event_log(self) -> list[dict[str, Any]]:
        return self.events.in_order()

    def status(self) -> Status:
        upper = self.upper
        return {
            "schema": MESSAGE_VERSION,
            "version": self.longpoll.version,
            "reports": self.intake.reports,
            "firm": self.aggregator.firm().to_dict(),
            "portfolios": {pid: self.aggregator.portfolio(pid).to_dict() for pid in self.config.portfolios},
            "breakers": {"global": upper.global_breaker.snapshot(),
                         "portfolios": {pid: b.snapshot() for pid, b in upper.portfolio_breakers.items()},
                         "accounts": self.account_breakers.snapshot()},
            "up": dict(self.liveness.up),
            "refused": dict(self.intake.refused),
            "watch_failures": dict(self.liveness.watch_failures),
            "event_counts": dict(self.events.counts),
            "started_ns": self.started_ns,
            "feeds": dict(self.feeds),
            "audit": self.audit.status(),
            "journal_error": self.durable.error,
        }

    def accounts_view(self) -> dict[str, AccountRow]:
        """Every account's figures as of its last report, its breaker and liveness (``riskmon status``)."""
        return views.accounts_view(self.config, self.aggregator, self.account_breakers, self.liveness.up)

    def note_feeds(self, source: str, stats: dict[str, int]) -> None:
        """What a feed server (``riskmon run``) has taken so far: connections, frames, events, refusals."""
        self.feeds[source] = dict(stats)

    # ------------------------------------------------------------------ liveness

    async def watch_shard(self, shard_id: str, handle: Any, interval_s: float) -> None:
        """Liveness of one shard, for ever (``supervisor.liveness``)."""
        async def call(version: int) -> Halts:
            remote = handle.watch_halts.options(concurrency_group=HALTS_GROUP, max_task_retries=0)
            halts: Halts = await asyncio.wrap_future(remote.remote(version, interval_s).future())
            return halts

        await watch(shard_id, call, interval_s, self.liveness, self._set_shard_alive)

    def _set_shard_alive(self, shard_id: str, alive: bool, gone: bool = False) -> None:
        """``gone``: Ray will not restart it; batches waiting on it complete without it."""
        if gone and shard_id not in self.batches.gone:
            self.batches.gone.add(shard_id)
            self.intake.close_complete()
        if self.liveness.note(shard_id, self.wiring.accounts_of.get(shard_id, []), alive):
            self._bump()

    async def start_watch(self, interval_s: float) -> bool:
        self.watch_interval_s = interval_s
        for shard_id, handle in self.wiring.shards.items():
            asyncio.get_event_loop().create_task(self.watch_shard(shard_id, handle, interval_s))
        return True
