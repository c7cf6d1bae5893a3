"""``RiskSystem``: start or attach riskmon on Ray, feed it, read it, operate it.

    system = RiskSystem.start(load_config("config/risk_limits.yaml"))
    system.submit(ticks_and_fills)
    system.flush()
    print(system.states()["acct-001"])
    gate = system.gate()
    system.shutdown()
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.router import Router, place_accounts
from driver.gate import OrderGate
from riskcore.audit import AuditTrail
from riskcore.config import RiskConfig, save_config
from riskcore.engine import TickColumns
from riskcore.errors import RiskmonError
from riskcore.events import AccountEvent, Tick
from riskcore.ingest import Refusal
from riskcore.messages import OperatorAnswer, ShardAck, ShardNumbering, Status
from riskcore.wire import TickFrame
from supervisor.deploy import NAMESPACE, SUPERVISOR_NAME, create_shard, create_supervisor

# A frame smaller than this travels inside the actor call itself (Ray inlines small arguments); a larger one
# is put in the object store once and shared by reference between the shards it goes to. A put and the
# shards' fetches cost milliseconds of inter-process round trips that a small frame does not need.
INLINE_FRAME_BYTES = 96 * 1024


def init_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> bool:
    """Start an embedded Ray (or attach to ``address``); True if this call started it.

    ``log_to_driver=False`` keeps Ray's worker and raylet messages off this process's output (a program
    whose standard output is a JSON document).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray starts worker processes at nice 15, below the driver. riskmon's actors are the risk path: a halt
    # must not queue behind whatever else the machine runs (a feed handler, a load generator), so they run
    # at normal priority. On a cluster the same variable goes on `ray start` (cluster.yaml).
    os.environ.setdefault("RAY_worker_niceness", "0")
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "include_dashboard": False, "logging_level": "ERROR",
                              "log_to_driver": log_to_driver}
    if address:
        kwargs["address"] = address
        if address != "auto":
            _check_reachable(address)
            _token_mode_for_address()
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RiskmonError(f"cannot attach to the Ray cluster at {address}: {first}") from None
    return True


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A Ray address that answers nothing is said at once (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except ValueError:
        raise RiskmonError(f"expected a Ray address HOST:PORT or auto, got {address!r}") from None
    except OSError as exc:
        raise RiskmonError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); is the service "
                           "running, and is this its address?") from None


def _token_mode_for_address() -> None:
    """Ray's local clusters use token authentication (Ray 2.60 writes ~/.ray/auth_token). Ray presents the
    token by itself only when it finds the cluster on its own (``auto``); a client given an address must be in
    token mode, which Ray reads from ``RAY_AUTH_MODE`` into a cached config when it is imported. So: set it
    (unless the user chose a mode) and refresh that cache, as Ray's own ``ray start`` path does."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not (os.environ.get("RAY_AUTH_TOKEN") or token_file.exists()):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    # The cache Ray filled at import (a compiled module without stubs); no public call refreshes it.
    from ray._raylet import Config  # type: ignore[attr-defined]

    Config.initialize("")


def state_root(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where named systems keep their journals: ``state_dir``, else ``$RISKMON_STATE_DIR``, else
    ~/.riskmon/state."""
    return Path(state_dir or os.environ.get("RISKMON_STATE_DIR") or Path.home() / ".riskmon" / "state")


