"""An append-only journal of msgpack records: what an actor must not lose, written before it acknowledges.

Each record is one msgpack map appended with a single ``write`` and flushed to the operating system before
:meth:`Journal.append` returns, so it survives the process being killed (``kill -9``); with ``fsync`` it is
also on disk before the call returns, so it survives the machine. Reading stops at a torn last record (a
write cut short by a crash): the torn bytes are cut off, and everything before them is returned.

Records hold only msgpack types (no extension types, no pickle): a journal is read back as data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack

from riskcore.errors import RiskmonError

MAX_RECORD_BYTES = 256 * 1024 * 1024


class JournalError(RiskmonError):
    """A journal that cannot be read back (not a torn tail: corruption in the middle)."""


class Journal:
    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the actor's life

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(msgpack.packb(record, use_bin_type=True))
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    @property
    def size(self) -> int:
        """Bytes in the journal so far."""
        return self._file.tell()

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the whole journal with ``records`` (a compaction: a snapshot of what the journal held), all
        at once: they are written to a new file, which then takes the journal's name. A crash at any point
        leaves either the old journal or the new one, never a mix."""
        tmp = self.path.with_name(self.path.name + ".compacting")
        with open(tmp, "wb") as file:
            for record in records:
                file.write(msgpack.packb(record, use_bin_type=True))
            file.flush()
            if self.fsync:
                os.fsync(file.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        if self.fsync:  # the rename itself on disk
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the actor's life

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def read(path: str | Path) -> list[dict[str, Any]]:
        """Every complete record, in order; a torn last record is cut from the file."""
        return list(_records(Path(path)))


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    size = path.stat().st_size
    good = 0
    with open(path, "rb") as file:
        # Streamed from the file: the buffer bound applies to one record, not to the whole journal.
        unpacker = msgpack.Unpacker(file, raw=False, strict_map_key=False, max_buffer_size=MAX_RECORD_BYTES)
        while True:
            try:
                record = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except (ValueError, msgpack.UnpackException) as exc:
                raise JournalError(f"{path}: unreadable record at byte {good}: {exc}") from None
            if not isinstance(record, dict):
                raise JournalError(f"{path}: record at byte {good} is {type(record).__name__}, not a map")
            good = unpacker.tell()
            yield record
    if good < size:
        # A crash cut the last write short: drop the torn bytes so the next append starts clean.
        with open(path, "r+b") as file:
            file.truncate(good)
