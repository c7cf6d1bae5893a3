"""Unit and property tests exercise the Ray-free core: any attempt to start Ray there is a defect.

Integration tests (``tests/integration``) run on one real local Ray; see their own conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

_INTEGRATION = Path(__file__).resolve().parent / "integration"


@pytest.fixture(autouse=True)
def _no_ray(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if _INTEGRATION in Path(str(request.node.path)).resolve().parents:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit and property tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", refuse)
