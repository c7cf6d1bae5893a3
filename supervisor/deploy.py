"""Every Ray option riskmon uses, in one place, next to ``ray.remote``.

The actor classes (``AccountShard``, ``Supervisor``) are plain classes; this
module is where they become Ray actors. A shard with a journal is restarted by
Ray whenever its process dies (``max_restarts=-1``) and the calls it had not
answered are delivered again (``max_task_retries=-1``): it rebuilds from its
journal and applies each batch once, in order. A shard without a journal is
never restarted: it would come back without the fills it had applied, so it
stays down and the gates deny its accounts (fail closed).
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.ingest_actor import IngestActor
from actors.shard import HALTS_GROUP, AccountShard
from riskcore.config import RiskConfig
from supervisor.supervisor import Supervisor

NAMESPACE = "riskmon"
SUPERVISOR_NAME = "riskmon-supervisor"
# Threads per shard for gates' halt watches (AccountShard.watch_halts), beside the one applying batches. Each
# watching gate holds one; a gate beyond this many still gets every halt from the supervisor's view.
HALT_WATCHERS = 32
# A frame smaller than this travels inside the actor call itself (Ray inlines small arguments); a larger one
# is put in the object store once and shared by reference between the shards it goes to. A put and the
# shards' fetches cost milliseconds of inter-process round trips that a small frame does not need.
INLINE_FRAME_BYTES = 96 * 1024


def supervisor_options(name: str, journaled: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "lifetime": "detached",  # outlives the driver that started it; `riskmon` commands attach by name
        "num_cpus": 0,
        # With a journal, Ray restarts it and delivers again what it had not answered (reports are
        # recognised by shard and sequence, events by their key, so each counts once).
        "max_restarts": -1 if journaled else 0,
        "max_task_retries": -1 if journaled else 0,
        "max_concurrency": 10_000,  # gates hold long-polls open; each is one pending call
    }


def shard_options(config: RiskConfig, name: str, journaled: bool) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "num_cpus": config.placement.actor_num_cpus,
        "max_restarts": -1 if journaled else 0,
        "max_task_retries": -1 if journaled else 0,
    }



def create_supervisor(config: RiskConfig, name: str = SUPERVISOR_NAME, journal_path: str | None = None,
                      config_path: str | None = None, audit_path: str | None = None) -> Any:
    """``config_path``: as for :func:`create_shard`. ``audit_path``: the audit trail it writes (shared storage
    on a cluster, like the journals)."""
    options = supervisor_options(name, journal_path is not None)
    return ray.remote(Supervisor).options(**options).remote(config_path or config, journal_path, audit_path)


def create_shard(config: RiskConfig, system_name: str, shard_id: str, accounts: list[str], supervisor: Any,
                 journal_path: str | None = None, config_path: str | None = None) -> Any:
    """``journal_path`` must be reachable from whichever node Ray restarts the shard on (see README).

    ``config_path``: where ``riskcore.config.save_config`` stored the config, beside the journals. Ray re-runs
    the constructor with the same arguments on a restart; a path (not the config) keeps that independent of
    the process that started the service, which may be gone by then, and of anything it held in the object
    store.
    """
    name = f"{system_name}-{shard_id}"
    # Batches run one at a time, in arrival order (the default group, one thread); halt watches run beside
    # them.
    # (Ray takes concurrency groups in ray.remote only, not in .options().)
    # Ray's stubs omit concurrency_groups from ray.remote's keyword overloads; it is a documented option.
    remote = ray.remote(concurrency_groups={HALTS_GROUP: HALT_WATCHERS})(AccountShard)  # type: ignore[call-overload]
    options = shard_options(config, name, journal_path is not None)
    return remote.options(**options).remote(config_path or config, shard_id, accounts, supervisor,
                                            journal_path)


def get_supervisor(name: str = SUPERVISOR_NAME) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)



def put_large(frame: bytes) -> Any:
    """A batch frame as the shards are sent it: inline if small, else one object shared by reference."""
    return frame if len(frame) < INLINE_FRAME_BYTES else ray.put(frame)


def create_ingest(config: RiskConfig, name: str, placement: dict[str, list[str]], shards: dict[str, Any],
                  supervisor: Any, resume: dict[str, Any]) -> Any:
    """The ingest actor (async: every feed connection and every submit is a task on its one loop), on the
    node of the process that starts the system: feeds connect where ``riskmon run`` says it listens."""
    here = ray.get_runtime_context().get_node_id()
    options = {"name": f"{name}-ingest", "namespace": NAMESPACE, "num_cpus": 0, "max_restarts": 0,
               "max_concurrency": 10_000,
               "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)}
    return ray.remote(IngestActor).options(**options).remote(config, placement, shards, supervisor, name,
                                                             resume, put_large)
