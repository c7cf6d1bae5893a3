"""``--plot`` charts without Ray: what the figures draw (every alert and kill mark at its event's time, labels
that do not overlap, clock times and money on the axes), the PNGs written, which accounts get one, where their
files go, and the equity/drawdown series a replay's second pass builds for them."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from riskcore.config import load_config, parse_config
from riskcore.engine import EventBatch, ReferenceEngine
from riskcore.errors import InputError
from riskcore.events import Cash, Fill
from riskcore.feeds import read_records
from riskmon.plots import (
    DRAWDOWN_COLOUR,
    ENGAGED_SHADE,
    account_figure,
    breached_accounts,
    latency_figure,
    plot_account,
    plot_accounts,
    plot_latency,
    safe_filename,
)
from riskmon.replay import account_series, write_plots
from tests.replay_fixtures import SMALL_CONFIG, write_falling_quotes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CONFIG = SMALL_CONFIG
REPO = Path(__file__).resolve().parents[2]
EURUSD_FILE = REPO.parent / "shared" / "data" / "EURUSD-histdata-20200101.csv"  # beside the checkout


def reference_report(path: Path, config: Any) -> dict[str, Any]:
    """What ``replay`` reports for a clean file, from the reference engine (the shards' engine is
    bit-identical)."""
    engine = ReferenceEngine(config)
    ticks = [record for _, record in read_records(path, "histdata", "EURUSD")
             if not isinstance(record, InputError)]
    events = engine.apply(EventBatch.from_events(ticks, engine.symbol_ids))
    return {"source": str(path), "format": "histdata", "ticks": len(ticks), "rejected": 0, "rejections": [],
            "events": [event.to_dict() for event in events], "final": engine.states()}


def assert_png(path: Path, size_px: tuple[int, int]) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    height, width = imread(path).shape[:2]
    assert (width, height) == size_px, path


def _ts_ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (int(moment.timestamp()) * 1_000_000 + moment.microsecond) * 1000


BASE_NS = 1_577_919_600_000_000_000  # 2020-01-01T23:00:00Z
EVENTS = [
    {"type": "alert", "account": "acct-1", "from": "NORMAL", "to": "WARNING", "metric": "drawdown_pct",
     "tick_seq": 10, "tick_ts": "2020-01-01T23:00:10.000000Z"},
    {"type": "alert", "account": "acct-1", "from": "WARNING", "to": "CRITICAL", "metric": "drawdown_pct",
     "tick_seq": 20, "tick_ts": "2020-01-01T23:00:20.000000Z"},
    {"type": "breaker", "scope": "account", "id": "acct-1", "state": "ENGAGED", "reason": "drawdown_pct",
     "tick_seq": 20, "tick_ts": "2020-01-01T23:00:20.000000Z"},
    {"type": "breaker", "scope": "account", "id": "acct-1", "state": "SAFE", "reason": "auto_reset",
     "tick_seq": 40, "tick_ts": "2020-01-01T23:00:40.000000Z"},
    {"type": "alert", "account": "calm-1", "from": "NORMAL", "to": "WARNING", "metric": "leverage",
     "tick_seq": 15, "tick_ts": "2020-01-01T23:00:15.000000Z"},
    {"type": "breaker", "scope": "portfolio", "id": "fx", "state": "ENGAGED", "reason": "max_daily_loss",
     "tick_seq": 30, "tick_ts": "2020-01-01T23:00:30.000000Z"},
]


def _points(n: int = 60) -> list[tuple[int, float, float]]:
    return [(BASE_NS + i * 1_000_000_000, 100_000.0 - 50.0 * i, 0.0005 * i) for i in range(n)]


# --------------------------------------------------------------------------- charts


def test_plot_account_when_points_and_events_writes_png_of_configured_size(tmp_path: Path) -> None:
    path = plot_account(tmp_path / "charts", "acct-1", "fx", _points(), EVENTS, drawdown_limits=(0.01, 0.02),
                        figsize_in=(8.0, 5.0), dpi=100)

    assert path == tmp_path / "charts" / "account-acct-1.png"
    assert_png(path, (800, 500))


def test_plot_accounts_when_one_breached_one_calm_writes_one_png_for_the_breached(tmp_path: Path) -> None:
    series = {"acct-1": _points(), "calm-1": _points()}

    files = plot_accounts(tmp_path, series, {"acct-1": "fx", "calm-1": "fx"}, EVENTS)

    assert files == [tmp_path / "account-acct-1.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["account-acct-1.png"]
    assert_png(files[0], (1320, 780))  # the defaults: 11 x 6.5 in at 120 dpi


def test_breached_accounts_when_breaker_engaged_or_critical_names_them_not_warning_or_portfolio() -> None:
    critical_only = {"type": "alert", "account": "acct-2", "from": "WARNING", "to": "CRITICAL",
                     "tick_seq": 5, "tick_ts": "2020-01-01T23:00:05.000000Z"}

    assert breached_accounts([critical_only, *EVENTS]) == ["acct-2", "acct-1"]
    assert breached_accounts(EVENTS[4:]) == []


@pytest.mark.parametrize("account", ["../../escape", "/etc/passwd", "..", ".", "a\\b", "a/b", "con",
                                     "x" * 500, "ünï cödé", "", "latency"],
                         ids=lambda account: repr(account[:20]))
def test_plot_account_when_account_id_hostile_writes_inside_dir(tmp_path: Path, account: str) -> None:
    charts = tmp_path / "charts"
    path = plot_account(charts, account, "fx", _points(5), [], figsize_in=(4.0, 3.0), dpi=50)

    assert path.resolve().parent == charts.resolve()
    assert [p.name for p in charts.iterdir()] == [path.name]
    assert path.name.startswith("account-")
    assert path.name.endswith(".png")
    assert len(path.name) < 120
    assert_png(path, (200, 150))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]


def test_safe_filename_when_ids_differ_only_in_unsafe_characters_gives_distinct_names() -> None:
    names = {safe_filename(a) for a in ("a/b", "a_b", "a\\b", "a b", "a:b")}

    assert len(names) == 5
    assert safe_filename("acct-001") == "account-acct-001.png"


def test_plot_latency_when_samples_writes_histogram_png(tmp_path: Path) -> None:
    path = plot_latency(tmp_path, [1.0 + 0.1 * i for i in range(200)], figsize_in=(6.0, 4.0), dpi=100)

    assert path == tmp_path / "latency.png"
    assert_png(path, (600, 400))


def test_plot_latency_when_no_samples_still_writes_a_png_saying_so(tmp_path: Path) -> None:
    path = plot_latency(tmp_path / "new" / "dir", [])

    assert_png(path, (1080, 600))  # 9 x 5 in at 120 dpi


# --------------------------------------------------------------------------- what the charts draw


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _mark_lines(ax: Axes) -> list[tuple[str, Line2D]]:
    """The vertical mark lines of ``ax`` as (kind, line), in drawing order."""
    return [(str(line.get_gid()).removeprefix("mark:"), line) for line in ax.get_lines()
            if str(line.get_gid()).startswith("mark:")]


def _marks(ax: Axes) -> list[tuple[str, datetime]]:
    """The vertical mark lines of ``ax`` as (kind, time), in drawing order."""
    found = []
    for kind, line in _mark_lines(ax):
        first, second = np.asarray(line.get_xdata(), dtype=object)
        assert first == second  # vertical
        found.append((kind, first))
    return found


def _labels(figure: Figure, ax: Axes) -> list[tuple[str, Bbox]]:
    figure.draw_without_rendering()
    return [(text.get_text(), text.get_window_extent()) for text in ax.texts]


def test_account_figure_when_events_draws_each_alert_and_breaker_mark_at_its_event_time_on_both_panels(
) -> None:
    figure = account_figure("acct-1", "fx", _points(), EVENTS, drawdown_limits=(0.01, 0.02))
    equity_ax, drawdown_ax = figure.axes[:2]

    own = [e for e in EVENTS if e.get("account", e.get("id")) == "acct-1"
           and e.get("scope", "account") == "account"]
    expected = [(str(e.get("to") or e["state"]), _when(str(e["tick_ts"]))) for e in own]
    assert _marks(equity_ax) == expected
    assert _marks(drawdown_ax) == expected  # the portfolio's breaker and calm-1's alert draw nothing here
    texts = [text for text, _ in _labels(figure, equity_ax)]
    assert texts == ["NORMAL→WARNING (drawdown_pct)", "WARNING→CRITICAL (drawdown_pct)",
                     "kill (drawdown_pct)", "release (auto_reset)"]
    limits = sorted(float(np.asarray(line.get_ydata(), dtype=float)[0]) for line in drawdown_ax.get_lines()
                    if not line.get_gid())
    assert limits[-2:] == [1.0, 2.0]  # warning and hard drawdown lines, in %


def test_account_figure_when_alerts_and_kill_share_a_tick_sets_their_labels_side_by_side() -> None:
    at = "2020-01-01T23:00:20.000000Z"
    same_tick = [
        {"type": "alert", "account": "a", "from": "NORMAL", "to": "WARNING", "metric": "leverage",
         "tick_ts": at},
        {"type": "alert", "account": "a", "from": "WARNING", "to": "CRITICAL", "metric": "drawdown_pct",
         "tick_ts": at},
        {"type": "breaker", "scope": "account", "id": "a", "state": "ENGAGED", "reason": "drawdown_pct",
         "tick_ts": at},
        {"type": "alert", "account": "a", "from": "CRITICAL", "to": "NORMAL", "metric": "drawdown_pct",
         "tick_ts": "2020-01-01T23:00:20.100000Z"},  # a tenth of a second later: a pixel or two away
    ]
    figure = account_figure("a", "fx", _points(), same_tick)
    equity_ax = figure.axes[0]

    assert [kind for kind, _ in _marks(equity_ax)] == ["WARNING", "CRITICAL", "ENGAGED", "NORMAL"]
    assert {when for _, when in _marks(equity_ax)[:3]} == {_when(at)}
    labels = _labels(figure, equity_ax)
    assert len(labels) == 4
    for i, (text, box) in enumerate(labels):
        for other_text, other in labels[i + 1:]:
            assert not box.overlaps(other), (text, other_text)
    line_x = np.asarray(_mark_lines(equity_ax)[0][1].get_xdata(orig=False), dtype=float)[0]
    line_px = equity_ax.transData.transform((line_x, 0.0))[0]
    assert all(line_px <= box.x0 < line_px + 60 for _, box in labels)  # beside their line, not far off


def test_account_figure_when_drawn_reads_utc_clock_times_with_the_date_and_money_with_separators() -> None:
    figure = account_figure("acct-1", "fx", _points(), EVENTS)
    equity_ax, drawdown_ax = figure.axes[:2]
    figure.draw_without_rendering()

    times = [label.get_text() for label in drawdown_ax.get_xticklabels() if label.get_text()]
    assert times[0].endswith("\n2020-01-01")
    assert all(text.split("\n")[0].count(":") == 2 and len(text.split("\n")[0]) == 8 for text in times)
    assert [text.split("\n")[0] for text in times] == sorted(text.split("\n")[0] for text in times)
    money = [label.get_text() for label in equity_ax.get_yticklabels() if label.get_text()]
    assert "97,000" in money
    assert all(text.replace(",", "").lstrip("−-").isdigit() for text in money)


def test_account_figure_when_a_span_is_engaged_shades_it_apart_from_the_drawdown_fill() -> None:
    figure = account_figure("acct-1", "fx", _points(), EVENTS)
    drawdown_ax = figure.axes[1]

    (span,) = [patch for patch in drawdown_ax.patches if patch.get_gid() == "engaged"]
    assert isinstance(span, Rectangle)
    lines = dict(_mark_lines(drawdown_ax))
    kill, release = (float(np.asarray(lines[kind].get_xdata(orig=False), dtype=float)[0])
                     for kind in ("ENGAGED", "SAFE"))
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((kill, release), abs=1e-9)
    assert DRAWDOWN_COLOUR != ENGAGED_SHADE
    (fill,) = drawdown_ax.collections
    assert np.asarray(fill.get_facecolor())[0][:3] == pytest.approx(np.array([0x5E, 0x3C, 0x99]) / 255)


def test_latency_figure_when_samples_marks_p50_and_p99_where_they_are() -> None:
    samples = [1.0 + 0.1 * i for i in range(200)]

    ax = latency_figure(samples).axes[0]

    marks = {line.get_gid(): float(np.asarray(line.get_xdata(), dtype=float)[0]) for line in ax.get_lines()}
    assert marks == {"mark:p50": pytest.approx(np.percentile(samples, 50)),
                     "mark:p99": pytest.approx(np.percentile(samples, 99))}


def test_write_plots_when_replay_breaches_draws_the_kill_at_the_reports_engaged_tick(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    report = reference_report(write_falling_quotes(tmp_path / "q.csv", 800), config)
    series = account_series(report, config, ["long-1"], "EURUSD")["long-1"]

    figure = account_figure("long-1", "fx", series, report["events"])

    (engaged,) = [e for e in report["events"] if e["type"] == "breaker" and e["state"] == "ENGAGED"]
    kills = [when for kind, when in _marks(figure.axes[0]) if kind == "ENGAGED"]
    assert kills == [_when(engaged["tick_ts"])]
    assert datetime.fromtimestamp(series[0][0] / 1e9, UTC) <= kills[0] <= datetime.fromtimestamp(
        series[-1][0] / 1e9, UTC)
    assert any(text.startswith("kill (") for text, _ in _labels(figure, figure.axes[0]))


# --------------------------------------------------------------------------- replay series


def test_account_series_when_file_longer_than_max_points_thins_and_keeps_every_event_point(
    tmp_path: Path,
) -> None:
    config = parse_config(CONFIG)
    report = reference_report(write_falling_quotes(tmp_path / "q.csv", 5000), config)
    assert breached_accounts(report["events"]) == ["long-1"]  # the file does what the test needs

    series = account_series(report, config, ["long-1"], "EURUSD", max_points=200)["long-1"]

    own_events = [e for e in report["events"] if e.get("account", e.get("id")) == "long-1"]
    assert 100 <= len(series) <= 200 + len(own_events)
    assert [ts for ts, _, _ in series] == sorted({ts for ts, _, _ in series})  # in time order, once each
    times = {ts for ts, _, _ in series}
    assert {_ts_ns(e["tick_ts"]) for e in own_events} <= times
    final = report["final"]["long-1"]
    assert series[-1][1:] == (final.equity, final.drawdown_pct)
    # Per bucket the deepest drawdown is kept: the series' deepest is the run's deepest (here, the last).
    assert max(dd for _, _, dd in series) == final.drawdown_pct


def test_write_plots_when_replay_breaches_one_account_writes_its_png_only(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    report = reference_report(write_falling_quotes(tmp_path / "q.csv", 800), config)

    files = write_plots(report, config, tmp_path / "plots", "EURUSD")

    assert files == [tmp_path / "plots" / "account-long-1.png"]
    assert_png(files[0], (1320, 780))


@pytest.mark.skipif(not EURUSD_FILE.is_file(), reason=f"real EURUSD quotes not found at {EURUSD_FILE}")
def test_write_plots_when_readme_demo_config_replays_the_real_eurusd_day_draws_both_accounts(
    tmp_path: Path,
) -> None:
    # The README's `replay --plot` example: config/replay_demo.yaml on the real quotes breaches, so it draws.
    config = load_config(REPO / "config" / "replay_demo.yaml")
    report = reference_report(EURUSD_FILE, config)

    files = write_plots(report, config, tmp_path, "EURUSD")

    assert sorted(path.name for path in files) == ["account-long-1.png", "account-short-1.png"]
    for path in files:
        assert_png(path, (1320, 780))


def test_write_plots_when_nothing_breached_writes_nothing(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    report = reference_report(write_falling_quotes(tmp_path / "q.csv", 200, fall=0.0), config)

    assert write_plots(report, config, tmp_path / "plots", "EURUSD") == []


def test_cli_when_imported_does_not_load_matplotlib() -> None:
    code = "import sys, riskmon.cli; sys.exit(1 if 'matplotlib' in sys.modules else 0)"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            check=False)

    assert result.returncode == 0, result.stderr


def test_stress_account_series_ends_at_the_figures_of_an_engine_that_took_the_whole_run() -> None:
    # The charts' second pass hosts only the breached accounts and reads them every few hundred ticks; it
    # must still be the same computation: its last point equals the full engine's final figures, bit for bit.
    from riskcore.engine import BatchedEngine, EventBatch
    from riskmon.loadgen.generator import LoadGenerator, firm_config
    from riskmon.stress import account_series

    config = firm_config(40, 2, 6, seed=3)
    generator = LoadGenerator(config, streams=8, scenario="flash_crash", seed=3, breach_every=500)
    generator.plan(6_000)
    parts = list(generator.chunks(1_000, generator.sent + 6_000))
    whole = BatchedEngine(config)
    for part in parts:
        fills: list[Fill | Cash] = list(part.fills)
        whole.apply(EventBatch(part.ticks, fills, part.fill_pos))
    accounts = ["acct-00003", "acct-00017", "acct-00031"]
    series = account_series(config, parts, accounts, max_points=200)
    states = whole.states()
    for account in accounts:
        _, equity, drawdown = series[account][-1]
        assert (equity, drawdown) == (states[account].equity, states[account].drawdown_pct)
        assert len(series[account]) <= 200 + len(parts)
