"""Feeds over TCP into an ingest actor (``actors.ingest``), on the actor's own asyncio loop.

A producer connects (any number at once) and sends frames in the framing of :mod:`riskcore.framing`:
``ticks`` frames (one feed's columnar quotes) or ``fills`` frames (fills and cash movements). Each frame is
answered once the shards its events reached have journaled them: how many were accepted and the first
refusals (``{"stream", "seq", "code", "message"}``), the router's and the shards' alike. A malformed frame
is refused whole and changes nothing; the connection stays open. A length beyond the frame limit cannot be
skipped safely, so it is answered and the connection closed.

Back-pressure instead of unbounded memory: a connection's next frame is not read until the current one is
answered, so the producer's socket buffer fills and TCP holds it back; a connection holds at most one frame
(at most ``MAX_FRAME_BYTES``) in memory.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from actors.ingest import Ingest, Ticket
from riskcore.framing import LENGTH, pack_answer
from riskcore.wire import MAX_FRAME_BYTES


class FeedListener:
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0: any free one); the port bound."""
        self.server = await asyncio.start_server(self._connection, host, port, reuse_address=True,
                                                 limit=MAX_FRAME_BYTES + LENGTH.size)
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Take no new connections or frames; frames already taken are still answered."""
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ingest = self.ingest
        ingest.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an answer is small and awaited
        try:
            while self.server is not None:
                head = await reader.readexactly(LENGTH.size)
                (size,) = LENGTH.unpack(head)
                if size > MAX_FRAME_BYTES:
                    error = (f"oversize_frame: {size} bytes exceeds the limit of {MAX_FRAME_BYTES}; "
                             "closing the connection")
                    writer.write(pack_answer({"ok": False, "accepted": 0, "refused": [], "error": error}))
                    await writer.drain()
                    ingest.counts.update(frames=1, frames_refused=1)
                    ingest.refuse_input("feed", "oversize_frame", f"frame of {size} bytes")
                    return
                data = await reader.readexactly(size)  # cut off mid-frame: nothing of it is taken
                writer.write(pack_answer(await self._take(data)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return  # the producer closed the connection or went away
        finally:
            ingest.connections -= 1
            writer.close()

    async def _take(self, data: bytes) -> dict[str, Any]:
        taken = self.ingest.take_frame(data)
        if not isinstance(taken, Ticket):
            return taken
        assert taken.done is not None
        await taken.done
        answer = taken.answer()
        self.ingest.counts.update(accepted=answer["accepted"], refused=len(taken.refused))
        return answer
