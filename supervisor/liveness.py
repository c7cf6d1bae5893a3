"""Shard liveness: while a shard is down (dead, or restarting), gates deny its accounts.

The supervisor keeps one halt watch (``AccountShard.watch_halts``) outstanding on each shard. It runs on
the shard's own threads, so a long batch does not delay it, and it returns at least every interval. When
the shard's process dies the call fails at once: down. The next call waits while Ray restarts the shard
and it rebuilds from its journal, and its answer brings the shard back up.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import ray

from riskcore.messages import Halts


class Liveness:
    def __init__(self, accounts: Iterable[str]) -> None:
        self.up: dict[str, bool] = dict.fromkeys(accounts, False)  # fail closed until registered
        self.down_shards: set[str] = set()  # dead or restarting
        self.watch_failures: Counter[str] = Counter()  # "shard: exception" -> failed liveness watches

    def set_up(self, accounts: Iterable[str], alive: bool = True) -> None:
        for account in accounts:
            self.up[account] = alive

    def note(self, shard_id: str, accounts: list[str], alive: bool) -> bool:
        """The shard's liveness as a watch found it; True if its accounts changed (gates must hear)."""
        if alive:
            self.down_shards.discard(shard_id)
        else:
            self.down_shards.add(shard_id)
        if all(self.up[account] == alive for account in accounts[:1]):
            return False  # as it was (every answer of the watch lands here): no scan of the shard's accounts
        self.set_up(accounts, alive)
        return bool(accounts)


async def watch(shard_id: str, call: Callable[[int], Awaitable[Halts]], interval_s: float,
                liveness: Liveness, noted: Callable[[str, bool, bool], None]) -> None:
    """Watch one shard for ever: ``call(version)`` is its halt watch; ``noted(shard, alive, gone)`` takes
    each outcome (gone: Ray will not restart it, no journal or stopped for good)."""
    version = -1
    while True:
        try:
            version = (await call(version)).version
            alive, gone = True, False
        except ray.exceptions.ActorDiedError:
            alive, gone = False, True
            liveness.watch_failures[f"{shard_id}: ActorDiedError"] += 1
        except Exception as exc:
            alive, gone = False, False  # restarting (ActorUnavailableError) or unreachable for now
            liveness.watch_failures[f"{shard_id}: {type(exc).__name__}"] += 1
        try:
            noted(shard_id, alive, gone)
        except Exception as exc:
            liveness.watch_failures[f"{shard_id}: {type(exc).__name__} noting it"] += 1
        if not alive:
            await asyncio.sleep(interval_s)
