"""The event log: every alert, breaker, limit and operator-command event, each kept once by its key.

A key is ``(arrival position, row, order)``: an account's events carry their config index as the row,
portfolio and firm events come after every account (``limit_row``), operator commands after those
(``command_row``), so sorting by key gives stream order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

EventKey = tuple[int, int, int]


def event_kind(body: dict[str, Any]) -> str:
    """What an entry is counted as (metrics): ``alert:<to level>``, ``breaker:<scope>:<state>``, or its type
    (``limit``, ``command``)."""
    kind = str(body.get("type", "event"))
    if kind == "alert":
        return f"alert:{body.get('to')}"
    if kind == "breaker":
        return f"breaker:{body.get('scope')}:{body.get('state')}"
    return kind


def audit_key(key: EventKey | list[int]) -> str:
    """The audit trail's key of a logged event (a restarted supervisor writes the ones the trail lacks)."""
    return "log:" + ":".join(str(int(k)) for k in key)


class EventLog:
    def __init__(self, accounts: int) -> None:
        """``accounts``: how many accounts the config has (rows below it are accounts')."""
        self.entries: list[tuple[EventKey, dict[str, Any]]] = []
        self.keys: set[EventKey] = set()  # account events taken from shards (a resent one is known)
        self.counts: Counter[str] = Counter()  # entries by event_kind; rebuilt with the log on a restart
        self.last_pos = 0  # the highest arrival position seen: where operator commands are placed
        self.limit_row = accounts
        self.command_row = accounts + 2

    def __len__(self) -> int:
        return len(self.entries)

    def next_key(self, pos: int, row: int) -> EventKey:
        return (pos, row, len(self.entries))

    def command_key(self) -> EventKey:
        return self.next_key(self.last_pos, self.command_row)

    def add(self, key: EventKey, body: dict[str, Any]) -> dict[str, Any]:
        """Log an event; returns its journal record."""
        self.entries.append((key, body))
        self.counts[event_kind(body)] += 1
        return {"k": "log", "key": list(key), "body": body}

    def take(self, key: EventKey) -> bool:
        """Claim an account event's key; False if it was taken before (the event is already logged)."""
        if key in self.keys:
            return False
        self.keys.add(key)
        return True

    def replay(self, record: dict[str, Any]) -> dict[str, Any]:
        """A journaled ``log`` record back in the log; returns its body."""
        key: EventKey = (int(record["key"][0]), int(record["key"][1]), int(record["key"][2]))
        body: dict[str, Any] = record["body"]
        self.add(key, body)
        self.keys.add(key)
        self.last_pos = max(self.last_pos, key[0])
        return body

    def records(self) -> list[dict[str, Any]]:
        return [{"k": "log", "key": list(key), "body": body} for key, body in self.entries]

    def in_order(self) -> list[dict[str, Any]]:
        return [body for _key, body in sorted(self.entries, key=lambda item: item[0])]
