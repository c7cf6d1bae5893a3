"""The feed protocol's framing over TCP: each frame is a 4-byte big-endian length, then that many bytes of
one :mod:`riskcore.wire` frame; every frame gets one answer, framed the same way, a msgpack map
``{"ok", "accepted", "refused", "error"}``.

    import socket
    from riskcore.framing import send_frame
    from riskcore.wire import encode_ticks
    frame = encode_ticks("feed-1", ["EURUSD"], [0], [1.1012], [1.1014], [ts_ns], [0])
    with socket.create_connection(("127.0.0.1", 7411)) as s:
        print(send_frame(s, frame))   # {'ok': True, 'accepted': 1, 'refused': [], 'error': None}
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgpack

LENGTH = struct.Struct(">I")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7411


def pack_answer(answer: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(answer, use_bin_type=True)
    return LENGTH.pack(len(body)) + body


def read_exact(sock: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None if the connection ends first."""
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send_frame(sock: socket.socket, frame: bytes) -> dict[str, Any]:
    """A producer's side: send one frame and wait for its answer."""
    sock.sendall(LENGTH.pack(len(frame)) + frame)
    head = read_exact(sock, LENGTH.size)
    if head is None:
        raise ConnectionError("the feed listener closed the connection")
    body = read_exact(sock, LENGTH.unpack(head)[0])
    if body is None:
        raise ConnectionError("the feed listener closed the connection mid-answer")
    answer: dict[str, Any] = msgpack.unpackb(body, raw=False)
    return answer
