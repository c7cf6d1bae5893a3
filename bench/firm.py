"""``python -m bench.firm [--quick]``: riskmon's throughput and latency, each against its baseline.

Prints one JSON document:

- ``firm_1k_ticks_per_s`` / ``firm_1k_account_ticks_per_s``: 1,000 accounts in 10 portfolios, 50 symbols,
  1-8 positions each, 128 streams, fills on 1 % of ticks, end to end on Ray to the applied watermark;
- ``kernel_ticks_per_s``: the same ticks through the in-process batched engine on one core (no Ray);
- ``firm_10_ticks_per_s`` and ``naive_firm_10_ticks_per_s``: 10 accounts, 5 symbols, through riskmon and
  through the naive design (one actor per account, one actor call per tick per account; bench/naive.py);
- ``breach_to_deny_ms``: from the batch holding a breaching fill entering the system to an order gate in
  another process denying that account, while firm-1k is fed at 100,000 ticks/s;
- ``breach_path_floor``: the two Ray hops a breach crosses (a batch to a shard, a shard's halt back to a
  gate's long-poll), measured alone on an idle system: the floor under ``breach_to_deny_ms``;
- ``gate_check_us``: ``OrderGate.check`` in process, per call;
- ``scaling``: 100, 1,000 and 10,000 accounts at the same fan-out (symbols grow with accounts, so a tick
  reaches ~90 accounts at every size): ticks/s and the resident memory of every riskmon process.
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

import numpy as np
import ray

from bench.naive import naive_run
from driver.system import RiskSystem, init_ray
from riskcore.engine import BatchedEngine, EventBatch
from riskcore.gate import GateCore, Order
from riskmon.loadgen.generator import LoadGenerator, firm_config
from riskmon.stress import run_stress
from riskmon.testing import view_from_config


@dataclass(frozen=True)
class Size:
    """How much of each measurement a run makes."""

    firm: tuple[int, int]  # (accounts, symbols) of the "firm-1k" throughput and latency runs
    firm_ticks: int
    firm10_ticks: int
    naive_ticks: int
    latency_ticks: int
    breach_every: int
    scaling_ticks: int
    gate_checks: int
    floor_calls: int
    scaling: tuple[int, ...]  # accounts


FULL = Size(firm=(1000, 50), firm_ticks=1_000_000, firm10_ticks=300_000, naive_ticks=4_000,
            latency_ticks=1_500_000, breach_every=5_000, scaling_ticks=400_000, gate_checks=200_000,
            floor_calls=300, scaling=(100, 1000, 10000))
QUICK = Size(firm=(1000, 50), firm_ticks=100_000, firm10_ticks=30_000, naive_ticks=400, latency_ticks=200_000,
             breach_every=2_000, scaling_ticks=150_000, gate_checks=20_000, floor_calls=100,
             scaling=(100, 1000, 10000))
# For the test suite: every code path, tiny sizes (the figures mean nothing).
SMOKE = Size(firm=(40, 5), firm_ticks=5_000, firm10_ticks=2_000, naive_ticks=50, latency_ticks=5_000,
             breach_every=1_000, scaling_ticks=2_000, gate_checks=1_000, floor_calls=5, scaling=(20, 40, 80))
CHUNK = 16_384
# The latency run's batch. Smaller batches wait less to be cut and reach the breaching tick sooner, but each
# costs a Ray call and a report; of 1,024 / 2,048 / 4,096 / 8,192 ticks, 2,048 gave the lowest p50 on this
# machine at 100,000 ticks/s (BENCHMARKS.md).
LATENCY_CHUNK = 2_048


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return round(total / 1024, 1)


def actor_pids(handles: list[Any]) -> list[int]:
    pids: list[int] = ray.get([h.__ray_call__.remote(lambda self: os.getpid()) for h in handles])
    return pids


def system_pids(system: RiskSystem) -> list[int]:
    """The driver and every actor of the system: supervisor, shards, the ingest."""
    return [os.getpid(), *actor_pids([system.supervisor, *system.shards.values(), system.ingest])]


def firm_run(
    accounts: int, symbols: int, ticks: int, chunk: int = CHUNK, **stress: Any
) -> tuple[dict[str, Any], float]:
    config = firm_config(accounts, 10 if accounts >= 10 else 2, symbols)
    system = RiskSystem.start(config)
    try:
        summary = run_stress(config, ticks=ticks, scenario="normal", progress=False, chunk=chunk,
                             system=system, **stress)
        return summary, rss_mb(system_pids(system))
    finally:
        system.shutdown()


def kernel_run(accounts: int, symbols: int, ticks: int) -> dict[str, Any]:
    """The same generated load through the in-process engine, one core, no Ray: the practical ceiling."""
    config = firm_config(accounts, 10, symbols)
    generator = LoadGenerator(config, seed=7)
    parts = list(generator.chunks(CHUNK, ticks))
    engine = BatchedEngine(config)
    engine.warm_up()  # load the compiled kernel before the clock starts, as a shard does when it is built
    account_ticks = sum(generator.account_ticks(p.ticks) for p in parts)
    started = time.perf_counter()
    for part in parts:
        engine.apply(EventBatch(part.ticks, part.fills, part.fill_pos))
    seconds = time.perf_counter() - started
    return {"ticks_per_s": round(ticks / seconds), "account_ticks_per_s": round(account_ticks / seconds)}


def gate_run(checks: int) -> dict[str, Any]:
    """``OrderGate.check`` timed per call on a 1,000-account view (the poll thread is not involved)."""
    config = firm_config(1000, 10, 50)
    view = view_from_config(config, marks=dict.fromkeys(config.symbols, 1.0))
    view["price_bands"] = dict.fromkeys(config.symbols, 0.05)
    for account in view["accounts"].values():  # every order-path limit in force, so each check runs them all
        account.update({"equity": 1e6, "exposure": 1.4e6, "max_account_leverage": 5.0,
                        "max_order_notional": 5e6, "max_position_notional": 2e7})
    core = GateCore(max_staleness_ns=10**18)
    core.update(view, received_ns=0)
    rng = np.random.default_rng(3)
    ids = list(view["accounts"])
    orders = [Order(ids[int(rng.integers(len(ids)))], f"SYM{int(rng.integers(50)):03d}", 1_000.0, 1.0001)
              for _ in range(1000)]
    clock = time.perf_counter_ns
    samples = np.empty(checks, dtype=np.int64)
    allowed = 0
    for n in range(checks):
        order = orders[n % 1000]
        t0 = clock()
        decision = core.check(order, 1)
        samples[n] = clock() - t0
        allowed += decision.allowed
    overhead = min(-(clock() - clock()) for _ in range(1000))  # the timer's own cost, for the reader
    return {"p50": round(float(np.percentile(samples, 50)) / 1000, 3),
            "p99": round(float(np.percentile(samples, 99)) / 1000, 3),
            "timer_overhead_us": round(overhead / 1000, 3), "allowed_fraction": round(allowed / checks, 3)}


class _Target:
    """Notes when a call arrives and wakes its watchers: a shard's two hops, doing nothing else."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.version = 0
        self.fired_ns = 0

    def arrive(self, frame: bytes) -> int:
        arrived = time.monotonic_ns()
        with self.changed:
            self.version += 1
            self.fired_ns = arrived
            self.changed.notify_all()
        return arrived

    def watch(self, known: int) -> tuple[int, int]:
        with self.changed:
            self.changed.wait_for(lambda: self.version > known, 5.0)
            return self.version, self.fired_ns


