"""The node-loss drill on a simulated 3-node Ray cluster (``ray.cluster_utils.Cluster``), as a program.

It runs in a process of its own, because it needs a Ray cluster of its own beside the test session's Ray.
Prints one JSON document: the node removed, where the shards ran before and after, how long recovery took,
and whether the accounts ended identical to the one-event-at-a-time reference engine fed the same stream.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import ray
from ray.cluster_utils import Cluster

from riskcore.config import PlacementConfig
from riskcore.engine import EventBatch, ReferenceEngine
from riskmon.loadgen import LoadGenerator, firm_config
from supervisor.system import RiskSystem


def shard_nodes(system: RiskSystem) -> dict[str, str]:
    return dict(zip(system.shards, ray.get([
        h.__ray_call__.remote(lambda shard: ray.get_runtime_context().get_node_id()) for h in system.shards.values()
    ])))


def main() -> int:
    config = firm_config(200, 2, 10)
    config = dataclasses.replace(config, placement=PlacementConfig(accounts_per_actor=100, actor_num_cpus=1))
    generator = LoadGenerator(config, seed=5, breach_every=700)
    generator.plan(6_000)
    parts = list(generator.chunks(300, generator.sent + 6_000))

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="riskmon", logging_level="ERROR", log_to_driver=False)
    state = tempfile.mkdtemp(prefix="riskmon-cluster-drill-")  # one path every node reaches (one machine here)
    system = RiskSystem.start(config, name="cluster-drill", state_dir=state)
    result: dict[str, object] = {}
    try:
        before = shard_nodes(system)
        victim_node = next(w for w in workers if w.node_id in before.values())
        victim_shards = [s for s, n in before.items() if n == victim_node.node_id]
        for n, part in enumerate(parts):
            if n == len(parts) // 2:
                removed_at = time.monotonic()
                cluster.remove_node(victim_node)
            system.submit_columns(part.ticks, part.fills, part.fill_pos)
        system.flush(timeout_s=180.0)
        recovered_s = time.monotonic() - removed_at
        after = shard_nodes(system)
        reference = ReferenceEngine(config)
        for part in parts:
            reference.apply(EventBatch(part.ticks, part.fills, part.fill_pos))
        expected = {account: state.to_dict() for account, state in reference.states().items()}
        result = {
            "removed_node": victim_node.node_id, "shards_on_it": victim_shards,
            "moved": all(after[s] != victim_node.node_id for s in victim_shards),
            "recovered_s": round(recovered_s, 2),
            "identical": system.states() == expected,
            "engaged": sum(1 for s in expected.values() if s["breaker"] == "ENGAGED"),
            "fills": sum(len(p.fills) for p in parts),
        }
    finally:
        system.shutdown()
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(state, ignore_errors=True)
    json.dump(result, sys.stdout)
    print()
    return 0 if result.get("identical") and result.get("moved") else 1


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    sys.exit(main())
