"""The ``riskmon`` command line, run as a user runs it: a separate process, exit codes, stdout/stderr, files.

``replay`` in a subprocess starts (and shuts down) its own embedded Ray, separate from this session's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskcore.account import AccountState
from riskmon.cli import build_parser
from tests.replay_fixtures import SMALL_CONFIG, write_falling_quotes

REPO = Path(__file__).resolve().parents[2]
BUNDLED_CONFIG = REPO / "config" / "risk_limits.yaml"
TIMEOUT_S = 300

pytestmark = pytest.mark.ray  # replay, stress and the service commands start a local Ray of their own


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m riskmon.cli ARGS`` in its own process group; killed whole if it outlives the timeout."""
    # Never attach to the test session's Ray: the command starts its own embedded one.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskmon.cli", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"riskmon {' '.join(args)} still running after {TIMEOUT_S} s\n"
                    f"stdout: {out}\nstderr: {err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- config check


def test_config_check_when_bundled_config_exits_0_and_prints_ok(tmp_path: Path) -> None:
    result = run_cli("config", "check", str(BUNDLED_CONFIG), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK ")
    bundled = yaml.safe_load(BUNDLED_CONFIG.read_text(encoding="utf-8"))
    counts = (f"{len(bundled['accounts'])} accounts, {len(bundled['portfolios'])} portfolios, "
              f"{len(bundled['symbols'])} symbols")
    assert counts in result.stdout
    assert result.stderr == ""


def test_config_check_when_small_config_valid_exits_0(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "small.yaml", SMALL_CONFIG)
    result = run_cli("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK {path}")


def _warning_above_hard(config: dict[str, Any]) -> None:
    config["accounts"][0]["limits"] = {"drawdown_warning": 0.03, "max_daily_drawdown": 0.02}


def _leverage_warning_above_hard_in_portfolio(config: dict[str, Any]) -> None:
    config["portfolios"]["fx"]["account_limits"] = {"leverage_warning": 6.0, "max_account_leverage": 5.0}


def _unknown_account_limit_key(config: dict[str, Any]) -> None:
    config["accounts"][1]["limits"]["max_drawdown"] = 0.02


def _unknown_top_level_key(config: dict[str, Any]) -> None:
    config["limitz"] = {}


def _unknown_portfolio_limit_key(config: dict[str, Any]) -> None:
    config["portfolios"]["fx"]["limits"]["max_loss"] = 5


@pytest.mark.parametrize(
    ("break_it", "key_path", "words"),
    [
        (_warning_above_hard, "accounts[0].limits.drawdown_warning", "must be below max_daily_drawdown"),
        (_leverage_warning_above_hard_in_portfolio, "portfolios.fx.account_limits.leverage_warning",
         "must be below max_account_leverage"),
        (_unknown_account_limit_key, "accounts[1].limits.max_drawdown", "unknown key"),
        (_unknown_top_level_key, "limitz", "unknown key"),
        (_unknown_portfolio_limit_key, "portfolios.fx.limits.max_loss", "unknown key"),
    ],
    ids=["warning-above-hard", "portfolio-warning-above-hard", "unknown-account-key", "unknown-top-key",
         "unknown-portfolio-key"],
)
def test_config_check_when_config_invalid_exits_2_and_names_key_path(
    tmp_path: Path, break_it: Any, key_path: str, words: str
) -> None:
    config = json.loads(json.dumps(SMALL_CONFIG))
    break_it(config)
    path = write_yaml(tmp_path / "bad.yaml", config)
    result = run_cli("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "OK" not in result.stdout
    assert f"{key_path}: " in result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_when_file_missing_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_cli("config", "check", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- replay


def _last_quote(path: Path) -> tuple[str, float, float]:
    stamp, bid, ask, _volume = path.read_text(encoding="ascii").splitlines()[-1].split(",")
    utc = datetime.strptime(stamp, "%Y%m%d %H%M%S%f").replace(tzinfo=timezone(timedelta(hours=-5)))
    return utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), float(bid), float(ask)


def test_replay_when_eurusd_file_with_report_exits_0_and_writes_full_json(
    tmp_path: Path, eurusd_file: Path
) -> None:
    source = eurusd_file
    config = write_yaml(tmp_path / "small.yaml", SMALL_CONFIG)
    report_path = tmp_path / "out.json"

    result = run_cli("replay", str(source), "--format", "histdata", "--config", str(config),
                     "--report", "out.json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    assert "9500 ticks applied, 0 rejected" in result.stdout
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert {"ticks", "rejected", "accounts", "events"} <= set(report)
    assert report["ticks"] == 9500
    assert report["rejected"] == 0
    fields = {f.name for f in dataclasses.fields(AccountState)}
    assert {"equity", "breaker"} <= fields
    assert list(report["accounts"]) == ["long-1", "short-1"]
    stamp, bid, ask = _last_quote(source)
    for spec in SMALL_CONFIG["accounts"]:
        state = report["accounts"][spec["id"]]
        assert set(state) == fields, spec["id"]
        (position,) = spec["positions"].values()
        mark = bid if position["qty"] > 0 else ask  # long at the bid, short at the ask
        # Same operations in the same order as DESIGN §1, and JSON round-trips floats: exact equality.
        open_pnl = 0.0 + position["qty"] * (mark - position["avg_price"]) * 1.0
        assert state["open_pnl"] == open_pnl
        assert state["equity"] == spec["balance"] + open_pnl
        assert state["total_exposure"] == 0.0 + abs(position["qty"]) * mark * 1.0
        assert state["timestamp"] == stamp
        assert state["breaker"] in ("SAFE", "ENGAGED")
    # This config's limits are crossed by the real quotes: the events say so, in the JSON too.
    assert any(e["type"] == "alert" and e["to"] == "CRITICAL" for e in report["events"])
    engaged = [e for e in report["events"] if e["type"] == "breaker" and e["state"] == "ENGAGED"]
    assert {e["id"] for e in engaged} == {"long-1", "short-1"}
    assert all(isinstance(e["tick_seq"], int) and e["tick_ts"].endswith("Z") for e in engaged)
    assert f"{len(engaged)} breakers engaged" in result.stdout


def test_replay_when_audit_given_writes_a_trail_that_audit_verify_accepts(
    tmp_path: Path, eurusd_file: Path
) -> None:
    config = write_yaml(tmp_path / "small.yaml", SMALL_CONFIG)

    result = run_cli("replay", str(eurusd_file), "--format", "histdata", "--config", str(config),
                     "--json", "--audit", "audit.jsonl", cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)  # --json: standard output is the report alone
    assert report["ticks"] == 9500
    lines = (tmp_path / "audit.jsonl").read_text(encoding="ascii").splitlines()
    records = [json.loads(line) for line in lines]
    assert f"; {len(records)} audit records appended to audit.jsonl" in result.stderr
    assert "accounts alerted" in result.stderr  # the summary table went to standard error
    assert records[0]["kind"] == "config_load"
    changes = records[1:]  # nothing refused in this file: no rejected_input summary
    assert [r["kind"] for r in changes] == [e["type"] for e in report["events"]]
    assert all(r["tick_seq"] == e["tick_seq"] for r, e in zip(changes, report["events"], strict=True))
    assert all(r["after"]["timestamp"] == r["tick_ts"] for r in changes if r["kind"] == "alert")

    verified = run_cli("audit", "verify", "audit.jsonl", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK: {len(records)} records, chain intact (audit.jsonl)")


def test_replay_when_config_invalid_exits_2_before_starting(tmp_path: Path) -> None:
    config = json.loads(json.dumps(SMALL_CONFIG))
    _warning_above_hard(config)
    path = write_yaml(tmp_path / "bad.yaml", config)
    result = run_cli("replay", str(tmp_path / "ticks.csv"), "--format", "histdata", "--config", str(path),
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "accounts[0].limits.drawdown_warning" in result.stderr


# --------------------------------------------------------------------------- --help everywhere


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_subcommands(sub, (*prefix, name)))
    return found


SUBCOMMANDS = _subcommands(build_parser())


def test_cli_when_parser_built_has_exactly_the_documented_subcommands() -> None:
    documented = {(), ("demo",), ("replay",), ("stress",), ("chaos",), ("config",), ("config", "check"),
                  ("run",), ("status",), ("engage",), ("reset",), ("audit",), ("audit", "verify")}
    assert len(SUBCOMMANDS) == len(set(SUBCOMMANDS))
    assert set(SUBCOMMANDS) == documented


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(c) or "riskmon")
def test_help_when_asked_for_every_subcommand_exits_0(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: riskmon" + "".join(f" {c}" for c in command))
    assert result.stderr == ""


# --------------------------------------------------------------------------- --plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, size_px: tuple[int, int]) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    height, width = imread(path).shape[:2]
    assert (width, height) == size_px, path


def test_replay_when_plot_given_writes_a_png_per_breached_account(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "small.yaml", SMALL_CONFIG)
    quotes = write_falling_quotes(tmp_path / "falling.csv")

    result = run_cli("replay", str(quotes), "--format", "histdata", "--config", str(config),
                     "--plot", "charts/replay", cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    # Without --report or --json: a short summary, not the report.
    assert "3000 ticks applied, 0 rejected" in result.stdout
    assert "1 breakers engaged" in result.stdout
    assert '"events"' not in result.stdout
    assert len(result.stdout.splitlines()) < 20
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("│ long-1")]
    account, alerts, kills, first_kill, final_alert, final_breaker = (cell.strip() for cell in
                                                                      row.strip("│ ").split("│"))
    assert (account, alerts, kills, final_alert, final_breaker) == ("long-1", "2", "1", "CRITICAL", "ENGAGED")
    assert datetime.fromisoformat(first_kill.replace("Z", "+00:00")).tzinfo == UTC
    assert "short-1" not in result.stdout  # the short account only gained: calm, no row, no chart
    assert "--report PATH, or --json" in result.stdout
    charts = tmp_path / "charts" / "replay"
    assert sorted(p.name for p in charts.iterdir()) == ["account-long-1.png"]
    _assert_png(charts / "account-long-1.png", (1320, 780))
    assert "1 chart written to charts/replay" in result.stdout
    assert "charts/replay/account-long-1.png" in result.stdout


def test_stress_when_plot_given_writes_latency_png_and_a_chart_per_breached_account(tmp_path: Path) -> None:
    result = run_cli("stress", "--accounts", "30", "--portfolios", "3", "--symbols", "6", "--streams", "12",
                     "--duration", "2", "--scenario", "flash_crash", "--json", "out/stress.json",
                     "--plot", "charts", cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    _assert_png(tmp_path / "charts" / "latency.png", (1080, 600))
    assert "charts/latency.png" in result.stdout
    summary = json.loads((tmp_path / "out" / "stress.json").read_text(encoding="utf-8"))
    assert summary["ticks"] > 0
    # A duration-bound run: sized by a calibration reported apart, then sent for the duration asked.
    assert summary["duration"] == 2.0
    assert summary["calibration"]["ticks"] > 0
    assert summary["seconds"] >= 2.0  # sending stops at 2 s; the clock stops once all of it is applied
    assert summary["wall_s"] > summary["seconds"] + summary["calibration"]["seconds"]
    words = " ".join(result.stdout.split())  # the table and the note, however the terminal wrapped them
    assert "calibration before the run (not counted)" in words
    assert "2 s of load, unpaced, seed 7" in words
    assert "this breach-to-deny latency is mostly queueing" in words
    assert summary["breaches"]["account"] > 0
    charts = sorted(p.name for p in (tmp_path / "charts").iterdir() if p.name != "latency.png")
    assert charts
    assert all(name.startswith("account-acct-") for name in charts)
    for name in charts:
        _assert_png(tmp_path / "charts" / name, (1320, 780))
