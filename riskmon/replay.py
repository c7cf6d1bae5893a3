"""``riskmon replay``: recorded quotes through the live system, and the report that is its contract."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, TextIO

from driver.system import RiskSystem
from riskcore.audit import AuditTrail, refusal_summary
from riskcore.config import RiskConfig
from riskcore.engine import BatchedEngine, EventBatch, ReferenceEngine
from riskcore.errors import InputError, RiskmonError
from riskcore.events import Tick
from riskcore.feeds import read_records

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


def write_audit(trail: AuditTrail, report: dict[str, Any], config: RiskConfig,
                symbol: str | None = None) -> int:
    """Append a replay's events to the audit trail, then a summary of what it refused; return the records
    written.

    Each account's alert or breaker change carries the account's state just before and just after its tick.
    """
    states = _states_around_changes(report, config, symbol)
    written = 0
    for event in report["events"]:
        account = _account_of(event)
        before = after = None
        if account is not None:
            # The rerun must agree with what the system reported, or the states it gives are not the system's.
            around = states.get((account, int(event["tick_seq"])))
            if around is None or around[1][_STATE_FIELD[event["type"]]] != event[_EVENT_FIELD[event["type"]]]:
                raise RiskmonError(f"audit: the rerun of {report['source']} disagrees with the system about "
                                   f"account {account} at tick_seq {event['tick_seq']}: {event}, "
                                   f"states {around}")
            before, after = around
        trail.append_event(event, before=before, after=after)
        written += 1
    if report["rejections"]:
        trail.append("rejected_input", source=report["source"], **refusal_summary(report["rejections"]))
        written += 1
    return written


SUMMARY_ROWS = 20  # accounts listed by the summary; the report has them all


def print_summary(report: dict[str, Any], out: TextIO) -> None:
    """The replay in a short table: one row per account an alert or breaker change reached (breached ones
    first), with its alert changes, kills, first kill and where it ended; then portfolio and firm breakers."""
    from rich.console import Console
    from rich.table import Table

    from riskmon.plots import breached_accounts

    rows: dict[str, dict[str, Any]] = {}
    for event in report["events"]:
        if event.get("type") == "alert":
            account = str(event["account"])
        elif event.get("type") == "breaker" and event.get("scope") == "account":
            account = str(event["id"])
        else:
            continue
        row = rows.setdefault(account, {"alerts": 0, "kills": 0, "first_kill": None})
        if event["type"] == "alert":
            row["alerts"] += 1
        elif event["state"] == "ENGAGED":
            row["kills"] += 1
            row["first_kill"] = row["first_kill"] or event.get("tick_ts")
    upper = [e for e in report["events"] if e.get("type") == "breaker" and e.get("scope") != "account"]
    if not rows and not upper:
        print("no alert level or breaker changed", file=out)
        return
    breached = set(breached_accounts(report["events"]))
    table = Table(title=f"{len(rows)} accounts alerted, {len(breached)} breached "
                        "(breaker engaged or CRITICAL)", title_justify="left")
    for column in ("account", "alert changes", "kills", "first kill (UTC)", "final alert", "final breaker"):
        table.add_column(column, justify="left" if column == "account" else "right")
    ordered = sorted(rows.items(), key=lambda item: (item[0] not in breached, item[0]))
    for account, row in ordered[:SUMMARY_ROWS]:
        final = report["accounts"].get(account, {})
        table.add_row(account, f"{row['alerts']:,}", f"{row['kills']:,}", row["first_kill"] or "-",
                      str(final.get("alert_level", "?")), str(final.get("breaker", "?")))
    Console(file=out, width=None if out.isatty() else 110).print(table)
    if len(ordered) > SUMMARY_ROWS:
        print(f"... {len(ordered) - SUMMARY_ROWS} more accounts in the report", file=out)
    for event in upper:
        print(f"{event['scope']} {event['id']} breaker {event['state']} at {event.get('tick_ts')} "
              f"({event.get('reason')})", file=out)


# What an account change says, and the AccountState field that must say the same after it.
_EVENT_FIELD = {"alert": "to", "breaker": "state"}
_STATE_FIELD = {"alert": "alert_level", "breaker": "breaker"}


# (account, tick_seq) -> the account's state (AccountState.to_dict()) before and after that tick.
StatesAround = dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]]


def _account_of(event: dict[str, Any]) -> str | None:
    """The account a tick changed, or None (portfolio and firm events, operator commands)."""
    if event.get("tick_seq") is None:
        return None
    if event.get("type") == "alert":
        return str(event["account"])
    if event.get("type") == "breaker" and event.get("scope") == "account":
        return str(event["id"])
    return None


def _states_around_changes(report: dict[str, Any], config: RiskConfig, symbol: str | None) -> StatesAround:
    """The state of each account either side of every tick that changed its alert level or breaker.

    The system reports events, not states as of each one. This reruns the file up to its last change through
    the engine the shards run (bit-identical to the reference engine), without Ray, skipping what the system
    refused, and reads the accounts either side of each changing tick: a second pass, paid only for an audit.
    """
    changed: dict[int, set[str]] = {}
    for event in report["events"]:
        account = _account_of(event)
        if account is not None:
            changed.setdefault(int(event["tick_seq"]), set()).add(account)
    if not changed:
        return {}
    refused = {int(r["tick_seq"]) for r in report["rejections"]}
    last = max(changed)
    engine = BatchedEngine(config)
    pending: list[Tick] = []

    def run(ticks: list[Tick]) -> None:
        engine.apply(EventBatch.from_events(ticks, engine.symbol_ids))

    def read(accounts: set[str]) -> dict[str, dict[str, Any]]:
        engine.sync()
        return {a: engine.book(a).state().to_dict() for a in accounts}

    states: StatesAround = {}
    for index, record in read_records(report["source"], report["format"], symbol):
        if index > last:
            break
        if isinstance(record, InputError) or index in refused:
            continue
        accounts = changed.get(index)
        if accounts is None:
            pending.append(record)
            if len(pending) >= CHUNK:
                run(pending)
                pending = []
            continue
        if pending:
            run(pending)
            pending = []
        before = read(accounts)
        run([record])
        after = read(accounts)
        states.update(((a, index), (before[a], after[a])) for a in accounts)
    return states


MAX_POINTS = 4_000  # per account chart: enough to show the path, few enough to draw in a blink


def write_plots(report: dict[str, Any], config: RiskConfig, directory: str | Path, symbol: str | None = None,
                max_points: int = MAX_POINTS) -> list[Path]:
    """Write a PNG per breached account of a replay (equity and drawdown with its alert and kill points) into
    ``directory``; return the files written. Paid only with ``--plot``: a second, Ray-free pass over the
    file."""
    from riskmon.plots import breached_accounts, plot_accounts

    accounts = breached_accounts(report["events"])
    if not accounts:
        return []
    series = account_series(report, config, accounts, symbol, max_points)
    specs = {spec.id: spec for spec in config.accounts}
    return plot_accounts(directory, series, {a: specs[a].portfolio for a in accounts}, report["events"],
                         {a: (specs[a].limits.drawdown_warning, specs[a].limits.max_daily_drawdown)
                          for a in accounts})


def account_series(report: dict[str, Any], config: RiskConfig, accounts: list[str], symbol: str | None = None,
                   max_points: int = MAX_POINTS) -> dict[str, list[tuple[int, float, float]]]:
    """``(ts_ns, equity, drawdown_pct)`` of each of ``accounts`` after every record that reached it, thinned
    to about ``max_points``: per bucket of records, the deepest drawdown and the last point, plus the point of
    every record that changed the account's alert level or breaker.

    Like the audit's rerun, the file goes again through the reference engine (the specification the shards'
    engine is bit-identical to), without Ray, skipping what the system refused; here one record at a time and
    for these accounts only, so each account's figures can be read after every record that reached it.
    """
    keep: dict[str, set[int]] = {a: set() for a in accounts}
    for event in report["events"]:
        account = _account_of(event)
        if account in keep:
            keep[account].add(int(event["tick_seq"]))
    refused = {int(r["tick_seq"]) for r in report["rejections"]}
    records = int(report["ticks"]) + int(report["rejected"])
    bucket_size = max(1, -(-records // max(1, max_points // 2)))  # two points a bucket
    engine = ReferenceEngine(config, account_ids=accounts)
    books = [engine.book(a) for a in accounts]
    out: dict[str, dict[int, tuple[int, float, float]]] = {a: {} for a in accounts}
    # Per account, the bucket being filled: (bucket, (index, point) of its deepest drawdown, (index, point)
    # last).
    open_bucket: dict[str, tuple[int, tuple[int, Any], tuple[int, Any]]] = {}

    def close(account: str) -> None:
        _, deepest, last = open_bucket.pop(account)
        out[account].update((deepest, last))

    for index, record in read_records(report["source"], report["format"], symbol):
        if isinstance(record, InputError) or index in refused:
            continue
        engine.apply(EventBatch.from_events([record], engine.symbol_ids))
        symbol_id = engine.symbol_ids.get(record.symbol) if isinstance(record, Tick) else None
        for book in books:
            reached = (book.holds(symbol_id) if symbol_id is not None
                       else getattr(record, "account", None) == book.id)
            if not reached or book.ts_ns is None:
                continue
            point = (int(book.ts_ns), book.equity, book.drawdown_pct)
            if index in keep[book.id]:
                out[book.id][index] = point
            bucket = index // bucket_size
            current = open_bucket.get(book.id)
            if current is not None and current[0] != bucket:
                close(book.id)
                current = None
            if current is None:
                open_bucket[book.id] = (bucket, (index, point), (index, point))
            else:
                deepest = current[1] if not point[2] > current[1][1][2] else (index, point)
                open_bucket[book.id] = (bucket, deepest, (index, point))
    for account in list(open_bucket):
        close(account)
    return {a: [point for _, point in sorted(points.items())] for a, points in out.items()}
