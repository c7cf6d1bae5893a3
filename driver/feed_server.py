"""Feed ingest over TCP, for producers outside Ray.

A producer connects (any number at once) and sends frames, each a 4-byte big-endian length followed by that
many bytes of one :mod:`riskcore.wire` frame: ``ticks`` (one feed's columnar quotes) or ``fills`` (fills and
cash movements). Every frame gets one answer, framed the same way: a msgpack map ``{"ok", "accepted",
"refused", "error"}`` — how many events went on, the first refusals (``{"stream", "seq", "code",
"message"}``) and, for a frame refused whole, why. A malformed frame is refused whole and changes nothing;
the connection stays open. A length beyond the frame limit cannot be skipped safely, so it is answered and
the connection closed.

Back-pressure instead of unbounded memory: a connection's frames are taken one at a time, and the next is
not read until the current one is handed to the system, which blocks while ``batching.max_in_flight``
batches per shard are unacknowledged; the producer's socket buffer then fills and TCP holds it back. A
connection holds at most one frame (at most ``MAX_FRAME_BYTES``) in memory.

    import socket, struct, msgpack
    frame = riskcore.wire.encode_ticks("feed-1", ["EURUSD"], [0], [1.1012], [1.1014], [ts_ns], [0])
    with socket.create_connection(("127.0.0.1", 7411)) as s:
        s.sendall(struct.pack(">I", len(frame)) + frame)
        size = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
        print(msgpack.unpackb(s.recv(size, socket.MSG_WAITALL)))   # {'ok': True, 'accepted': 1, ...}
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections import Counter
from typing import Any

import msgpack

from riskcore.errors import InputError
from riskcore.wire import MAX_FRAME_BYTES, decode

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7411
REFUSALS_IN_ANSWER = 100  # a frame's answer lists at most this many refusals (all are counted and audited)
_LENGTH = struct.Struct(">I")


class FeedServer(socketserver.ThreadingTCPServer):
    """Takes frames from any number of connections and submits them to ``system`` (a ``RiskSystem``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, system: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.system = system
        self.lock = threading.Lock()
        self.connections = 0
        self.counts: Counter[str] = Counter()  # frames, events accepted, refused, frames refused whole
        super().__init__((host, port), _FeedConnection)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"connections": self.connections, **self.counts}

    def count(self, **amounts: int) -> None:
        with self.lock:
            self.counts.update(amounts)

    def take(self, data: bytes) -> dict[str, Any]:
        """Decode one frame and hand it to the system; the answer its sender gets."""
        try:
            decoded = decode(data, symbol_count=len(self.system.config.symbols))
        except InputError as exc:
            self.system.refuse_input("feed", exc.code, exc.message)
            self.count(frames=1, frames_refused=1)
            return {"ok": False, "accepted": 0, "refused": [], "error": f"{exc.code}: {exc.message}"}
        accepted, refused = self.system.submit_frame(decoded)
        self.count(frames=1, accepted=accepted, refused=len(refused))
        first = [r.to_dict() for r in refused[:REFUSALS_IN_ANSWER]]
        return {"ok": True, "accepted": accepted, "refused": first, "error": None}

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="riskmon-feed", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _FeedConnection(socketserver.BaseRequestHandler):
    server: FeedServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        with self.server.lock:
            self.server.connections += 1
        try:
            while True:
                head = _read(sock, _LENGTH.size)
                if head is None:
                    return  # the producer closed the connection between frames
                (size,) = _LENGTH.unpack(head)
                if size > MAX_FRAME_BYTES:
                    error = (f"oversize_frame: {size} bytes exceeds the limit of {MAX_FRAME_BYTES}; "
                             "closing the connection")
                    _answer(sock, {"ok": False, "accepted": 0, "refused": [], "error": error})
                    self.server.count(frames=1, frames_refused=1)
                    self.server.system.refuse_input("feed", "oversize_frame", f"frame of {size} bytes")
                    return
                data = _read(sock, size)
                if data is None:
                    return  # cut off mid-frame: nothing of it was taken
                _answer(sock, self.server.take(data))
        except OSError:
            return  # the producer went away
        finally:
            with self.server.lock:
                self.server.connections -= 1


def _read(sock: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None if the connection ends first."""
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _answer(sock: socket.socket, answer: dict[str, Any]) -> None:
    body = msgpack.packb(answer, use_bin_type=True)
    sock.sendall(_LENGTH.pack(len(body)) + body)


def send_frame(sock: socket.socket, frame: bytes) -> dict[str, Any]:
    """A producer's side: send one frame and wait for its answer."""
    sock.sendall(_LENGTH.pack(len(frame)) + frame)
    head = _read(sock, _LENGTH.size)
    if head is None:
        raise ConnectionError("the feed server closed the connection")
    body = _read(sock, _LENGTH.unpack(head)[0])
    if body is None:
        raise ConnectionError("the feed server closed the connection mid-answer")
    answer: dict[str, Any] = msgpack.unpackb(body, raw=False)
    return answer
