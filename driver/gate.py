"""``OrderGate``: the in-process gate a trading engine embeds.

A background thread long-polls the supervisor for the versioned breaker view;
:meth:`OrderGate.check` reads only that local copy (no remote call per order)
and fails closed when the copy is older than ``gate.max_staleness_ms``. A
second thread long-polls every account shard for the account breakers it has
engaged, so a halt reaches the gate straight from the shard, without waiting for
the supervisor; those can only add denials.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from actors.shard import HALTS_GROUP
from riskcore.config import GateConfig
from riskcore.gate import Decision, GateCore, Order
from riskcore.messages import Halts, PollReply


class OrderGate:
    def __init__(
        self,
        supervisor: Any,
        gate_config: GateConfig | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        on_update: Callable[[OrderGate], None] | None = None,
    ) -> None:
        """``on_update`` is called (on the poll thread) after each new view is installed."""
        config = gate_config or GateConfig()
        self.on_update = on_update
        self.core = GateCore(int(config.max_staleness_ms * 1_000_000))
        self.poll_timeout_s = config.poll_interval_ms / 1000.0
        self.supervisor = supervisor
        self.clock = clock
        self.errors = 0
        self._stop = threading.Event()
        self._updated = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="riskmon-gate-poll", daemon=True)
        self._thread.start()
        self._shard_thread = threading.Thread(target=self._watch_shards, name="riskmon-gate-halts",
                                              daemon=True)
        self._shard_thread.start()

    def check(self, order: Order) -> Decision:
        """Allow or deny one order, in microseconds, from the local view."""
        return self.core.check(order, self.clock())

    @property
    def version(self) -> int:
        return self.core.version

    def wait_for(self, predicate: Callable[[OrderGate], bool], timeout_s: float) -> bool:
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
        self._shard_thread.join(timeout=self.poll_timeout_s + 5)

    def __enter__(self) -> OrderGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # Not retried by Ray: a supervisor that died is polled afresh (the view goes stale meanwhile).
                reply: PollReply = ray.get(
                    self.supervisor.poll.options(max_task_retries=0).remote(
                        self.core.version, self.poll_timeout_s, self.core.figures_version),
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
            if reply.unchanged:
                self.core.touch(now)
            else:
                if reply.breakers is not None:
                    self.core.update_breakers(reply.breakers, now)
                elif reply.view is not None:
                    self.core.update(reply.view, now)
                if self.on_update is not None:
                    self.on_update(self)
            with self._updated:
                self._updated.notify_all()

    def _watch_shards(self) -> None:
        """Long-poll every shard's engaged accounts (one watch outstanding per shard) into the core."""
        shards: dict[str, Any] = {}
        while not shards and not self._stop.is_set():
            try:
                shards = ray.get(self.supervisor.shard_handles.options(max_task_retries=0).remote(),
                                 timeout=self.poll_timeout_s + 5.0)
            except Exception:
                self.errors += 1
                self._stop.wait(self.poll_timeout_s)
        versions = dict.fromkeys(shards, -1)
        retry_at = dict.fromkeys(shards, 0.0)
        halted: dict[str, frozenset[str]] = {}
        pending: dict[Any, str] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            watching = set(pending.values())
            for shard, handle in shards.items():
                if shard not in watching and now >= retry_at[shard]:
                    # Not retried by Ray: a shard that died (or is restarting) is asked again after a pause.
                    watch = handle.watch_halts.options(concurrency_group=HALTS_GROUP, max_task_retries=0)
                    pending[watch.remote(versions[shard], self.poll_timeout_s)] = shard
            if not pending:
                self._stop.wait(self.poll_timeout_s)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_timeout_s + 5.0)
            for ref in ready:
                shard = pending.pop(ref)
                try:
                    halts: Halts = ray.get(ref)
                except Exception:
                    # Its last halts stay (deny-only); the supervisor marks its accounts down meanwhile.
                    self.errors += 1
                    retry_at[shard] = time.monotonic() + self.poll_timeout_s
                    continue
                versions[shard] = halts.version
                if halted.get(shard) != frozenset(halts.halted):
                    halted[shard] = frozenset(halts.halted)
                    self.core.set_shard_halts(frozenset().union(*halted.values()))
                    if self.on_update is not None:
                        self.on_update(self)
                    with self._updated:
                        self._updated.notify_all()
