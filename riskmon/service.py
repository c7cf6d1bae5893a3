"""``riskmon run`` (the service) and the operator commands that act on a running one.

``riskmon run`` starts (or attaches to) Ray, creates the supervisor, the account shards and the ingest actor
from the config, has the ingest actor take feeds over TCP (``actors.feed_listener``: this process is not on
the data path), serves Prometheus metrics (``driver.metrics``), and runs until SIGINT or SIGTERM; then it
stops taking feeds, lets what was taken be applied and reported, and stops its actors (journals are written
before anything is acknowledged, so nothing is lost either way). Started again under the same name it picks up
where it stopped: halts in force, numbering continued.

``riskmon status``, ``engage`` and ``reset`` attach to the Ray cluster the service runs on (``--address``,
default ``auto``: the one this machine runs) and talk to its supervisor, a named actor (``--name``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from config import DEFAULT_CONFIG
from riskcore.errors import RiskmonError

DEFAULT_NAME = "riskmon"


def host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    try:
        return host, int(port)
    except ValueError:
        raise RiskmonError(f"expected HOST:PORT, got {text!r}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from driver.metrics import DEFAULT_PORT as METRICS_PORT
    from driver.metrics import serve_metrics
    from driver.system import RiskSystem
    from riskcore.config import load_config
    from riskcore.framing import DEFAULT_PORT as FEED_PORT

    config = load_config(args.config or DEFAULT_CONFIG)
    feed_host, feed_port = host_port(args.listen, FEED_PORT)
    metrics_at = None if args.metrics == "off" else host_port(args.metrics, METRICS_PORT)
    address = None if args.address in (None, "local") else args.address
    system = RiskSystem.start(config, address=address, name=args.name, state_dir=args.state_dir,
                              audit=args.audit)
    stop = threading.Event()
    metrics = None
    listening = False
    try:
        # After Ray's start: ray.init installs handlers of its own.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        port = system.listen(feed_host, feed_port)
        listening = True
        if metrics_at is not None:
            metrics = serve_metrics(system, *metrics_at)
        import ray

        where = ray.get_runtime_context().gcs_address
        _record_address(args.name, args.state_dir, where)
        metrics_text = ("off" if metrics is None or metrics_at is None
                        else f"http://{metrics_at[0]}:{metrics.port}/metrics")
        print(f"riskmon run: {args.name} serving {len(config.accounts)} accounts in {len(system.shards)} "
              f"shards; feeds on {feed_host}:{port}; metrics {metrics_text}; Ray at {where}; state in "
              f"{system.state}; stop with Ctrl-C or SIGTERM", flush=True)
        stop.wait()
        print("riskmon run: stopping: no new feeds; applying what was taken", flush=True)
    finally:
        try:
            if listening:
                system.stop_listening()
            if metrics is not None:
                metrics.close()
            system.flush(timeout_s=60.0)
        finally:
            system.shutdown()
    print("riskmon run: stopped", flush=True)
    return 0


def _address_file(name: str, state_dir: str | None) -> Path:
    from driver.system import state_root

    return state_root(state_dir) / name / "service.json"


def _record_address(name: str, state_dir: str | None, address: str) -> None:
    """Where this service's Ray is, beside its journals: operator commands find it there, not by guessing."""
    _address_file(name, state_dir).write_text(json.dumps({"name": name, "address": address}) + "\n",
                                              encoding="utf-8")


def _supervisor(args: argparse.Namespace) -> Any:
    import ray

    from driver.system import init_ray
    from supervisor.deploy import get_supervisor

    if args.address is None:
        # The Ray the service with this name recorded when it started (the machine may run other Rays),
        # else the one this machine runs.
        recorded = _address_file(args.name, args.state_dir)
        args.address = json.loads(recorded.read_text())["address"] if recorded.exists() else "auto"
    init_ray(args.address, log_to_driver=False)
    try:
        return ray, get_supervisor(args.name)
    except ValueError:
        raise RiskmonError(f"no riskmon service named {args.name!r} on the Ray cluster at {args.address} "
                           f"({ray.get_runtime_context().gcs_address}); is `riskmon run` running? "
                           "--name, --address, --state-dir") from None


