"""One real local Ray for the whole integration session; each test starts its own riskmon system on it."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from driver.system import RiskSystem
from riskcore.config import RiskConfig, parse_config
from tests.integration.fixtures import StartSystem

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EURUSD_FILE = SHARED_DATA / "EURUSD-histdata-20200101.csv"


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Named systems keep their journals under here, not under the home directory.
    os.environ["RISKMON_STATE_DIR"] = str(tmp_path_factory.mktemp("riskmon-state"))
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, namespace="riskmon")
    yield
    ray.shutdown()


@pytest.fixture
def start_system(ray_session: None) -> Iterator[StartSystem]:
    started: list[RiskSystem] = []

    def start(config: RiskConfig | dict[str, Any], **kwargs: Any) -> RiskSystem:
        cfg = config if isinstance(config, RiskConfig) else parse_config(config)
        system = RiskSystem.start(cfg, name=f"test-{uuid.uuid4().hex[:8]}", **kwargs)
        started.append(system)
        return system

    yield start
    for system in started:
        system.shutdown()


@pytest.fixture(scope="session")
def eurusd_file() -> Path:
    """The real EURUSD quotes in ../shared/data, read in place (never copied into the repository)."""
    if not EURUSD_FILE.exists():
        pytest.skip(f"real EURUSD quotes not found at {EURUSD_FILE} (shared/data sits beside the checkout)")
    return EURUSD_FILE
