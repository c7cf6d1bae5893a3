"""The supervisor's side of the audit trail, of which it is the single writer.

Every record is journaled before it is written to the trail, and keyed: a supervisor that died between the
two writes the missing ones when it starts again, once. A failed write (a full disk) is counted and retried
at the next change, with the trail reopened (a torn line is repaired); gates are not held up by it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from riskcore.audit import AuditError, AuditTrail, event_record
from riskcore.messages import AuditStatus
from supervisor.eventlog import EventKey, audit_key

Waiting = tuple[str, str, dict[str, Any]]  # (key, kind, fields); fields["_ts_ns"]: the record's time


class AuditWriter:
    def __init__(self, path: str | None, fsync: bool, started_ns: int) -> None:
        """``path``: the trail (None: no trail, nothing is queued). ``started_ns`` keys this process's
        records."""
        self.path = path
        self.fsync = fsync
        self.started_ns = started_ns
        self.trail: AuditTrail | None = None
        self.waiting: list[Waiting] = []  # journaled, to be written to the trail (write)
        self.journaled: list[Waiting] = []  # read back from the journal, for a trail that may lack them
        self.failures = 0  # writes to the trail that failed; an alarm
        self.error: str | None = None
        self.made = 0

    def open(self, log: Iterable[tuple[EventKey, dict[str, Any]]]) -> None:
        """Open the trail and queue what the journal holds and the trail lacks: the log's events and the
        other records journaled before this process started."""
        if self.path is not None:
            self.trail = AuditTrail(self.path, fsync=self.fsync)
            written = self.trail.keys()
            for key, body in log:
                if audit_key(key) not in written:
                    self.event(key, body, {})
            self.waiting += [item for item in self.journaled if item[0] not in written]
        self.journaled.clear()

    def record(self, kind: str, fields: dict[str, Any], key: str = "") -> dict[str, Any] | None:
        """A record that is not an event of the log; returns the journal record to write first (None without
        a trail). Unkeyed records are keyed by this process and their number."""
        if self.path is None:
            return None
        if not key:
            self.made += 1
            key = f"{kind}:{self.started_ns}:{self.made}"
        self.waiting.append((key, kind, fields))
        return {"k": "audit", "key": key, "kind": kind, "fields": fields}

    def event(self, key: EventKey, body: dict[str, Any], extra: dict[str, Any]) -> None:
        """An event of the log (journaled as such): alert, breaker, limit or command; ``extra``: what only
        the trail keeps (states before and after, the command's action)."""
        if self.path is None:
            return
        kind, ts_ns, fields = event_record(body, extra)
        if ts_ns is not None:
            fields["_ts_ns"] = ts_ns
        self.waiting.append((audit_key(key), kind, fields))

    def replay(self, record: dict[str, Any]) -> None:
        self.journaled.append((record["key"], record["kind"], dict(record["fields"])))

    def records(self) -> list[dict[str, Any]]:
        """Records not in the trail yet, for a compacted journal (log events are derived from the log)."""
        return [{"k": "audit", "key": key, "kind": kind, "fields": fields}
                for key, kind, fields in self.waiting if not key.startswith("log:")]

    def write(self) -> None:
        """Write the waiting records; keyed records already in the trail are not written twice."""
        if self.path is None or not self.waiting:
            return
        try:
            if self.trail is None:
                self.trail = AuditTrail(self.path, fsync=self.fsync)
            while self.waiting:
                key, kind, fields = self.waiting[0]
                if not (key and self.trail.has_key(key)):
                    fields = dict(fields)
                    stamp = fields.pop("_ts_ns", None)
                    self.trail.append(kind, stamp, key=key or None, **fields)
                self.waiting.pop(0)
            self.error = None
        except (AuditError, OSError) as exc:
            self.failures += 1
            self.error = str(exc)
            if self.trail is not None:
                with contextlib.suppress(OSError):
                    self.trail.close()
            self.trail = None

    def status(self) -> AuditStatus:
        return {"failures": self.failures, "error": self.error, "waiting": len(self.waiting)}
