"""``GateProbe``: an order gate in a Ray actor of its own, for measuring breach-to-deny latency."""

from __future__ import annotations

import time
from typing import Any

import ray

from driver.gate import OrderGate
from riskcore.config import GateConfig, RiskConfig
from riskcore.gate import Order


class GateProbe:
    """An order gate in a process of its own that notes when it first denies each halted account.

    Used to measure breach-to-deny latency: the time a breaching tick entered the system, on one
    side, and the ``time.monotonic_ns()`` at which this gate denied an order of that account, on the
    other (CLOCK_MONOTONIC is shared by every process on a machine).
    """

    def __init__(self, supervisor: Any, gate_config: GateConfig | None = None) -> None:
        self.first_denied: dict[str, int] = {}
        self.gate = OrderGate(supervisor, gate_config, on_update=self._on_update)

    def _on_update(self, gate: OrderGate) -> None:
        for account, symbol, qty in gate.core.halted_accounts():
            if account not in self.first_denied and not gate.check(Order(account, symbol, qty, 1.0)).allowed:
                self.first_denied.setdefault(account, time.monotonic_ns())  # two threads may both see it

    def wait_denied(self, accounts: list[str], timeout_s: float) -> dict[str, int]:
        """Wait until every one of ``accounts`` has been denied (or the timeout); return all first denials."""
        self.gate.wait_for(lambda g: all(a in self.first_denied for a in accounts), timeout_s)
        return dict(self.first_denied)

    def ready(self) -> bool:
        return self.gate.wait_for(lambda g: g.version >= 0, timeout_s=30)

    def close(self) -> None:
        self.gate.close()


def create_gate_probe(supervisor: Any, config: RiskConfig) -> Any:
    """A GateProbe in its own process (latency runs); a threaded actor, so its poll thread runs freely."""
    return ray.remote(GateProbe).options(num_cpus=0, max_concurrency=2).remote(supervisor, config.gate)
