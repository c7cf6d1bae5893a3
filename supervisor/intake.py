"""Report intake: a shard's report, its events at once, its figures once its whole batch has reported.

Alert and breaker changes are recorded (and pushed to gates) the moment they arrive. Summaries are applied
to the aggregates batch by batch, in the router's order (``supervisor.batches``), and each closed batch's
watermark is where portfolio and firm limits are judged (``supervisor.upper``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from riskcore.aggregate import Aggregator, SummaryColumns
from riskcore.audit import refusal_summary
from riskcore.config import RiskConfig
from riskcore.events import BreakerEvent
from riskcore.messages import KeyedEvent, RejoinState, ShardReport, Watermark
from riskcore.states import BreakerState, Scope
from supervisor.account_breakers import AccountBreakerTable
from supervisor.batches import BatchCloser, ReportedSequences, closed_record
from supervisor.recorder import Recorder
from supervisor.upper import UpperBreakers
from supervisor.wiring import Wiring


class ReportIntake:
    def __init__(self, config: RiskConfig, aggregator: Aggregator, upper: UpperBreakers,
                 account_breakers: AccountBreakerTable, recorder: Recorder, wiring: Wiring) -> None:
        self.config = config
        self.aggregator = aggregator
        self.upper = upper
        self.account_breakers = account_breakers
        self.recorder = recorder
        self.events = recorder.events
        self.wiring = wiring
        self.reported = ReportedSequences()
        self.batches = BatchCloser()
        self.refused: Counter[str] = Counter()
        self.reports = 0  # distinct shard batches reported (a re-delivered batch's report counts once)
        self.mids: dict[str, float] = {}
        self.breaker_changed = False  # a breaker changed since the owner last published: gates must hear
        self.paused = False  # batches close only once a restarted supervisor has its figures back

    def take(self, report: ShardReport) -> None:
        # Every batch the shard's recovery covers, unless its own report came (now or before).
        covered = report.recovered_upto >= 0 and self.reported.below(report.shard) > report.recovered_upto
        taken = self.reported.take(report)
        if taken is None:
            return  # reported already (the shard restarted and the batch was delivered again)
        newly, reported = taken
        self.reports += newly
        for refusal in report.refusals:
            self.refused[refusal.code] += 1
        if report.refusals:  # keyed by batch: the trail writer skips one it already has (a replayed report)
            key = "" if report.seq is None else f"refused:{report.shard}:{report.seq}"
            self.recorder.audit_record("rejected_input", {
                "source": f"shard {report.shard}", "batch": report.batch,
                **refusal_summary(r.to_dict() for r in report.refusals)}, key)
        for keyed in report.events:
            self.take_event(keyed, report.halts_version)
        if reported is not None:  # journaled after the report's events, never before them
            self.recorder.journal.add(reported)
        if report.recovered_upto >= 0:
            if not covered:
                # Reports lost beyond those sent again: the shard's figures as of everything it has applied,
                # and the batches it applied while replaying count as reported by it.
                self.apply([report])
                caught_up = self.batches.caught_up
                caught_up[report.shard] = max(caught_up.get(report.shard, 0), report.recovered_batch)
                self.close_complete()
            # The resent reports' breaker news is older than any the supervisor heard since (an operator's
            # reset): the shard's breakers as they stand now have the last word.
            self.take_breakers(report.summaries, report.halts_version)
        elif report.targets and report.batch < self.batches.next_batch:
            # Its batch closed without it (the shard was gone): the figures are still the newest we have.
            self.apply([report])
        elif report.targets:
            self.batches.hold(report)
            self.close_complete()
        elif report.batch >= 0:
            self.apply([report])

    def take_event(self, keyed: KeyedEvent, version: int) -> None:
        """An account's event, kept once by its key (a shard that restarted sends again what it replayed);
        a breaker change also moves the breaker table."""
        pos, account_index, order, event = keyed
        if self.events.take((pos, account_index, order)):
            self.recorder.record((pos, account_index, order), event)
            if isinstance(event, BreakerEvent):
                self.set_account_breaker(event.id, event.state, event.reason, version)

    def take_breakers(self, columns: SummaryColumns, version: int) -> None:
        """Account breakers as their shard holds them now (after a restart, the log may lack the change),
        numbered with the shard's breaker-change number as of these figures, so newer news still wins."""
        for index, engaged in zip(columns.index.tolist(), columns.engaged.tolist(), strict=True):
            account = self.config.accounts[index].id
            if engaged != self.account_breakers.engaged(account):
                self.set_account_breaker(account, BreakerState.ENGAGED if engaged else BreakerState.SAFE,
                                         "engaged, as its shard holds it" if engaged else "", version)

    def set_account_breaker(self, account: str, state: BreakerState, reason: str, version: int = -1) -> None:
        """``version``: the shard's breaker-change number as of the news (-1: unnumbered)."""
        if self.account_breakers.set(account, state, reason, version):
            self.breaker_changed = True
            # The breaker counts per portfolio and firm come from the summaries: keep them in step at once.
            self.aggregator.set_engaged(account, state == BreakerState.ENGAGED)

    def rejoin(self, answered: dict[str, tuple[Any, RejoinState]]) -> None:
        """A restarted supervisor's shards, as they answered: close the open batches with the figures they
        had (aggregates, day peaks and limit events as if it had not died); if some shard no longer keeps
        every report from there on, every shard's figures as of now, and the batches up to now close."""
        self.batches.gone |= set(self.wiring.names) - set(answered)
        exact = all(state.covered for _handle, state in answered.values())
        for sid, (_handle, state) in answered.items():
            self.mids.update(state.mids)  # every mark, not only those the next batches quote (price collars)
            # Reports received but not yet journaled when the supervisor died, or lost in flight: their
            # events, breaker changes applied in order (the shard's state below has the last word).
            for keyed in sorted(state.events, key=lambda e: e[:3]):
                self.take_event(keyed, -1)
            self.aggregator.update(state.before if exact and state.before is not None else state.summaries)
            if exact:
                for report in state.reports:  # batches it had open: closed later, in order, as they were
                    self.batches.hold(report)
            self.take_breakers(state.summaries, state.halts_version)
            self.reported.through(sid, state.numbering.next_seq)
            self.recorder.journal.add({"k": "reported", "shard": sid, "through": state.numbering.next_seq})
        if not exact:
            upto = max([s.numbering.next_batch for _h, s in answered.values()] + [self.batches.next_batch])
            for reports in self.batches.open_before(upto):  # came in while rejoining
                self.apply(reports)

    def close_complete(self) -> None:
        if self.paused:
            return
        first = self.batches.next_batch
        for reports in self.batches.closable():
            self.apply(reports)
        if self.batches.next_batch != first:  # a restart resumes here, with the day peaks these batches left
            self.recorder.journal.add(closed_record(self.batches.next_batch, self.aggregator))

    def apply(self, reports: list[ShardReport]) -> None:
        """The figures of one batch's reports; then the limits of every scope they touched, and the firm's."""
        touched: set[str] = set()
        for report in reports:
            # Breaker counts come from the supervisor's own states (an operator may have acted since).
            touched |= self.aggregator.update(report.summaries)
            self.mids.update(report.mids)
        if not reports:
            return
        mark = reports[0].watermark  # every shard derives the same watermark from the same frame
        if "pos" in mark:
            self.events.last_pos = max(self.events.last_pos, int(mark["pos"]))
        if "ts_ns" in mark:
            for portfolio in sorted(touched):
                self._judge(Scope.PORTFOLIO, portfolio, mark)
            self._judge(Scope.GLOBAL, "firm", mark)

    def _judge(self, scope: Scope, target: str, mark: Watermark) -> None:
        """A portfolio's or the firm's limits at a batch's watermark: limit events, engage, auto-reset."""
        breaker, limits = self.upper.breaker(scope, target)
        is_firm = scope is Scope.GLOBAL
        row = len(self.config.portfolios) if is_firm else self.aggregator.row(target)
        if (not breaker.engaged and not self.aggregator.may_breach(row, limits)
                and not self.upper.in_breach((scope, target))):
            return  # nothing breached, nothing to clear, nothing to release
        outcome = self.upper.check(self.aggregator.aggregate(row), limits, mark)
        pos, event_row = int(mark["pos"]), self.events.limit_row + int(is_firm)
        for body in outcome.limit_events:
            self.recorder.record(self.events.next_key(pos, event_row), body)
        for record in outcome.records:
            self.recorder.journal.add(record)
        if outcome.breaker_event is not None:
            self.push_upper()
            self.recorder.record(self.events.next_key(pos, event_row), outcome.breaker_event)

    def push_upper(self) -> None:
        """Portfolio or global breaker changed: gates hear at once (the long poll wakes)."""
        self.breaker_changed = True
