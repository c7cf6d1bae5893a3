"""The ``riskmon`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from config import DEFAULT_CONFIG
from riskcore.audit import AuditTrail, config_summary, verify
from riskcore.config import RiskConfig
from riskcore.errors import ConfigError, InputError, RiskmonError
from riskcore.feeds import FORMATS
from riskmon.service import add_service_commands


def _config(path: str) -> RiskConfig:
    from riskcore.config import load_config

    return load_config(path)


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _config(args.config)
    print(f"OK {args.config}: {len(config.accounts)} accounts, {len(config.portfolios)} portfolios, "
          f"{len(config.symbols)} symbols")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if not Path(args.ticks).is_file():
        raise RiskmonError(f"no tick file at {args.ticks}")  # before starting Ray, not after
    from riskmon.replay import print_summary, replay, write_audit

    symbol = args.symbol or ("EURUSD" if args.format == "histdata" else None)
    _plot_dir(args.plot)
    # Opened before the replay: a trail that must not be extended stops the command before any work.
    trail = _open_audit(args.audit, config, args.config, command="replay", input=args.ticks)
    try:
        report = replay(args.ticks, args.format, config, symbol=symbol)
        audited = 0 if trail is None else 1 + write_audit(trail, report, config, symbol)
    finally:
        if trail is not None:
            trail.close()
    text = json.dumps(report, indent=2, allow_nan=False)
    if args.report:
        _write_output(args.report, text)
    if args.json:
        print(text)
    # With --json, standard output carries the report alone and the summary goes to standard error.
    out = sys.stderr if args.json else sys.stdout
    engaged = [e for e in report["events"] if e.get("type") == "breaker" and e["state"] == "ENGAGED"]
    print(f"replayed {args.ticks}: {report['ticks']} ticks applied, {report['rejected']} rejected, "
          f"{sum(1 for e in report['events'] if e.get('type') == 'alert')} alert changes, "
          f"{len(engaged)} breakers engaged" + (f"; report in {args.report}" if args.report else "")
          + (f"; {audited} audit records appended to {args.audit}" if trail is not None else ""), file=out)
    print_summary(report, out)
    if not (args.report or args.json):
        print("the full report (every event, every account's state): --report PATH, or --json to print it",
              file=out)
    if args.plot:
        from riskmon.replay import write_plots

        files = write_plots(report, config, args.plot, symbol)
        _print_plots(args.plot, files, out)
    return 0


def _write_output(path: str, text: str) -> None:
    """Write an output file (its directory created), or say plainly why it could not be written."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise RiskmonError(f"cannot write {path}: {exc.strerror or exc}") from None


def _plot_dir(path: str | None) -> None:
    """Create the chart directory before the run, so a path that cannot hold charts fails in a second, not
    after."""
    if path is not None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RiskmonError(f"cannot write charts to {path}: {exc.strerror or exc}") from None


def _print_plots(directory: str, files: list[Path], out: TextIO | None = None) -> None:
    print(f"{len(files)} chart{'' if len(files) == 1 else 's'} written to {directory}"
          + "".join(f"\n  {path}" for path in files), file=out or sys.stdout)


def _open_audit(path: str | None, config: RiskConfig, source: str | None,
                **context: Any) -> AuditTrail | None:
    """The trail at ``path`` (continued if it exists), opened with a ``config_load`` record; None without a
    path."""
    if path is None:
        return None
    trail = AuditTrail(path)
    trail.append("config_load", **config_summary(config, source), **context)
    return trail


