"""Where each test may run, checked: integration tests on a real Ray, every other test without one.

Every test under ``tests/integration`` carries the ``ray`` mark (one real local Ray for the session; see
that directory's conftest) and no test elsewhere does; a test in the wrong place stops the run before any
test starts. Unit and property tests exercise the Ray-free core: any attempt to start Ray there is a defect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

_INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def misplaced(item: pytest.Item) -> bool:
        return (_INTEGRATION in item.path.resolve().parents) != (item.get_closest_marker("ray") is not None)

    wrong = [item.nodeid for item in items if misplaced(item)]
    if wrong:
        raise pytest.UsageError(
            "every test under tests/integration carries the `ray` mark (pytestmark = pytest.mark.ray) and no "
            "test elsewhere does; these do not: " + ", ".join(wrong))


@pytest.fixture(autouse=True)
def _no_ray(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("ray") is not None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit and property tests must not start Ray (tests/integration may)")

    monkeypatch.setattr(ray, "init", refuse)
