"""An account shard: the Ray actor that hosts one or more accounts.

A plain class (unit-testable without Ray); ``supervisor.deploy`` applies
``ray.remote`` with its options. Each hosted account keeps its own state,
limits, breaker and in-order mailbox: the shard applies batches in the order
they arrive, and inside a batch the engine applies events in arrival order.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from actors.arrival import ArrivalPositions, keep_ticks
from actors.halts import HaltBoard
from actors.kept_reports import KeptReports
from riskcore.aggregate import SummaryColumns
from riskcore.config import RiskConfig, resolve_config
from riskcore.engine import BatchedEngine, EventBatch
from riskcore.errors import InputError
from riskcore.events import AlertEvent, BreakerEvent
from riskcore.histogram import DurationHistogram
from riskcore.ingest import FillScreen, Refusal, TickScreen
from riskcore.journal import Journal
from riskcore.messages import (
    Halts,
    KeyedEvent,
    RejoinState,
    ShardAck,
    ShardCommandAnswer,
    ShardNumbering,
    ShardReport,
    Watermark,
)
from riskcore.states import BreakerState
from riskcore.wire import BatchFrame, decode

HALTS_GROUP = "halts"  # the Ray concurrency group watch_halts runs in (supervisor.deploy)
# The messages a shard sends are riskcore.messages'; importers of the shard find them here too.
__all__ = ["HALTS_GROUP", "AccountShard", "KeyedEvent", "ShardAck", "ShardReport"]


_NO_SUMMARIES = SummaryColumns(
    np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.bool_),
    np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0), np.zeros(0))


class AccountShard:
    def __init__(self, config: RiskConfig | str, shard_id: str, account_ids: list[str],
                 supervisor: Any = None, journal_path: str | None = None) -> None:
        """``config``: the config, or where the service stored it (``riskcore.config.save_config``).
        ``journal_path``: where the shard journals every batch and operator command before it acknowledges
        it, and from which a restarted shard rebuilds itself (None: no journal, nothing survives the process).
        """
        self.config = config = resolve_config(config)
        self.shard_id = shard_id
        self.engine = BatchedEngine(config, account_ids)
        self.engine.warm_up()  # compile (or load) the kernel before serving, not on the first batch
        self.account_ids = [book.id for book in self.engine.books]
        self.config_index = {spec.id: index for index, spec in enumerate(config.accounts)}
        self.tick_screen = TickScreen()
        self.fill_screen = FillScreen(self.account_ids, self.engine.symbol_ids)
        self.supervisor = supervisor
        # A breaker change goes out the moment the kernel makes it, ahead of the batch's report: to the
        # supervisor, and to gates watching this shard (watch_halts).
        self.engine.on_breaker = self._publish_breaker
        self.halts = HaltBoard(book.id for book in self.engine.books if book.breaker.engaged)
        self.batches = 0
        self.ticks_applied = 0
        self.fills_applied = 0
        # Batches apply in the router's order for this shard, once each, however they are delivered.
        self.next_seq = 0
        self.next_pos = 0  # one past the router's arrival number of the last event applied here
        self.next_batch = 0  # one past the router's number of the last batch applied here
        self.held: dict[int, BatchFrame] = {}  # batches that came ahead of their turn
        self.redelivered = 0
        self.reported = KeptReports(config, self.engine.summary_columns())  # for a restarted supervisor
        self.journal: Journal | None = None
        self.snapshot_bytes = int(config.durability.snapshot_mb * 1024 * 1024)
        self.compact_at = self.snapshot_bytes
        self.snapshots = 0  # compactions this process made
        # Metrics of this process only (not journaled): a restart starts them again, which the exporter
        # tells by ``started_ns`` and keeps its counters monotonic across (driver.metrics).
        self.started_ns = time.time_ns()
        self.batch_seconds = DurationHistogram()  # live batches, from taking one to its report being sent
        self.breach_to_halt_seconds = DurationHistogram()  # a batch's arrival to its ENGAGED going out
        self._arrived_s: float | None = None  # perf_counter() when the batch being applied arrived
        if journal_path is not None:
            self._recover(journal_path)
            self.journal = Journal(journal_path, config.durability.fsync)

    # ------------------------------------------------------------------ recovery

    def _recover(self, journal_path: str) -> None:
        """Rebuild from the journal: its snapshot, if compacted, then every batch and command again, in order,
        through the same code.

        The engine is deterministic, so the accounts end exactly as they were. Breaker changes are not
        published one by one; one recovery report gives the supervisor every event of the replay (it keeps
        those it has not recorded yet), every account's figures, and the whole reports of the last
        kept batches (``actors.kept_reports``): those the supervisor never got complete their batches exactly.
        """
        records = Journal.read(journal_path)
        if not records:
            return
        self.engine.on_breaker = None
        events: list[KeyedEvent] = []
        for record in records:
            kind = record.get("k")
            applied: list[ShardReport] = []
            if kind == "snapshot":  # a compacted journal starts with one: where the replay starts from
                self._restore(record)
                # Their reports may not all have reached the supervisor (it keeps each event once, by key).
                events += self.reported.events_since(0)
            elif kind == "batch":  # journaled on arrival: applied in turn, exactly as when it arrived
                decoded = decode(record["f"], symbol_count=len(self.engine.symbol_names))
                assert isinstance(decoded, BatchFrame)
                applied = self._take(decoded, decoded.seq_for(self.shard_id), send=False)
            elif kind == "resume":
                applied = self._release_held(send=False)
            elif kind == "engage":
                self.engine.engage(record["account"], record["now_ns"], record["operator"], record["reason"])
            elif kind == "reset":
                self.engine.reset(record["account"], record["now_ns"], record["operator"], record["reason"])
            for report in applied:
                events += report.events
        self.engine.on_breaker = self._publish_breaker
        self.halts.halted = {book.id for book in self.engine.books if book.breaker.engaged}
        self.engine.summary_columns(changed_only=True)  # the recovery report carries every account anyway
        self._send(ShardReport(self.shard_id, -1, self.ticks_applied, self.fills_applied, [], events,
                               self.engine.summary_columns(), {}, self.mids(),
                               recovered_upto=self.next_seq - 1, recovered_batch=self.next_batch,
                               resent=list(self.reported.kept), halts_version=self.halts.version))

    _COUNTERS = ("batches", "ticks_applied", "fills_applied", "next_seq", "next_pos", "next_batch",
                 "redelivered")

    def _compact(self) -> None:
        """Replace the journal by one snapshot record: a restart then replays from here, not from the start.

        Taken between batches with none held, so the accounts, the input screens, the sequence counters and
        the events kept for a restarted supervisor are all there is. The reports kept in memory stay; a shard
        restored from the snapshot keeps them afresh from there (every batch before it was reported).
        """
        assert self.journal is not None
        assert not self.held
        self.journal.rewrite([{
            "k": "snapshot", "engine": self.engine.snapshot(), "ticks": self.tick_screen.snapshot(),
            "fills": self.fill_screen.snapshot(),
            "counters": {name: getattr(self, name) for name in self._COUNTERS},
            "recent": self.reported.snapshot(),
        }])
        self.snapshots += 1
        # Again only once the journal has doubled past the snapshot: a snapshot that is itself over the
        # threshold (many fill ids seen) is not rewritten after every batch.
        self.compact_at = max(self.snapshot_bytes, 2 * self.journal.size)

    def _restore(self, record: dict[str, Any]) -> None:
        self.engine.restore(record["engine"])
        self.tick_screen.restore(record["ticks"])
        self.fill_screen.restore(record["fills"])
        for name in self._COUNTERS:
            setattr(self, name, record["counters"][name])
        self.reported.restore(record["recent"], self.engine.summary_columns(), self.next_batch)

    # ------------------------------------------------------------------ data path

    def apply(self, frame: bytes) -> ShardReport:
        """Decode, screen and apply one router batch; report to the supervisor (fire and forget).

        A batch ahead of its turn in this shard's sequence waits until those before it arrive; one already
        applied (a re-delivery after a restart) is acknowledged and not applied again.
        """
        self._arrived_s = time.perf_counter()
        try:
            decoded = decode(frame, symbol_count=len(self.engine.symbol_names))
            if not isinstance(decoded, BatchFrame):
                raise InputError("bad_frame", "account shards take 'batch' frames")
        except InputError as exc:
            self.tick_screen.refused[exc.code] += 1
            report = ShardReport(self.shard_id, -1, 0, 0, [Refusal("frame", -1, exc.code, exc.message)], [],
                                 self.engine.summary_columns(changed_only=True))
            self._send(report)
            return report
        seq = decoded.seq_for(self.shard_id)
        if seq is not None and (seq < self.next_seq or seq in self.held):
            self.redelivered += 1
            return ShardReport(self.shard_id, decoded.number, 0, 0, [], [], _NO_SUMMARIES, seq=seq)
        if self.journal is not None:
            self.journal.append({"k": "batch", "f": frame})  # on arrival: before it is applied or answered
        applied = self._take(decoded, seq, send=True)
        if self.journal is not None and self.journal.size > self.compact_at and not self.held:
            self._compact()
        if not applied:  # held for its turn
            return ShardReport(self.shard_id, decoded.number, 0, 0, [], [], _NO_SUMMARIES, seq=seq)
        # The caller's answer covers those that came early and are now applied in turn too (each was reported
        # on its own); the report already sent is not altered.
        first = applied[0]
        return replace(first, ticks_applied=sum(r.ticks_applied for r in applied),
                       fills_applied=sum(r.fills_applied for r in applied),
                       refusals=[x for r in applied for x in r.refusals])

    def _take(self, decoded: BatchFrame, seq: int | None, send: bool) -> list[ShardReport]:
        """The one place batches are sequenced (live and in replay): apply batch ``seq`` if it is its turn,
        then every held one now in turn; hold it if it came early. A batch without a sequence number (not
        from a router) is applied as it comes."""
        if seq is not None and seq > self.next_seq:
            self.held[seq] = decoded
            return []
        applied = [self._apply_decoded(decoded, seq, send)]
        while self.next_seq in self.held:
            applied.append(self._apply_decoded(self.held.pop(self.next_seq), self.next_seq, send))
        return applied

    def _release_held(self, send: bool) -> list[ShardReport]:
        """Apply every held batch in order across the gap before them (a new router: nothing will fill it)."""
        return [self._apply_decoded(self.held.pop(seq), seq, send) for seq in sorted(self.held)]

    def _apply_decoded(self, decoded: BatchFrame, seq: int | None, send: bool) -> ShardReport:
        started_s = time.perf_counter()
        report = replace(self.apply_batch(decoded.batch, decoded.number, decoded.base_pos),
                         targets=decoded.targets, seq=seq, halts_version=self.halts.version)
        if seq is not None:
            self.next_seq = seq + 1
            self.reported.add(seq, report)
        if send:
            self._send(report)
            self.batch_seconds.observe(time.perf_counter() - started_s)  # live only, not journal replay
        return report

    def apply_batch(self, batch: EventBatch, number: int, base_pos: int) -> ShardReport:
        ticks = batch.ticks
        mask, refusals = self.tick_screen.screen(ticks)
        kept_ticks = np.flatnonzero(mask)
        fill_pos = batch.fill_pos
        if refusals:
            kept_before = np.concatenate(([0], np.cumsum(mask)))
            fill_pos = [int(kept_before[p]) for p in fill_pos]
            ticks = keep_ticks(ticks, mask)
        # Fills for accounts hosted elsewhere travel in the shared batch frame; they are not ours to judge.
        fills, kept_pos, kept_fills = [], [], []
        for index, (fill, pos) in enumerate(zip(batch.fills, fill_pos, strict=True)):
            if fill.account not in self.engine.book_by_id:
                continue
            problem = self.fill_screen.problem(fill)
            if problem is not None:
                self.fill_screen.refused[problem[0]] += 1
                refusals.append(Refusal(fill.stream, fill.seq, *problem))
                continue
            self.fill_screen.note(fill)
            fills.append(fill)
            kept_pos.append(pos)
            kept_fills.append(index)
        keyed = self.engine.apply_keyed(EventBatch(ticks, fills, kept_pos, batch.marks))
        arrival = ArrivalPositions(batch.fill_pos, kept_ticks, kept_pos, kept_fills, base_pos)
        events = [
            (arrival(pos), self.config_index[event.account if isinstance(event, AlertEvent) else event.id],
             order, event)
            for pos, _book, order, event in keyed
        ]
        self.batches += 1
        self.ticks_applied += len(ticks)
        self.fills_applied += len(fills)
        # The batch's last event (a tick, or a fill that came after every tick) names aggregate breaches.
        watermark: Watermark = {"pos": base_pos + len(batch.ticks) + len(batch.fills) - 1}
        self.next_pos = max(self.next_pos, watermark["pos"] + 1)
        self.next_batch = max(self.next_batch, number + 1)
        if batch.fills and batch.fill_pos[-1] >= len(batch.ticks):
            last_fill = batch.fills[-1]
            watermark.update({"stream": last_fill.stream, "seq": last_fill.seq, "ts_ns": last_fill.ts_ns})
        elif len(batch.ticks):
            last = len(batch.ticks) - 1
            watermark.update({"stream": batch.ticks.streams[int(batch.ticks.stream[last])],
                              "seq": int(batch.ticks.seq[last]), "ts_ns": int(batch.ticks.ts_ns[last])})
        quoted = set(np.unique(ticks.symbol).tolist()) | set(batch.marks)
        return ShardReport(self.shard_id, number, len(ticks), len(fills), refusals, events,
                           self.engine.summary_columns(changed_only=True), watermark, self.mids(quoted))

    def apply_and_ack(self, frame: bytes) -> ShardAck:
        """:meth:`apply`, answering the sender with an acknowledgement instead of the whole report."""
        report = self.apply(frame)
        return ShardAck(report.shard, report.batch, report.ticks_applied, report.fills_applied,
                        report.refusals)

    def _publish_breaker(self, event: BreakerEvent) -> None:
        self.halts.note(event.id, event.state is BreakerState.ENGAGED)
        if self.supervisor is not None:
            self.supervisor.breaker_now.remote(event.id, event.state, event.reason, self.halts.version)
        if event.state is BreakerState.ENGAGED and self._arrived_s is not None:
            self.breach_to_halt_seconds.observe(time.perf_counter() - self._arrived_s)

    def watch_halts(self, known_version: int, timeout_s: float) -> Halts:
        """Long-poll for gates: this shard's engaged account breakers once newer than ``known_version``.

        Runs on its own threads (concurrency group ``HALTS_GROUP``, see ``supervisor.deploy``) beside the
        batch being applied, which wakes it from inside the batch. Only ever adds denials to a gate: releases,
        portfolio and global breakers and liveness come from the supervisor's view.
        """
        return self.halts.watch(known_version, timeout_s)

    def _send(self, report: ShardReport) -> None:
        if self.supervisor is not None:
            self.supervisor.report.remote(report)

    # ------------------------------------------------------------------ views and commands

    def mids(self, symbols: set[int] | None = None) -> dict[str, float]:
        """The latest mid of ``symbols`` (default: every symbol the shard has a quote for)."""
        names, marks = self.engine.symbol_names, self.engine.marks
        wanted = marks if symbols is None else [s for s in symbols if s in marks]
        return {names[s]: (marks[s][0] + marks[s][1]) / 2.0 for s in wanted}

    def summaries(self) -> SummaryColumns:
        """Every hosted account's figures (registration, views)."""
        return self.engine.summary_columns()

    def states(self) -> dict[str, dict[str, Any]]:
        return {account: state.to_dict() for account, state in self.engine.states().items()}

    def _journal_command(self, kind: str, account: str, now_ns: int, operator: str, reason: str) -> None:
        if self.journal is not None:
            self.journal.append({"k": kind, "account": account, "now_ns": now_ns, "operator": operator,
                                 "reason": reason})

    def _state(self, account: str) -> dict[str, Any]:
        book = self.engine.book(account)
        self.engine.sync()
        return book.state().to_dict()

    def engage(self, account: str, now_ns: int, operator: str, reason: str) -> ShardCommandAnswer:
        """Engage an account breaker by hand: the event, the breaker-change number, the account before and
        after."""
        before = self._state(account)  # an unknown account is refused before anything is journaled
        self._journal_command("engage", account, now_ns, operator, reason)
        event = self.engine.engage(account, now_ns, operator, reason)
        self.halts.note(account, True)
        return ShardCommandAnswer(event, None, self.halts.version, before, self._state(account))

    def reset(self, account: str, now_ns: int, operator: str, reason: str) -> ShardCommandAnswer:
        """Release an account breaker, or say why not; as :meth:`engage` (no event, and a refusal, if
        refused)."""
        before = self._state(account)
        event, refusal = self.engine.reset(account, now_ns, operator, reason)
        if event is not None:
            # Journaled once it is known to release (a refused reset changes nothing and replays as nothing).
            self._journal_command("reset", account, now_ns, operator, reason)
            self.halts.note(account, False)
        return ShardCommandAnswer(event, refusal, self.halts.version, before, self._state(account))

    def events_since(self, seq: int) -> list[KeyedEvent]:
        """The events of every batch from ``seq`` on among the last this shard keeps (``actors.kept_reports``)
        (replayed ones included)."""
        return self.reported.events_since(seq)

    def rejoin_state(self, from_batch: int, from_seq: int) -> RejoinState:
        """What a restarted supervisor needs, taken at one point between batches.

        ``from_batch``: the first batch it had not closed. When this shard still keeps every report from
        there on (``covered``), ``before`` holds its accounts' figures as of just before that batch and
        ``reports`` those reports: the supervisor closes its open batches with the figures each had, exactly
        as it would have. ``summaries`` (the figures now) serve when they are not covered. ``events``: those
        of every batch from sequence number ``from_seq`` on (reports it may never have journaled).
        """
        covered, before, reports = self.reported.from_batch(from_batch)
        return RejoinState(covered, before, reports,
                           self.engine.summary_columns(), self.numbering(), self.mids(),
                           self.events_since(from_seq), self.halts.version)

    def numbering(self) -> ShardNumbering:
        """Where this shard's sequence, arrival positions and batch numbers stand, the symbols its accounts
        hold (a new router routes them here; some were opened by fills, not by the config), and each tick
        stream's last sequence number and time (a new router refuses a replay of them itself, once)."""
        names = self.engine.symbol_names
        held = sorted({names[s] for book in self.engine.books for s in book.slot_symbols})
        screen = self.tick_screen
        streams = {name: (seq, screen.last_ts[name]) for name, seq in screen.last_seq.items()}
        return ShardNumbering(self.next_seq, self.next_pos, self.next_batch, tuple(held), streams)

    def resume(self) -> ShardNumbering:
        """A new router takes over (the service restarted, so the old router is gone): batches held for a gap
        it never filled are applied now, in order, as nothing will fill it; then :meth:`numbering`. Only a
        new router calls this: while the old one lives, the gap may still fill."""
        if self.held:
            self._arrived_s = time.perf_counter()  # what it releases arrives, in effect, now
            if self.journal is not None:
                self.journal.append({"k": "resume"})
            self._release_held(send=True)
        return self.numbering()

    def stats(self) -> dict[str, Any]:
        return {
            "shard": self.shard_id, "accounts": len(self.account_ids), "batches": self.batches,
            "ticks_applied": self.ticks_applied, "fills_applied": self.fills_applied,
            "refused": dict(self.tick_screen.refused + self.fill_screen.refused),
            "snapshots": self.snapshots,
            "journal_bytes": None if self.journal is None else self.journal.size,
            "started_ns": self.started_ns, "batch_seconds": self.batch_seconds.to_dict(),
            "breach_to_halt_seconds": self.breach_to_halt_seconds.to_dict(),
        }