class _Watcher:
    """An actor in its own process that long-polls a _Target, as an order gate long-polls a shard."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.delays: list[int] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        version = 0
        while True:
            try:
                version, fired = ray.get(self.target.watch.options(concurrency_group="watch").remote(version))
            except ray.exceptions.RayActorError:
                return  # the measurement is over and the target is gone
            self.delays.append(time.monotonic_ns() - fired)

    def delays_ns(self) -> list[int]:
        return list(self.delays)


def ray_floor_run(calls: int) -> dict[str, Any]:
    """The breach path's two Ray hops with no work and no load: the floor under breach-to-deny latency.

    One-way: a call carrying a 2,048-tick batch frame (as the router sends) from the driver to an actor.
    Watch return: an actor wakes a long-poll that another process holds on it (as a shard wakes a gate).
    """
    # Ray's type stubs leave out concurrency_groups, which ray.remote takes.
    groups = ray.remote(concurrency_groups={"watch": 2})  # type: ignore[call-overload]
    target: Any = groups(_Target).options(num_cpus=0).remote()
    watcher: Any = ray.remote(_Watcher).options(num_cpus=0, max_concurrency=2).remote(target)
    ray.get(watcher.delays_ns.remote())
    frame = bytes(2048 * 40)
    one_way = []
    for _ in range(calls):
        sent = time.monotonic_ns()
        one_way.append(ray.get(target.arrive.remote(frame)) - sent)
        time.sleep(0.005)
    time.sleep(0.2)
    back = ray.get(watcher.delays_ns.remote())
    ray.kill(watcher)
    ray.kill(target)

    def ms(values: list[int]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(values, 50)) / 1e6, 3),
                "p99": round(float(np.percentile(values, 99)) / 1e6, 3)}

    two_hops_ns = float(np.percentile(one_way, 50)) + float(np.percentile(back, 50))
    return {"call_one_way_ms": ms(one_way), "watch_return_ms": ms(back),
            "two_hops_p50_ms": round(two_hops_ns / 1e6, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.firm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, only to prove the program runs (tests)")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else QUICK if args.quick else FULL
    # Standard output carries the JSON document alone: anything else printed meanwhile (Ray's notices) goes
    # to standard error.
    with contextlib.redirect_stdout(sys.stderr):
        out = measure(args, size)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def measure(args: argparse.Namespace, size: Size) -> dict[str, Any]:
    started = time.monotonic()
    # As `riskmon` starts it (actors at normal priority), with Ray's own messages kept off the JSON on stdout.
    init_ray(num_cpus=2, log_to_driver=False)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__}
    out: dict[str, Any] = {"quick": args.quick, "smoke": args.smoke, "machine": machine}
    try:
        firm, _ = firm_run(*size.firm, size.firm_ticks)
        out["firm_1k_ticks_per_s"] = firm["ticks_per_s"]
        out["firm_1k_account_ticks_per_s"] = firm["account_ticks_per_s"]
        kernel = kernel_run(*size.firm, size.firm_ticks)
        out["kernel_ticks_per_s"] = kernel["ticks_per_s"]
        out["kernel_account_ticks_per_s"] = kernel["account_ticks_per_s"]
        out["firm_1k_over_kernel"] = round(firm["ticks_per_s"] / kernel["ticks_per_s"], 3)

        firm10, _ = firm_run(10, 5, size.firm10_ticks)
        naive = naive_run(size.naive_ticks)
        out["firm_10_ticks_per_s"] = firm10["ticks_per_s"]
        out["naive_firm_10_ticks_per_s"] = round(naive["ticks_per_s"])
        out["firm_10_over_naive"] = round(firm10["ticks_per_s"] / naive["ticks_per_s"], 1)

        latency, _ = firm_run(*size.firm, size.latency_ticks, rate=100_000, breach_every=size.breach_every,
                              chunk=LATENCY_CHUNK)
        out["breach_to_deny_ms"] = latency["breach_to_deny_ms"]
        out["breach_to_deny_rate_ticks_per_s"] = latency["ticks_per_s"]
        out["breach_to_deny_undenied"] = len(latency["undenied_breaches"])

        out["breach_path_floor"] = ray_floor_run(size.floor_calls)
        out["gate_check_us"] = gate_run(size.gate_checks)

        scaling = []
        for accounts in size.scaling:
            symbols = max(5, 50 * accounts // 1000)
            run, memory = firm_run(accounts, symbols, size.scaling_ticks)
            scaling.append({"accounts": accounts, "symbols": symbols, "ticks_per_s": run["ticks_per_s"],
                            "account_ticks_per_s": run["account_ticks_per_s"], "rss_mb": memory})
        out["scaling"] = scaling
    finally:
        ray.shutdown()
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


if __name__ == "__main__":
    sys.exit(main())
