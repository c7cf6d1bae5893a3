"""The ``node loss`` drill: a node hosting account shards leaves a 3-node Ray cluster mid-stream.

``riskmon chaos`` and the tests run it with :func:`run_node_loss`, which starts this module as a program
(``python -m riskmon.drills.node_loss``) and reads the one JSON line it prints: the result every drill reports
(fault, recovered, recovery_s, lost_events, duplicated_events) plus a ``detail`` of what happened.

Layout: a ``ray.cluster_utils.Cluster`` of three nodes on this machine. The head has 0 CPUs: it hosts the
driver and the GCS, and no shard. Each of the two workers has 2 CPUs and a shard takes 1
(``placement.actor_num_cpus``), so the shards land on workers, and either worker can take both when the other
is gone. (Shard options come from ``supervisor.deploy``, which sets no custom resources; the head's 0 CPUs
keep shards off it.) The supervisor takes no CPU and goes wherever Ray puts it, often on a worker.

The drill feeds the chaos stream once undisturbed (the baseline), then again to a second system on the same
cluster; halfway through the second run it removes a worker hosting shards, one without the supervisor when
there is a choice (``detail.supervisor_was_on_it`` says if not). It has recovered when the removed node's
shards run on a surviving node, every account is up again, accounts and shard counts (batches, ticks and
fills applied) equal the baseline's, and accounts equal the one-event-at-a-time reference engine's fed the
same stream. Events lost or duplicated are counted against all of the baseline's events.
Recovery time runs from the call that removes the node until the rest of the stream has been applied and
every account is up again at a gate (as in the other drills, it includes feeding the second half).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from driver.system import RiskSystem, init_ray
from riskcore.engine import EventBatch, ReferenceEngine
from riskmon.drills.common import (
    NODE_LOSS,
    RESULT_KEYS,
    drill_config,
    drill_load,
    drill_result,
    run_stream,
    unmatched_events,
    wait_all_up,
)

FAULT = NODE_LOSS
# Bounds a stuck drill; the default run (600 accounts, 12,000 ticks) takes about 30 s on two cores.
TIMEOUT_S = 600.0
# How long a child asked to stop (SIGTERM) gets to shut its cluster down before its process group is killed.
STOP_GRACE_S = 30.0


def run_node_loss(accounts: int = 600, ticks: int = 12_000, seed: int = 11,
                  timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Run the drill in a child process and return its result (``RESULT_KEYS`` plus ``detail``).

    Why a child process: the drill needs a Ray cluster of its own, and a process drives one Ray instance at a
    time. The caller's Ray (the other drills' in ``riskmon chaos``, the test session's shared instance) stays
    up and untouched beside it. The alternative, ``ray.shutdown()`` and ``ray.init`` of the cluster in this
    process, would end a test session's Ray, and relies on Ray resetting all its per-process state (the
    driver's worker, internal KV, cached addresses) between two clusters. A process also bounds a stuck drill:
    it is stopped, and everything it started goes with it.

    A drill that produced no result (it crashed or timed out) comes back with ``recovered`` False, null
    figures, and an ``error`` holding the end of its output; its Ray logs are kept (the path is in ``error``).
    """
    # One directory holds everything the child writes: Ray's session (RAY_TMPDIR) and the journals. The drill
    # cluster's address file lands here too, not in /tmp/ray, so no other `ray.init()` on this machine finds
    # and joins the drill's cluster, and its shutdown cannot delete another cluster's address file. A short
    # path: Ray's Unix socket paths live under it.
    work = Path(tempfile.mkdtemp(prefix="rmnode-", dir="/tmp" if os.path.isdir("/tmp") else None))
    package_root = str(Path(__file__).resolve().parents[1])  # the child imports the code this process runs
    env = dict(os.environ, RAY_TMPDIR=str(work),
               PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    command = [sys.executable, "-m", "riskmon.drills.node_loss", "--accounts", str(accounts),
               "--ticks", str(ticks), "--seed", str(seed), "--work-dir", str(work)]
    keep_logs = False
    try:
        # A session of its own: a Ctrl-C at the terminal reaches this process only, which then stops the child
        # in order, and the child's process group holds the Ray node processes it starts (see _stop).
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        readers = [_Reader(child.stdout), _Reader(child.stderr)]
        try:
            finished = _wait_exited(child, timeout_s)
        finally:  # on every path, a Ctrl-C here included
            _stop(child)
        out, err = (reader.text() for reader in readers)
        if not finished:
            err += f"\nno result within {timeout_s:.0f} s: stopped"
        document = _last_json_line(out)
        if document is None:
            keep_logs = True
            tail = "\n".join(err.strip().splitlines()[-30:])
            return {"fault": FAULT, "recovered": False, "recovery_s": None, "lost_events": None,
                    "duplicated_events": None,
                    "error": f"exit {child.returncode} without a result; Ray logs in {work}/ray\n{tail}"}
        keep_logs = not document["recovered"]
        if keep_logs:
            document["detail"]["logs"] = f"{work}/ray"
        return document
    finally:
        shutil.rmtree(work / "state" if keep_logs else work, ignore_errors=True)


class _Reader:
    """Reads a pipe to its end on a thread of its own (the child must never block on a full pipe)."""

    def __init__(self, pipe: Any) -> None:
        self._chunks: list[str] = []
        self._thread = threading.Thread(target=lambda: self._chunks.append(pipe.read()), daemon=True)
        self._thread.start()

    def text(self) -> str:
        self._thread.join(timeout=STOP_GRACE_S)
        return "".join(self._chunks)


def _wait_exited(child: subprocess.Popen[str], timeout_s: float) -> bool:
    """Wait until the child has exited, without reaping it: while its pid is not reaped, no other process can
    take that pid, so its process group id still names only what the child started."""
    deadline = time.monotonic() + timeout_s
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _stop(child: subprocess.Popen[str]) -> None:
    """Stop the child if it still runs, sweep its process group, and reap it.

    SIGTERM lets it shut its cluster down (its own cleanup); if it is not gone within ``STOP_GRACE_S`` (or a
    second Ctrl-C comes), its group is killed. The group holds the Ray node processes it started (GCS,
    raylets and their agents); Ray's worker processes sit in groups of their own and exit with their raylet.
    The sweep runs after a clean exit too: a child that died abruptly leaves the raylets' agents behind.
    """
    try:
        if not _wait_exited(child, 0.0):
            os.kill(child.pid, signal.SIGTERM)  # not reaped yet, so the pid is still the child's
            _wait_exited(child, STOP_GRACE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _last_json_line(out: str) -> dict[str, Any] | None:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict) and set(RESULT_KEYS) <= set(document):
                return document
    return None


# --------------------------------------------------------------------------------------- the child process


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def drill(accounts: int, ticks: int, seed: int, work: Path) -> dict[str, Any]:
    """The drill itself, in this process: starts the cluster, and shuts everything down however it ends."""
    config = drill_config(accounts)
    config = dataclasses.replace(config, placement=dataclasses.replace(config.placement, actor_num_cpus=1.0))
    parts = drill_load(config, ticks, seed)
    state = work / "state"

    def node_of(handle: Any) -> str:
        node: str = ray.get(handle.__ray_call__.remote(lambda actor: ray.get_runtime_context().get_node_id()))
        return node

    # As init_ray does for an embedded Ray, and cluster.yaml on every `ray start`: the shards run at normal
    # priority. Set here because the nodes start before the driver connects.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Its nodes start from this process's environment, without token authentication unless it asks for it;
    # say so, or attaching by address would take the token mode of a machine that has ~/.ray/auth_token.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    stack = contextlib.ExitStack()
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        stack.callback(cluster.shutdown)  # runs last: Ray wants the driver gone before the head goes
        workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
        cluster.wait_for_nodes()
        init_ray(cluster.address, log_to_driver=False)  # the output is one JSON line
        stack.callback(ray.shutdown)
        signal.signal(signal.SIGTERM, _interrupt)  # ray.init set its own; ours ends in the same cleanup

        first = RiskSystem.start(config, name="node-loss-baseline", state_dir=state)
        try:
            baseline = run_stream(first, parts)
        finally:
            first.shutdown()

        system = RiskSystem.start(config, name="node-loss", state_dir=state)
        stack.callback(system.shutdown)
        before = {sid: node_of(h) for sid, h in system.shards.items()}
        supervisor_node = node_of(system.supervisor)
        hosting = [w for w in workers if w.node_id in before.values()]
        victim = sorted(hosting, key=lambda w: w.node_id == supervisor_node)[0]
        removed: dict[str, float] = {}

        def remove_node(s: RiskSystem) -> None:
            removed["at"] = time.monotonic()
            cluster.remove_node(victim)

        faulted = run_stream(system, parts, remove_node)
        up = wait_all_up(system)
        recovery_s = time.monotonic() - removed["at"]
        after = {sid: node_of(h) for sid, h in system.shards.items()}

        reference = ReferenceEngine(config)
        for part in parts:
            reference.apply(EventBatch(part.ticks, part.fills, part.fill_pos))
        expected = {account: s.to_dict() for account, s in reference.states().items()}
        on_victim = sorted(s for s, n in before.items() if n == victim.node_id)
        moved = all(after[s] != victim.node_id for s in on_victim)
        identical_to_reference = faulted["states"] == expected
        result = drill_result(FAULT, baseline, faulted, recovery_s, up and moved and identical_to_reference)
        differ = sorted(a for a in baseline["states"] if faulted["states"].get(a) != baseline["states"][a])
        result["detail"] = {
            "removed_node": victim.node_id, "shards_on_it": on_victim, "moved": moved, "up": up,
            "supervisor_was_on_it": supervisor_node == victim.node_id,
            "identical_to_reference": identical_to_reference,
            "engaged": sum(1 for e in baseline["events"]
                           if e["type"] == "breaker" and e["state"] == "ENGAGED"),
            "fills": sum(len(p.fills) for p in parts),
            "accounts_differing": differ[:20],
            "first_difference": ({"account": differ[0], "baseline": baseline["states"][differ[0]],
                                  "faulted": faulted["states"].get(differ[0])} if differ else None),
            "counts": None if faulted["counts"] == baseline["counts"] else {"baseline": baseline["counts"],
                                                                            "faulted": faulted["counts"]},
            "events_missing": unmatched_events(baseline["events"], faulted["events"])[:5],
            "events_extra": unmatched_events(faulted["events"], baseline["events"])[:5],
        }
        return result
    finally:
        # The cleanup must run to its end: further signals are ignored (a caller that cannot wait kills the
        # process group instead). Callbacks run last-registered first: the system, the driver, the cluster.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m riskmon.drills.node_loss",
        description="The node-loss drill on a 3-node local Ray cluster of its own; prints one JSON line. "
                    "`riskmon chaos` runs it (and stops it cleanly, which a direct run leaves to you).")
    parser.add_argument("--accounts", type=int, default=600)
    parser.add_argument("--ticks", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work-dir", help="where Ray's session and the journals go (default: a temporary "
                                           "directory, removed afterwards); RAY_TMPDIR should name it too")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    own = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="rmnode-", dir="/tmp" if os.path.isdir("/tmp") else None)) if own \
        else Path(args.work_dir)
    if own:
        os.environ["RAY_TMPDIR"] = str(work)  # read when the cluster starts, not when Ray is imported
    try:
        result = drill(args.accounts, args.ticks, args.seed, work)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    ok = result["recovered"] and result["lost_events"] == 0 and result["duplicated_events"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