def cmd_audit_verify(args: argparse.Namespace) -> int:
    try:
        result = verify(args.file)
    except OSError as exc:
        print(f"error: cannot read audit trail {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if result.first_bad is None:
        # The head is what the next record's "prev" will be: keep it elsewhere to catch records cut off the
        # end.
        print(f"OK: {result.records} records, chain intact ({args.file}); head {result.head} "
              f"(SHA-256 of the last line)")
        return 0
    print(f"BROKEN at line {result.first_bad} (seq {result.first_bad - 1}): {result.problem} ({args.file}); "
          f"the {result.records} records before it verify")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from riskmon.demo import run_demo

    run_demo(Path(args.config), seconds=args.seconds, seed=args.seed)
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from riskmon.drills.chaos import run_chaos
    from riskmon.drills.common import FAULTS

    # The drills kill processes on purpose; Ray's notices of it ("A worker died...") go to standard error, so
    # standard output carries the table alone.
    with contextlib.redirect_stdout(sys.stderr):
        results = run_chaos(args.accounts, args.ticks, args.seed, tuple(args.fault) if args.fault else FAULTS)
    table = Table(title=f"riskmon chaos: {args.accounts:,} accounts, {args.ticks:,} ticks per run",
                  title_justify="left")
    for column in ("fault", "recovered", "recovery s", "events lost", "events duplicated"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    for r in results:  # a drill that could not run to its end has no figures (None)
        figures = ("-" if r[key] is None else str(r[key]) for key in ("lost_events", "duplicated_events"))
        table.add_row(r["fault"], "yes" if r["recovered"] else "NO",
                      "-" if r["recovery_s"] is None else f"{r['recovery_s']:.2f}", *figures)
    Console(width=None if sys.stdout.isatty() else 110).print(table)
    for r in results:
        if "error" in r:
            print(f"{r['fault']}: {r['error']}", file=sys.stderr)
    if args.json:
        _write_output(args.json, json.dumps(results, indent=2))
    ok = all(r["recovered"] and r["lost_events"] == 0 and r["duplicated_events"] == 0 for r in results)
    return 0 if ok else 1


def cmd_stress(args: argparse.Namespace) -> int:
    from rich.console import Console

    from riskmon.loadgen.generator import firm_config
    from riskmon.stress import print_summary, run_stress

    if args.ticks is not None and args.duration is not None:
        raise RiskmonError("give --ticks or --duration, not both")
    began = time.monotonic()
    if args.config:
        from riskcore.config import load_config

        config = load_config(args.config)
    else:
        config = firm_config(args.accounts, args.portfolios, args.symbols, seed=args.seed,
                             accounts_per_actor=args.accounts_per_actor)
    if args.feeds is not None:
        return _stress_feeds(args, config)
    if args.connect:
        raise RiskmonError("--connect drives a running service over TCP: give --feeds N too")
    _plot_dir(args.plot)
    trail = _open_audit(args.audit, config, None, command="stress", scenario=args.scenario, seed=args.seed)
    latencies: list[float] = []
    parts: list[Any] | None = [] if args.plot else None  # kept for the charts only
    events: list[dict[str, Any]] = []
    try:
        summary = run_stress(config, streams=args.streams, ticks=args.ticks,
                             duration=args.duration if args.ticks is None else None, scenario=args.scenario,
                             seed=args.seed, rate=args.rate, audit=trail, latencies=latencies, parts=parts,
                             events_out=events)
    finally:
        if trail is not None:
            trail.close()
    summary["wall_s"] = round(time.monotonic() - began, 1)  # Ray's start and stop included
    print_summary(Console(width=None if sys.stdout.isatty() else 110), summary)
    if args.json:
        _write_output(args.json, json.dumps(summary, indent=2))
    if args.plot:
        from riskmon.plots import breached_accounts, plot_accounts, plot_latency
        from riskmon.stress import account_series

        accounts = breached_accounts(events)
        specs = {spec.id: spec for spec in config.accounts}
        charts = plot_accounts(args.plot, account_series(config, parts or [], accounts) if accounts else {},
                               {a: specs[a].portfolio for a in accounts}, events,
                               {a: (specs[a].limits.drawdown_warning, specs[a].limits.max_daily_drawdown)
                                for a in accounts})
        _print_plots(args.plot, [*charts, plot_latency(args.plot, latencies, what="breach-to-deny latency")])
    return 0


def _stress_feeds(args: argparse.Namespace, config: Any) -> int:
    from rich.console import Console

    from riskmon.service import host_port
    from riskmon.stress_feeds import print_feed_summary, run_feed_stress

    if args.feeds < 1 or args.frame_ticks < 1 or args.producers < 1:
        raise RiskmonError("--feeds, --frame-ticks and --producers must be at least 1")
    if args.duration is not None or args.plot or args.audit:
        raise RiskmonError("with --feeds, give --ticks (not --duration); --plot and --audit are for the "
                           "in-process run")
    console = Console(width=None if sys.stdout.isatty() else 110)
    summary = run_feed_stress(config, feeds=args.feeds, ticks=args.ticks or 1_000_000,
                              producers=args.producers, frame_ticks=args.frame_ticks, rate=args.rate,
                              seed=args.seed, connect=host_port(args.connect, 7411) if args.connect else None,
                              console=console)
    print_feed_summary(console, summary)
    if args.json:
        _write_output(args.json, json.dumps(summary, indent=2))
    return 0 if not summary["errors"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskmon", description="Live tick-level risk monitor on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the bundled demo firm on embedded Ray, with a flash crash",
                          description="Demo accounts from the bundled config, generated EURUSD-like quotes "
                                      "with a flash crash, a live table, and a summary of which breakers "
                                      "engaged and why.")
    demo.add_argument("--config", default=str(DEFAULT_CONFIG), help="config file (default: the bundled one)")
    demo.add_argument("--seconds", type=float, default=12.0, help="how long to feed quotes (default 12)")
    demo.add_argument("--seed", type=int, default=7, help="random seed for the quotes")
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser("replay", help="replay recorded quotes through the system and summarise them",
                            description="Reads HistData, TrueFX or msgpack tick files as they come; refused "
                                        "records are counted and keep their index (tick_seq) in the report. "
                                        "Prints a summary (ticks, refusals, alert and breaker changes, and a "
                                        "table of the accounts they reached); the full JSON report goes to "
                                        "--report or, with --json, to standard output.")
    replay.add_argument("ticks", help="tick file")
    replay.add_argument("--format", choices=FORMATS, required=True, help="file format")
    replay.add_argument("--symbol",
                        help="symbol of a HistData file (default EURUSD); a filter for the others")
    replay.add_argument("--config", required=True,
                        help="config file (config/replay_demo.yaml: a small book that breaches on a real day "
                             "of EURUSD quotes)")
    replay.add_argument("--report", metavar="PATH",
                        help="write the full JSON report here (its directory created if missing)")
    replay.add_argument("--json", action="store_true",
                        help="print the full JSON report to standard output (the summary goes to standard "
                             "error)")
    replay.add_argument("--audit", metavar="PATH",
                        help="append to the audit trail here (created if missing): the config load, every "
                             "alert and breaker change with the account's state before and after, a summary "
                             "of refused records")
    replay.add_argument("--plot", metavar="DIR",
                        help="write PNG charts here (created if missing): per breached account (breaker "
                             "engaged or alert CRITICAL), equity and drawdown %% over time with every alert "
                             "change, kill and release marked; a second, Ray-free pass over the file")
    replay.set_defaults(func=cmd_replay)

    from riskmon.loadgen.generator import SCENARIOS

    stress = sub.add_parser("stress", help="load a synthetic firm end to end on Ray and measure it",
                            description="Random-walk quotes with jumps at real EURUSD tick volatility on "
                                        "many concurrent streams, fills on ~1% of ticks, and a scenario. "
                                        "Prints a table (ticks/s to the applied watermark, account-ticks/s, "
                                        "breaches, breach-to-deny latency at a gate in another process). The "
                                        "wall time is Ray's start (several seconds), the calibration of a "
                                        "duration-bound run (about 2 s), the run, and the shutdown.")
    stress.add_argument("--streams", type=int, default=128, help="concurrent tick streams (default 128)")
    stress.add_argument("--accounts", type=int, default=1000, help="accounts (default 1000)")
    stress.add_argument("--portfolios", type=int, default=10, help="portfolios (default 10)")
    stress.add_argument("--symbols", type=int, default=50, help="symbols (default 50)")
    stress.add_argument("--accounts-per-actor", type=int,
                        help="accounts per Ray actor (default: half the firm)")
    stress.add_argument("--duration", type=float,
                        help="seconds of load (default 10 when --ticks is not given): ticks are sent until "
                             "then, and the run ends once they are applied. Unpaced, the scenario is placed "
                             "by a calibration of about 2 s first (not counted), and how many ticks go "
                             "depends on the machine's speed and load: give --ticks for a run a seed repeats")
    stress.add_argument("--ticks", type=int,
                        help="exactly this many ticks instead of a duration, no calibration: the same seed "
                             "gives the same ticks, fills, alerts and breaches on every run")
    stress.add_argument("--rate", type=float,
                        help="pace the feed at this many ticks/s (default: as fast as it goes). The latency "
                             "then measures the breach path; unpaced, it includes queueing behind the "
                             "batches in flight")
    stress.add_argument("--config", metavar="CFG",
                        help="stress this firm (its symbols, accounts and limits) instead of the synthetic "
                             "one; quotes start at the entry prices of its positions")
    stress.add_argument("--feeds", type=int, metavar="N",
                        help="drive N concurrent TCP feeds (one stream each) from several producer processes "
                             "into a service's ingest, as feed handlers do, one answer awaited per frame; "
                             "ticks/s to the applied watermark and each frame's answer time (--ticks, "
                             "default 1,000,000; --rate paces all feeds together)")
    stress.add_argument("--frame-ticks", type=int, default=64,
                        help="ticks per frame with --feeds (default 64)")
    stress.add_argument("--producers", type=int, default=8,
                        help="producer processes with --feeds (default 8)")
    stress.add_argument("--connect", metavar="HOST:PORT",
                        help="with --feeds: a running service's feed address (`riskmon run` prints it; give "
                             "its --config too); default: start a service for the run")
    stress.add_argument("--scenario", choices=SCENARIOS, default="mixed", help="what happens during the run")
    stress.add_argument("--seed", type=int, default=7, help="random seed")
    stress.add_argument("--json", metavar="PATH",
                        help="also write the summary here as JSON (its directory created if missing)")
    stress.add_argument("--audit", metavar="PATH",
                        help="append to the audit trail here (created if missing): the config load, every "
                             "alert and breaker change, a summary of refused input")
    stress.add_argument("--plot", metavar="DIR",
                        help="write charts here (created if missing): equity and drawdown of each breached "
                             "account with its alert, kill and release points (the run's chunks again "
                             "through the batched engine, for those accounts, after the measured run), and "
                             "latency.png, a histogram of the breach-to-deny latencies with p50 and p99 "
                             "marked")
    stress.set_defaults(func=cmd_stress)

    chaos = sub.add_parser("chaos",
                           help="failure drills against a live local system: recovery time, events lost",
                           description="Feeds the same generated stream (breaches and fills) once "
                                       "undisturbed and once per fault: kill -9 of an account shard's "
                                       "process, kill -9 of the supervisor, a restart of the whole service, "
                                       "and the loss of a node hosting account shards (a 3-node local "
                                       "cluster of its own, in a child process). Desk and firm limits breach "
                                       "mid-stream, and journals compact into snapshots, in every run. "
                                       "Prints, per fault, whether every account ended identical and up, the "
                                       "recovery time, and the events (account, desk and firm alerts, "
                                       "breaches and breakers, operator commands) lost or recorded twice "
                                       "(both must be 0). Ray's notices of the kills go to standard error. "
                                       "About a minute with the defaults. Exit 1 if any drill fails.")
    chaos.add_argument("--accounts", type=int, default=600, help="accounts, in two shards (default 600)")
    chaos.add_argument("--ticks", type=int, default=12_000, help="ticks per run (default 12000)")
    chaos.add_argument("--fault", action="append",
                       choices=("shard kill -9", "supervisor kill -9", "service restart", "node loss"),
                       help="run only this drill (repeatable, in the order given; default: all four)")
    chaos.add_argument("--seed", type=int, default=11, help="random seed")
    chaos.add_argument("--json", metavar="PATH",
                       help="also write the results here: a list of {fault, recovered, recovery_s, "
                            "lost_events, duplicated_events} (null figures and an error for a drill that "
                            "could not run to its end)")
    chaos.set_defaults(func=cmd_chaos)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file without starting anything",
                                  description="Exit 0 and print OK if valid; else name the key path and exit "
                                              "2.")
    check.add_argument("config", help="config file")
    check.set_defaults(func=cmd_config_check)

    add_service_commands(sub)

    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify_cmd = audit_sub.add_parser(
        "verify", help="check an audit trail's hash chain",
        description="Checks every record: a JSON object in canonical form, seq rising by one from 0, prev "
                    "equal to the SHA-256 of the line before, its own hash, an RFC 3339 timestamp. Exit 0 "
                    "and print OK with the head hash (keep it elsewhere: records cut off the end leave a "
                    "chain that still verifies); exit 1 naming the first record that does not fit; exit 2 if "
                    "the file cannot be read.")
    verify_cmd.add_argument("file", help="audit trail file (JSON lines)")
    verify_cmd.set_defaults(func=cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"input error: {exc}", file=sys.stderr)
        return 2
    except RiskmonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
