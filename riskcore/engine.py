"""The reference engine (one event at a time) and the batched engine.

Both take an :class:`EventBatch` — columnar ticks plus the fills that arrived
between them — and return the same alert and breaker events in the same order,
leaving every account with the same figures. The reference
(:mod:`riskcore.reference`) applies each event to each account in turn through
:class:`riskcore.account.AccountBook`; the batched engine (:mod:`riskcore.batched`)
runs the same loop compiled (:mod:`riskcore.kernel`) over state packed into
arrays, and applies fills through the same ``AccountBook`` code.
"""

from __future__ import annotations

from riskcore.batch import SNAPSHOT_VERSION, EventBatch, Quote, TickColumns, check_snapshot_version
from riskcore.batched import BatchedEngine
from riskcore.reference import ReferenceEngine

__all__ = [
    "SNAPSHOT_VERSION",
    "BatchedEngine",
    "EventBatch",
    "Quote",
    "ReferenceEngine",
    "TickColumns",
    "check_snapshot_version",
]
