"""Where every change the supervisor makes is written down: the event log, the journal, the audit trail.

An event goes into the log, its journal record and its audit record together; the journal is written
before the trail and before anyone hears of the change (``flush``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskcore.events import AlertEvent, BreakerEvent
from supervisor.audit_writer import AuditWriter
from supervisor.commands import CommandBook
from supervisor.durability import SupervisorJournal
from supervisor.eventlog import EventKey, EventLog


class Recorder:
    def __init__(self, events: EventLog, commands: CommandBook, journal: SupervisorJournal,
                 audit: AuditWriter) -> None:
        self.events = events
        self.commands = commands
        self.journal = journal
        self.audit = audit

    def record(self, key: EventKey, event: AlertEvent | BreakerEvent | dict[str, Any],
               audit: dict[str, Any] | None = None) -> None:
        """Log an event (an operator command's is remembered in the command book); ``audit``: what only the
        trail keeps of it."""
        body = event if isinstance(event, dict) else event.to_dict()
        self.commands.note(body)
        self.journal.add(self.events.add(key, body))
        self.audit.event(key, body, audit or {})

    def audit_record(self, kind: str, fields: dict[str, Any], key: str = "") -> None:
        """A record for the trail that is not an event of the log: journaled first."""
        record = self.audit.record(kind, fields, key)
        if record is not None:
            self.journal.add(record)

    def flush(self, state: Callable[[], list[dict[str, Any]]]) -> None:
        """Write the journal, then the trail; compact the journal to ``state()`` when it is due."""
        self.journal.flush()
        self.audit.write()
        self.journal.compact_if_due(state)