def cmd_status(args: argparse.Namespace) -> int:
    ray, supervisor = _supervisor(args)
    status, accounts = ray.get([supervisor.status.remote(), supervisor.accounts_view.remote()], timeout=60)
    if args.json:
        print(json.dumps({**status, "accounts": accounts}, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    breakers = status["breakers"]
    scopes = Table(title=f"{args.name}: firm and portfolios", title_justify="left")
    for column in ("scope", "accounts", "gross exposure", "equity", "daily PnL", "drawdown", "engaged",
                   "breaker"):
        scopes.add_column(column, justify="left" if column == "scope" else "right")
    rows = [("firm", status["firm"], breakers["global"])]
    rows += [(f"portfolio {pid}", agg, breakers["portfolios"][pid])
             for pid, agg in status["portfolios"].items()]
    for name, agg, breaker in rows:
        scopes.add_row(name, str(agg["accounts"]), f"{agg['gross_exposure']:,.0f}", f"{agg['equity']:,.2f}",
                       f"{agg['daily_pnl']:,.2f}", f"{agg['drawdown']:,.2f}",
                       str(agg["by_breaker"]["ENGAGED"]),
                       breaker["state"] + (f" ({breaker['reason']})" if breaker["state"] == "ENGAGED"
                                           else ""))
    console.print(scopes)
    table = Table(title="accounts", title_justify="left")
    for column in ("account", "portfolio", "equity", "daily PnL", "exposure", "alert", "breaker", "up"):
        table.add_column(column, justify="left" if column in ("account", "portfolio") else "right")
    shown = sorted(accounts.items(), key=lambda item: (item[1]["breaker"] != "ENGAGED", item[1]["up"],
                                                        item[1]["alert_level"] == "NORMAL", item[0]))
    for account, row in shown[: args.limit]:
        table.add_row(account, row["portfolio"], f"{row['equity']:,.2f}", f"{row['daily_pnl']:,.2f}",
                      f"{row['exposure']:,.0f}", row["alert_level"], row["breaker"],
                      "yes" if row["up"] else "NO")
    console.print(table)
    if len(shown) > args.limit:
        print(f"... {len(shown) - args.limit} more accounts (engaged, down and alerting ones first; --limit, "
              "--json)")
    for source, counts in status.get("feeds", {}).items():
        print(f"{source}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    if status["refused"]:
        print("refused input: " + ", ".join(f"{k} {v:,}" for k, v in sorted(status["refused"].items())))
    return 0


def _command(args: argparse.Namespace, action: str) -> int:
    if args.globally:
        scope, target = "global", "firm"
    elif args.portfolio:
        scope, target = "portfolio", args.portfolio
    else:
        scope, target = "account", args.account
    ray, supervisor = _supervisor(args)
    method = supervisor.engage if action == "engage" else supervisor.reset
    try:
        answer = ray.get(method.remote(scope, target, args.operator, args.reason, time.time_ns()), timeout=60)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, Exception) else exc
        raise RiskmonError(str(cause).splitlines()[-1] if str(cause) else repr(cause)) from None
    what = f"{scope} {target}" if scope != "global" else "the global breaker"
    if answer["ok"]:
        print(f"{action}: {what} is {answer['event']['state']} ({args.operator}: {args.reason})")
        return 0
    print(f"{action} refused: {what}: {answer['refusal']}", file=sys.stderr)
    return 1


def cmd_engage(args: argparse.Namespace) -> int:
    return _command(args, "engage")


def cmd_reset(args: argparse.Namespace) -> int:
    return _command(args, "reset")


def add_service_commands(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run the service: actors from a config, TCP feeds, Prometheus metrics, until SIGINT/SIGTERM",
        description="Starts (or attaches to) Ray, creates the supervisor and account shards from the config, "
                    "takes feeds over TCP (length-prefixed riskcore.wire frames; see the README), serves "
                    "Prometheus metrics, and runs until SIGINT or SIGTERM, then stops cleanly. Listeners "
                    "bind to 127.0.0.1 unless told otherwise. Started again under the same --name, it "
                    "continues from its journals with every halt in force.")
    run.add_argument("--config", default=None,
                     help="config file (default: the bundled config/risk_limits.yaml)")
    run.add_argument("--address", default=None,
                     help="Ray to attach to: auto (the one this machine runs) or HOST:PORT; default: start "
                          "an embedded Ray")
    run.add_argument("--listen", default="127.0.0.1:7411",
                     help="feed listener HOST:PORT (default 127.0.0.1:7411)")
    run.add_argument("--metrics", default="127.0.0.1:9464",
                     help="Prometheus endpoint HOST:PORT, or off (default 127.0.0.1:9464)")
    run.add_argument("--audit", default=None,
                     help="audit trail path (default: audit.jsonl in the state directory)")
    run.add_argument("--name", default=DEFAULT_NAME, help=f"service name (default {DEFAULT_NAME}); operator "
                                                          "commands find it by this name")
    run.add_argument("--state-dir", default=None,
                     help="where journals live (default $RISKMON_STATE_DIR or ~/.riskmon/state), under "
                          "--name")
    run.set_defaults(func=cmd_run)

    def attach_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--address", default=None,
                            help="the service's Ray, HOST:PORT or auto (default: the address the service "
                                 "recorded in its state directory, else auto)")
        parser.add_argument("--name", default=DEFAULT_NAME,
                            help=f"the service's name (default {DEFAULT_NAME})")
        parser.add_argument("--state-dir", default=None,
                            help="the service's state root (default $RISKMON_STATE_DIR or ~/.riskmon/state)")

    status = sub.add_parser("status", help="a running service's firm, portfolios, accounts and breakers",
                            description="Firm and portfolio figures and breakers, then accounts (engaged, "
                                        "down and alerting ones first), feeds and refused input, as tables.")
    attach_options(status)
    status.add_argument("--json", action="store_true", help="print everything as JSON instead")
    status.add_argument("--limit", type=int, default=50, help="accounts shown in the table (default 50)")
    status.set_defaults(func=cmd_status)

    for action, func, text in (("engage", cmd_engage, "engage a breaker by hand (always allowed)"),
                               ("reset", cmd_reset, ("release a breaker (refused in its cooldown or while "
                                                     "its limits are still breached)"))):
        parser = sub.add_parser(action, help=text,
                                description=f"{text[0].upper()}{text[1:]}. Audited with the operator's name "
                                            "and reason.")
        attach_options(parser)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", help="an account's breaker")
        target.add_argument("--portfolio", help="a portfolio's breaker")
        target.add_argument("--global", dest="globally", action="store_true",
                            help="the global (firm) breaker")
        parser.add_argument("--operator", required=True, help="who (recorded in the audit trail)")
        parser.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        parser.set_defaults(func=func)
