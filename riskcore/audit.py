"""The audit trail: append-only JSON lines, each record chained to the one before by its SHA-256.

One record per fact an auditor asks about. Kinds in use: ``config_load``; ``alert`` and ``breaker`` (an
account's alert level or any breaker changed); ``limit`` (a portfolio or firm limit breached); ``command`` and
``operator`` (operator actions, with operator and reason); ``rejected_input`` (a summary of refused input);
``trail_repaired`` (a torn last line was cut).

**Format.** One JSON object per line, written canonically —
``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)`` —
so a record has exactly one byte form. JSON has no infinity, so non-finite floats are written as the strings
``"inf"``, ``"-inf"`` and ``"nan"`` (leverage is ``inf`` when equity is not positive); dict keys are written
as strings. Every record holds, beside the writer's fields:

- ``seq``: 0, 1, 2, ... for the life of the file; a reopened trail continues the count;
- ``ts``: RFC 3339 UTC with microseconds, when the fact happened. For an alert or breaker change that is the
  event's own time (in a replay, the recorded tick's), so ``ts`` need not rise from one record to the next;
- ``kind``;
- ``prev``: hex SHA-256 of the previous record's line, its exact bytes without the newline (64 zeros first);
- ``hash``: hex SHA-256 of this record's own line with the 64 digits of ``hash`` written as zeros. It seals
  the last record, which no later ``prev`` covers, so a changed byte anywhere is found at the record that
  holds it;
- ``key`` (optional): the writer's idempotence key, see :meth:`AuditTrail.has_key`.

**What the chain proves.** :func:`verify` finds any edited, inserted, deleted or reordered record and names
the first one that no longer fits. Records cut off the end leave a shorter chain that still verifies, and so
does a chain rewritten whole: to catch those, keep the head hash (``riskmon audit verify`` prints it)
somewhere else.

**Durability.** Each record is one ``write`` and a flush (and an ``fsync`` if asked for), so a killed writer
leaves whole lines and at most one torn last line; reopening the trail cuts the torn bytes off and appends a
``trail_repaired`` record that says how many went. One writer per file (the supervisor, or one command).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from riskcore.clock import parse_rfc3339, rfc3339_us
from riskcore.config import RiskConfig, config_to_raw
from riskcore.errors import RiskmonError

GENESIS = "0" * 64  # the ``prev`` of the first record, and ``hash`` as it is hashed
_ZEROED = f'"hash":"{GENESIS}"'.encode("ascii")
RESERVED_FIELDS = frozenset({"seq", "ts", "kind", "prev", "hash", "key"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_CHUNK_BYTES = 1 << 20


class AuditError(RiskmonError):
    """An audit trail that must not be extended (its chain is broken), or a record that cannot be written."""


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical(record: Mapping[str, Any]) -> str:
    """The one serialisation of a record: sorted keys, no spaces, ASCII, no NaN or infinity literals."""
    return _ENCODER.encode(record)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sealed_line(record: Mapping[str, Any]) -> tuple[bytes, str]:
    """The canonical line of ``record`` with its ``hash`` member added, and that hash.

    Built member by member, as ``canonical`` orders them, so the hash's place in the line is known.
    """
    keys = sorted(record)
    encode = _ENCODER.encode
    before = "".join(f"{encode(k)}:{encode(record[k])}," for k in keys if k < "hash")
    after = "".join(f",{encode(k)}:{encode(record[k])}" for k in keys if k > "hash")
    digest = sha256_hex(f'{{{before}"hash":"{GENESIS}"{after}}}'.encode("ascii"))
    return f'{{{before}"hash":"{digest}"{after}}}'.encode("ascii"), digest


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings and dict keys as strings, so it serialises canonically."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``first_bad`` is the 1-based line (= record) number of the first record that does not fit, or None.

    ``records`` counts the records that verified (all of them when ``ok``); ``head`` is the SHA-256 of the
    last of them, the value the next record's ``prev`` must hold.
    """

    ok: bool
    records: int
    first_bad: int | None
    problem: str
    head: str


