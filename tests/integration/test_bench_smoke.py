"""`riskmon stress`, `python -m bench.firm` and `python -m bench.live` at tiny sizes, so they cannot rot. No
timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray  # the programs run on a local Ray

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    """Run a Python module; the caller checks its exit status (and shows its standard error when not 0)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def stress(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``riskmon stress`` on a tiny firm; its run and the summary it wrote with --json."""
    out = tmp_path / "stress.json"
    done = run("-m", "riskmon.cli", "stress", "--accounts", "30", "--portfolios", "3", "--symbols", "6",
               *args, "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(out.read_text())
    return done, summary


def test_stress_when_tiny_firm_runs_writes_summary_with_every_figure(tmp_path: Path) -> None:
    done, summary = stress(tmp_path, "--streams", "12", "--ticks", "20000", "--scenario", "mixed")
    assert summary["ticks"] == 20_000
    assert summary["accounts"] == 30
    assert summary["streams"] == 12
    assert summary["account_ticks"] > summary["ticks"]  # each tick reaches several accounts
    assert summary["breaches"]["account"] >= 1  # the mixed scenario's fat-finger fill
    denied = summary["breaches"]["account"] - len(summary["undenied_breaches"])
    assert summary["breach_to_deny_ms"]["count"] == denied
    assert summary["undenied_breaches"] == []
    assert "ticks/s" in done.stdout


def test_bench_firm_when_smoke_sized_prints_every_key() -> None:
    done = run("-m", "bench.firm", "--smoke")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in ("firm_1k_ticks_per_s", "kernel_ticks_per_s", "firm_10_ticks_per_s",
                "naive_firm_10_ticks_per_s"):
        assert isinstance(result[key], int), key
        assert result[key] > 0, key
    assert set(result["breach_to_deny_ms"]) >= {"p50", "p99", "max"}
    assert result["breach_to_deny_ms"]["count"] > 0
    assert set(result["gate_check_us"]) >= {"p50", "p99"}
    floor = result["breach_path_floor"]
    assert floor["call_one_way_ms"]["p50"] > 0
    assert floor["watch_return_ms"]["p50"] > 0
    assert [row["accounts"] for row in result["scaling"]] == [20, 40, 80]
    for row in result["scaling"]:
        assert row["ticks_per_s"] > 0, row
        assert row["rss_mb"] > 0, row


def test_bench_live_when_smoke_sized_every_tick_sent_over_tcp_is_accepted() -> None:
    done = run("-m", "bench.live", "--smoke", "--producers", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in ("live_ticks_per_s", "inprocess_ticks_per_s", "paced_ticks_per_s"):
        assert isinstance(result[key], int), key
        assert result[key] > 0, key
    assert result["live_over_inprocess"] > 0
    assert result["feed_answer_ms"]["count"] > 0
    assert result["ingest_us_per_tick"] > 0
    assert result["feeds_1000"]["ingest_rss_mb"] > 0
    assert result["live_breach_to_deny_ms"]["count"] == 3  # every fat-finger fill sent was denied at the gate
    assert result["live_undenied_breaches"] == 0


def test_stress_when_feeds_given_drives_tcp_feeds_and_every_tick_is_accepted(tmp_path: Path) -> None:
    done, summary = stress(tmp_path, "--feeds", "12", "--producers", "3", "--ticks", "6000")
    assert (summary["feeds"], summary["producers"], summary["frame_ticks"]) == (12, 3, 64)
    assert summary["accepted"] == 6000
    assert summary["refused"] == 0
    assert summary["frame_answer_ms"]["count"] >= 6000 // 64  # one answer per frame, every frame answered
    assert "ticks/s, to the applied watermark" in done.stdout
