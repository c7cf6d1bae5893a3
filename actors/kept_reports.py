"""What a shard keeps of the batches it has reported, for a supervisor that restarts.

The events of the last ``RECENT_REPORTS`` batches by sequence number (a restarted supervisor asks for those
its journal lacks: a report it received but died before writing, or one lost in flight), the whole reports
of the last ``KEPT_REPORTS`` batches, and every account's figures as of just before the oldest kept one. A
restarted shard sends the kept reports again, so those the supervisor never got complete their batch with
their own figures; a restarted supervisor takes them, and the figures before them, to close its open batches.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import fields as dataclass_fields
from typing import Any

from riskcore.aggregate import Aggregator, SummaryColumns
from riskcore.config import RiskConfig
from riskcore.events import AlertEvent, BreakerEvent
from riskcore.messages import KeyedEvent, ShardReport

RECENT_REPORTS = 4096
KEPT_REPORTS = 64


def _event_row(event: AlertEvent | BreakerEvent) -> list[Any]:
    """An event as msgpack data (a snapshot's recent events): its kind, then its fields in order."""
    kind = "alert" if isinstance(event, AlertEvent) else "breaker"
    return [kind, *(getattr(event, f.name) for f in dataclass_fields(event))]


def _event_from_row(row: list[Any]) -> AlertEvent | BreakerEvent:
    kind, *values = row
    return AlertEvent(*values) if kind == "alert" else BreakerEvent(*values)


class KeptReports:
    def __init__(self, config: RiskConfig, figures: SummaryColumns) -> None:
        """``figures``: every hosted account's figures now (none of their batches is kept yet)."""
        self.config = config
        self.recent: deque[tuple[int, list[KeyedEvent]]] = deque(maxlen=RECENT_REPORTS)
        self.kept: deque[ShardReport] = deque()  # oldest first
        self.base = Aggregator(config)  # every account's figures as of just before the oldest kept report
        self.base_batch = 0  # every router batch numbered below this is folded into ``base``
        self.restart(figures, 0)

    def restart(self, figures: SummaryColumns, next_batch: int) -> None:
        """Figures as of now (``next_batch`` is the next batch) are where the kept reports start again."""
        self.kept.clear()
        self.base = Aggregator(self.config)
        self.base.update(figures)
        self.base_batch = next_batch

    def add(self, seq: int, report: ShardReport) -> None:
        self.recent.append((seq, report.events))
        self.kept.append(report)
        if len(self.kept) > KEPT_REPORTS:
            oldest = self.kept.popleft()
            self.base.update(oldest.summaries)
            self.base_batch = oldest.batch + 1

    def events_since(self, seq: int) -> list[KeyedEvent]:
        return [e for s, events in self.recent if s >= seq for e in events]

    def from_batch(self, batch: int) -> tuple[bool, SummaryColumns | None, list[ShardReport]]:
        """Whether every report from router batch ``batch`` on is kept; if so the figures as of just before
        it, and those reports."""
        if self.base_batch > batch:
            return False, None, [r for r in self.kept if r.batch >= batch]
        as_of = copy.deepcopy(self.base)
        for report in self.kept:
            if report.batch < batch:
                as_of.update(report.summaries)
        return True, as_of.columns(), [r for r in self.kept if r.batch >= batch]

    def snapshot(self) -> list[Any]:
        """The recent events as msgpack data (a shard's snapshot)."""
        return [[seq, [[pos, index, order, *_event_row(event)] for pos, index, order, event in events]]
                for seq, events in self.recent]

    def restore(self, rows: list[Any], figures: SummaryColumns, next_batch: int) -> None:
        self.recent.clear()
        self.recent.extend(
            (seq, [(pos, index, order, _event_from_row(row)) for pos, index, order, *row in events])
            for seq, events in rows)
        self.restart(figures, next_batch)
