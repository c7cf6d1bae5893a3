"""Feeds over TCP as a firm's feed handlers send them: many concurrent connections from several producer
processes, each feed one stream of frames of a few dozen ticks, one answer awaited per frame.

The ticks are the load generator's (``riskmon.loadgen.generator``: stream ``k`` quotes symbol
``k % symbols``), split by stream into frames and encoded before the clock starts, so a run measures riskmon,
not the producers' encoding. Producers are separate processes (``spawn``), each running its feeds on one
asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from riskcore.config import RiskConfig
from riskcore.engine import TickColumns
from riskcore.framing import LENGTH
from riskcore.histogram import percentiles
from riskcore.wire import encode_ticks
from riskmon.loadgen.generator import LoadGenerator

START_TIMEOUT_S = 120.0


@dataclass
class FeedPlan:
    """What each feed sends: ``frames[k]`` are feed k's encoded frames, in order."""

    frames: list[list[bytes]]
    ticks: int
    frame_ticks: int
    columns: TickColumns  # the same ticks in arrival order (an in-process run of them, for comparison)


def plan_feeds(config: RiskConfig, feeds: int, ticks: int, frame_ticks: int = 64, seed: int = 7) -> FeedPlan:
    """``ticks`` generated ticks over ``feeds`` streams, each stream's cut into frames of ``frame_ticks``."""
    generator = LoadGenerator(config, streams=feeds, seed=seed, fill_rate=0.0)
    chunk = generator.chunk(ticks)
    columns = chunk.ticks
    symbols = list(config.symbols)
    frames: list[list[bytes]] = [[] for _ in range(feeds)]
    for k in range(feeds):
        rows = np.flatnonzero(columns.stream == k)
        name = columns.streams[k]
        for lo in range(0, rows.size, frame_ticks):
            part = rows[lo:lo + frame_ticks]
            # A frame names the symbols it quotes, as a feed handler's does.
            used, local = np.unique(columns.symbol[part], return_inverse=True)
            frames[k].append(encode_ticks(name, [symbols[int(u)] for u in used], local, columns.bid[part],
                                          columns.ask[part], columns.ts_ns[part], columns.seq[part]))
    return FeedPlan(frames, ticks, frame_ticks, columns)


@dataclass
class FeedResult:
    """What the producers saw: ticks accepted and refused, each frame's answer time, when sending began and
    the last answer came (``time.monotonic_ns``, one clock for every process of the machine)."""

    accepted: int
    refused: int
    answer_ns: list[int]
    first_ns: int
    last_ns: int
    errors: list[str]

    @property
    def seconds(self) -> float:
        return max(1e-9, (self.last_ns - self.first_ns) / 1e9)

    def answer_ms(self) -> dict[str, float | int | None]:
        return percentiles([ns / 1e6 for ns in self.answer_ns])

def drive_feeds(host: str, port: int, plan: FeedPlan, producers: int = 8, rate: float | None = None,
                hold_s: float = 0.0, on_progress: Callable[[int], None] | None = None) -> FeedResult:
    """Send ``plan`` from ``producers`` processes, feeds dealt round-robin; ``rate``: ticks per second over
    all feeds (None: as fast as answers come). ``hold_s``: keep every connection open that long after its
    last answer (a run that holds many feeds connected at once). ``on_progress``: called a few times a
    second with the ticks answered so far."""
    feeds = len(plan.frames)
    # Paced: each feed sends a frame every feeds * frame_ticks / rate seconds.
    interval = None if rate is None else feeds * plan.frame_ticks / rate
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    results = context.Queue()
    answered = context.Value("q", 0)
    shares = [[k for k in range(feeds) if k % producers == p] for p in range(producers)]
    workers = [context.Process(target=_producer, daemon=True, args=(
                   host, port, [plan.frames[k] for k in share], interval, hold_s, go, results, answered))
               for share in shares if share]
    for worker in workers:
        worker.start()
    ready = [results.get(timeout=START_TIMEOUT_S) for _ in workers]  # each has connected all its feeds
    errors = [r for r in ready if r != "connected"]
    parts: list[dict[str, Any]] = []
    if not errors:
        go.set()
    while not errors and len(parts) < len(workers):
        with contextlib.suppress(queue.Empty):
            parts.append(results.get(timeout=0.25))
        if on_progress is not None:
            on_progress(int(answered.value))
        if len(parts) < len(workers) and not any(w.is_alive() for w in workers) and results.empty():
            errors.append("a producer process ended without a result")
    for worker in workers:
        worker.join(timeout=0 if errors else 30)
        if worker.is_alive():
            worker.kill()
    if errors:
        return FeedResult(0, 0, [], 0, 1, errors)
    return FeedResult(
        accepted=sum(p["accepted"] for p in parts), refused=sum(p["refused"] for p in parts),
        answer_ns=[ns for p in parts for ns in p["answer_ns"]], first_ns=min(p["first_ns"] for p in parts),
        last_ns=max(p["last_ns"] for p in parts), errors=[e for p in parts for e in p["errors"]])


def _producer(host: str, port: int, frames: list[list[bytes]], interval: float | None, hold_s: float,
              go: Any, results: Any, answered: Any) -> None:
    asyncio.run(_produce(host, port, frames, interval, hold_s, go, results, answered))


async def _produce(host: str, port: int, frames: list[list[bytes]], interval: float | None, hold_s: float,
                   go: Any, results: Any, answered: Any) -> None:
    try:
        connections = [await asyncio.open_connection(host, port) for _ in frames]
    except OSError as exc:
        results.put(f"cannot connect to {host}:{port}: {exc}")
        return
    for _reader, writer in connections:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    results.put("connected")
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    out: dict[str, Any] = {"accepted": 0, "refused": 0, "answer_ns": [], "errors": [],
                           "first_ns": time.monotonic_ns(), "answered": answered}
    feeds = zip(connections, frames, strict=True)
    await asyncio.gather(*(_feed(reader, writer, mine, interval, out, n)
                           for n, ((reader, writer), mine) in enumerate(feeds)))
    out["last_ns"] = time.monotonic_ns()
    del out["answered"]
    if hold_s:
        await asyncio.sleep(hold_s)
    for _reader, writer in connections:
        writer.close()
    results.put(out)


async def _feed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: list[bytes],
                interval: float | None, out: dict[str, Any], n: int) -> None:
    loop = asyncio.get_running_loop()
    # Paced feeds start spread over one interval, as independent feeds do.
    next_at = loop.time() + (0.0 if interval is None else interval * (n % 97) / 97)
    try:
        for frame in frames:
            if interval is not None:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += interval
            sent = time.monotonic_ns()
            writer.write(LENGTH.pack(len(frame)) + frame)
            await writer.drain()
            (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
            answer = msgpack.unpackb(await reader.readexactly(size), raw=False)
            out["answer_ns"].append(time.monotonic_ns() - sent)
            out["accepted"] += answer["accepted"]
            with out["answered"].get_lock():
                out["answered"].value += answer["accepted"] + len(answer["refused"])
            out["refused"] += len(answer["refused"])
            if not answer["ok"]:
                out["errors"].append(str(answer["error"]))
    except (OSError, asyncio.IncompleteReadError) as exc:
        out["errors"].append(f"connection lost: {exc!r}")
