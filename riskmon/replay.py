"""``riskmon replay``: recorded quotes through the live system, and the report that is its contract."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from riskcore.config import RiskConfig
from riskcore.errors import InputError
from riskcore.events import Tick
from riskcore.feeds import read_records
from supervisor.system import RiskSystem

CHUNK = 100_000  # records read and routed at a time, so a large file never sits in memory whole


def replay(path: str | Path, fmt: str, config: RiskConfig, symbol: str | None = None,
           system: RiskSystem | None = None) -> dict[str, Any]:
    """Replay a file and return the report: ticks applied, refusals, final account states, events in order.

    ``tick_seq`` in events and rejections is the record's 0-based index in the file.
    """
    own = system is None
    system = system or RiskSystem.start(config)
    rejections: list[dict[str, Any]] = []
    offered = 0
    refused_before = len(system.refusals)
    try:
        records = read_records(path, fmt, symbol)
        while True:
            chunk = list(itertools.islice(records, CHUNK))
            if not chunk:
                break
            ticks: list[Tick] = []
            for index, record in chunk:
                if isinstance(record, InputError):
                    rejections.append({"tick_seq": index, "code": record.code, "message": record.message})
                else:
                    ticks.append(record)
            offered += len(ticks)
            system.submit(ticks)
        system.flush()
        refused = system.refusals[refused_before:]
        rejections.extend({"tick_seq": r.seq, "code": r.code, "message": r.message} for r in refused)
        rejections.sort(key=lambda item: item["tick_seq"])
        return {
            "source": str(path),
            "format": fmt,
            "ticks": offered - sum(1 for r in refused if r.stream != "fills"),
            "rejected": len(rejections),
            "rejections": rejections,
            "accounts": system.states(),
            "events": system.events(),
            "status": system.status(),
        }
    finally:
        if own:
            system.shutdown()