def _problem(line: bytes, seq: int, prev: str) -> tuple[dict[str, Any] | None, str]:
    """The parsed record and "" if ``line`` is record number ``seq + 1`` of a chain whose head is ``prev``."""
    try:
        record = json.loads(line)
    except ValueError as exc:  # includes bytes that are not UTF-8
        return None, f"not valid JSON ({exc})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    if type(record.get("seq")) is not int:
        return None, "seq missing or not an integer"
    if record["seq"] != seq:
        return None, f"seq is {record['seq']}, expected {seq}"
    if record.get("prev") != prev:
        return None, ("prev is not the genesis value (64 zeros)" if seq == 0
                      else f"prev hash does not match record {seq}")
    digest = record.get("hash")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        return None, "hash missing or not 64 hex digits"
    # The record's own hash member (an earlier member with the same 64 digits would need a SHA-256 fixed
    # point).
    at = line.find(b'"hash":"%s"' % digest.encode("ascii"))
    if at < 0 or sha256_hex(line[:at] + _ZEROED + line[at + len(_ZEROED):]) != digest:
        return None, "contents do not match the record's hash (the record was edited)"
    ts = record.get("ts")
    if not isinstance(ts, str) or not _TS.fullmatch(ts):
        return None, f"ts {ts!r} is not RFC 3339 UTC with microseconds"
    try:
        parse_rfc3339(ts)
    except ValueError:
        return None, f"ts {ts!r} is not a valid date and time"
    if not isinstance(record.get("kind"), str) or not record["kind"]:
        return None, "kind missing or not a string"
    return record, ""


def _scan(path: Path, keys: set[str] | None = None) -> tuple[VerifyResult, int, bool]:
    """Check the chain line by line (streamed: one line in memory at a time).

    Returns the result, the byte length of the records that verified, and whether the first problem is a torn
    last line. Adds the ``key`` of every record that verified to ``keys``.
    """
    head, records, good_bytes = GENESIS, 0, 0
    with open(path, "rb") as file:
        for raw in file:
            number = records + 1
            if not raw.endswith(b"\n"):
                problem = ("torn: the file ends mid-record, without a newline (a write cut short; reopening "
                           "the trail for append cuts it off and records the cut)")
                return VerifyResult(False, records, number, problem, head), good_bytes, True
            line = raw[:-1]
            record, problem = _problem(line, records, head)
            if record is None:
                return VerifyResult(False, records, number, problem, head), good_bytes, False
            if keys is not None and isinstance(record.get("key"), str):
                keys.add(record["key"])
            head = sha256_hex(line)
            records += 1
            good_bytes += len(raw)
    return VerifyResult(True, records, None, "", head), good_bytes, False


def verify(path: str | Path) -> VerifyResult:
    """Check every record of the trail at ``path``: JSON object, seq from 0 by one, prev, hash, well-formed
    ts.

    ``ts`` is not required to rise (event time need not). Raises ``OSError`` if the file cannot be read.
    """
    return _scan(Path(path))[0]


# --------------------------------------------------------------------------- writing


