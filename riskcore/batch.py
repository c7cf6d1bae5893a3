"""A batch of input, as the engines take it: columnar ticks and the account events placed between them.

Also the layout version of every snapshot riskcore writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from riskcore.errors import SnapshotError
from riskcore.events import AccountEvent, Cash, Fill, Tick

Quote = tuple[float, float]

# The layout of every snapshot riskcore writes (engine, input screens). Bump it on any change: a snapshot
# of another layout would be misread, not refused (a refused one keeps its shard down; see SnapshotError).
SNAPSHOT_VERSION = 1


def check_snapshot_version(snapshot: Mapping[str, Any], what: str) -> None:
    """Refuse (:class:`SnapshotError`) a ``what`` snapshot not written in :data:`SNAPSHOT_VERSION`'s
    layout."""
    version = snapshot.get("version") if isinstance(snapshot, Mapping) else None
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"{what} snapshot has version {version!r}; this build reads version {SNAPSHOT_VERSION}"
        )


@dataclass(slots=True)
class TickColumns:
    """Ticks as columns. ``stream`` indexes ``streams``; ``symbol`` indexes the config's symbols."""

    symbol: NDArray[np.int32]
    bid: NDArray[np.float64]
    ask: NDArray[np.float64]
    ts_ns: NDArray[np.int64]
    seq: NDArray[np.int64]
    stream: NDArray[np.int32]
    streams: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    @classmethod
    def empty(cls) -> TickColumns:
        return cls(
            np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.zeros(0, np.int32), (),
        )

    @classmethod
    def from_ticks(cls, ticks: Sequence[Tick], symbol_ids: Mapping[str, int]) -> TickColumns:
        streams: dict[str, int] = {}
        for tick in ticks:
            streams.setdefault(tick.stream, len(streams))
        return cls(
            symbol=np.fromiter((symbol_ids[t.symbol] for t in ticks), np.int32, len(ticks)),
            bid=np.fromiter((t.bid for t in ticks), np.float64, len(ticks)),
            ask=np.fromiter((t.ask for t in ticks), np.float64, len(ticks)),
            ts_ns=np.fromiter((t.ts_ns for t in ticks), np.int64, len(ticks)),
            seq=np.fromiter((t.seq for t in ticks), np.int64, len(ticks)),
            stream=np.fromiter((streams[t.stream] for t in ticks), np.int32, len(ticks)),
            streams=tuple(streams),
        )


@dataclass(slots=True)
class EventBatch:
    """Ticks in arrival order, and fills (and cash movements: the accounts' own events) placed between them.

    Fill ``j`` arrived after ``ticks[:fill_pos[j]]`` (``fill_pos`` is non-decreasing).
    ``marks`` carries the router's latest quote, as of the start of the batch, of
    symbols the batch's fills trade, so an account that opens a symbol it did not
    hold starts from the latest mark.
    """

    ticks: TickColumns
    fills: list[AccountEvent] = field(default_factory=list)
    fill_pos: list[int] = field(default_factory=list)
    marks: dict[int, Quote] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[Tick | AccountEvent], symbol_ids: Mapping[str, int]) -> EventBatch:
        ticks: list[Tick] = []
        fills: list[AccountEvent] = []
        fill_pos: list[int] = []
        for event in events:
            if isinstance(event, (Fill, Cash)):
                fills.append(event)
                fill_pos.append(len(ticks))
            else:
                ticks.append(event)
        return cls(TickColumns.from_ticks(ticks, symbol_ids), fills, fill_pos)




__all__ = ["SNAPSHOT_VERSION", "EventBatch", "Quote", "TickColumns", "check_snapshot_version"]
