"""Every message that crosses a process boundary between shards, the supervisor and their callers.

One definition per message, imported by both ends. A message that one process builds and another reads
field by field is a frozen dataclass; the views many consumers read by key (the gate view, the breaker table,
status, the account table, an operator's answer) are TypedDicts, so their readers keep indexing them.
Each carries ``schema``, the version of its shape (:data:`MESSAGE_VERSION`), so a reader can tell a message
of another shape from a malformed one. Ray carries them pickled; breaker states and causes are
``riskcore.states`` enums, which JSON and msgpack write as their strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from riskcore.aggregate import SummaryColumns
from riskcore.events import AlertEvent, BreakerEvent
from riskcore.ingest import Refusal
from riskcore.states import BreakerState

MESSAGE_VERSION = 1

# An account's alert or breaker event as a shard reports it: (arrival position, config account index, order
# within the position, event). The first three are its key: each event is recorded once by it.
KeyedEvent = tuple[int, int, int, AlertEvent | BreakerEvent]


class Watermark(TypedDict, total=False):
    """The last event of a batch: its arrival position, and (a tick or fill) its stream, sequence and time."""

    pos: int
    stream: str
    seq: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class ShardReport:
    """What a shard tells the supervisor (and its caller) after one batch."""

    shard: str
    batch: int
    ticks_applied: int
    fills_applied: int
    refusals: list[Refusal]
    events: list[KeyedEvent]
    summaries: SummaryColumns  # the figures of every hosted account an event reached since the last report
    watermark: Watermark = field(default_factory=Watermark)
    mids: dict[str, float] = field(default_factory=dict)  # latest mid of every symbol the batch quoted
    targets: tuple[str, ...] = ()  # every shard the batch went to (from the router's frame)
    seq: int | None = None  # the batch's number in this shard's sequence
    recovered_upto: int = -1  # a recovery report: every batch of this shard's sequence up to here is applied
    recovered_batch: int = 0  # ... and every router batch numbered below this that was sent to it
    halts_version: int = -1  # the shard's breaker-change number when it made the report
    resent: list[ShardReport] = field(default_factory=list)  # a recovery report: the last batches' reports
    schema: int = MESSAGE_VERSION


@dataclass(frozen=True, slots=True)
class ShardAck:
    """What the sender of a batch gets back: counts and refusals (the figures go to the supervisor)."""

    shard: str
    batch: int
    ticks_applied: int
    fills_applied: int
    refusals: list[Refusal]
    schema: int = MESSAGE_VERSION


@dataclass(frozen=True, slots=True)
class ShardNumbering:
    """Where a shard's sequence, arrival positions and batch numbers stand; the symbols its accounts hold
    (a new router routes them to it); each tick stream's last (sequence number, time in ns)."""

    next_seq: int
    next_pos: int
    next_batch: int
    symbols: tuple[str, ...]
    streams: dict[str, tuple[int, int]]
    schema: int = MESSAGE_VERSION


@dataclass(frozen=True, slots=True)
class RejoinState:
    """What a restarted supervisor takes from a shard, at one point between batches.

    ``covered``: the shard still keeps every report from the supervisor's first open batch on; then ``before``
    holds its accounts' figures as of just before that batch and ``reports`` those reports. ``summaries``: the
    figures now (used when not covered). ``events``: those of every batch from the sequence number asked for.
    """

    covered: bool
    before: SummaryColumns | None
    reports: list[ShardReport]
    summaries: SummaryColumns
    numbering: ShardNumbering
    mids: dict[str, float]
    events: list[KeyedEvent]
    halts_version: int
    schema: int = MESSAGE_VERSION


@dataclass(frozen=True, slots=True)
class ShardCommandAnswer:
    """A shard's answer to an operator's engage or reset of one of its accounts: the breaker event (None if
    refused, with ``refusal`` saying why), its breaker-change number, the account's state before and after."""

    event: BreakerEvent | None
    refusal: str | None
    halts_version: int
    before: dict[str, Any]
    after: dict[str, Any]
    schema: int = MESSAGE_VERSION