class RiskSystem:
    def __init__(self, config: RiskConfig, supervisor: Any, shards: dict[str, Any],
                 placement: dict[str, list[str]], name: str, owns_ray: bool, state: Path | None = None,
                 ephemeral: bool = False) -> None:
        self.config = config
        self.state = state
        self._ephemeral_state = ephemeral
        self.supervisor = supervisor
        self.shards = shards
        self.placement = placement
        self.name = name
        self.owns_ray = owns_ray
        # Shards send their figures to the supervisor; the sender only needs an acknowledgement back.
        self.router = Router(config, placement,
                             send=lambda shard, ref: shards[shard].apply_and_ack.remote(ref),
                             put=lambda frame: frame if len(frame) < INLINE_FRAME_BYTES else ray.put(frame))
        self._in_flight: list[Any] = []
        # Coalescing: events wait here until max_ticks of them or max_delay_ms since the first.
        self._lock = threading.RLock()
        self._pending: list[Tick | AccountEvent] = []
        self._pending_ticks = 0
        self._timer: threading.Timer | None = None
        self.shard_refusals: list[Refusal] = []
        self._refusals_told = 0  # router refusals already sent to the supervisor (counted and audited there)
        self.ticks_applied = 0
        self._gates: list[OrderGate] = []

    @classmethod
    def start(cls, config: RiskConfig, *, address: str | None = None, name: str | None = None,
              watch_interval_s: float | None = None, state_dir: str | os.PathLike[str] | None = None,
              durable: bool = True, audit: str | os.PathLike[str] | None = None) -> RiskSystem:
        """Create the supervisor and the account shards (``placement.accounts_per_actor`` accounts each).

        With ``durable`` (the default) every shard journals what it applies and is restarted from its journal
        if its process dies. A named system keeps its journals under ``state_root(state_dir)/name``, where a
        later start with the same name finds them; an unnamed one keeps them in a temporary directory that
        ``shutdown`` removes. ``audit``: the audit trail's path (default: ``audit.jsonl`` in the state
        directory; none for a system that is not durable).
        """
        ephemeral = name is None and state_dir is None
        name = name or f"{SUPERVISOR_NAME}-{uuid.uuid4().hex[:8]}"
        state: Path | None = None
        if durable:
            state = (Path(tempfile.mkdtemp(prefix="riskmon-state-")) if ephemeral
                     else state_root(state_dir) / name)
            (state / "shards").mkdir(parents=True, exist_ok=True)
        if audit is None and state is not None:
            audit = state / "audit.jsonl"
        if audit is not None and Path(audit).exists():
            # A broken trail is never extended: say so here, plainly, before any actor starts (the supervisor
            # would refuse it too, but as a Ray creation error). A torn last line is repaired, as on any open.
            AuditTrail(Path(audit)).close()
        owns_ray = init_ray(address)
        config_path: str | None = None
        if state is not None:  # what a restarted actor is constructed from, whoever started the service
            config_path = str(state / "config.msgpack")
            save_config(config, config_path)
        supervisor = create_supervisor(config, name,
                                       None if state is None else str(state / "supervisor.journal"),
                                       config_path, None if audit is None else str(Path(audit).resolve()))
        placement = place_accounts(config)
        shards = {
            sid: create_shard(config, name, sid, accounts, supervisor,
                              None if state is None else str(state / "shards" / f"{sid}.journal"),
                              config_path)
            for sid, accounts in placement.items()
        }
        summaries = ray.get([h.summaries.remote() for h in shards.values()])
        # Shards that rebuilt from journals (a restart of the service) say where numbering picks up.
        numbering = ray.get([h.resume.remote() for h in shards.values()])
        resume: dict[str, ShardNumbering] = dict(zip(shards, numbering, strict=True))
        names = {sid: f"{name}-{sid}" for sid in shards}
        ray.get(supervisor.register.remote(shards, placement, summaries, names, resume))
        # Liveness: well inside the gates' staleness bound, so a dead shard's accounts are denied within
        # about it.
        interval = watch_interval_s if watch_interval_s is not None else config.gate.max_staleness_ms / 2000.0
        ray.get(supervisor.start_watch.remote(interval))
        system = cls(config, supervisor, shards, placement, name, owns_ray, state, ephemeral and durable)
        system.router.shard_seq.update({sid: point.next_seq for sid, point in resume.items()})
        symbol_ids = config.symbol_ids()
        for sid, point in resume.items():  # symbols opened by fills before a restart are routed there too
            system.router.subscriptions[sid].update(symbol_ids[s] for s in point.symbols)
        system.router.position = max([p.next_pos for p in resume.values()] + [0])
        screen = system.router.tick_screen  # where each tick stream stood: a replay is refused here, once
        for point in resume.values():
            for stream, (seq, ts) in point.streams.items():
                screen.last_seq[stream] = max(seq, screen.last_seq.get(stream, seq))
                screen.last_ts[stream] = max(ts, screen.last_ts.get(stream, ts))
        system.router.batches = max([p.next_batch for p in resume.values()] + [0])
        return system

    # ------------------------------------------------------------------ data

    def submit(self, events: Iterable[Tick | AccountEvent]) -> None:
        """Queue ticks and fills in arrival order.

        A batch closes when it holds ``batching.max_ticks`` ticks or ``batching.max_delay_ms`` after its first
        event, whichever comes first, so a caller that submits one tick at a time still sends batches. Blocks
        (back-pressure) while more than ``max_in_flight`` batches per shard are unacknowledged.
        """
        batching = self.config.batching
        with self._lock:
            for event in events:
                self._pending.append(event)
                if isinstance(event, Tick):
                    self._pending_ticks += 1
            if self._pending_ticks >= batching.max_ticks or (self._pending and batching.max_delay_ms == 0):
                self._send_pending()
            elif self._pending and self._timer is None:
                self._timer = threading.Timer(batching.max_delay_ms / 1000.0, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._send_pending()

    def _send_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._pending_ticks = self._pending, [], 0
        self._in_flight.extend(self.router.route(pending))
        self._bound_in_flight()

    def _bound_in_flight(self) -> None:
        """Back-pressure: wait while more than ``max_in_flight`` batches per shard are unacknowledged."""
        if len(self.router.refusals) > self._refusals_told:  # refused before any shard: tell the supervisor
            told = self.router.refusals[self._refusals_told:]
            self._refusals_told = len(self.router.refusals)
            self.supervisor.input_refused.remote(f"router of {self.name}", [r.to_dict() for r in told])
        limit = self.config.batching.max_in_flight * max(1, len(self.shards))
        if len(self._in_flight) > limit:
            done, self._in_flight = ray.wait(self._in_flight, num_returns=len(self._in_flight) - limit)
            self._collect(done)

    def submit_columns(self, ticks: TickColumns, fills: list[AccountEvent] | None = None,
                       fill_pos: list[int] | None = None) -> None:
        """Send columns as one batch (producers that already hold columns); fills must already be screened."""
        with self._lock:
            self._send_pending()  # keep arrival order with anything queued by submit()
            self._in_flight.extend(self.router.send_columns(ticks, fills or [], fill_pos or []))
            self._bound_in_flight()

    def submit_frame(self, decoded: TickFrame | list[AccountEvent]) -> tuple[int, list[Refusal]]:
        """One decoded wire frame from a feed (see ``driver.feed_server``): a ``ticks`` frame goes on as one
        batch, a ``fills`` frame (fills and cash movements) at once. Returns how many of its events went on
        and the refusals found here (a shard may still refuse an event; its acknowledgement says so)."""
        with self._lock:
            told = len(self.router.refusals)
            if isinstance(decoded, TickFrame):
                ids = self.config.symbol_ids()
                known = np.array([ids.get(name, -1) for name in decoded.symbols], np.int64)
                sym = known[decoded.sym]
                for i in np.flatnonzero(sym < 0).tolist():
                    name = decoded.symbols[int(decoded.sym[i])]
                    self.router.refusals.append(self.router.tick_screen.refuse(
                        decoded.stream, int(decoded.seq[i]), "unknown_symbol", f"unknown symbol {name!r}"))
                keep = sym >= 0
                columns = TickColumns(sym[keep].astype(np.int32), decoded.bid[keep], decoded.ask[keep],
                                      decoded.ts_ns[keep], decoded.seq[keep],
                                      np.zeros(int(keep.sum()), np.int32), (decoded.stream,))
                self._send_pending()  # after anything queued before it, in arrival order
                self._in_flight.extend(self.router.send_columns(columns, [], []))
                self._bound_in_flight()
            else:
                self.submit(decoded)
                self._send_pending()  # screened now, so the sender hears of its refusals
            refused = self.router.refusals[told:]
        return len(decoded) - len(refused), refused

    def refuse_input(self, source: str, code: str, message: str) -> None:
        """Input refused whole before it could be read (a malformed frame): counted and audited by the
        supervisor."""
        refusal = {"stream": source, "seq": -1, "code": code, "message": message}
        self.supervisor.input_refused.remote(source, [refusal])

    def flush(self, timeout_s: float = 120.0) -> None:
        """Send what is queued, then wait until it is applied and the supervisor has seen every report."""
        with self._lock:
            self._send_pending()
            in_flight, self._in_flight = self._in_flight, []
        self._collect(in_flight)
        short = ray.get(self.supervisor.wait_reported.remote(dict(self.router.shard_seq), timeout_s))
        if short:
            raise TimeoutError(f"shards not yet reported to the supervisor after {timeout_s} s "
                               f"(shard: first batch missing): {short}")

    def _collect(self, refs: list[Any]) -> None:
        for ack in ray.get(refs):
            assert isinstance(ack, ShardAck)
            self.shard_refusals.extend(ack.refusals)
            self.ticks_applied += ack.ticks_applied

    @property
    def refusals(self) -> list[Refusal]:
        return self.router.refusals + self.shard_refusals

    # ------------------------------------------------------------------ views

    def states(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for part in ray.get([h.states.remote() for h in self.shards.values()]):
            merged.update(part)
        return {spec.id: merged[spec.id] for spec in self.config.accounts}

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = ray.get(self.supervisor.event_log.remote())
        return events

    def status(self) -> Status:
        status: Status = ray.get(self.supervisor.status.remote())
        return status

    # ------------------------------------------------------------------ operator

    def engage(self, scope: str, target: str, operator: str, reason: str,
               now_ns: int | None = None) -> OperatorAnswer:
        """Engage a breaker by hand. The command carries this process's time: delivered again by Ray after a
        supervisor restart, it is recognised and answered as before, not carried out twice."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        answer: OperatorAnswer = ray.get(self.supervisor.engage.remote(scope, target, operator, reason,
                                                                       now_ns))
        return answer

    def reset(self, scope: str, target: str, operator: str, reason: str,
              now_ns: int | None = None) -> OperatorAnswer:
        now_ns = time.time_ns() if now_ns is None else now_ns
        answer: OperatorAnswer = ray.get(self.supervisor.reset.remote(scope, target, operator, reason,
                                                                      now_ns))
        return answer

    def gate(self) -> OrderGate:
        """An in-process OrderGate that has received its first view (until then any gate denies, as stale)."""
        gate = OrderGate(self.supervisor, self.config.gate)
        self._gates.append(gate)
        gate.wait_for(lambda g: g.version >= 0,
                      timeout_s=max(5.0, self.config.gate.max_staleness_ms / 1000.0))
        return gate

    def shutdown(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for gate in self._gates:
            gate.close()
        for handle in self.shards.values():
            ray.kill(handle, no_restart=True)
        ray.kill(self.supervisor, no_restart=True)
        if self._ephemeral_state and self.state is not None:
            shutil.rmtree(self.state, ignore_errors=True)
        if self.owns_ray:
            ray.shutdown()

    def __enter__(self) -> RiskSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

