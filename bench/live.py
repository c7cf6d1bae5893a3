"""``python -m bench.live [--quick]``: the path users take, feeds over TCP into the ingest actor, beside the
in-process path on the same firm and the same ticks, in one run.

Prints one JSON document:

- ``live_ticks_per_s``: 128 feeds (streams) sending 64-tick frames from 8 producer processes, one answer
  awaited per frame, as fast as answers come; a frame is answered once the shards it reached have journaled
  and applied it, so the clock runs from the first frame sent to the last answer (the applied watermark);
- ``inprocess_ticks_per_s``: the same ticks handed to ``RiskSystem.submit_columns`` in 16,384-tick columns
  (the ceiling); ``live_over_inprocess`` the ratio;
- ``feed_answer_ms``: each frame's answer time at a paced 100,000 ticks/s over the same 128 feeds;
- ``live_breach_to_deny_ms``: in that paced run, a fills feed of its own sends fat-finger fills (each breaches
  its account's leverage limit) over TCP; from each one's sending to an order gate in another process first
  denying that account;
- ``ingest_us_per_tick``: CPU time (user + system) of the ingest actor's process per tick in the unpaced run:
  what sizes a cluster's ingest;
- ``feeds_1000``: 1,000 feeds connected at once: ticks/s, and the ingest process's resident memory against
  the 128-feed run's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray

from bench.firm import actor_pids, rss_mb
from driver.system import RiskSystem, init_ray
from riskcore.engine import TickColumns
from riskcore.events import Fill
from riskcore.framing import send_frame
from riskcore.histogram import percentiles
from riskcore.wire import encode_fills
from riskmon.loadgen.feeds import FeedPlan, drive_feeds, plan_feeds
from riskmon.loadgen.generator import T0_NS, firm_config
from riskmon.loadgen.probe import create_gate_probe

HOST = "127.0.0.1"
CHUNK = 16_384


@dataclass(frozen=True)
class Size:
    ticks: int
    paced_ticks: int
    many_ticks: int
    breaches: int


FULL = Size(ticks=1_000_000, paced_ticks=500_000, many_ticks=400_000, breaches=200)
QUICK = Size(ticks=300_000, paced_ticks=200_000, many_ticks=150_000, breaches=60)
SMOKE = Size(ticks=4_000, paced_ticks=4_000, many_ticks=4_000, breaches=3)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss(threading.Thread):
    """The highest resident memory of a process while a run lasts."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb([self.pid]))