@dataclass(frozen=True, slots=True)
class Halts:
    """A shard's engaged account breakers, as of its breaker-change number ``version`` (gates' halt watch)."""

    version: int
    halted: tuple[str, ...]
    schema: int = MESSAGE_VERSION


class OperatorAnswer(TypedDict):
    """The supervisor's answer to an operator's engage or reset: ``event`` is the breaker event's
    ``to_dict()`` form, None when refused (``refusal`` says why)."""

    schema: int
    ok: bool
    refusal: str | None
    event: dict[str, Any] | None


def operator_answer(event: dict[str, Any] | None, refusal: str | None = None) -> OperatorAnswer:
    return {"schema": MESSAGE_VERSION, "ok": event is not None, "refusal": refusal, "event": event}


class BreakerTable(TypedDict):
    """Every breaker's state and every account's liveness: what a gate needs to deny at once."""

    schema: int
    version: int
    global_engaged: bool
    portfolios: dict[str, bool]
    engaged: list[str]  # accounts whose breaker is engaged
    down: list[str]  # accounts whose shard is down


class GateAccount(TypedDict):
    portfolio: str
    engaged: bool
    reduce_only: bool
    up: bool
    equity: float
    exposure: float
    positions: dict[str, float]
    max_account_leverage: float
    max_order_notional: float | None
    max_position_notional: float | None
    max_orders_per_second: int | None


class GateView(TypedDict):
    """Everything a gate checks orders against (``riskcore.gate.GateCore.update``)."""

    schema: int
    version: int
    figures_version: int
    global_engaged: bool
    global_reduce_only: bool
    portfolios: dict[str, tuple[bool, bool]]  # portfolio -> (engaged, reduce only when halted)
    accounts: dict[str, GateAccount]
    marks: dict[str, float]
    multipliers: dict[str, float]
    price_bands: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class PollReply:
    """A gate's long-poll answer: the whole view (its figures are old), or only the breaker table (a breaker
    or liveness changed), or neither (a heartbeat: the gate's copy is current as of ``version``)."""

    version: int
    view: GateView | None = None
    breakers: BreakerTable | None = None
    schema: int = MESSAGE_VERSION

    @property
    def unchanged(self) -> bool:
        return self.view is None and self.breakers is None


class AccountBreakerState(TypedDict):
    state: BreakerState
    reason: str


class AccountRow(TypedDict):
    """One account in ``Supervisor.accounts_view()`` (``riskmon status``)."""

    portfolio: str
    reported: bool
    equity: float
    daily_pnl: float
    exposure: float
    alert_level: str
    breaker: BreakerState
    up: bool


class AuditStatus(TypedDict):
    failures: int  # writes to the trail that failed (retried at the next change)
    error: str | None
    waiting: int  # records journaled, not yet in the trail


# Functional form: "global" is a keyword.
StatusBreakers = TypedDict("StatusBreakers", {
    "global": dict[str, Any],  # the global breaker's snapshot (``Breaker.snapshot()``)
    "portfolios": dict[str, dict[str, Any]],
    "accounts": dict[str, AccountBreakerState],
})


class Status(TypedDict):
    """``Supervisor.status()``: figures, breakers, liveness, counts (``riskmon status``, metrics, drills)."""

    schema: int
    version: int
    reports: int  # distinct shard batches reported
    firm: dict[str, Any]  # Aggregate.to_dict()
    portfolios: dict[str, dict[str, Any]]
    breakers: StatusBreakers
    up: dict[str, bool]
    refused: dict[str, int]
    watch_failures: dict[str, int]
    event_counts: dict[str, int]
    started_ns: int
    feeds: dict[str, dict[str, int]]
    audit: AuditStatus
    journal_error: str | None
