"""Types of the integration fixtures (``conftest.py``), for the tests that take them."""

from __future__ import annotations

from typing import Any, Protocol

from driver.system import RiskSystem
from riskcore.config import RiskConfig


class StartSystem(Protocol):
    """The ``start_system`` fixture: start a riskmon system on the session's Ray, shut down after the test."""

    def __call__(self, config: RiskConfig | dict[str, Any], **kwargs: Any) -> RiskSystem: ...