class Breaches(threading.Thread):
    """A fills feed of its own: every ``every_s``, a fat-finger fill (8x the balance) for the next account,
    over TCP like the quotes; notes when each was sent (``time.monotonic_ns``, one clock for the machine)."""

    def __init__(self, config: Any, port: int, count: int, every_s: float, start_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.every_s, self.start_s = port, count, every_s, start_s
        self.victims = [(spec.id, spec.positions[0].symbol) for spec in config.accounts if spec.positions]
        self.sent_ns: dict[str, int] = {}
        self.refused: list[Any] = []

    def run(self) -> None:
        time.sleep(self.start_s)
        with socket.create_connection((HOST, self.port), timeout=60) as sock:
            for i, (account, symbol) in enumerate(self.victims[: self.count]):
                fill = Fill(account, symbol, 8_000_000.0, 1.0, T0_NS + i, fill_id=f"breach-{i}",
                            stream="breaches", seq=i)
                sent = time.monotonic_ns()
                answer = send_frame(sock, encode_fills([fill]))
                self.sent_ns[account] = sent
                self.refused.extend(answer["refused"])
                time.sleep(self.every_s)


def live_run(config: Any, plan: FeedPlan, producers: int, rate: float | None = None,
             hold_s: float = 0.0, breaches: int = 0) -> dict[str, Any]:
    """``breaches``: that many fat-finger fills sent over TCP during the run, each timed to its denial at
    an order gate in another process."""
    system = RiskSystem.start(config)
    probe = None
    try:
        port = system.listen(HOST, 0)
        (pid,) = actor_pids([system.ingest])
        peak = PeakRss(pid)
        peak.start()
        breacher = None
        if breaches:
            probe = create_gate_probe(system.supervisor, config)
            ray.get(probe.ready.remote())
            run_s = plan.ticks / rate if rate else 1.0
            breacher = Breaches(config, port, breaches, every_s=run_s * 0.6 / breaches, start_s=run_s * 0.2)
            breacher.start()
        cpu_before = cpu_s(pid)
        result = drive_feeds(HOST, port, plan, producers=producers, rate=rate, hold_s=hold_s)
        cpu = cpu_s(pid) - cpu_before
        peak.stop.set()
        peak.join()
        system.flush()
        if result.errors:
            raise RuntimeError(f"feeds failed: {result.errors[:3]}")
        out = {"ticks_per_s": round(result.accepted / result.seconds), "accepted": result.accepted,
               "answer_ms": result.answer_ms(), "ingest_cpu_s": cpu, "ingest_rss_mb": round(peak.peak, 1)}
        if breacher is not None and probe is not None:
            breacher.join(timeout=120)
            denied = ray.get(probe.wait_denied.remote(list(breacher.sent_ns), 10.0))
            ms = [(denied[a] - sent) / 1e6 for a, sent in breacher.sent_ns.items() if a in denied]
            out["breach_to_deny_ms"] = percentiles(ms)
            out["undenied_breaches"] = len(breacher.sent_ns) - len(ms)
            out["breach_refusals"] = breacher.refused
        return out
    finally:
        if probe is not None:
            ray.kill(probe, no_restart=True)
        system.shutdown()


def inprocess_run(config: Any, columns: TickColumns) -> dict[str, Any]:
    system = RiskSystem.start(config)
    try:
        started = time.perf_counter()
        for lo in range(0, len(columns), CHUNK):
            hi = min(lo + CHUNK, len(columns))
            system.submit_columns(TickColumns(columns.symbol[lo:hi], columns.bid[lo:hi], columns.ask[lo:hi],
                                              columns.ts_ns[lo:hi], columns.seq[lo:hi], columns.stream[lo:hi],
                                              columns.streams))
        system.flush()
        return {"ticks_per_s": round(len(columns) / (time.perf_counter() - started))}
    finally:
        system.shutdown()


def measure(size: Size, producers: int) -> dict[str, Any]:
    started = time.monotonic()
    init_ray(num_cpus=2, log_to_driver=False)
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "ray": ray.__version__},
                           "feeds": 128, "frame_ticks": 64, "producers": producers}
    try:
        config = firm_config(1000, 10, 50)
        plan = plan_feeds(config, 128, size.ticks, 64)
        live = live_run(config, plan, producers)
        inprocess = inprocess_run(config, plan.columns)
        out["live_ticks_per_s"] = live["ticks_per_s"]
        out["inprocess_ticks_per_s"] = inprocess["ticks_per_s"]
        out["live_over_inprocess"] = round(live["ticks_per_s"] / inprocess["ticks_per_s"], 3)
        out["unpaced_answer_ms"] = live["answer_ms"]
        out["ingest_us_per_tick"] = round(live["ingest_cpu_s"] / live["accepted"] * 1e6, 2)
        paced = live_run(config, plan_feeds(config, 128, size.paced_ticks, 64, seed=8), producers,
                         rate=100_000, breaches=size.breaches)
        out["feed_answer_ms"] = paced["answer_ms"]
        out["paced_ticks_per_s"] = paced["ticks_per_s"]
        out["live_breach_to_deny_ms"] = paced["breach_to_deny_ms"]
        out["live_undenied_breaches"] = paced["undenied_breaches"]
        many = live_run(config, plan_feeds(config, 1000, size.many_ticks, 64, seed=9), producers, hold_s=0.5)
        few = live_run(config, plan_feeds(config, 128, size.many_ticks, 64, seed=9), producers, hold_s=0.5)
        out["feeds_1000"] = {"ticks_per_s": many["ticks_per_s"], "ingest_rss_mb": many["ingest_rss_mb"],
                             "ingest_rss_mb_128_feeds": few["ingest_rss_mb"],
                             "rss_mb_over_128_feeds": round(many["ingest_rss_mb"] - few["ingest_rss_mb"], 1)}
    finally:
        ray.shutdown()
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, a minute or two")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, only to prove the program runs")
    parser.add_argument("--producers", type=int, default=8, help="producer processes (default 8)")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else QUICK if args.quick else FULL
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON document alone
        out = measure(size, args.producers)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
