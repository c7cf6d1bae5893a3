"""A shard's engaged account breakers, for the gates that long-poll it (``AccountShard.watch_halts``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from riskcore.messages import Halts


class HaltBoard:
    def __init__(self, halted: Iterable[str]) -> None:
        self._changed = threading.Condition()
        # Numbered from the clock, so a restarted shard's are newer than any its previous process gave: the
        # supervisor takes an account breaker state only if it is newer than the one it holds (an operator's
        # reset is not undone by a report of the batch before it that happens to arrive after it).
        self.version = time.time_ns()
        self.halted = set(halted)

    def note(self, account: str, engaged: bool) -> None:
        """A breaker change: a new version, and every watcher wakes (from inside the batch applying it)."""
        with self._changed:
            if engaged:
                self.halted.add(account)
            else:
                self.halted.discard(account)
            self.version += 1
            self._changed.notify_all()

    def watch(self, known_version: int, timeout_s: float) -> Halts:
        """The engaged accounts once the version is newer than ``known_version``, or at the timeout."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > known_version, timeout_s)
            return Halts(self.version, tuple(sorted(self.halted)))
