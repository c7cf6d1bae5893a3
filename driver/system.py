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
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray

from actors.router import place_accounts
from driver.gate import OrderGate
from riskcore.audit import AuditTrail
from riskcore.config import RiskConfig, save_config
from riskcore.engine import TickColumns
from riskcore.errors import RiskmonError
from riskcore.events import AccountEvent, Tick
from riskcore.ingest import Refusal
from riskcore.messages import OperatorAnswer, ShardNumbering, Status
from supervisor.deploy import NAMESPACE, SUPERVISOR_NAME, create_ingest, create_shard, create_supervisor

SUBMITS_AHEAD = 8  # submit calls in flight to the ingest actor before submit waits (its own bound is behind)


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
                 ephemeral: bool = False, ingest: Any = None) -> None:
        self.config = config
        self.state = state
        self._ephemeral_state = ephemeral
        self.supervisor = supervisor
        self.shards = shards
        self.placement = placement
        self.name = name
        self.owns_ray = owns_ray
        # Every event enters through the ingest actor, as every feed's frames do (actors.ingest).
        self.ingest = ingest
        self._submitted: list[Any] = []  # submit calls not yet taken by the ingest actor
        self._producer = uuid.uuid4().hex  # this process's submits, numbered: the ingest takes them in order
        self._submits = 0
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
        ingest = create_ingest(config, name, placement, shards, supervisor, resume)
        return cls(config, supervisor, shards, placement, name, owns_ray, state, ephemeral and durable,
                   ingest)

    # ------------------------------------------------------------------ data

    def submit(self, events: Iterable[Tick | AccountEvent]) -> None:
        """Queue ticks and fills in arrival order, into the batches every feed's events go to.

        A batch closes when it holds ``batching.max_ticks`` ticks or ``batching.max_delay_ms`` after its first
        event, whichever comes first, so a caller that submits one tick at a time still sends batches. Blocks
        (back-pressure) while more than ``max_in_flight`` batches per shard are unacknowledged.
        """
        self._submitted.append(self.ingest.submit.remote(self._producer, self._number(), list(events)))
        self._bound_submitted()

    def submit_columns(self, ticks: TickColumns, fills: list[AccountEvent] | None = None,
                       fill_pos: list[int] | None = None) -> None:
        """Ticks as columns, with fills at tick positions (producers that already hold columns)."""
        self._submitted.append(self.ingest.submit_columns.remote(self._producer, self._number(), ticks,
                                                                 fills or [], fill_pos or []))
        self._bound_submitted()

    def _number(self) -> int:
        self._submits += 1
        return self._submits - 1

    def _bound_submitted(self) -> None:
        """The ingest actor answers a submit once it has room for more: wait for all but the last few."""
        if len(self._submitted) > SUBMITS_AHEAD:
            ahead = len(self._submitted) - SUBMITS_AHEAD
            ready, self._submitted = ray.wait(self._submitted, num_returns=ahead)
            ray.get(ready)

    def listen(self, host: str, port: int) -> int:
        """Take feeds over TCP at ``host:port`` (0: any free port; see ``actors.feed_listener``); the port."""
        bound: int = ray.get(self.ingest.listen.remote(host, port))
        return bound

    def stop_listening(self) -> dict[str, int]:
        """No new feed frames; those taken are applied; the feeds' counts."""
        counts: dict[str, int] = ray.get(self.ingest.stop_listening.remote())
        return counts

    def flush(self, timeout_s: float = 120.0) -> None:
        """Send what is queued, then wait until it is applied and the supervisor has seen every report."""
        ray.get(self._submitted)
        self._submitted = []
        shard_seq = ray.get(self.ingest.drain.remote(), timeout=timeout_s)
        short = ray.get(self.supervisor.wait_reported.remote(shard_seq, timeout_s))
        if short:
            raise TimeoutError(f"shards not yet reported to the supervisor after {timeout_s} s "
                               f"(shard: first batch missing): {short}")

    @property
    def refusals(self) -> list[Refusal]:
        """Every event refused so far, before a shard or at one."""
        refusals: list[Refusal] = ray.get(self.ingest.refusals.remote())
        return refusals

    def ingest_stats(self) -> dict[str, Any]:
        """Batches cut, ticks applied (a tick at two shards counts twice), each shard's next batch number,
        the feeds' counts."""
        stats: dict[str, Any] = ray.get(self.ingest.stats.remote())
        return stats

    @property
    def ticks_applied(self) -> int:
        return int(self.ingest_stats()["ticks_applied"])

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
        for gate in self._gates:
            gate.close()
        if self.ingest is not None:
            ray.kill(self.ingest, no_restart=True)
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

