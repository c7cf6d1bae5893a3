"""``OrderGate``: the in-process gate a trading engine embeds.

A background thread long-polls the supervisor for the versioned breaker view;
:meth:`OrderGate.check` reads only that local copy (no remote call per order)
and fails closed when the copy is older than ``gate.max_staleness_ms``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import ray

from riskcore.config import GateConfig
from riskcore.gate import Decision, GateCore, Order


class OrderGate:
    def __init__(
        self,
        supervisor: Any,
        gate_config: GateConfig | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        config = gate_config or GateConfig()
        self.core = GateCore(int(config.max_staleness_ms * 1_000_000))
        self.poll_timeout_s = config.poll_interval_ms / 1000.0
        self.supervisor = supervisor
        self.clock = clock
        self.errors = 0
        self._stop = threading.Event()
        self._updated = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="riskmon-gate-poll", daemon=True)
        self._thread.start()

    def check(self, order: Order) -> Decision:
        """Allow or deny one order, in microseconds, from the local view."""
        return self.core.check(order, self.clock())

    @property
    def version(self) -> int:
        return self.core.version

    def wait_for(self, predicate: Callable[["OrderGate"], bool], timeout_s: float) -> bool:
        """Block until ``predicate(gate)`` holds after some view update (for tests and tools)."""
        deadline = time.monotonic() + timeout_s
        with self._updated:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._updated.wait(left)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.poll_timeout_s + 5)

    def __enter__(self) -> "OrderGate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = ray.get(
                    self.supervisor.poll.remote(self.core.version, self.poll_timeout_s),
                    timeout=self.poll_timeout_s + 5.0,
                )
            except Exception:
                # Supervisor unreachable: keep the old view, let it go stale, deny once past the bound.
                self.errors += 1
                with self._updated:
                    self._updated.notify_all()
                self._stop.wait(self.poll_timeout_s)
                continue
            now = self.clock()
            if reply.get("unchanged"):
                self.core.touch(now)
            else:
                self.core.update(reply["view"], now)
            with self._updated:
                self._updated.notify_all()
