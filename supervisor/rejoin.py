"""A supervisor that Ray restarted finds its shards again by name and asks each for its state.

Each shard answers with its state as of the first batch the supervisor had not closed (``RejoinState``);
a shard that cannot be found or answered is gone: its accounts stay down and batches close without it.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import ray

from riskcore.messages import RejoinState
from supervisor.batches import ReportedSequences


def reconstructed() -> bool:
    """Whether this actor is one Ray restarted (not the first of its name)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own property reads a deprecated one
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


async def rejoin_states(names: dict[str, str], from_batch: int, reported: ReportedSequences,
                        ) -> dict[str, tuple[Any, RejoinState]]:
    """Shard -> (its handle, its state) for every shard that answered."""
    handles: dict[str, Any] = {}
    for sid, name in names.items():
        try:
            handles[sid] = ray.get_actor(name)
        except ValueError:
            continue  # gone for good (stopped by hand)
    answers = await asyncio.gather(*(
        asyncio.wrap_future(handle.rejoin_state.remote(from_batch, reported.below(sid)).future())
        for sid, handle in handles.items()), return_exceptions=True)
    return {sid: (handles[sid], answer) for sid, answer in zip(handles, answers, strict=True)
            if isinstance(answer, RejoinState)}
