"""Engine snapshots (riskcore.engine): what a restore refuses, and that a refused one changes nothing.

That a restored engine goes on exactly as the one that wrote the snapshot is the property test
``tests/property/test_snapshot.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from riskcore.clock import parse_rfc3339
from riskcore.config import RiskConfig, parse_config
from riskcore.engine import SNAPSHOT_VERSION, BatchedEngine, EventBatch
from riskcore.errors import SnapshotError
from riskcore.events import Fill, Tick

S = 1_000_000_000
T0 = parse_rfc3339("2020-01-15T15:00:00Z")


def make_config() -> RiskConfig:
    """Accounts A, B, C, each holding 100 XYZ; ABC none of them holds."""
    return parse_config(
        {
            "symbols": {"XYZ": {"multiplier": 10}, "ABC": {}},
            "portfolios": {"desk": {}},
            "accounts": [
                {
                    "id": name,
                    "portfolio": "desk",
                    "balance": 100_000.0,
                    "positions": {"XYZ": {"qty": 100.0, "avg_price": 50.0}},
                }
                for name in "ABC"
            ],
        }
    )


def engine_after(events: Iterable[Tick | Fill], accounts: Iterable[str] = "AB") -> BatchedEngine:
    config = make_config()
    engine = BatchedEngine(config, list(accounts))
    engine.apply(EventBatch.from_events(list(events), config.symbol_ids()))
    return engine


TRADED: list[Tick | Fill] = [
    Tick("XYZ", 49.0, 49.1, T0, "t", 1),
    Fill("B", "ABC", 200.0, 20.0, T0 + S, stream="f", seq=2),
    Tick("ABC", 19.5, 19.6, T0 + 2 * S, "t", 3),
]


def refused(engine: BatchedEngine, snapshot: dict[str, Any], match: str) -> None:
    """``restore`` raises SnapshotError matching ``match`` and leaves the engine as it was."""
    before = engine.snapshot()
    with pytest.raises(SnapshotError, match=match):
        engine.restore(snapshot)
    assert engine.snapshot() == before


def test_engine_snapshot_when_taken_holds_version_symbols_marks_and_every_account() -> None:
    snapshot = engine_after(TRADED).snapshot()

    assert snapshot["version"] == SNAPSHOT_VERSION
    assert snapshot["symbols"] == ["XYZ", "ABC"]
    assert snapshot["marks"] == [[0, 49.0, 49.1], [1, 19.5, 19.6]]
    assert [(a["id"], a["slot_symbols"], a["qty"]) for a in snapshot["accounts"]] == [
        ("A", [0], [100.0]),
        ("B", [0, 1], [100.0, 200.0]),
    ]


def test_engine_restore_when_engine_has_its_own_history_takes_the_snapshot_whole() -> None:
    """Nothing of the engine's past survives: slots, holders and marks are the snapshot's."""
    snapshot = engine_after(TRADED[:1]).snapshot()
    engine = engine_after(TRADED)

    engine.restore(snapshot)

    assert engine.snapshot() == snapshot
    assert engine.holders.n_holders.tolist() == [2, 0]
    assert not engine.quotes.quoted[1]


@pytest.mark.parametrize("version", [SNAPSHOT_VERSION + 1, 0, None])
def test_engine_restore_when_snapshot_of_another_version_refuses(version: int | None) -> None:
    snapshot = engine_after(TRADED).snapshot()
    snapshot["version"] = version

    refused(engine_after([]), snapshot, f"version {version!r}; this build reads version {SNAPSHOT_VERSION}")


@pytest.mark.parametrize(
    ("written_by", "match"),
    [
        ("A", r"missing \['B'\], not hosted here \[\]"),
        ("AC", r"missing \['B'\], not hosted here \['C'\]"),
        ("ABC", r"missing \[\], not hosted here \['C'\]"),
    ],
)
def test_engine_restore_when_snapshot_of_other_accounts_refuses(written_by: str, match: str) -> None:
    snapshot = engine_after([], accounts=written_by).snapshot()

    refused(engine_after(TRADED), snapshot, match)


def test_engine_restore_when_snapshot_lists_an_account_twice_refuses() -> None:
    snapshot = engine_after(TRADED).snapshot()
    snapshot["accounts"] = [snapshot["accounts"][0]] * 2

    refused(engine_after([]), snapshot, "2 in snapshot, 2 hosted")


def test_engine_restore_when_account_holds_unknown_symbol_id_refuses() -> None:
    snapshot = engine_after(TRADED).snapshot()
    snapshot["accounts"][1]["slot_symbols"][1] = 2

    refused(engine_after([]), snapshot, "account B holds unknown symbol id 2")


def test_engine_restore_when_mark_names_unknown_symbol_id_refuses() -> None:
    snapshot = engine_after(TRADED).snapshot()
    snapshot["marks"].append([-1, 1.0, 1.1])

    refused(engine_after([]), snapshot, "marks unknown symbol id -1")


def test_engine_restore_when_symbol_table_differs_refuses() -> None:
    snapshot = engine_after(TRADED).snapshot()
    snapshot["symbols"] = ["ABC", "XYZ"]

    refused(engine_after([]), snapshot, "symbol table is not a prefix")


def test_engine_restore_when_the_config_appended_a_symbol_restores_and_goes_on() -> None:
    # Symbols appended to a running system's config keep every old id: its snapshots still restore.
    snapshot = engine_after(TRADED).snapshot()
    snapshot["symbols"] = snapshot["symbols"][:-1]
    snapshot["marks"] = [m for m in snapshot["marks"] if m[0] < len(snapshot["symbols"])]
    for account in snapshot["accounts"]:
        keep = [i for i, s in enumerate(account["slot_symbols"]) if s < len(snapshot["symbols"])]
        for field in ("slot_symbols", "qty", "avg", "mult"):
            account[field] = [account[field][i] for i in keep]
    engine = engine_after([])
    engine.restore(snapshot)
    assert engine.snapshot()["accounts"] == snapshot["accounts"]
