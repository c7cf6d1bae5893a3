"""Routing: ticks by symbol to the shards whose accounts hold it, fills by account.

The router is the sequencer: it numbers every event in arrival order, screens
it, cuts batches (on size), and sends each batch as one msgpack frame to the
shards that need it — one ``put`` shared by reference, not a copy per shard.
Ray is injected (``put`` / ``send``) so the routing logic is testable without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from actors.arrival import keep_ticks
from riskcore.config import RiskConfig
from riskcore.engine import EventBatch, TickColumns
from riskcore.events import AccountEvent, Cash, Fill, Tick
from riskcore.ingest import MAX_NAME, FillScreen, Refusal, TickScreen
from riskcore.wire import MAX_FRAME_BYTES, encode_batch


def place_accounts(config: RiskConfig) -> dict[str, list[str]]:
    """Shard id -> account ids, ``accounts_per_actor`` at a time, in config order."""
    per = config.placement.accounts_per_actor
    ids = [spec.id for spec in config.accounts]
    return {f"shard-{n:04d}": ids[i : i + per] for n, i in enumerate(range(0, len(ids), per))}


class Router:
    def __init__(
        self,
        config: RiskConfig,
        placement: Mapping[str, Sequence[str]],
        send: Callable[[str, Any], Any],
        put: Callable[[bytes], Any] = lambda frame: frame,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        """``max_frame_bytes``: the largest frame a shard decodes; a batch that would encode larger is cut in
        two (a shard that refused a frame could never apply the batches numbered after it in its sequence)."""
        self.config = config
        self.max_frame_bytes = max_frame_bytes
        self.symbol_ids = config.symbol_ids()
        self.shard_of = {account: shard for shard, accounts in placement.items() for account in accounts}
        self.subscriptions: dict[str, set[int]] = {shard: set() for shard in placement}
        for spec in config.accounts:
            if spec.id in self.shard_of:
                for pos in spec.positions:
                    self.subscriptions[self.shard_of[spec.id]].add(self.symbol_ids[pos.symbol])
        self.send = send
        self.put = put
        self.marks: dict[int, tuple[float, float]] = {}
        self.tick_screen = TickScreen()
        self.fill_screen = FillScreen(self.shard_of, self.symbol_ids)
        self.refusals: list[Refusal] = []
        self.batches = 0
        self.position = 0  # arrival number of the next event
        self.sent = 0  # shard calls made (each yields one report)
        self.shard_seq = dict.fromkeys(placement, 0)  # the next batch number in each shard's own sequence

    def route(self, events: Iterable[Tick | AccountEvent]) -> list[Any]:
        """Screen, batch and send events; return the handles of the shard calls made."""
        handles: list[Any] = []
        pending: list[Tick | AccountEvent] = []
        ticks_in_batch = 0
        for event in events:
            pending.append(event)
            if isinstance(event, Tick):
                ticks_in_batch += 1
                if ticks_in_batch >= self.config.batching.max_ticks:
                    handles.extend(self._send_batch(pending))
                    pending, ticks_in_batch = [], 0
        if pending:
            handles.extend(self._send_batch(pending))
        return handles

    def _send_batch(self, events: list[Tick | AccountEvent]) -> list[Any]:
        columns, fills, fill_pos, _ = self.screen_events(events)
        fills, fill_pos, refused = self.fill_screen.screen(fills, fill_pos)
        self.refusals.extend(refused)
        return self.send_columns(columns, fills, fill_pos)

    def screen_events(self, events: Sequence[Tick | AccountEvent],
                      ) -> tuple[TickColumns, list[AccountEvent], list[int], list[Refusal]]:
        """Events in arrival order as tick columns (ticks of an unknown symbol refused) and fills at tick
        positions (the fills as they came: the fill screen judges them); the refusals, also kept in
        ``refusals``."""
        ticks: list[Tick] = []
        fills: list[AccountEvent] = []
        fill_pos: list[int] = []
        refused: list[Refusal] = []
        for event in events:
            if isinstance(event, (Fill, Cash)):
                fills.append(event)
                fill_pos.append(len(ticks))
            elif event.symbol not in self.symbol_ids:
                refused.append(self.tick_screen.refuse(event.stream, event.seq, "unknown_symbol",
                                                       f"unknown symbol {event.symbol!r}"))
            else:
                ticks.append(event)
        self.refusals.extend(refused)
        columns = TickColumns.from_ticks(ticks, self.symbol_ids) if ticks else TickColumns.empty()
        return columns, fills, fill_pos, refused

    def send_columns(self, ticks: TickColumns, fills: list[AccountEvent], fill_pos: list[int]) -> list[Any]:
        """Screen ticks and send them with (screened) fills as one batch: the fast path for columnar
        producers."""
        mask, refused = self.tick_screen.screen(ticks)
        self.refusals.extend(refused)
        if refused:
            ticks, fill_pos = drop_refused(ticks, mask, fill_pos)
        return self.send_screened(ticks, fills, fill_pos)

    def send_screened(self, ticks: TickColumns, fills: list[AccountEvent], fill_pos: list[int]) -> list[Any]:
        """Send screened ticks and fills as one batch (cut in two if its frame would be too large); the
        handles of the shard calls made."""
        if len(ticks) == 0 and not fills:
            return []
        fill_symbols = {self.symbol_ids[f.symbol] for f in fills if isinstance(f, Fill)}
        # The latest mark, as of the batch start, of every symbol a fill trades: an account opening it starts
        # there.
        marks = {s: self.marks[s] for s in fill_symbols if s in self.marks}
        targets: set[str] = set()
        if len(ticks):
            present = set(np.unique(ticks.symbol).tolist())
            targets = {shard for shard, held in self.subscriptions.items() if held & present}
        targets |= {self.shard_of[fill.account] for fill in fills}
        shards = sorted(targets)
        frame = b""
        if shards:
            frame = encode_batch(EventBatch(ticks, fills, fill_pos, marks), self.batches, self.position,
                                 shards, [self.shard_seq[shard] for shard in shards])
            if len(frame) > self.max_frame_bytes and len(ticks) + len(fills) > 1:
                return [h for part in _halves(ticks, fills, fill_pos) for h in self.send_screened(*part)]
        for fill in fills:
            if isinstance(fill, Fill):
                self.subscriptions[self.shard_of[fill.account]].add(self.symbol_ids[fill.symbol])
        self.position += len(ticks) + len(fills)
        if len(ticks):
            order = np.argsort(ticks.symbol, kind="stable")
            symbols = ticks.symbol[order]
            last = order[np.append(np.flatnonzero(np.diff(symbols)), symbols.size - 1)]
            for i in last.tolist():
                self.marks[int(ticks.symbol[i])] = (float(ticks.bid[i]), float(ticks.ask[i]))
        if not shards:
            return []  # nobody holds these symbols: marks updated, no batch number used
        for shard in shards:
            self.shard_seq[shard] += 1
        self.batches += 1
        ref = self.put(frame)
        self.sent += len(shards)
        return [self.send(shard, ref) for shard in shards]


def drop_refused(ticks: TickColumns, mask: np.ndarray, fill_pos: list[int]) -> tuple[TickColumns, list[int]]:
    """The rows of ``mask`` only, fills moved to the same places among them."""
    kept_before = np.concatenate(([0], np.cumsum(mask)))
    kept = keep_ticks(ticks, mask)
    # A refused stream name (too long) does not travel on, even as an unused entry of the table.
    kept.streams = tuple(name if len(name) <= MAX_NAME else "" for name in ticks.streams)
    return kept, [int(kept_before[p]) for p in fill_pos]


def _halves(ticks: TickColumns, fills: list[AccountEvent], fill_pos: list[int],
            ) -> list[tuple[TickColumns, list[AccountEvent], list[int]]]:
    """A batch as two batches, in arrival order: the first half of its events, then the rest."""
    n = len(ticks) + len(fills)
    cut_fills = 0  # fills in the first half: those that arrived among its first n // 2 events
    while cut_fills < len(fills) and fill_pos[cut_fills] + cut_fills < n // 2:
        cut_fills += 1
    cut_ticks = n // 2 - cut_fills
    def part(lo: int, hi: int) -> TickColumns:
        return TickColumns(ticks.symbol[lo:hi], ticks.bid[lo:hi], ticks.ask[lo:hi], ticks.ts_ns[lo:hi],
                           ticks.seq[lo:hi], ticks.stream[lo:hi], ticks.streams)
    return [
        (part(0, cut_ticks), fills[:cut_fills], fill_pos[:cut_fills]),
        (part(cut_ticks, len(ticks)), fills[cut_fills:], [p - cut_ticks for p in fill_pos[cut_fills:]]),
    ]
