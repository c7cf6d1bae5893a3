"""Messages between processes: frozen, versioned, and they survive the trip (Ray pickles, journals pack)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

import msgpack
import numpy as np
import pytest

from riskcore.aggregate import SummaryColumns
from riskcore.events import AlertEvent, BreakerEvent
from riskcore.ingest import Refusal
from riskcore.messages import (
    MESSAGE_VERSION,
    BreakerTable,
    Halts,
    PollReply,
    RejoinState,
    ShardAck,
    ShardCommandAnswer,
    ShardNumbering,
    ShardReport,
    operator_answer,
)
from riskcore.states import BreakerState, EngageCause, Scope


def columns() -> SummaryColumns:
    return SummaryColumns(
        np.array([0], np.int32), np.array([1.0]), np.array([1.0]), np.array([2.0]), np.array([1], np.int8),
        np.array([True]), np.array([5], np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0),
        np.zeros(0))


ENGAGED = BreakerEvent(Scope.ACCOUNT, "a1", BreakerState.ENGAGED, "drawdown", EngageCause.LIMIT, "", "f", 7,
                       9)
ALERT = AlertEvent("a1", "NORMAL", "CRITICAL", "drawdown_pct", 0.03, 0.02, "f", 7, 9)
REPORT = ShardReport("shard-0000", 3, 5, 1, [Refusal("f", 2, "crossed_quote", "bid above ask")],
                     [(10, 0, 0, ALERT), (10, 0, 1, ENGAGED)], columns(),
                     {"pos": 10, "stream": "f", "seq": 7, "ts_ns": 9}, {"EURUSD": 1.1}, ("shard-0000",), 2)
NUMBERING = ShardNumbering(3, 11, 4, ("EURUSD",), {"f": (7, 9)})
MESSAGES: list[Any] = [
    REPORT,
    dataclasses.replace(REPORT, batch=-1, recovered_upto=2, recovered_batch=4, resent=[REPORT]),
    ShardAck("shard-0000", 3, 5, 1, []),
    NUMBERING,
    RejoinState(True, columns(), [REPORT], columns(), NUMBERING, {"EURUSD": 1.1}, [(10, 0, 1, ENGAGED)], 12),
    ShardCommandAnswer(ENGAGED, None, 12, {"breaker": "SAFE"}, {"breaker": "ENGAGED"}),
    Halts(12, ("a1",)),
    PollReply(5),
]


def equal(a: Any, b: Any) -> bool:
    """Field by field, arrays by value."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(equal(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_when_pickled_as_ray_does_come_back_equal_with_their_schema(message: Any) -> None:
    again = pickle.loads(pickle.dumps(message))
    assert equal(again, message)
    assert again.schema == MESSAGE_VERSION


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_are_frozen(message: Any) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.schema = MESSAGE_VERSION + 1


def test_messages_breaker_event_enums_travel_as_strings_and_come_back_as_enums() -> None:
    body = ENGAGED.to_dict()
    packed = msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False)
    assert json.loads(json.dumps(body)) == packed
    assert type(packed["state"]) is str
    assert packed["state"] == "ENGAGED"
    names = {"scope": "scope", "id": "id", "state": "state", "reason": "reason", "cause": "cause",
             "operator": "operator", "stream": "stream", "seq": "tick_seq"}  # field -> its to_dict() key
    again = BreakerEvent(**{field: packed[key] for field, key in names.items()}, ts_ns=ENGAGED.ts_ns)
    assert again == ENGAGED
    assert again.state is BreakerState.ENGAGED
    assert again.cause is EngageCause.LIMIT


def test_messages_operator_answer_carries_the_event_dict_or_the_refusal() -> None:
    done = operator_answer(ENGAGED.to_dict())
    refused = operator_answer(None, "recovery cooldown: 3 s of 60 s left")
    assert (done["ok"], done["refusal"], done["event"], done["schema"]) == (True, None, ENGAGED.to_dict(), 1)
    assert (refused["ok"], refused["event"]) == (False, None)
    assert refused["refusal"] == "recovery cooldown: 3 s of 60 s left"


def test_messages_poll_reply_is_unchanged_only_without_a_view_or_table() -> None:
    table: BreakerTable = {"schema": 1, "version": 6, "global_engaged": False, "portfolios": {},
                           "engaged": [], "down": []}
    assert PollReply(5).unchanged
    assert not PollReply(6, breakers=table).unchanged
