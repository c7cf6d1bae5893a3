"""Ingest (actors.ingest) and its TCP listener (actors.feed_listener) over real sockets, without Ray: the
ingest runs on an asyncio loop in a thread, and its shards are real ``AccountShard``s whose acknowledgements
the test can hold back."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from actors.feed_listener import FeedListener
from actors.ingest import Ingest
from actors.router import Router, place_accounts
from actors.shard import AccountShard
from riskcore.config import parse_config
from riskcore.events import Cash, Fill, Tick
from riskcore.framing import send_frame
from riskcore.messages import ShardAck
from riskcore.wire import MAX_FRAME_BYTES, encode_fills, encode_ticks

CONFIG = parse_config({
    "symbols": {"EURUSD": {}},
    "portfolios": {"desk": {}},
    "accounts": [{"id": "a1", "portfolio": "desk", "balance": 1_000_000,
                  "positions": {"EURUSD": {"qty": 1_000, "avg_price": 1.1}}}],
    "batching": {"max_ticks": 1_000, "max_delay_ms": 20},
})


class ShardHandle:
    """Stands in for a Ray handle: ``apply_and_ack.remote`` applies to a real shard, acknowledging at once
    or, while ``hold`` is set, only once it is cleared."""

    def __init__(self, shard: AccountShard, loop: asyncio.AbstractEventLoop) -> None:
        self.shard = shard
        self.loop = loop
        self.hold = threading.Event()
        self.frames: list[bytes] = []
        handle = self

        class _Apply:
            @staticmethod
            def remote(frame: bytes) -> asyncio.Future[ShardAck]:
                handle.frames.append(frame)
                done: asyncio.Future[ShardAck] = handle.loop.create_future()
                ack = handle.shard.apply_and_ack(frame)  # journaled (had it a journal) before it answers
                handle.loop.run_in_executor(None, handle.hold_then, done, ack)
                return done

        self.apply_and_ack = _Apply()

    def hold_then(self, done: asyncio.Future[ShardAck], ack: ShardAck) -> None:
        while self.hold.is_set():
            threading.Event().wait(0.01)
        self.loop.call_soon_threadsafe(done.set_result, ack)


class Served:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.supervisor_told: list[tuple[str, list[dict[str, Any]]]] = []
        placement = place_accounts(CONFIG)
        self.shard = AccountShard(CONFIG, "shard-0000", placement["shard-0000"])
        self.handle = ShardHandle(self.shard, self.loop)
        served = self

        class Supervisor:
            class input_refused:
                @staticmethod
                def remote(source: str, refusals: list[dict[str, Any]]) -> None:
                    served.supervisor_told.append((source, refusals))

        self.ingest: Ingest = self.run(self._make(placement, Supervisor()))
        self.listener = FeedListener(self.ingest)
        self.port: int = self.run(self.listener.start("127.0.0.1", 0))

    async def _make(self, placement: dict[str, list[str]], supervisor: Any) -> Ingest:
        return Ingest(CONFIG, placement, {"shard-0000": self.handle}, supervisor, "test")

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.handle.hold.clear()
        self.run(self.listener.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    yield server
    server.close()


def quotes(stream: str, first: int, n: int = 2) -> bytes:
    seqs = list(range(first, first + n))
    return encode_ticks(stream, ["EURUSD"], [0] * n, [1.1 + s / 1e4 for s in seqs],
                        [1.1002 + s / 1e4 for s in seqs], [1 + s for s in seqs], seqs)


def test_ingest_when_frames_arrive_answers_each_and_refuses_a_bad_one_whole(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        ticks = send_frame(sock, quotes("f", 0))
        fills = send_frame(sock, encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 3), Cash("ghost", 5.0, 4)]))
        junk = send_frame(sock, b"\xc1")
        again = send_frame(sock, encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 5)]))  # the connection goes on
        stale = send_frame(sock, quotes("f", 1))  # seq 1 again, then 2
    assert ticks == {"ok": True, "accepted": 2, "refused": [], "error": None}
    assert fills["accepted"] == 1
    assert [r["code"] for r in fills["refused"]] == ["unknown_account"]
    assert not junk["ok"]
    assert junk["error"].startswith("bad_frame")
    assert again["ok"]
    assert (stale["accepted"], [r["code"] for r in stale["refused"]]) == (1, ["duplicate_seq"])
    assert served.shard.ticks_applied == 3
    assert served.shard.fills_applied == 2
    assert served.ingest.feed_stats()["frames"] == 5
    assert served.ingest.feed_stats()["frames_refused"] == 1
    told = [(source, [r["code"] for r in refusals]) for source, refusals in served.supervisor_told]
    assert ("feed", ["bad_frame"]) in told
    assert sorted(c for source, codes in told if source.startswith("ingest") for c in codes) == [
        "duplicate_seq", "unknown_account"]


def test_ingest_when_a_shard_refuses_an_event_the_answer_says_so(served: Served) -> None:
    # The shard has applied fill f1 already (sent before this ingest existed, as after a restart of it): the
    # ingest lets it through, the shard refuses it, and the feed hears that from the answer.
    earlier = Router(CONFIG, place_accounts(CONFIG), lambda shard, frame: served.shard.apply(frame))
    earlier.route([Fill("a1", "EURUSD", 1.0, 1.1, 1, fill_id="f1", stream="fills", seq=0)])
    served.ingest.resume_from({"shard-0000": served.shard.resume()})  # as a restarted ingest does
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        answer = send_frame(sock, encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 2, fill_id="f1",
                                                     stream="fills", seq=0)]))
    assert answer["accepted"] == 0
    assert [(r["code"], r["stream"], r["seq"]) for r in answer["refused"]] == [("duplicate_fill", "fills", 0)]


def test_ingest_when_a_length_is_over_the_limit_answers_and_closes(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
        size = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))[0]
        answer = msgpack.unpackb(sock.recv(size, socket.MSG_WAITALL), raw=False)
        assert answer["error"].startswith("oversize_frame")
        assert sock.recv(1) == b""  # closed: the rest of that frame could not be skipped safely


def test_ingest_when_a_frame_is_cut_off_takes_nothing_of_it(served: Served) -> None:
    frame = encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 3)])
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", len(frame)) + frame[:-3])
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        assert send_frame(sock, frame)["ok"]  # still serving
    assert served.shard.fills_applied == 1


def test_ingest_when_shards_have_not_acknowledged_answers_nothing_and_coalesces_all_connections(
        served: Served) -> None:
    # Acknowledged means journaled: while the shard holds its acknowledgements back no frame is answered, and
    # no connection's next frame is read (TCP holds the producers back). The frames of all eight connections
    # travel in far fewer batches than frames.
    served.handle.hold.set()
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def produce(feed: int) -> None:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            for n in range(3):
                answer = send_frame(sock, quotes(f"feed-{feed}", 2 * n))
                with lock:
                    answers.append(answer)

    producers = [threading.Thread(target=produce, args=(feed,)) for feed in range(8)]
    for producer in producers:
        producer.start()
    served.run(asyncio.sleep(0.3))  # three batch time bounds: batches were sent, none acknowledged
    assert answers == []
    assert 1 <= len(served.handle.frames) <= 8  # each connection's first frame only, coalesced
    served.handle.hold.clear()
    for producer in producers:
        producer.join(timeout=30)
    assert len(answers) == 24
    assert all(a == {"ok": True, "accepted": 2, "refused": [], "error": None} for a in answers)
    assert served.shard.ticks_applied == 48
    assert len(served.handle.frames) < 24


def test_ingest_when_events_are_submitted_in_process_they_share_the_feeds_batches(served: Served) -> None:
    ticks = [Tick("EURUSD", 1.1, 1.1002, 1 + i, "api", i) for i in range(2_500)]

    async def submit() -> dict[str, int]:
        served.ingest.take_events(ticks)
        return await served.ingest.drain()

    assert served.run(submit()) == {"shard-0000": 3}  # closed every max_ticks (1,000) ticks
    assert served.shard.ticks_applied == 2_500


def test_ingest_when_a_batch_is_in_flight_what_arrives_meanwhile_goes_as_one_batch_on_its_ack(
        served: Served) -> None:
    # Group commit: the first event goes at once (nothing in flight); the next ones wait for its
    # acknowledgement (the time bound is far off) and then travel together.
    served.handle.hold.set()
    ticks = [Tick("EURUSD", 1.1, 1.1002, 1 + i, "api", i) for i in range(5)]

    async def submit_one_by_one() -> int:
        for tick in ticks:
            served.ingest.take_events([tick])
        return len(served.handle.frames)

    assert served.run(submit_one_by_one()) == 1
    served.handle.hold.clear()
    served.run(served.ingest.drain())
    assert len(served.handle.frames) == 2
    assert served.shard.ticks_applied == 5


def test_ingest_when_frames_share_a_batch_each_answer_names_only_its_own_refusals(served: Served) -> None:
    served.handle.hold.set()  # a first batch stays in flight, so the next two frames share one batch
    served.ingest.config = dataclasses.replace(  # and no time bound closes it before both have come
        CONFIG, batching=dataclasses.replace(CONFIG.batching, max_delay_ms=60_000))
    answers: dict[str, dict[str, Any]] = {}

    def send(name: str, frame: bytes) -> None:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            answers[name] = send_frame(sock, frame)

    first = threading.Thread(target=send, args=("first", quotes("f", 0)))
    first.start()
    served.run(asyncio.sleep(0.05))
    good = threading.Thread(target=send, args=("good", encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 3,
                                                                          stream="x", seq=1)])))
    bad = threading.Thread(target=send, args=("bad", encode_fills([Cash("ghost", 5.0, 4, stream="y", seq=1),
                                                                   Fill("a1", "EURUSD", 2.0, 1.1, 5,
                                                                        stream="y", seq=2)])))
    good.start()
    bad.start()
    served.run(asyncio.sleep(0.05))
    served.handle.hold.clear()
    for thread in (first, good, bad):
        thread.join(timeout=30)
    assert len(served.handle.frames) == 2
    assert answers["good"] == {"ok": True, "accepted": 1, "refused": [], "error": None}
    assert answers["bad"]["accepted"] == 1
    assert [(r["stream"], r["code"]) for r in answers["bad"]["refused"]] == [("y", "unknown_account")]
