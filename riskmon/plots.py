"""PNG charts for ``--plot DIR``: each breached account's equity and drawdown with its alert and kill points,
and a latency histogram.

The functions take plain data — ``(ts_ns, equity, drawdown_pct)`` points, events as the report writes them
(``{"type": "alert", "to", "tick_ts", ...}``, ``{"type": "breaker", "scope", "id", "state", "tick_ts",
...}``), latency samples in ms — and start nothing and read no clock. ``account_figure`` and
``latency_figure`` build the matplotlib Figure (every mark's line carries the ``gid`` ``mark:<kind>``, so a
reader can find it); ``plot_account`` and ``plot_latency`` write it as a PNG. matplotlib is imported inside
them, on its non-interactive Agg canvas (no pyplot, no display, no global figure state), so importing this
module costs nothing and a command run without ``--plot`` never loads it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from riskcore.errors import RiskmonError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

# Readable on a laptop screen and in a ticket: 1320 x 780 and 1100 x 600 pixels at 120 dpi.
ACCOUNT_FIGSIZE_IN = (11.0, 6.5)
LATENCY_FIGSIZE_IN = (9.0, 5.0)
DPI = 120

Point = tuple[int, float, float]  # (ts_ns, equity, drawdown_pct)
LineStyle = Literal["-", "--", "-.", ":"]

EQUITY_COLOUR = "#0072b2"  # blue
DRAWDOWN_COLOUR = "#5e3c99"  # violet: apart from the reds and oranges of the marks and the grey of a halt
ENGAGED_SHADE = "#7f7f7f"  # grey: orders denied
LIMIT_COLOUR = "#333333"

# How each kind of mark is drawn: (colour, line style, line width, legend label).
_MARKS: dict[str, tuple[str, LineStyle, float, str]] = {
    "WARNING": ("#e69f00", "--", 1.2, "alert: WARNING"),
    "CRITICAL": ("#d55e00", "--", 1.4, "alert: CRITICAL"),
    "NORMAL": ("#56b4e9", ":", 1.2, "alert: back to NORMAL"),
    "ENGAGED": ("#b00020", "-", 2.0, "breaker ENGAGED (kill)"),
    "SAFE": ("#009e73", "-", 2.0, "breaker SAFE (release)"),
}
_ANNOTATE_AT_MOST = 12  # past this many marks, lines and the legend only: labels would crowd the panel
_LABEL_FONT_PT = 7.0
_LABEL_GAP_PT = 1.5  # between two labels set side by side


def safe_filename(account: str) -> str:
    """``account-<id>.png`` for a plain id; anything else (path separators, dots first, spaces, non-ASCII,
    very long ids) becomes ``_`` and the name gets 8 hex digits of the id's SHA-256, so it stays in its
    directory and two ids never share a file."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", account)[:80].lstrip(".") or "_"
    if cleaned != account:
        cleaned += "-" + hashlib.sha256(account.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"account-{cleaned}.png"


def breached_accounts(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Accounts whose own breaker engaged or whose alert reached CRITICAL, in order of first breach."""
    seen: dict[str, None] = {}
    for event in events:
        if _is_account_breaker(event) and event.get("state") == "ENGAGED":
            seen.setdefault(str(event["id"]), None)
        elif event.get("type") == "alert" and event.get("to") == "CRITICAL":
            seen.setdefault(str(event["account"]), None)
    return list(seen)


def _is_account_breaker(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "breaker" and event.get("scope") == "account"


def account_marks(events: Iterable[Mapping[str, Any]], account: str) -> list[tuple[datetime, str, str]]:
    """The account's alert changes and breaker changes as ``(time, kind, label)``; kind keys ``_MARKS``."""
    marks = []
    for event in events:
        if event.get("tick_ts") is None:
            continue  # an operator command with no event time: nothing to place on the axis
        if event.get("type") == "alert" and str(event.get("account")) == account:
            kind, label = str(event["to"]), f"{event.get('from')}→{event['to']} ({event.get('metric')})"
        elif _is_account_breaker(event) and str(event.get("id")) == account:
            kind = str(event["state"])
            reason = f" ({event['reason']})" if event.get("reason") else ""
            label = ("kill" if kind == "ENGAGED" else "release") + reason
        else:
            continue
        if kind in _MARKS:
            marks.append((_parse_ts(str(event["tick_ts"])), kind, label))
    return marks


def account_figure(account: str, portfolio: str, points: Sequence[Point],
                   events: Iterable[Mapping[str, Any]], *, drawdown_limits: tuple[float, float] | None = None,
                   figsize_in: tuple[float, float] = ACCOUNT_FIGSIZE_IN, dpi: int = DPI) -> Figure:
    """Equity above, drawdown % below, on one UTC time axis, with a vertical line (``gid`` ``mark:<kind>``) at
    every alert change and breaker change of ``account`` in ``events`` on both panels, and their labels along
    the top of the equity panel, set side by side where they would overlap.

    ``drawdown_limits`` (warning, hard), as fractions, are drawn as horizontal lines on the drawdown panel.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure = _figure(figsize_in, dpi)
    equity_ax, drawdown_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 2)})
    times = [_utc(ts_ns) for ts_ns, _, _ in points]
    equity = [value for _, value, _ in points]
    drawdown = [100.0 * dd if math.isfinite(dd) else math.nan for _, _, dd in points]

    equity_ax.plot(times, equity, color=EQUITY_COLOUR, linewidth=1.0, label="equity")
    drawdown_ax.plot(times, drawdown, color=DRAWDOWN_COLOUR, linewidth=1.0, label="drawdown %")
    drawdown_ax.fill_between(times, drawdown, 0.0, color=DRAWDOWN_COLOUR, alpha=0.25, linewidth=0)
    handles: dict[str, Any] = {"equity": Line2D([], [], color=EQUITY_COLOUR, label="equity"),
                               "drawdown %": Patch(facecolor=DRAWDOWN_COLOUR, alpha=0.5, label="drawdown %")}
    if drawdown_limits is not None:
        limit_lines: tuple[tuple[float, LineStyle, str], ...] = (
            (drawdown_limits[0], ":", "drawdown warning"), (drawdown_limits[1], "-.", "max daily drawdown"))
        for value, style, name in limit_lines:
            drawdown_ax.axhline(100.0 * value, color=LIMIT_COLOUR, linestyle=style, linewidth=1.0)
            handles[name] = Line2D([], [], color=LIMIT_COLOUR, linestyle=style,
                                   label=f"{name} ({100 * value:g} %)")

    marks = account_marks(events, account)
    _shade_engaged(marks, times, (equity_ax, drawdown_ax), handles)
    alerts = sum(1 for _, kind, _ in marks if kind not in ("ENGAGED", "SAFE"))
    labelled = []
    for when, kind, label in marks:
        colour, style, width, legend = _MARKS[kind]
        breaker = kind in ("ENGAGED", "SAFE")
        # Breaker lines go on top; a flapping alert (many changes) is drawn thin so the kill stays visible.
        thin = not breaker and alerts > _ANNOTATE_AT_MOST * 3
        for ax in (equity_ax, drawdown_ax):
            ax.axvline(when, color=colour, linestyle=style, linewidth=0.6 if thin else width,
                       alpha=0.5 if thin else 0.9, zorder=4 if breaker else 2, gid=f"mark:{kind}")
        handles.setdefault(legend, Line2D([], [], color=colour, linestyle=style, linewidth=width,
                                          label=legend))
        if breaker or len(marks) <= _ANNOTATE_AT_MOST:
            labelled.append((when, kind, label))

    equity_ax.set_ylabel("equity")
    equity_ax.yaxis.set_major_formatter(_money_formatter())
    drawdown_ax.set_ylabel("drawdown (% of day peak)")
    drawdown_ax.set_xlabel("time (UTC)")
    drawdown_ax.xaxis.set_major_formatter(_clock_formatter())
    for ax in (equity_ax, drawdown_ax):
        ax.grid(True, alpha=0.3)
    equity_ax.legend(handles=list(handles.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                     frameon=False)
    equity_ax.set_title(f"account {_shorten(account)} — portfolio {_shorten(portfolio)}", loc="left")
    _label_marks(figure, equity_ax, labelled)
    return figure


def plot_account(directory: str | Path, account: str, portfolio: str, points: Sequence[Point],
                 events: Iterable[Mapping[str, Any]], *, drawdown_limits: tuple[float, float] | None = None,
                 figsize_in: tuple[float, float] = ACCOUNT_FIGSIZE_IN, dpi: int = DPI) -> Path:
    """Write :func:`account_figure` to ``directory/account-<id>.png`` and return the path."""
    path = _inside(directory, safe_filename(account))
    account_figure(account, portfolio, points, events, drawdown_limits=drawdown_limits, figsize_in=figsize_in,
                   dpi=dpi).savefig(path)
    return path


def plot_accounts(directory: str | Path, series: Mapping[str, Sequence[Point]], portfolios: Mapping[str, str],
                  events: Sequence[Mapping[str, Any]],
                  drawdown_limits: Mapping[str, tuple[float, float]] | None = None,
                  **options: Any) -> list[Path]:
    """One chart per breached account (see :func:`breached_accounts`) that has points in ``series``."""
    return [plot_account(directory, account, portfolios.get(account, "?"), series[account], events,
                         drawdown_limits=(drawdown_limits or {}).get(account), **options)
            for account in breached_accounts(events) if series.get(account)]


def latency_figure(samples_ms: Sequence[float], *, what: str = "breach-to-deny latency",
                   figsize_in: tuple[float, float] = LATENCY_FIGSIZE_IN, dpi: int = DPI) -> Figure:
    """A histogram of ``samples_ms`` with its p50 and p99 marked (``gid`` ``mark:p50``, ``mark:p99``); a chart
    that says so when there are no samples (a run with no breach measures none)."""
    import numpy as np

    figure = _figure(figsize_in, dpi)
    ax = figure.subplots()
    values = np.asarray([v for v in samples_ms if math.isfinite(v)], dtype=np.float64)
    if values.size:
        bins = int(min(60, max(10, math.sqrt(values.size) * 2)))
        ax.hist(values, bins=bins, color=EQUITY_COLOUR, alpha=0.75, label=f"samples (n={values.size})")
        for q, colour, style in ((50, "#009e73", "--"), (99, "#d55e00", "-.")):
            value = float(np.percentile(values, q))
            ax.axvline(value, color=colour, linestyle=style, linewidth=1.6, label=f"p{q} {value:.3g} ms",
                       gid=f"mark:p{q}")
        ax.legend(loc="upper right", fontsize=9)
        ax.set_ylabel("count")
    else:
        ax.text(0.5, 0.5, f"no {what} samples: nothing breached in this run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel(f"{what} (ms)")
    ax.set_title(f"{what}, n={values.size}", loc="left")
    ax.grid(True, alpha=0.3)
    return figure


def plot_latency(directory: str | Path, samples_ms: Sequence[float], *, what: str = "breach-to-deny latency",
                 filename: str = "latency.png", figsize_in: tuple[float, float] = LATENCY_FIGSIZE_IN,
                 dpi: int = DPI) -> Path:
    """Write :func:`latency_figure` to ``directory/latency.png`` and return the path."""
    path = _inside(directory, filename)
    latency_figure(samples_ms, what=what, figsize_in=figsize_in, dpi=dpi).savefig(path)
    return path


def _label_marks(figure: Figure, ax: Axes, marks: Sequence[tuple[datetime, str, str]]) -> None:
    """Each mark's label, upright along the top of ``ax`` just right of its line; a label that would overlap
    the one before (marks on one tick, or a few pixels apart) moves right until it clears it."""
    if not marks:
        return
    figure.draw_without_rendering()  # constrained layout places the axes: pixel positions are final from here
    px_per_pt = figure.dpi / 72.0
    width_pt = _LABEL_FONT_PT * 1.25  # an upright line of text, its box included
    clear_from = -math.inf  # in points from the figure's left edge: where the last label ends
    for when, kind, label in sorted(marks, key=lambda mark: mark[0]):
        line_pt = float(ax.transData.transform((_day_number(when), 0.0))[0]) / px_per_pt
        at_pt = max(line_pt + 2.0, clear_from + _LABEL_GAP_PT)
        clear_from = at_pt + width_pt
        text = ax.annotate(label, xy=(_day_number(when), 1.0), xycoords=("data", "axes fraction"),
                           xytext=(at_pt - line_pt, -3), textcoords="offset points", rotation=90, va="top",
                           ha="left", fontsize=_LABEL_FONT_PT, color=_MARKS[kind][0], zorder=5,
                           annotation_clip=False, gid=f"label:{kind}",
                           bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                 "alpha": 0.8})
        text.set_in_layout(False)  # labels pushed past the right edge must not shrink the axes


def _clock_formatter() -> Formatter:
    """Tick labels as UTC clock times, ``HH:MM:SS`` (with milliseconds when ticks are under a second apart),
    the date under the first tick and under every tick where the date changes."""
    from matplotlib.ticker import Formatter

    class ClockFormatter(Formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{_moment(x):%Y-%m-%d %H:%M:%S} UTC"  # a single value (the cursor read-out)

        def format_ticks(self, values: list[float]) -> list[str]:
            step_s = (values[1] - values[0]) * 86_400.0 if len(values) > 1 else 1.0
            labels, day = [], None
            for value in values:
                moment = _moment(value)
                clock = f"{moment:%H:%M:%S}" + (f".{moment.microsecond // 1000:03d}" if step_s < 1.0 else "")
                labels.append(clock if moment.date() == day else f"{clock}\n{moment:%Y-%m-%d}")
                day = moment.date()
            return labels

    return ClockFormatter()


def _money_formatter() -> Formatter:
    """Money with thousands separators (``1,234,567``), and as many decimals as the ticks' spacing needs."""
    from matplotlib.ticker import Formatter

    class MoneyFormatter(Formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:,.2f}"

        def format_ticks(self, values: list[float]) -> list[str]:
            step = abs(values[1] - values[0]) if len(values) > 1 else 1.0
            decimals = 0 if step >= 1.0 or step == 0.0 else min(6, math.ceil(-math.log10(step) - 1e-9))
            return [f"{value:,.{decimals}f}" for value in values]

    return MoneyFormatter()


def _shade_engaged(marks: Sequence[tuple[datetime, str, str]], times: Sequence[datetime],
                   axes: Sequence[Axes], handles: dict[str, Any]) -> None:
    """Shade each span the breaker was engaged, from its kill to its release or the end of the series."""
    from matplotlib.patches import Patch

    start = None
    spans = []
    for when, kind, _ in marks:
        if kind == "ENGAGED" and start is None:
            start = when
        elif kind == "SAFE" and start is not None:
            spans.append((start, when))
            start = None
    if start is not None:
        spans.append((start, max([start, *times[-1:]])))
    for begin, end in spans:
        for ax in axes:
            ax.axvspan(_day_number(begin), _day_number(end), facecolor=ENGAGED_SHADE, alpha=0.12, hatch="//",
                       edgecolor="#bbbbbb", linewidth=0, zorder=0, gid="engaged")
    if spans:
        handles["breaker engaged"] = Patch(facecolor=ENGAGED_SHADE, alpha=0.25, hatch="//",
                                           edgecolor="#bbbbbb", label="breaker engaged (orders denied)")


def _figure(figsize_in: tuple[float, float], dpi: int) -> Figure:
    # A Figure on an explicit Agg canvas: never a GUI backend, whatever MPLBACKEND says; no pyplot registry.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize_in, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _inside(directory: str | Path, filename: str) -> Path:
    """``directory/filename``, the directory created; refuses a name that would land anywhere else."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    path = root / filename
    if path.resolve().parent != root.resolve():
        raise RiskmonError(f"plot file name {filename!r} leaves {root}")
    return path


def _shorten(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _epoch() -> datetime:
    from matplotlib import rcParams

    return datetime.fromisoformat(str(rcParams["date.epoch"])).replace(tzinfo=UTC)


def _day_number(moment: datetime) -> float:
    """``moment`` on a matplotlib date axis: days since its epoch (``matplotlib.dates.date2num``)."""
    return (moment - _epoch()).total_seconds() / 86_400.0


def _moment(day_number: float) -> datetime:
    """The UTC time at ``day_number`` on a matplotlib date axis (``matplotlib.dates.num2date``)."""
    return _epoch() + timedelta(days=day_number)
