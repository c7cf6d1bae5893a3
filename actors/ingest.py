"""Ingest: where every feed's events enter riskmon, coalesced into batches and routed to the account shards.

An ingest actor takes frames from any number of TCP connections (``actors.feed_listener``) and events from
producers inside Ray (``RiskSystem.submit``), and coalesces what all of them sent into batches, screened once
per batch in arrival order. A batch closes at once when no batch is in flight (idle shards: waiting would only
add latency); while one is, it gathers what arrives and closes when the shards are idle again, when it holds
``batching.max_ticks`` ticks, or ``batching.max_delay_ms`` after its first event unless
``batching.max_in_flight`` batches per shard are unacknowledged. Columns handed over whole
(``submit_columns``) are a batch of their own. Each batch goes to the shards that need it (``actors.router``:
ticks by symbol, fills by account) as one frame. A frame's answer is given once every shard its events reached
has acknowledged the batch, and a shard acknowledges only what it has journaled: acknowledged means durable.
The answer counts the events accepted and lists the refusals, the router's and the shards' alike.

It runs on one asyncio loop (an async Ray actor, or a plain loop in a test): no locks. The shard handles and
the ``put`` of a large frame are injected, so the logic runs without Ray.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.arrival import keep_ticks
from actors.router import Router, drop_refused
from riskcore.config import RiskConfig
from riskcore.engine import TickColumns
from riskcore.errors import InputError
from riskcore.events import AccountEvent, Tick
from riskcore.ingest import Refusal
from riskcore.messages import ShardAck, ShardNumbering
from riskcore.wire import TickFrame, decode

REFUSALS_IN_ANSWER = 100  # a frame's answer lists at most this many refusals (all are counted and audited)


@dataclass(slots=True)
class Ticket:
    """One frame's (or one submit's) way through: its events, its refusals, the batches not yet
    acknowledged."""

    events: int
    refused: list[Refusal] = field(default_factory=list)
    batches_left: int = 0
    sealed: bool = False  # every piece of it is in a batch
    done: asyncio.Future[None] | None = None

    def settle_if_done(self) -> None:
        if self.sealed and self.batches_left == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def answer(self) -> dict[str, Any]:
        refused = [r.to_dict() for r in self.refused[:REFUSALS_IN_ANSWER]]
        return {"ok": True, "accepted": self.events - len(self.refused), "refused": refused, "error": None}


@dataclass(slots=True)
class Piece:
    """Events of one ticket, in arrival order, as they came (the batch screens them): ticks, and fills at
    tick positions."""

    ticket: Ticket
    ticks: TickColumns
    fills: list[AccountEvent]
    fill_pos: list[int]

    def holds(self, refusal: Refusal) -> bool:
        if any(f.stream == refusal.stream and f.seq == refusal.seq for f in self.fills):
            return True
        if refusal.stream not in self.ticks.streams:
            return False
        index = self.ticks.streams.index(refusal.stream)
        return bool(np.any((self.ticks.stream == index) & (self.ticks.seq == refusal.seq)))


def concat(pieces: Sequence[Piece]) -> tuple[TickColumns, list[AccountEvent], list[int]]:
    """Pieces as one batch, in arrival order (one table of stream names)."""
    if len(pieces) == 1:
        only = pieces[0]
        return only.ticks, only.fills, only.fill_pos
    names: dict[str, int] = {}
    parts: list[TickColumns] = []
    streams: list[np.ndarray] = []
    fills: list[AccountEvent] = []
    fill_pos: list[int] = []
    before = 0
    for piece in pieces:
        own = [names.setdefault(name, len(names)) for name in piece.ticks.streams]
        remap = np.array(own or [0], np.int32)
        parts.append(piece.ticks)
        streams.append(remap[piece.ticks.stream] if len(piece.ticks) else piece.ticks.stream)
        fills.extend(piece.fills)
        fill_pos.extend(before + p for p in piece.fill_pos)
        before += len(piece.ticks)
    ticks = TickColumns(
        np.concatenate([p.symbol for p in parts]), np.concatenate([p.bid for p in parts]),
        np.concatenate([p.ask for p in parts]), np.concatenate([p.ts_ns for p in parts]),
        np.concatenate([p.seq for p in parts]), np.concatenate(streams).astype(np.int32), tuple(names),
    )
    return ticks, fills, fill_pos


class Ingest:
    def __init__(self, config: RiskConfig, placement: Mapping[str, Sequence[str]], shards: Mapping[str, Any],
                 supervisor: Any = None, name: str = "riskmon",
                 resume: Mapping[str, ShardNumbering] | None = None,
                 put: Callable[[bytes], Any] = lambda frame: frame) -> None:
        """``shards``: handles whose ``apply_and_ack.remote(frame)`` returns an awaitable ``ShardAck``;
        ``supervisor``: told of refused input (counted and audited there); ``resume``: where each shard's
        numbering stands (a restarted service continues it)."""
        self.config = config
        self.name = name
        self.shards = shards
        self.supervisor = supervisor
        self.router = Router(config, placement, put=put,
                             send=lambda shard, ref: shards[shard].apply_and_ack.remote(ref))
        self.resume_from(resume or {})
        self.pending: list[Piece] = []
        self.pending_ticks = 0
        self.timer: asyncio.TimerHandle | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()  # frames, accepted, refused, frames_refused (TCP feeds)
        self.connections = 0
        self.shard_refusals: list[Refusal] = []
        self.ticks_applied = 0
        self._refusals_told = 0

    def resume_from(self, resume: Mapping[str, ShardNumbering]) -> None:
        """Continue the numbering where each shard stands (a restarted service or ingest)."""
        router = self.router
        router.shard_seq.update({sid: point.next_seq for sid, point in resume.items()})
        symbol_ids = self.config.symbol_ids()
        for sid, point in resume.items():  # symbols opened by fills before a restart are routed there too
            router.subscriptions[sid].update(symbol_ids[s] for s in point.symbols)
        router.position = max([p.next_pos for p in resume.values()] + [0])
        screen = router.tick_screen  # where each tick stream stood: a replay is refused here, once
        for point in resume.values():
            for stream, (seq, ts) in point.streams.items():
                screen.last_seq[stream] = max(seq, screen.last_seq.get(stream, seq))
                screen.last_ts[stream] = max(ts, screen.last_ts.get(stream, ts))
        router.batches = max([p.next_batch for p in resume.values()] + [0])

    # ------------------------------------------------------------------ taking events

    def take_frame(self, data: bytes) -> Ticket | dict[str, Any]:
        """One feed frame: its ticket (await its ``done``), or the answer of a frame refused whole."""
        try:
            decoded = decode(data, symbol_count=len(self.config.symbols))
            if not isinstance(decoded, (TickFrame, list)):
                raise InputError("bad_frame", "a feed sends ticks or fills frames, not batches")
        except InputError as exc:
            self.refuse_input("feed", exc.code, exc.message)
            self.counts.update(frames=1, frames_refused=1)
            return {"ok": False, "accepted": 0, "refused": [], "error": f"{exc.code}: {exc.message}"}
        self.counts.update(frames=1)
        if isinstance(decoded, TickFrame):
            return self.take_ticks(decoded)
        return self.take_events(decoded)

    def take_ticks(self, frame: TickFrame) -> Ticket:
        ticket = self._ticket(len(frame))
        ids = self.router.symbol_ids
        known = np.array([ids.get(name, -1) for name in frame.symbols], np.int64)
        sym = known[frame.sym] if len(frame) else np.zeros(0, np.int64)
        keep = sym >= 0
        for i in np.flatnonzero(~keep).tolist():
            name = frame.symbols[int(frame.sym[i])]
            refusal = self.router.tick_screen.refuse(frame.stream, int(frame.seq[i]), "unknown_symbol",
                                                     f"unknown symbol {name!r}")
            ticket.refused.append(refusal)
            self.router.refusals.append(refusal)
        columns = TickColumns(sym.astype(np.int32), frame.bid, frame.ask, frame.ts_ns, frame.seq,
                              np.zeros(len(frame), np.int32), (frame.stream,))
        if not keep.all():
            columns = keep_ticks(columns, keep)
        self._add(ticket, columns, [], [])
        return ticket

    def take_columns(self, ticks: TickColumns, fills: list[AccountEvent], fill_pos: list[int]) -> Ticket:
        """Columns from a producer that already holds them (fills at tick positions): one batch of their own,
        after what is pending, as the producer cut them (so a replay of the same columns closes aggregates at
        the same boundaries)."""
        ticket = self._ticket(len(ticks) + len(fills))
        self.close()
        self._add(ticket, ticks, fills, fill_pos)
        self.close()
        return ticket

    def take_events(self, events: Iterable[Tick | AccountEvent]) -> Ticket:
        """Ticks and fills in arrival order, cut into pieces of at most ``batching.max_ticks`` ticks."""
        events = list(events)
        ticket = self._ticket(len(events))
        limit = self.config.batching.max_ticks
        start, room = 0, max(1, limit - self.pending_ticks)  # batches close every max_ticks, as they fill
        while True:
            end, ticks = start, 0
            while end < len(events) and ticks < room:
                ticks += isinstance(events[end], Tick)
                end += 1
            columns, fills, fill_pos, refused = self.router.screen_events(events[start:end])
            ticket.refused.extend(refused)
            self._add(ticket, columns, fills, fill_pos, seal=end >= len(events))
            if end >= len(events):
                break
            start, room = end, limit
        return ticket

    def _ticket(self, events: int) -> Ticket:
        return Ticket(events, done=asyncio.get_running_loop().create_future())

    def _add(self, ticket: Ticket, ticks: TickColumns, fills: list[AccountEvent], fill_pos: list[int],
             seal: bool = True) -> None:
        """Queue a ticket's piece for the next batch; screening waits for the batch (once, not per frame)."""
        ticket.sealed = seal
        if len(ticks) or fills:
            ticket.batches_left += 1
            self.pending.append(Piece(ticket, ticks, fills, fill_pos))
            self.pending_ticks += len(ticks)
        batching = self.config.batching
        if self.pending_ticks >= batching.max_ticks or batching.max_delay_ms == 0 or not self.in_flight:
            self.close()  # full, or the shards are idle: waiting would only add latency
        elif self.pending and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(batching.max_delay_ms / 1000.0, self._on_timer)
        ticket.settle_if_done()

    def _on_timer(self) -> None:
        """``max_delay_ms`` after the batch's first event: it closes unless ``max_in_flight`` batches per
        shard are unacknowledged already (then the next acknowledgement closes it)."""
        self.timer = None
        if len(self.in_flight) < self.config.batching.max_in_flight * max(1, len(self.shards)):
            self.close()

    # ------------------------------------------------------------------ batches

    def close(self) -> None:
        """Close the pending batch: route it, and answer its tickets once its shards acknowledge it."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.pending:
            return
        pieces, self.pending, self.pending_ticks = self.pending, [], 0
        refs = self.router.send_screened(*self._screen(pieces))
        self._tell_refusals()
        if refs:
            task = asyncio.get_running_loop().create_task(self._acknowledged(pieces, refs))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        else:
            self._settle(pieces, [])

    def _screen(self, pieces: list[Piece]) -> tuple[TickColumns, list[AccountEvent], list[int]]:
        """The batch of ``pieces``, screened in arrival order; each refusal goes to the ticket it came in."""
        ticks, fills, fill_pos = concat(pieces)
        mask, refused = self.router.tick_screen.screen(ticks)
        if refused:
            starts = np.cumsum([0] + [len(p.ticks) for p in pieces])
            for row, refusal in zip(np.flatnonzero(~mask).tolist(), refused, strict=True):
                pieces[int(np.searchsorted(starts, row, side="right")) - 1].ticket.refused.append(refusal)
            ticks, fill_pos = drop_refused(ticks, mask, fill_pos)
        kept, kept_pos, fill_refused, refused_at = self.router.fill_screen.screen_indexed(fills, fill_pos)
        if fill_refused:  # each refusal goes to the ticket its fill came in
            owners = [p.ticket for p in pieces for _ in p.fills]
            for index, refusal in zip(refused_at, fill_refused, strict=True):
                owners[index].refused.append(refusal)
        refused.extend(fill_refused)
        self.router.refusals.extend(refused)
        return ticks, kept, kept_pos

    async def _acknowledged(self, pieces: list[Piece], refs: list[Awaitable[ShardAck]]) -> None:
        acks = await asyncio.gather(*refs)
        self._settle(pieces, list(acks))
        if not self.in_flight - {asyncio.current_task()}:
            self.close()  # the shards are idle again: what gathered meanwhile need not wait for the timer

    def _settle(self, pieces: list[Piece], acks: list[ShardAck]) -> None:
        seen: set[tuple[str, int, str]] = set()  # a tick refused at two shards is one refusal
        for ack in acks:
            self.ticks_applied += ack.ticks_applied
            for refusal in ack.refusals:
                key = (refusal.stream, refusal.seq, refusal.code)
                if key in seen:
                    continue
                seen.add(key)
                self.shard_refusals.append(refusal)
                holder = next((p.ticket for p in pieces if p.holds(refusal)), None)
                # A refusal of no single event (a frame the shard could not read) is every sender's.
                owners = [holder] if holder is not None else {id(p.ticket): p.ticket for p in pieces}.values()
                for ticket in owners:
                    ticket.refused.append(refusal)
        for piece in pieces:
            piece.ticket.batches_left -= 1
            piece.ticket.settle_if_done()

    async def room(self) -> None:
        """Back-pressure for producers inside Ray: wait while more than ``max_in_flight`` batches per shard
        are unacknowledged."""
        limit = self.config.batching.max_in_flight * max(1, len(self.shards))
        while len(self.in_flight) > limit:
            await asyncio.wait(set(self.in_flight), return_when=asyncio.FIRST_COMPLETED)

    async def drain(self) -> dict[str, int]:
        """Close what is pending and wait for every batch to be acknowledged; each shard's next batch
        number (what the supervisor must have seen reported)."""
        self.close()
        while self.in_flight:
            await asyncio.wait(set(self.in_flight))
        return dict(self.router.shard_seq)

    # ------------------------------------------------------------------ refusals and counts

    def _tell_refusals(self) -> None:
        """Refused before any shard: counted and audited by the supervisor."""
        told = self.router.refusals[self._refusals_told:]
        if told and self.supervisor is not None:
            self.supervisor.input_refused.remote(f"ingest of {self.name}", [r.to_dict() for r in told])
        self._refusals_told = len(self.router.refusals)

    def refuse_input(self, source: str, code: str, message: str) -> None:
        """Input refused whole before it could be read (a malformed frame)."""
        if self.supervisor is not None:
            refusal = {"stream": source, "seq": -1, "code": code, "message": message}
            self.supervisor.input_refused.remote(source, [refusal])

    def feed_stats(self) -> dict[str, int]:
        return {"connections": self.connections, **self.counts}

    def stats(self) -> dict[str, Any]:
        return {"batches": self.router.batches, "ticks_applied": self.ticks_applied,
                "shard_seq": dict(self.router.shard_seq), "feeds": self.feed_stats()}

    def refusals(self) -> list[Refusal]:
        return self.router.refusals + self.shard_refusals
