"""Which batches each shard has reported, and the batch-ordered close of the aggregates.

Reports of one router batch come from every shard it went to, in any order. Their figures wait here until
the batch is complete (every target has reported, or is gone for good, or rebuilt past it) and close in the
router's order, so aggregate figures and breaches depend on batch boundaries only, never on which shard
happened to report first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from riskcore.aggregate import Aggregator
from riskcore.messages import ShardReport


class ReportedSequences:
    """Per shard: every batch of its sequence below a number is reported, and which above it are."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, set[int]]] = {}  # shard -> (all below this seen, those seen above)

    def below(self, shard: str) -> int:
        """The first batch of ``shard``'s sequence not reported yet."""
        return self.seen.get(shard, (0, set()))[0]

    def mark(self, shard: str, seq: int) -> bool:
        """Note batch ``seq`` of ``shard`` as reported; False if it already was."""
        below, above = self.seen.get(shard, (0, set()))
        if seq < below or seq in above:
            return False
        above.add(seq)
        self.seen[shard] = self._advanced(below, above)
        return True

    def through(self, shard: str, next_seq: int) -> None:
        """Every batch of ``shard`` below ``next_seq`` counts as reported (its figures came another way)."""
        below, above = self.seen.get(shard, (0, set()))
        below = max(below, next_seq)
        self.seen[shard] = self._advanced(below, {s for s in above if s >= below})

    @staticmethod
    def _advanced(below: int, above: set[int]) -> tuple[int, set[int]]:
        while below in above:
            above.discard(below)
            below += 1
        return below, above

    def take(self, report: ShardReport) -> tuple[int, dict[str, Any] | None] | None:
        """Note the batches ``report`` reports: how many it newly reports and the journal record to write
        (after its events), or None if it was reported already (delivered again after a restart). A
        recovery report reports every batch its replay covers; a report without a sequence number, itself."""
        shard = report.shard
        if report.recovered_upto >= 0:
            newly = sum(self.mark(shard, seq) for seq in range(report.recovered_upto + 1))
            return newly, {"k": "reported", "shard": shard, "through": report.recovered_upto + 1}
        if report.seq is None:
            return 1, None
        if self.mark(shard, report.seq):
            return 1, {"k": "reported", "shard": shard, "seq": report.seq}
        return None

    def replay(self, record: dict[str, Any]) -> None:
        if "through" in record:
            self.through(record["shard"], record["through"])
        else:
            self.mark(record["shard"], record["seq"])

    def records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for shard, (below, above) in sorted(self.seen.items()):
            records.append({"k": "reported", "shard": shard, "through": below})
            records += [{"k": "reported", "shard": shard, "seq": seq} for seq in sorted(above)]
        return records


class BatchCloser:
    def __init__(self) -> None:
        self.pending: dict[int, dict[str, ShardReport]] = {}  # batch -> shard -> its report
        self.targets_of: dict[int, tuple[str, ...]] = {}  # batch -> every shard it went to
        self.next_batch = 0  # the first batch not closed
        # Dead for good (not restartable): batches close without them. A restarting shard's batches wait for
        # it (its journal brings it back with every batch it had), so aggregates stay exact through a restart.
        self.gone: set[str] = set()
        self.caught_up: dict[str, int] = {}  # a shard rebuilt from its journal applied every batch below this

    def hold(self, report: ShardReport) -> None:
        """A report whose batch is open: it waits for the rest of its batch (kept once per shard)."""
        self.pending.setdefault(report.batch, {}).setdefault(report.shard, report)
        self.targets_of.setdefault(report.batch, report.targets)

    def complete(self, batch: int) -> bool:
        got = self.pending.get(batch, {})
        return all(shard in got or shard in self.gone or batch < self.caught_up.get(shard, 0)
                   for shard in self.targets_of[batch])

    def closable(self) -> Iterator[list[ShardReport]]:
        """Close every batch now complete, in order, yielding each one's reports (in target order)."""
        while True:
            targets = self.targets_of.get(self.next_batch)
            if targets is None:
                # Nothing heard of this batch yet. Only if its shards may all be dead, and a later batch is
                # complete, is it skipped; otherwise it is on its way and later batches wait for it.
                if self.gone and any(self.complete(b) for b in self.targets_of if b > self.next_batch):
                    self.next_batch += 1
                    continue
                if self.next_batch < max(self.caught_up.values(), default=0):
                    # A rebuilt shard applied it; its report may be lost. Any other report of it that comes
                    # later is applied as it arrives (its batch has closed).
                    self.next_batch += 1
                    continue
                return
            if not self.complete(self.next_batch):
                return
            got = self.pending.pop(self.next_batch, {})
            del self.targets_of[self.next_batch]
            self.next_batch += 1
            yield [got[shard] for shard in targets if shard in got]

    def open_before(self, batch: int) -> Iterator[list[ShardReport]]:
        """Count every batch below ``batch`` as closed, yielding the reports held for those still open."""
        self.next_batch = max(self.next_batch, batch)
        for number in sorted(b for b in self.pending if b < self.next_batch):
            self.targets_of.pop(number, None)
            yield list(self.pending.pop(number).values())


def closed_record(next_batch: int, aggregator: Aggregator) -> dict[str, Any]:
    """Where a restart resumes: the first open batch, with the day peaks the closed ones left."""
    return {"k": "closed", "next_batch": next_batch, "peak": aggregator.peak.tolist(),
            "peak_sod": aggregator.peak_sod.tolist()}


def replay_closed(record: dict[str, Any], closer: BatchCloser, aggregator: Aggregator) -> None:
    closer.next_batch = record["next_batch"]
    aggregator.peak = np.asarray(record["peak"], np.float64)
    aggregator.peak_sod = np.asarray(record["peak_sod"], np.float64)
