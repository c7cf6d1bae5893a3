"""``riskmon stress --feeds N``: the live path as users drive it, N concurrent TCP feeds from several
producer processes into a service's ingest actor, against a service it starts or one given by
``--connect HOST:PORT``.

Each feed is one stream of frames of ``--frame-ticks`` ticks; a producer awaits each frame's answer, which
comes once the shards it reached have journaled and applied it, so ticks/s is measured to the applied
watermark from the producers' side, and the answer time is what a feed handler waits.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driver.system import RiskSystem
from riskcore.config import RiskConfig
from riskmon.loadgen.feeds import drive_feeds, plan_feeds

HOST = "127.0.0.1"


def run_feed_stress(config: RiskConfig, *, feeds: int, ticks: int, producers: int = 8, frame_ticks: int = 64,
                    rate: float | None = None, seed: int = 7, connect: tuple[str, int] | None = None,
                    progress: bool = True, console: Console | None = None) -> dict[str, Any]:
    """Drive ``feeds`` TCP feeds with ``ticks`` generated ticks of ``config``'s symbols; the summary.
    Without ``connect``, a service is started for the run (embedded Ray) and stopped after it."""
    plan = plan_feeds(config, feeds, ticks, frame_ticks, seed=seed)
    system = None
    if connect is None:
        system = RiskSystem.start(config)
        connect = (HOST, system.listen(HOST, 0))
    try:
        count = TextColumn("{task.completed:,.0f} / {task.total:,} ticks")
        columns = (TextColumn("feeds"), BarColumn(), count, TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task("feeds", total=ticks)
            result = drive_feeds(connect[0], connect[1], plan, producers=min(producers, feeds), rate=rate,
                                 on_progress=lambda done: bar.update(task, completed=done))
        if system is not None:
            system.flush()
    finally:
        if system is not None:
            system.shutdown()
    return {
        "feeds": feeds, "producers": min(producers, feeds), "frame_ticks": frame_ticks, "ticks": ticks,
        "accounts": len(config.accounts), "symbols": len(config.symbols), "seed": seed, "rate": rate,
        "service": f"{connect[0]}:{connect[1]}" if system is None else "started for the run",
        "accepted": result.accepted, "refused": result.refused, "errors": result.errors[:10],
        "seconds": round(result.seconds, 3), "ticks_per_s": round(result.accepted / result.seconds),
        "frame_answer_ms": result.answer_ms(),
    }


def print_feed_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title="riskmon stress: TCP feeds", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    answer = summary["frame_answer_ms"]
    paced = f"paced at {summary['rate']:,.0f} ticks/s" if summary["rate"] else "unpaced"
    for name, value in (
        ("feeds / producer processes / ticks per frame",
         f"{summary['feeds']:,} / {summary['producers']} / {summary['frame_ticks']}"),
        ("accounts / symbols", f"{summary['accounts']:,} / {summary['symbols']}"),
        ("service", summary["service"]),
        ("run", f"{summary['ticks']:,} ticks, {paced}, seed {summary['seed']}"),
        ("ticks accepted / refused", f"{summary['accepted']:,} / {summary['refused']:,}"),
        ("seconds, first frame to last answer", f"{summary['seconds']:.2f}"),
        ("ticks/s, to the applied watermark", f"{summary['ticks_per_s']:,}"),
        ("frame answer ms p50 / p99 / max (frames)",
         f"{answer['p50']} / {answer['p99']} / {answer['max']} ({answer['count']:,})"),
    ):
        table.add_row(name, value)
    console.print(table)
    for error in summary["errors"]:
        console.print(f"feed error: {error}")