class AuditTrail:
    """The writer of one audit trail file.

    Opening an existing file first checks its whole chain and continues it (streamed, so memory stays flat;
    the time grows with the file, about a second per 60 MB); a torn last line is cut off and the cut recorded
    as ``trail_repaired``; a broken chain raises :class:`AuditError` and the file is left as it is. ``clock``
    (ns since the epoch) stamps records given no ``ts_ns``; it is an argument so tests and replays control
    time.
    """

    def __init__(self, path: str | Path, fsync: bool = False,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._clock = clock
        self._keys: set[str] = set()
        self._seq, self._head, cut_bytes = 0, GENESIS, 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                result, good_bytes, torn = _scan(self.path, self._keys)
                if not result.ok and not torn:
                    raise AuditError(f"{self.path}: audit trail broken at record {result.first_bad}: "
                                     f"{result.problem}; refusing to extend it")
                if torn:
                    cut_bytes = self.path.stat().st_size - good_bytes
                    with open(self.path, "r+b") as file:
                        file.truncate(good_bytes)
                        if fsync:
                            os.fsync(file.fileno())
                self._seq, self._head = result.records, result.head
            self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the writer's life
        except OSError as exc:
            raise AuditError(f"cannot open audit trail {self.path}: {exc.strerror or exc}") from exc
        self._failed = False
        if cut_bytes:
            self.append("trail_repaired", cut_bytes=cut_bytes,
                        reason="torn last line (a write cut short) cut off on reopen")

    def append(self, kind: str, ts_ns: int | None = None, *, key: str | None = None,
               **fields: Any) -> dict[str, Any]:
        """Write one record and return it as written. ``ts_ns`` defaults to the clock's now."""
        if self._failed:
            raise AuditError(f"{self.path}: an earlier write failed; reopen the trail to repair it")
        if not isinstance(kind, str) or not kind:
            raise AuditError(f"an audit record needs a kind, got {kind!r}")
        if key is not None and not isinstance(key, str):
            raise AuditError(f"{kind} record: key must be a string, got {key!r}")
        clash = RESERVED_FIELDS.intersection(fields)
        if clash:
            raise AuditError(f"{kind} record: field names reserved by the trail: {', '.join(sorted(clash))}")
        record: dict[str, Any] = _jsonable(fields)
        record.update(seq=self._seq, ts=rfc3339_us(self._clock() if ts_ns is None else ts_ns), kind=kind,
                      prev=self._head)
        if key is not None:
            record["key"] = key
        try:
            line, record["hash"] = _sealed_line(record)
        except TypeError as exc:
            raise AuditError(f"{kind} record: {exc}") from None
        try:
            self._file.write(line + b"\n")
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            # Part of the line may be in the file: appending after it would break the chain mid-file.
            self._failed = True
            raise AuditError(f"{self.path}: write failed: {exc}") from exc
        self._seq += 1
        self._head = sha256_hex(line)
        if key is not None:
            self._keys.add(key)
        return record

    def append_event(self, event: Mapping[str, Any], *, before: Mapping[str, Any] | None = None,
                     after: Mapping[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        """An event in its ``to_dict()`` form (alert, breaker, limit, command), as :func:`event_record`
        shapes it.
        ``before`` / ``after``: the account's state either side of it, where the writer has them.
        """
        extra = {name: state for name, state in (("before", before), ("after", after)) if state is not None}
        kind, ts_ns, fields = event_record(event, extra)
        return self.append(kind, ts_ns, key=key, **fields)

    def has_key(self, key: str) -> bool:
        """Whether a record with this ``key`` is in the file: a restarted writer skips what it wrote before
        dying."""
        return key in self._keys

    def keys(self) -> frozenset[str]:
        """Every ``key`` in the file (only keyed records cost memory)."""
        return frozenset(self._keys)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- record bodies


def event_record(event: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                 ) -> tuple[str, int | None, dict[str, Any]]:
    """The kind, time (ns) and fields of an event's record: kind from its ``type``, time from its own
    (``tick_ts``, else ``ts``), its other fields and ``extra`` (what only the trail keeps: states before and
    after, the command's action)."""
    fields = {k: v for k, v in event.items() if k not in ("type", "ts")}
    fields.update(extra or {})
    stamp = event.get("tick_ts") or event.get("ts")
    return str(event.get("type", "event")), None if stamp is None else parse_rfc3339(stamp), fields


def config_summary(config: RiskConfig, source: str | Path | None, *, hash_file: bool = True,
                   **context: Any) -> dict[str, Any]:
    """The fields of a ``config_load`` record, whoever writes it (a command, the service's supervisor).

    ``source``: where the config came from ("generated" if None). ``sha256``: the file's bytes, when the
    writer has just read it (``hash_file``; a service restarted from its stored config has no file to hash).
    ``config_sha256``: the config as parsed (its stored form), which names the same limits wherever it is
    loaded. Then its size and ``context`` (the command and its input, a restart).
    """
    stored = msgpack.packb(config_to_raw(config), use_bin_type=True)
    fields: dict[str, Any] = {"source": "generated" if source is None else str(source),
                              "config_sha256": sha256_hex(stored), "accounts": len(config.accounts),
                              "portfolios": len(config.portfolios), "symbols": len(config.symbols)}
    if source is not None and hash_file:
        fields["sha256"] = file_sha256(source)
    return {**fields, **context}


def refusal_summary(refusals: Iterable[Mapping[str, Any]], examples: int = 5) -> dict[str, Any]:
    """The fields of a ``rejected_input`` record: how many were refused, by code, and the first few as
    given."""
    by_code: Counter[str] = Counter()
    first: list[dict[str, Any]] = []
    for refusal in refusals:
        by_code[str(refusal["code"])] += 1
        if len(first) < examples:
            first.append(dict(refusal))
    return {"refused": sum(by_code.values()), "by_code": dict(sorted(by_code.items())), "examples": first}
