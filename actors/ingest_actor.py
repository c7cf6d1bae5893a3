"""The ingest actor: an :class:`~actors.ingest.Ingest` with its TCP listener, as one async Ray actor
(``supervisor.deploy`` makes it one). Producers inside Ray call ``submit`` / ``submit_columns``; feeds over
TCP connect to the address ``listen`` returns; both go the same way into the same batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actors.feed_listener import FeedListener
from actors.ingest import Ingest
from riskcore.config import RiskConfig
from riskcore.engine import TickColumns
from riskcore.events import AccountEvent, Tick
from riskcore.ingest import Refusal
from riskcore.messages import ShardNumbering

FEED_REPORT_S = 1.0  # how often the supervisor hears what the feeds sent (status, metrics)


class IngestActor:
    def __init__(self, config: RiskConfig, placement: Mapping[str, Sequence[str]], shards: Mapping[str, Any],
                 supervisor: Any, name: str, resume: Mapping[str, ShardNumbering],
                 put: Callable[[bytes], Any]) -> None:
        self.name = name
        self.ingest = Ingest(config, placement, shards, supervisor, name, resume, put)
        self.listener = FeedListener(self.ingest)
        self.reporter: asyncio.Task[None] | None = None
        self.submits: dict[str, int] = {}  # each producer's next submit number
        self.held: dict[str, dict[int, Callable[[], object]]] = {}  # submits that came before their turn

    async def listen(self, host: str, port: int) -> int:
        bound = await self.listener.start(host, port)
        if self.reporter is None and self.ingest.supervisor is not None:
            self.reporter = asyncio.get_running_loop().create_task(self._report_feeds())
        return bound

    async def stop_listening(self) -> dict[str, int]:
        """No new frames; what was taken is routed and acknowledged; the feeds' last counts."""
        await self.listener.stop()
        await self.ingest.drain()
        if self.reporter is not None:
            self.reporter.cancel()
            self.reporter = None
        self._tell_feeds()
        return self.ingest.feed_stats()

    async def _report_feeds(self) -> None:
        while True:
            await asyncio.sleep(FEED_REPORT_S)
            self._tell_feeds()

    def _tell_feeds(self) -> None:
        self.ingest.supervisor.note_feeds.remote(f"{self.name} feeds", self.ingest.feed_stats())

    async def submit(self, producer: str, number: int, events: list[Tick | AccountEvent]) -> None:
        """A producer's ``number``-th submit (from 0): events in arrival order. Returns once batched (or held
        until the submits numbered before it arrive) and there is room for more."""
        self._in_order(producer, number, lambda: self.ingest.take_events(events))
        await self.ingest.room()

    async def submit_columns(self, producer: str, number: int, ticks: TickColumns,
                             fills: list[AccountEvent], fill_pos: list[int]) -> None:
        self._in_order(producer, number, lambda: self.ingest.take_columns(ticks, fills, fill_pos))
        await self.ingest.room()

    def _in_order(self, producer: str, number: int, take: Callable[[], object]) -> None:
        """An async actor may start one producer's calls out of order: take each in the producer's order,
        holding any that comes early until those before it have come."""
        held = self.held.setdefault(producer, {})
        held[number] = take
        while self.submits.get(producer, 0) in held:
            due = self.submits.get(producer, 0)
            self.submits[producer] = due + 1
            held.pop(due)()

    async def drain(self) -> dict[str, int]:
        return await self.ingest.drain()

    def stats(self) -> dict[str, Any]:
        return self.ingest.stats()

    def refusals(self) -> list[Refusal]:
        return self.ingest.refusals()
