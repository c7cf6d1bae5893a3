"""What the exporter reads on each scrape, and the totals that keep its counters monotonic.

:class:`RaySource` reads a live system over Ray into one :class:`Reading`; :class:`MonotonicTotals` turns
counts from processes that may restart into totals that never decrease (see :mod:`driver.metrics`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

Key = TypeVar("Key", bound=Hashable)


@dataclass(slots=True)
class Reading:
    """One scrape's answers. ``None`` where an actor did not answer (down, restarting, or too slow)."""

    status: dict[str, Any] | None  # Supervisor.status()
    # shard -> AccountShard.states() and AccountShard.stats()
    states: dict[str, dict[str, dict[str, Any]] | None] = field(default_factory=dict)
    stats: dict[str, dict[str, Any] | None] = field(default_factory=dict)


class MetricsSource(Protocol):
    """Where the collector reads the system from: :class:`RaySource`, or a fake one in tests."""

    placement: Mapping[str, Sequence[str]]  # shard -> the accounts it hosts
    portfolio_of: Mapping[str, str]  # account -> its portfolio

    def read(self) -> Reading: ...


class RaySource:
    """Reads a running :class:`~driver.system.RiskSystem` over Ray, every call of a scrape at once."""

    def __init__(self, system: Any, timeout_s: float = 5.0) -> None:
        self.system = system
        self.timeout_s = timeout_s
        self.placement: Mapping[str, Sequence[str]] = {
            shard: list(accounts) for shard, accounts in system.placement.items()}
        self.portfolio_of: Mapping[str, str] = {spec.id: spec.portfolio for spec in system.config.accounts}

    def read(self) -> Reading:
        import ray  # here, not at import: the collector and its tests need no Ray

        shards = list(self.system.shards.items())
        refs = [self.system.supervisor.status.remote()]
        refs += [handle.states.remote() for _sid, handle in shards]
        refs += [handle.stats.remote() for _sid, handle in shards]
        # A shard that is restarting answers when it is back; this scrape goes on without it.
        ready, _late = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
        answered: dict[int, Any] = {}
        ready_set = set(ready)
        done = [i for i, ref in enumerate(refs) if ref in ready_set]
        try:
            answered = dict(zip(done, ray.get([refs[i] for i in done]), strict=True))
        except Exception:  # one of them failed (an actor died): take the others one by one
            for i in done:
                with contextlib.suppress(Exception):
                    answered[i] = ray.get(refs[i])
        n = len(shards)
        return Reading(
            status=answered.get(0),
            states={sid: answered.get(1 + k) for k, (sid, _h) in enumerate(shards)},
            stats={sid: answered.get(1 + n + k) for k, (sid, _h) in enumerate(shards)},
        )


class MonotonicTotals(Generic[Key]):
    """Turns counts read from processes that may restart into totals that never decrease.

    ``add(key, value, process)``: ``value`` is the count the source reports now, ``process`` identifies the
    process that counted it (its ``started_ns``), or is None for a count the source rebuilds from its journal
    when it restarts (that one continues where it was, so only a decrease means it started again). The total
    grows by the increase since the last value seen for ``key``; a value from a new process, or a smaller
    one, is taken as counted from zero since the restart and added whole. The first value seen is added
    whole too (counted before the exporter started). Values may be numbers or equal-length tuples of them
    (a histogram's buckets, sum and count), compared and added element by element.
    """

    def __init__(self) -> None:
        self._last: dict[Key, tuple[Any, tuple[float, ...]]] = {}
        self._totals: dict[Key, tuple[float, ...]] = {}

    def add(self, key: Key, value: float | Sequence[float], process: Any = None) -> tuple[float, ...]:
        now = tuple(float(v) for v in value) if isinstance(value, Sequence) else (float(value),)
        last = self._last.get(key)
        if last is None or last[0] != process or len(last[1]) != len(now) or any(
                a < b for a, b in zip(now, last[1], strict=True)):
            increase = now  # first seen, a new process, or counted again from zero
        else:
            increase = tuple(a - b for a, b in zip(now, last[1], strict=True))
        total = self._totals.get(key)
        self._totals[key] = increase if total is None or len(total) != len(now) else tuple(
            t + d for t, d in zip(total, increase, strict=True))
        self._last[key] = (process, now)
        return self._totals[key]

    def total(self, key: Key) -> tuple[float, ...] | None:
        return self._totals.get(key)

    def keys(self) -> list[Key]:
        return list(self._totals)
