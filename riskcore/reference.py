"""The reference engine: the specification, executable, one event at a time; and what both engines share.

The reference applies each event to each account in turn through :class:`riskcore.account.AccountBook`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from riskcore.account import AccountBook, AccountState
from riskcore.batch import SNAPSHOT_VERSION, EventBatch, Quote, check_snapshot_version
from riskcore.clock import TradingCalendar
from riskcore.config import RiskConfig
from riskcore.errors import SnapshotError, UnknownAccountError
from riskcore.events import AccountEvent, BreakerEvent, Cash, Event
from riskcore.states import BreakerState, EngageCause, ReleaseCause, Scope


def _is_symbol_id(value: object, n_symbols: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_symbols


class EngineBase:
    """Accounts, marks, operator commands and snapshots: what both engines share."""

    def __init__(self, config: RiskConfig, account_ids: Iterable[str] | None = None) -> None:
        self.config = config
        self.symbol_ids = config.symbol_ids()
        self.symbol_names = list(config.symbols)
        self.multipliers = [spec.multiplier for spec in config.symbols.values()]
        self.calendar = TradingCalendar(config.trading_day.roll_time, config.trading_day.timezone)
        wanted = None if account_ids is None else set(account_ids)
        self.books: list[AccountBook] = [
            AccountBook(spec, self.symbol_ids, self.multipliers, self.calendar)
            for spec in config.accounts
            if wanted is None or spec.id in wanted
        ]
        self.book_by_id = {book.id: book for book in self.books}
        if wanted is not None and len(self.book_by_id) != len(wanted):
            raise UnknownAccountError(sorted(wanted - set(self.book_by_id))[0])
        self.marks: dict[int, Quote] = {}

    # ------------------------------------------------------------------ views

    def states(self) -> dict[str, AccountState]:
        return {book.id: book.state() for book in self.books}

    def book(self, account_id: str) -> AccountBook:
        try:
            return self.book_by_id[account_id]
        except KeyError:
            raise UnknownAccountError(account_id) from None

    # ------------------------------------------------------------------ operator commands

    def engage(self, account_id: str, now_ns: int, operator: str, reason: str) -> BreakerEvent:
        book = self.book(account_id)
        book.breaker.engage(now_ns, EngageCause.OPERATOR, reason, operator)
        return BreakerEvent(
            Scope.ACCOUNT, account_id, BreakerState.ENGAGED, reason, EngageCause.OPERATOR, operator,
            "operator", None, now_ns,
        )

    def reset(
        self, account_id: str, now_ns: int, operator: str, reason: str
    ) -> tuple[BreakerEvent | None, str | None]:
        """Release an account breaker, or say why not (cooldown, limit still breached)."""
        book = self.book(account_id)
        refusal = book.reset_refusal(now_ns)
        if refusal is not None:
            return None, refusal
        book.breaker.reset()
        event = BreakerEvent(
            Scope.ACCOUNT, account_id, BreakerState.SAFE, reason, ReleaseCause.RESET, operator, "operator",
            None, now_ns,
        )
        return event, None

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> dict[str, Any]:
        """Every account's state and the latest marks, as msgpack-native values (no numpy, no pickle).

        With the journal written after it, enough to rebuild the engine (:meth:`restore`) without
        replaying the journal from its start. Symbol ids index ``symbols``, the config's symbol table.
        """
        return {
            "version": SNAPSHOT_VERSION,
            "symbols": list(self.symbol_names),
            "marks": [[symbol_id, bid, ask] for symbol_id, (bid, ask) in sorted(self.marks.items())],
            "accounts": [book.snapshot() for book in self.books],
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take the state :meth:`snapshot` wrote, in an engine of the same config and accounts.

        Raises :class:`SnapshotError`, having changed nothing, for a snapshot of another version, of other
        accounts, or naming symbols this config does not have.
        """
        self._check_snapshot(snapshot)
        for data in snapshot["accounts"]:
            self.book_by_id[data["id"]].restore(data)
        self.marks = {symbol_id: (bid, ask) for symbol_id, bid, ask in snapshot["marks"]}

    def _check_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        check_snapshot_version(snapshot, "engine")
        known = list(snapshot["symbols"])
        if known != self.symbol_names[: len(known)]:
            # Symbols appended to the config since are fine (ids of the old ones are unchanged); any other
            # change would make the snapshot's ids name other symbols.
            raise SnapshotError(
                "snapshot symbol table is not a prefix of the config's: its symbol ids would name other "
                "symbols (symbols may only be appended to a running system's config)"
            )
        ids = sorted(data["id"] for data in snapshot["accounts"])
        if ids != sorted(self.book_by_id):
            hosted = set(self.book_by_id)
            raise SnapshotError(
                f"snapshot accounts are not this engine's: missing {sorted(hosted - set(ids))[:5]}, "
                f"not hosted here {sorted(set(ids) - hosted)[:5]}, {len(ids)} in snapshot, "
                f"{len(hosted)} hosted"
            )
        n_symbols = len(self.symbol_names)
        for data in snapshot["accounts"]:
            for symbol_id in data["slot_symbols"]:
                if not _is_symbol_id(symbol_id, n_symbols):
                    raise SnapshotError(
                        f"snapshot account {data['id']} holds unknown symbol id {symbol_id!r}"
                    )
        for symbol_id, *_ in snapshot["marks"]:
            if not _is_symbol_id(symbol_id, n_symbols):
                raise SnapshotError(f"snapshot marks unknown symbol id {symbol_id!r}")


class ReferenceEngine(EngineBase):
    """The specification, executable: every event applied to every account, one at a time."""

    def apply(self, batch: EventBatch) -> list[Event]:
        self.marks.update(batch.marks)
        ticks = batch.ticks
        events: list[Event] = []
        n_fills = len(batch.fills)
        j = 0
        for i in range(len(ticks) + 1):
            while j < n_fills and batch.fill_pos[j] <= i:
                events.extend(self.apply_fill(batch.fills[j]))
                j += 1
            if i == len(ticks):
                break
            symbol_id = int(ticks.symbol[i])
            self.marks[symbol_id] = (float(ticks.bid[i]), float(ticks.ask[i]))
            ts_ns = int(ticks.ts_ns[i])
            stream = ticks.streams[int(ticks.stream[i])]
            seq = int(ticks.seq[i])
            for book in self.books:
                if book.holds(symbol_id):
                    events.extend(book.on_tick(self.marks, ts_ns, stream, seq))
        return events

    def apply_fill(self, fill: AccountEvent) -> list[Event]:
        if isinstance(fill, Cash):
            return self.book(fill.account).on_cash(fill)
        return self.book(fill.account).on_fill(fill, self.symbol_ids[fill.symbol], self.marks)



__all__ = ["EngineBase", "ReferenceEngine"]
