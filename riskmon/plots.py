"""PNG charts for ``--plot DIR``: each breached account's equity and drawdown with its alert and kill points,
and a latency histogram.

The functions take plain data — ``(ts_ns, equity, drawdown_pct)`` points, events as the report writes them
(``{"type": "alert", "to", "tick_ts", ...}``, ``{"type": "breaker", "scope", "id", "state", "tick_ts", ...}``),
latency samples in ms — and write files; they start nothing and read no clock. matplotlib is imported inside
them, on its non-interactive Agg canvas (no pyplot, no display, no global figure state), so importing this
module costs nothing and a command run without ``--plot`` never loads it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskcore.errors import RiskmonError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Readable on a laptop screen and in a ticket: 1320 x 780 and 1100 x 600 pixels at 120 dpi.
ACCOUNT_FIGSIZE_IN = (11.0, 6.5)
LATENCY_FIGSIZE_IN = (9.0, 5.0)
DPI = 120

Point = tuple[int, float, float]  # (ts_ns, equity, drawdown_pct)

# How each kind of mark is drawn: (colour, line style, line width, legend label).
_MARKS: dict[str, tuple[str, str, float, str]] = {
    "WARNING": ("#e69f00", "--", 1.2, "alert: WARNING"),
    "CRITICAL": ("#d55e00", "--", 1.4, "alert: CRITICAL"),
    "NORMAL": ("#56b4e9", ":", 1.2, "alert: back to NORMAL"),
    "ENGAGED": ("#b00020", "-", 2.0, "breaker ENGAGED (kill)"),
    "SAFE": ("#009e73", "-", 2.0, "breaker SAFE (release)"),
}
_ANNOTATE_AT_MOST = 12  # past this many marks, lines and the legend only: labels would overlap


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
        if event.get("type") == "breaker" and event.get("scope") == "account" and event.get("state") == "ENGAGED":
            seen.setdefault(str(event["id"]), None)
        elif event.get("type") == "alert" and event.get("to") == "CRITICAL":
            seen.setdefault(str(event["account"]), None)
    return list(seen)


def account_marks(events: Iterable[Mapping[str, Any]], account: str) -> list[tuple[datetime, str, str]]:
    """The account's alert changes and breaker changes as ``(time, kind, label)``; kind keys ``_MARKS``."""
    marks = []
    for event in events:
        if event.get("tick_ts") is None:
            continue  # an operator command with no event time: nothing to place on the axis
        if event.get("type") == "alert" and str(event.get("account")) == account:
            kind, label = str(event["to"]), f"{event.get('from')}→{event['to']} ({event.get('metric')})"
        elif event.get("type") == "breaker" and event.get("scope") == "account" and str(event.get("id")) == account:
            kind = str(event["state"])
            label = ("kill" if kind == "ENGAGED" else "release") + (f" ({event['reason']})" if event.get("reason") else "")
        else:
            continue
        if kind in _MARKS:
            marks.append((_parse_ts(str(event["tick_ts"])), kind, label))
    return marks


