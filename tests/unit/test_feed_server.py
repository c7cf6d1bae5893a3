"""The TCP feed server (driver.feed_server) over real sockets, against a recording stand-in for the system."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import msgpack
import pytest

from driver.feed_server import FeedServer, send_frame
from riskcore.config import parse_config
from riskcore.events import Cash, Fill
from riskcore.ingest import Refusal
from riskcore.wire import MAX_FRAME_BYTES, TickFrame, encode_fills, encode_ticks

CONFIG = parse_config({"symbols": {"EURUSD": {}}, "portfolios": {"desk": {}},
                       "accounts": [{"id": "a1", "portfolio": "desk", "balance": 1_000_000}]})


class RecordingSystem:
    """Takes frames as RiskSystem.submit_frame does; refuses fills of account 'ghost'."""

    def __init__(self, block: threading.Event | None = None) -> None:
        self.config = CONFIG
        self.frames: list[Any] = []
        self.refused_whole: list[tuple[str, str]] = []
        self.block = block
        self.lock = threading.Lock()

    def submit_frame(self, decoded: Any) -> tuple[int, list[Refusal]]:
        if self.block is not None:
            self.block.wait(10)
        with self.lock:
            self.frames.append(decoded)
        if isinstance(decoded, TickFrame):
            return len(decoded), []
        bad = [Refusal(e.stream, e.seq, "unknown_account", "ghost") for e in decoded if e.account == "ghost"]
        return len(decoded) - len(bad), bad

    def refuse_input(self, source: str, code: str, message: str) -> None:
        self.refused_whole.append((source, code))


@pytest.fixture
def served() -> Any:
    servers: list[FeedServer] = []

    def start(system: RecordingSystem) -> FeedServer:
        server = FeedServer(system, "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_feed_server_when_frames_arrive_answers_each_and_refuses_a_bad_one_whole(served: Any) -> None:
    system = RecordingSystem()
    server = served(system)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        quotes = encode_ticks("f", ["EURUSD"], [0, 0], [1.1, 1.2], [1.2, 1.3], [1, 2], [0, 1])
        ticks = send_frame(sock, quotes)
        fills = send_frame(sock, encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 3), Cash("ghost", 5.0, 4)]))
        junk = send_frame(sock, b"\xc1")
        again = send_frame(sock, encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 5)]))  # the connection goes on
    assert ticks == {"ok": True, "accepted": 2, "refused": [], "error": None}
    assert fills["accepted"] == 1
    assert [r["code"] for r in fills["refused"]] == ["unknown_account"]
    assert not junk["ok"]
    assert junk["error"].startswith("bad_frame")
    assert system.refused_whole == [("feed", "bad_frame")]
    assert again["ok"]
    assert len(system.frames) == 3
    assert server.stats()["frames"] == 4
    assert server.stats()["frames_refused"] == 1


def test_feed_server_when_a_length_is_over_the_limit_answers_and_closes(served: Any) -> None:
    server = served(RecordingSystem())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
        size = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))[0]
        answer = msgpack.unpackb(sock.recv(size, socket.MSG_WAITALL), raw=False)
        assert answer["error"].startswith("oversize_frame")
        assert sock.recv(1) == b""  # closed: the rest of that frame could not be skipped safely


def test_feed_server_when_a_frame_is_cut_off_takes_nothing_of_it(served: Any) -> None:
    system = RecordingSystem()
    server = served(system)
    frame = encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 3)])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", len(frame)) + frame[:-3])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert send_frame(sock, frame)["ok"]  # the server is still serving
    assert len(system.frames) == 1


def test_feed_server_when_the_system_is_busy_holds_producers_back_instead_of_buffering(served: Any) -> None:
    # While the system blocks (back-pressure), a connection's next frame is not read: nothing piles up here.
    block = threading.Event()
    system = RecordingSystem(block)
    server = served(system)
    frame = encode_fills([Fill("a1", "EURUSD", 1.0, 1.1, 3)])
    answers: list[dict[str, Any]] = []

    def produce() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            answers.extend(send_frame(sock, frame) for _ in range(3))

    producers = [threading.Thread(target=produce) for _ in range(8)]  # concurrent connections
    for producer in producers:
        producer.start()
    assert not answers
    assert system.frames == []
    block.set()
    for producer in producers:
        producer.join(timeout=20)
    assert len(answers) == 24
    assert all(a["ok"] for a in answers)
    assert len(system.frames) == 24
