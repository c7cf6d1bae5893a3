"""The supervisor's journal: what a call changed is written before anyone is told of it, and compacted.

It holds portfolio and global breaker changes, the event log, the shard wiring, which batches each shard
has reported, each batch closed with the day peaks, and audit records not yet in the trail. A restarted
supervisor rebuilds from it (``Supervisor`` dispatches each record kind to the part it belongs to).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskcore.errors import RiskmonError
from riskcore.journal import Journal


class SupervisorJournal:
    def __init__(self, path: str | None, fsync: bool, snapshot_bytes: int) -> None:
        """``path``: None for a supervisor whose state does not outlive its process (records are dropped)."""
        self.journal = None if path is None else Journal(path, fsync)
        self.waiting: list[dict[str, Any]] = []  # records of the call under way, written by flush
        self.error: str | None = None  # set once a write failed: gates are refused from then on (fail closed)
        self.snapshot_bytes = snapshot_bytes
        self.compact_at = snapshot_bytes
        self.compactions = 0

    @staticmethod
    def read(path: str | None) -> list[dict[str, Any]]:
        return [] if path is None else Journal.read(path)

    def add(self, record: dict[str, Any]) -> None:
        if self.journal is not None:
            self.waiting.append(record)

    def flush(self) -> None:
        """Write the waiting records, in order. A failed write raises: nothing more can be made durable."""
        if self.journal is None:
            return
        try:
            while self.waiting:
                self.journal.append(self.waiting[0])
                self.waiting.pop(0)
        except OSError as exc:
            self.error = f"journal write failed: {exc}"
            raise RiskmonError(self.error) from None

    def compact_if_due(self, state: Callable[[], list[dict[str, Any]]]) -> None:
        """Rewrite the journal as ``state()`` (its whole effect in as few records as replay needs) once it
        passes its threshold. Again only once it has doubled past its compacted size: a state that is itself
        over the threshold is not rewritten on every change."""
        if self.journal is not None and self.journal.size > self.compact_at:
            self.journal.rewrite(state())
            self.compactions += 1
            self.compact_at = max(self.snapshot_bytes, 2 * self.journal.size)