def plot_account(directory: str | Path, account: str, portfolio: str, points: Sequence[Point],
                 events: Iterable[Mapping[str, Any]], *, drawdown_limits: tuple[float, float] | None = None,
                 figsize_in: tuple[float, float] = ACCOUNT_FIGSIZE_IN, dpi: int = DPI) -> Path:
    """Write ``directory/account-<id>.png``: equity above, drawdown % below, on one UTC time axis, with a
    vertical line at every alert change and breaker change of ``account`` in ``events``.

    ``drawdown_limits`` (warning, hard), as fractions, are drawn as horizontal lines on the drawdown panel.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.lines import Line2D

    path = _inside(directory, safe_filename(account))
    figure = _figure(figsize_in, dpi)
    equity_ax, drawdown_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 2)})
    times = [_utc(ts_ns) for ts_ns, _, _ in points]
    equity = [value for _, value, _ in points]
    drawdown = [100.0 * dd if math.isfinite(dd) else math.nan for _, _, dd in points]

    equity_ax.plot(times, equity, color="#0072b2", linewidth=1.0, label="equity")
    drawdown_ax.plot(times, drawdown, color="#cc79a7", linewidth=1.0, label="drawdown %")
    drawdown_ax.fill_between(times, drawdown, 0.0, color="#cc79a7", alpha=0.2, linewidth=0)
    handles: dict[str, Any] = {"equity": Line2D([], [], color="#0072b2", label="equity"),
                               "drawdown %": Line2D([], [], color="#cc79a7", label="drawdown %")}
    if drawdown_limits is not None:
        for value, style, name in ((drawdown_limits[0], ":", "drawdown warning"),
                                   (drawdown_limits[1], "-.", "max daily drawdown")):
            drawdown_ax.axhline(100.0 * value, color="#555555", linestyle=style, linewidth=1.0)
            handles[name] = Line2D([], [], color="#555555", linestyle=style, label=f"{name} ({100 * value:g} %)")

    marks = account_marks(events, account)
    _shade_engaged(marks, times, (equity_ax, drawdown_ax), handles)
    alerts = sum(1 for _, kind, _ in marks if kind not in ("ENGAGED", "SAFE"))
    for when, kind, label in marks:
        colour, style, width, legend = _MARKS[kind]
        breaker = kind in ("ENGAGED", "SAFE")
        # Breaker lines go on top; a flapping alert (many changes) is drawn thin so the kill stays visible.
        thin = not breaker and alerts > _ANNOTATE_AT_MOST * 3
        for ax in (equity_ax, drawdown_ax):
            ax.axvline(when, color=colour, linestyle=style, linewidth=0.6 if thin else width,
                       alpha=0.5 if thin else 0.9, zorder=4 if breaker else 2)
        handles.setdefault(legend, Line2D([], [], color=colour, linestyle=style, linewidth=width, label=legend))
        if breaker or len(marks) <= _ANNOTATE_AT_MOST:
            equity_ax.annotate(label, xy=(when, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                               textcoords="offset points", rotation=90, va="top", ha="left", fontsize=7,
                               color=colour, zorder=5)

    equity_ax.set_ylabel("equity")
    equity_ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    drawdown_ax.set_ylabel("drawdown (% of day peak)")
    drawdown_ax.set_xlabel("time (UTC)")
    locator = AutoDateLocator(tz=UTC)
    drawdown_ax.xaxis.set_major_locator(locator)
    drawdown_ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))
    for ax in (equity_ax, drawdown_ax):
        ax.grid(True, alpha=0.3)
    equity_ax.legend(handles=list(handles.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                     frameon=False)
    equity_ax.set_title(f"account {_shorten(account)} — portfolio {_shorten(portfolio)}", loc="left")
    figure.savefig(path)
    return path


def plot_accounts(directory: str | Path, series: Mapping[str, Sequence[Point]], portfolios: Mapping[str, str],
                  events: Sequence[Mapping[str, Any]],
                  drawdown_limits: Mapping[str, tuple[float, float]] | None = None, **options: Any) -> list[Path]:
    """One chart per breached account (see :func:`breached_accounts`) that has points in ``series``."""
    return [plot_account(directory, account, portfolios.get(account, "?"), series[account], events,
                         drawdown_limits=(drawdown_limits or {}).get(account), **options)
            for account in breached_accounts(events) if series.get(account)]


def plot_latency(directory: str | Path, samples_ms: Sequence[float], *, what: str = "breach-to-deny latency",
                 filename: str = "latency.png", figsize_in: tuple[float, float] = LATENCY_FIGSIZE_IN,
                 dpi: int = DPI) -> Path:
    """Write ``directory/latency.png``: a histogram of ``samples_ms`` with its p50 and p99 marked; a chart
    that says so when there are no samples (a run with no breach measures none)."""
    import numpy as np

    path = _inside(directory, filename)
    figure = _figure(figsize_in, dpi)
    ax = figure.subplots()
    values = np.asarray([v for v in samples_ms if math.isfinite(v)], dtype=np.float64)
    if values.size:
        bins = int(min(60, max(10, math.sqrt(values.size) * 2)))
        ax.hist(values, bins=bins, color="#0072b2", alpha=0.75, label=f"samples (n={values.size})")
        for q, colour, style in ((50, "#009e73", "--"), (99, "#d55e00", "-.")):
            value = float(np.percentile(values, q))
            ax.axvline(value, color=colour, linestyle=style, linewidth=1.6, label=f"p{q} {value:.3g} ms")
        ax.legend(loc="upper right", fontsize=9)
        ax.set_ylabel("count")
    else:
        ax.text(0.5, 0.5, f"no {what} samples: nothing breached in this run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel(f"{what} (ms)")
    ax.set_title(f"{what}, n={values.size}", loc="left")
    ax.grid(True, alpha=0.3)
    figure.savefig(path)
    return path


def _shade_engaged(marks: Sequence[tuple[datetime, str, str]], times: Sequence[datetime], axes: Sequence[Any],
                   handles: dict[str, Any]) -> None:
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
            ax.axvspan(begin, end, color="#b00020", alpha=0.07, linewidth=0, zorder=0)
    if spans:
        handles["breaker engaged"] = Patch(color="#b00020", alpha=0.15, label="breaker engaged (orders denied)")


def _figure(figsize_in: tuple[float, float], dpi: int) -> Figure:
    # A Figure on an explicit Agg canvas: never a GUI backend, whatever MPLBACKEND says, and no pyplot registry.
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
