"""``python -m bench.live [--quick]``: the path users take, feeds over TCP into the ingest actor, beside the
in-process path on the same firm and the same ticks, in one run.

Prints one JSON document:

- ``live_ticks_per_s``: 128 feeds (streams) sending 64-tick frames from 8 producer processes, one answer
  awaited per frame, as fast as answers come; a frame is answered once the shards it reached have journaled
  and applied it, so the clock runs from the first frame sent to the last answer (the applied watermark);
- ``inprocess_ticks_per_s``: the same ticks handed to ``RiskSystem.submit_columns`` in 16,384-tick columns
  (the ceiling); ``live_over_inprocess`` the ratio;
- ``feed_answer_ms``: each frame's answer time at a paced 100,000 ticks/s over the same 128 feeds;
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
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray

from driver.system import RiskSystem, init_ray
from riskcore.engine import TickColumns
from riskmon.loadgen.feeds import FeedPlan, drive_feeds, plan_feeds
from riskmon.loadgen.generator import firm_config

HOST = "127.0.0.1"
CHUNK = 16_384


@dataclass(frozen=True)
class Size:
    ticks: int
    paced_ticks: int
    many_ticks: int


FULL = Size(ticks=1_000_000, paced_ticks=500_000, many_ticks=400_000)
QUICK = Size(ticks=300_000, paced_ticks=200_000, many_ticks=150_000)
SMOKE = Size(ticks=4_000, paced_ticks=4_000, many_ticks=4_000)


def _proc(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of one process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def ingest_pid(system: RiskSystem) -> int:
    pid: int = ray.get(system.ingest.__ray_call__.remote(lambda actor: os.getpid()))
    return pid


class PeakRss(threading.Thread):
    """The highest resident memory of a process while a run lasts."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, _proc(self.pid)[1])


def live_run(config: Any, plan: FeedPlan, producers: int, rate: float | None = None,
             hold_s: float = 0.0) -> dict[str, Any]:
    system = RiskSystem.start(config)
    try:
        port = system.listen(HOST, 0)
        pid = ingest_pid(system)
        peak = PeakRss(pid)
        peak.start()
        cpu_before = _proc(pid)[0]
        result = drive_feeds(HOST, port, plan, producers=producers, rate=rate, hold_s=hold_s)
        cpu = _proc(pid)[0] - cpu_before
        peak.stop.set()
        peak.join()
        system.flush()
        if result.errors:
            raise RuntimeError(f"feeds failed: {result.errors[:3]}")
        return {"ticks_per_s": round(result.accepted / result.seconds), "accepted": result.accepted,
                "answer_ms": result.answer_ms(), "ingest_cpu_s": cpu, "ingest_rss_mb": round(peak.peak, 1)}
    finally:
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
                         rate=100_000)
        out["feed_answer_ms"] = paced["answer_ms"]
        out["paced_ticks_per_s"] = paced["ticks_per_s"]
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
