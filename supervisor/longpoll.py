"""The long-poll host gates poll for a versioned view (as Ray Serve's ``LongPollHost``).

A change gates must see at once (a breaker, an account's liveness) is a new version, and wakes every poll
waiting on an older one. Figures (equity, exposure, positions, marks) that changed are published by the
next heartbeat instead, as a new figures version: a gate holding older figures gets the whole view, any
other only the breaker table (small, whatever the number of accounts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from riskcore.messages import BreakerTable, GateView, PollReply


class LongPollHost:
    def __init__(self) -> None:
        # Numbered from the clock, so a restarted supervisor's views are newer than any a gate holds.
        self.version = time.time_ns() // 1_000
        self.figures_version = 0  # bumped when changed figures are published (a heartbeat)
        self.figures_dirty = False  # figures changed since they were last published
        self._changed: asyncio.Condition | None = None  # made on first use, inside the actor's event loop
        self._view: tuple[int, GateView] | None = None

    def condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def bump(self) -> None:
        """A new version: every waiting poll answers."""
        self.version += 1
        self.notify()

    def notify(self) -> None:
        """Wake every waiter to look again (polls wait on for a newer version; ``wait_until`` re-checks)."""
        if self._changed is not None:
            condition = self._changed

            async def notify() -> None:
                async with condition:
                    condition.notify_all()

            asyncio.get_event_loop().create_task(notify())

    async def wait_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Until ``done()`` holds (checked at each notify) or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        condition = self.condition()
        async with condition:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(condition.wait(), left)
                except TimeoutError:
                    return

    def cached_view(self, build: Callable[[], GateView]) -> GateView:
        """The view as of this version, built once per version."""
        if self._view is None or self._view[0] != self.version:
            self._view = (self.version, build())
        return self._view[1]

    async def poll(self, known_version: int, timeout_s: float, known_figures: int,
                   view: Callable[[], GateView], table: Callable[[], BreakerTable]) -> PollReply:
        """News as soon as the version is newer than ``known_version``, else a heartbeat at the timeout."""
        if self.version <= known_version and known_figures >= self.figures_version:
            condition = self.condition()
            async with condition:
                try:
                    newer = condition.wait_for(lambda: self.version > known_version)
                    await asyncio.wait_for(newer, timeout_s)
                except TimeoutError:
                    if not self.figures_dirty:
                        return PollReply(self.version)
                    self.figures_dirty = False
                    self.figures_version += 1
                    self.version += 1
        if known_version < 0 or known_figures < self.figures_version:
            return PollReply(self.version, view=self.cached_view(view))
        return PollReply(self.version, breakers=table())
