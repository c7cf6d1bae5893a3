"""The shard wiring: each shard's handle, Ray name and accounts (journaled: a restarted supervisor finds the
shards again by name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from riskcore.errors import RiskmonError, UnknownAccountError


class Wiring:
    def __init__(self) -> None:
        self.shards: dict[str, Any] = {}  # shard -> actor handle (none in a restarted one until it rejoins)
        self.shard_of: dict[str, str] = {}  # account -> shard
        self.accounts_of: dict[str, list[str]] = {}  # shard -> its accounts (placement)
        self.names: dict[str, str] = {}  # shard -> its Ray actor name

    def place(self, placement: Mapping[str, Sequence[str]], names: Mapping[str, str]) -> dict[str, Any]:
        """Take the placement and names; returns the journal record."""
        self.shard_of = {account: shard for shard, accounts in placement.items() for account in accounts}
        self.accounts_of = {shard: list(accounts) for shard, accounts in placement.items()}
        self.names = dict(names)
        return self.record()

    def replay(self, record: dict[str, Any]) -> None:
        self.place(record["placement"], record["names"])

    def record(self) -> dict[str, Any]:
        return {"k": "register", "names": self.names, "placement": self.accounts_of}

    def handle(self, account: str) -> Any:
        """The actor handle of ``account``'s shard."""
        shard = self.shard_of.get(account)
        if shard is None:
            raise UnknownAccountError(account)
        if shard not in self.shards:
            raise RiskmonError(f"account {account}'s shard is not reachable yet (the supervisor is rejoining "
                               "it); retry")
        return self.shards[shard]
