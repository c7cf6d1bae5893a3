"""The audit trail (riskcore.audit), ``riskmon audit verify`` and ``riskmon replay --audit``, without Ray.

Tampering is simulated the ways it happens: a byte flipped, a line deleted or moved, a record edited and
re-hashed, a write cut short by a crash. (Any one byte flipped, generated: in
tests/property/test_audit_properties.py.)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskcore.audit import GENESIS, AuditError, AuditTrail, VerifyResult, canonical, refusal_summary, verify
from riskcore.clock import parse_rfc3339, rfc3339_us
from riskcore.config import RiskConfig, parse_config
from riskcore.engine import EventBatch, ReferenceEngine
from riskcore.errors import RiskmonError
from riskcore.events import AlertEvent, Tick
from riskcore.feeds import read_records
from riskmon import cli, replay
from tests.replay_fixtures import SMALL_CONFIG as BOOK

T0 = parse_rfc3339("2020-01-02T15:00:00.000000Z")
S = 1_000_000_000
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EURUSD_FILE = DATA_DIR / "EURUSD-histdata-20200101.csv"


def fixed_clock(ts_ns: int = T0) -> Callable[[], int]:
    return lambda: ts_ns


def write_sample(path: Path, records: int = 8) -> Path:
    """A trail with the kinds and values the system writes: states with infinite leverage, text, nesting."""
    state = {"account": "A-1", "leverage": math.inf, "equity": -5.0, "alert_level": "CRITICAL"}
    with AuditTrail(path, clock=fixed_clock()) as trail:
        trail.append("config_load", source="config/risk_limits.yaml", sha256="ab" * 32, accounts=6)
        for i in range(records - 2):
            trail.append("alert", T0 + i * S, account=f"A-{i}", before={**state, "alert_level": "WARNING"},
                         after=state, note=f"tick {i} \u00e9", values=[1.5, -0.0, 10**20])
        trail.append("rejected_input", refused=2, by_code={"bad_record": 2}, examples=[])
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- format


def test_append_when_records_written_chains_each_to_the_exact_bytes_of_the_one_before(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")

    raw = path.read_bytes().splitlines()
    assert path.read_bytes().endswith(b"\n")
    prev = GENESIS
    for seq, line in enumerate(raw):
        record = json.loads(line)
        assert record["seq"] == seq
        assert record["prev"] == prev
        assert canonical(record).encode("ascii") == line
        zeroed = canonical({**record, "hash": GENESIS}).encode("ascii")
        assert record["hash"] == hashlib.sha256(zeroed).hexdigest()
        assert rfc3339_us(parse_rfc3339(record["ts"])) == record["ts"]
        prev = hashlib.sha256(line).hexdigest()
    result = verify(path)
    assert (result.ok, result.records, result.first_bad, result.problem) == (True, 8, None, "")
    assert result.head == prev


def test_append_when_values_not_finite_writes_them_as_strings_that_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditTrail(path, clock=fixed_clock()) as trail:
        written = trail.append("alert", leverage=math.inf, low=-math.inf, ratio=math.nan,
                               marks={7: [math.inf, 1.25]})

    (record,) = records(path)
    assert record == written
    assert (record["leverage"], record["low"], record["ratio"]) == ("inf", "-inf", "nan")
    assert record["marks"] == {"7": ["inf", 1.25]}
    assert float(record["leverage"]) == math.inf
    assert math.isnan(float(record["ratio"]))
    assert b"Infinity" not in path.read_bytes()
    assert b"NaN" not in path.read_bytes()
    assert verify(path).ok


def test_append_when_no_ts_given_stamps_the_clock_and_when_given_uses_it(tmp_path: Path) -> None:
    with AuditTrail(tmp_path / "audit.jsonl", clock=fixed_clock(T0)) as trail:
        stamped = trail.append("operator", operator="jo", reason="desk review")
        event_time = trail.append("alert", T0 - 3 * S + 1_000)
    assert stamped["ts"] == "2020-01-02T15:00:00.000000Z"
    assert event_time["ts"] == "2020-01-02T14:59:57.000001Z"  # earlier than the record before: allowed


def test_append_when_field_name_reserved_or_value_not_json_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditTrail(path) as trail:
        with pytest.raises(AuditError, match="reserved by the trail: prev, seq"):
            trail.append("alert", seq=3, prev="x")
        with pytest.raises(AuditError, match="alert record"):
            trail.append("alert", when=object())
        with pytest.raises(AuditError, match="needs a kind"):
            trail.append("")
        trail.append("alert", account="A")
    assert [r["seq"] for r in records(path)] == [0]
    assert verify(path).ok


def test_append_event_when_alert_event_takes_kind_and_ts_from_the_event(tmp_path: Path) -> None:
    event = AlertEvent("A-1", "WARNING", "CRITICAL", "leverage", math.inf, 5.0, "EURUSD", 42, T0 + 65_000_000)
    before, after = {"alert_level": "WARNING"}, {"alert_level": "CRITICAL", "leverage": math.inf}
    with AuditTrail(tmp_path / "audit.jsonl", clock=fixed_clock(0)) as trail:
        record = trail.append_event(event.to_dict(), before=before, after=after)

    assert record["kind"] == "alert"
    assert record["ts"] == record["tick_ts"] == "2020-01-02T15:00:00.065000Z"
    assert (record["account"], record["from"], record["to"]) == ("A-1", "WARNING", "CRITICAL")
    assert record["tick_seq"] == 42
    assert record["value"] == "inf"
    assert record["before"] == before
    assert record["after"] == {"alert_level": "CRITICAL", "leverage": "inf"}
    assert "type" not in record


def test_refusal_summary_when_refusals_given_counts_by_code_and_keeps_the_first_few() -> None:
    refusals = [{"tick_seq": i, "code": "bad_record" if i % 3 else "crossed_quote", "message": f"m{i}"}
                for i in range(10)]
    summary = refusal_summary(refusals, examples=3)
    assert summary == {"refused": 10, "by_code": {"bad_record": 6, "crossed_quote": 4},
                       "examples": refusals[:3]}


# --------------------------------------------------------------------------- tampering


def test_verify_when_one_byte_in_the_middle_flipped_names_that_record(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x01
    path.write_bytes(bytes(data))

    result = verify(path)

    line = data[:middle].count(b"\n") + 1
    assert not result.ok
    assert result.first_bad == line
    assert result.records == line - 1


def test_verify_when_a_line_deleted_names_the_line_now_in_its_place(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    original = lines(path)
    for index in (0, 3):
        path.write_bytes(b"".join(original[:index] + original[index + 1:]))
        result = verify(path)
        assert (result.ok, result.first_bad) == (False, index + 1)
        assert f"seq is {index + 1}, expected {index}" in result.problem


def test_verify_when_two_lines_swapped_names_the_first_of_them(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    raw = lines(path)
    raw[4], raw[5] = raw[5], raw[4]
    path.write_bytes(b"".join(raw))

    result = verify(path)

    assert (result.ok, result.first_bad, result.records) == (False, 5, 4)


def test_verify_when_record_edited_and_its_own_hash_recomputed_names_the_record_after_it(
        tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    raw = lines(path)
    forged = json.loads(raw[2])
    forged["account"] = "someone-else"
    forged["hash"] = hashlib.sha256(canonical({**forged, "hash": GENESIS}).encode("ascii")).hexdigest()
    raw[2] = canonical(forged).encode("ascii") + b"\n"
    path.write_bytes(b"".join(raw))

    result = verify(path)

    assert (result.ok, result.first_bad) == (False, 4)
    assert result.problem == "prev hash does not match record 3"


def test_verify_when_line_reformatted_with_same_content_reports_it_edited(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    raw = lines(path)
    # Spaces after the separators: the same record, not its canonical line.
    raw[-1] = json.dumps(json.loads(raw[-1]), sort_keys=True).encode("ascii") + b"\n"
    path.write_bytes(b"".join(raw))

    result = verify(path)

    assert (result.ok, result.first_bad) == (False, len(raw))
    assert result.problem == "contents do not match the record's hash (the record was edited)"


def test_verify_when_file_cut_mid_line_reports_the_last_record_torn(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])

    result = verify(path)

    assert (result.ok, result.first_bad, result.records) == (False, 8, 7)
    assert result.problem.startswith("torn:")


def test_verify_when_last_records_cut_off_cleanly_still_ok_but_the_head_differs(tmp_path: Path) -> None:
    # What a hash chain cannot see on its own: the head hash, kept elsewhere, is what shows it.
    path = write_sample(tmp_path / "audit.jsonl")
    head = verify(path).head
    path.write_bytes(b"".join(lines(path)[:-2]))

    result = verify(path)

    assert (result.ok, result.records) == (True, 6)
    assert result.head != head


def test_verify_when_file_empty_is_ok_with_no_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    assert verify(path) == VerifyResult(True, 0, None, "", GENESIS)


# --------------------------------------------------------------------------- reopening


def test_reopen_when_trail_exists_continues_seq_and_chain(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl", records=3)
    with AuditTrail(path, clock=fixed_clock()) as trail:
        trail.append("operator", action="engage", operator="jo", reason="desk review")
        trail.append("breaker", scope="account", id="A-1", state="ENGAGED")

    assert [r["seq"] for r in records(path)] == [0, 1, 2, 3, 4]
    assert verify(path).ok
    assert verify(path).records == 5


def test_reopen_when_last_line_torn_cuts_it_and_records_the_cut(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl", records=3)
    whole = path.read_bytes()
    torn = b'{"account":"A-9","hash":"3f'
    path.write_bytes(whole + torn)

    with AuditTrail(path, clock=fixed_clock()) as trail:
        trail.append("alert", account="A-1")

    written = records(path)
    assert path.read_bytes().startswith(whole)
    kinds = [r["kind"] for r in written]
    assert kinds == ["config_load", "alert", "rejected_input", "trail_repaired", "alert"]
    assert written[3]["cut_bytes"] == len(torn)
    assert written[3]["prev"] == hashlib.sha256(whole.splitlines()[-1]).hexdigest()
    assert verify(path).ok


def test_reopen_when_chain_broken_raises_and_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x20
    path.write_bytes(bytes(data))
    bad = verify(path).first_bad

    with pytest.raises(AuditError, match=f"broken at record {bad}: .*refusing to extend it"):
        AuditTrail(path)

    assert path.read_bytes() == bytes(data)


def test_keys_when_trail_reopened_include_every_key_written_before(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditTrail(path) as trail:
        trail.append("breaker", key="shard-0:17", id="A-1")
        trail.append("alert", id="A-2")
        assert trail.has_key("shard-0:17")

    with AuditTrail(path) as restarted:
        assert restarted.keys() == frozenset({"shard-0:17"})
        for key in ("shard-0:17", "shard-0:18"):  # what a restarted writer does
            if not restarted.has_key(key):
                restarted.append("breaker", key=key, id="A-1")
        assert restarted.has_key("shard-0:18")

    assert [r.get("key") for r in records(path)] == ["shard-0:17", None, "shard-0:18"]


def test_append_when_a_write_fails_refuses_further_records_until_reopened(tmp_path: Path) -> None:
    class FullDisk:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, fsync=True)
    trail.append("alert", account="A-1")
    trail._file.close()
    trail._file = FullDisk()  # type: ignore[assignment]  # a disk that fails, not a file object

    with pytest.raises(AuditError, match="write failed"):
        trail.append("alert", account="A-2")
    with pytest.raises(AuditError, match="reopen the trail"):
        trail.append("alert", account="A-3")
    assert verify(path).records == 1


# --------------------------------------------------------------------------- riskmon audit verify


def test_cli_audit_verify_when_intact_exits_0_and_prints_ok_with_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    code, out, err = run_cli(capsys, "audit", "verify", str(path))
    assert code == 0, err
    head = verify(path).head
    assert out == f"OK: 8 records, chain intact ({path}); head {head} (SHA-256 of the last line)\n"


def test_cli_audit_verify_when_one_byte_flipped_exits_1_and_names_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_sample(tmp_path / "audit.jsonl")
    data = bytearray(path.read_bytes())
    at = sum(len(line) for line in lines(path)[:5]) + 30  # inside record 6
    data[at] ^= 0x04
    path.write_bytes(bytes(data))

    code, out, _err = run_cli(capsys, "audit", "verify", str(path))

    assert code == 1
    assert out.startswith("BROKEN at line 6 (seq 5): ")
    assert str(path) in out


def test_cli_audit_verify_when_file_missing_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "audit", "verify", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert out == ""
    assert err == f"error: cannot read audit trail {tmp_path / 'nope.jsonl'}: No such file or directory\n"


@pytest.mark.parametrize("command", [("audit",), ("audit", "verify")])
def test_cli_audit_when_help_asked_exits_0(capsys: pytest.CaptureFixture[str],
                                           command: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: riskmon " + " ".join(command))


# --------------------------------------------------------------------------- riskmon replay --audit


class EngineSystem:
    """RiskSystem's replay surface over the reference engine, in this process: replay's own code, no Ray."""

    started = 0

    def __init__(self, config: RiskConfig) -> None:
        self.engine = ReferenceEngine(config)
        self.log: list[dict[str, Any]] = []
        self.refusals: list[Any] = []

    @classmethod
    def start(cls, config: RiskConfig) -> EngineSystem:
        cls.started += 1
        return cls(config)

    def submit(self, ticks: Iterable[Tick]) -> None:
        ticks = list(ticks)
        if ticks:
            batch = EventBatch.from_events(ticks, self.engine.symbol_ids)
            self.log.extend(event.to_dict() for event in self.engine.apply(batch))

    def flush(self) -> None:
        pass

    def states(self) -> dict[str, dict[str, Any]]:
        return {account: state.to_dict() for account, state in self.engine.states().items()}

    def events(self) -> list[dict[str, Any]]:
        return list(self.log)

    def status(self) -> dict[str, Any]:
        return {}

    def shutdown(self) -> None:
        pass


@pytest.fixture
def engine_system(monkeypatch: pytest.MonkeyPatch) -> type[EngineSystem]:
    EngineSystem.started = 0
    monkeypatch.setattr(replay, "RiskSystem", EngineSystem)
    return EngineSystem


# The shared book, with long-1 released automatically once back in limits (the trail then has a SAFE too).
SMALL_CONFIG: dict[str, Any] = {**BOOK, "accounts": [
    {**BOOK["accounts"][0], "limits": {**BOOK["accounts"][0]["limits"], "auto_reset": True,
                                       "recovery_cooldown_seconds": 1}},
    BOOK["accounts"][1]]}
BAD_LINE = 50


def write_small_config(tmp_path: Path) -> Path:
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL_CONFIG, sort_keys=False), encoding="utf-8")
    return config


def write_quotes(path: Path) -> Path:
    """HistData quotes a second apart (EST): flat, a fall of 27 pips, a rise to 18 pips above; one broken
    line."""
    fall = [1.1212 - 0.0027 * i / 40 for i in range(1, 41)]
    rise = [1.1185 + 0.0045 * i / 40 for i in range(1, 41)]
    bids = [1.1212] * 5 + fall + rise
    rows = [f"20200102 10{i // 60:02d}{i % 60:02d}000,{bid:.6f},{bid + 0.00002:.6f},0"
            for i, bid in enumerate(bids)]
    rows.insert(BAD_LINE, "20200102 1000xx000,1.1,1.1,0")
    path.write_text("\n".join(rows) + "\n", encoding="ascii")
    return path


def test_cli_replay_with_audit_when_limits_crossed_writes_a_verified_trail_of_every_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_system: type[EngineSystem]
) -> None:
    config = write_small_config(tmp_path)
    quotes = write_quotes(tmp_path / "quotes.csv")
    trail = tmp_path / "audit" / "replay.jsonl"

    code, out, err = run_cli(capsys, "replay", str(quotes), "--format", "histdata", "--config", str(config),
                             "--report", str(tmp_path / "report.json"), "--audit", str(trail))

    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    written = records(trail)
    assert verify(trail).ok
    assert verify(trail).records == len(written)
    assert f"; {len(written)} audit records appended to {trail}" in out

    load, *changes, rejected = written
    assert load["kind"] == "config_load"
    assert (load["source"], load["accounts"], load["portfolios"], load["symbols"]) == (str(config), 2, 1, 1)
    assert load["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert (load["command"], load["input"]) == ("replay", str(quotes))

    # One record per change, in the report's order, with the event's fields and its time as ts.
    assert {e["type"] for e in report["events"]} == {"alert", "breaker"}
    changed = {(e["type"], e.get("state")) for e in report["events"]}
    assert changed >= {("breaker", "ENGAGED"), ("breaker", "SAFE")}
    assert len(changes) == len(report["events"])
    for record, event in zip(changes, report["events"], strict=True):
        assert record["kind"] == event["type"]
        assert {k: record[k] for k in event if k != "type"} == {k: v for k, v in event.items() if k != "type"}
        assert record["ts"] == event["tick_ts"]
        # The account's state either side of the tick that changed it.
        before, after = record["before"], record["after"]
        assert after["timestamp"] == event["tick_ts"]
        assert (before["timestamp"] is None
                or parse_rfc3339(before["timestamp"]) < parse_rfc3339(after["timestamp"]))
        if event["type"] == "alert":
            assert (before["alert_level"], after["alert_level"]) == (event["from"], event["to"])
        else:
            flipped = {"ENGAGED": "SAFE", "SAFE": "ENGAGED"}[event["state"]]
            assert (before["breaker"], after["breaker"]) == (flipped, event["state"])
    # The last change leaves each account as the report's final state says.
    for account, final in report["accounts"].items():
        last = [r for r in changes if account in (r.get("account"), r.get("id"))][-1]
        assert last["after"]["alert_level"] == final["alert_level"]

    assert rejected["kind"] == "rejected_input"
    assert (rejected["refused"], rejected["by_code"]) == (1, {"bad_record": 1})
    assert rejected["examples"][0]["tick_seq"] == BAD_LINE
    assert "is not YYYYMMDD HHMMSSmmm" in rejected["examples"][0]["message"]


def test_cli_replay_with_audit_when_run_twice_continues_one_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_system: type[EngineSystem]
) -> None:
    config = write_small_config(tmp_path)
    quotes = write_quotes(tmp_path / "quotes.csv")
    trail = tmp_path / "replay.jsonl"
    args = ("replay", str(quotes), "--format", "histdata", "--config", str(config), "--report",
            str(tmp_path / "report.json"), "--audit", str(trail))

    assert run_cli(capsys, *args)[0] == 0
    first = len(records(trail))
    assert run_cli(capsys, *args)[0] == 0

    written = records(trail)
    assert len(written) == 2 * first
    assert [r["seq"] for r in written] == list(range(2 * first))
    assert [r["kind"] for r in written[:first]] == [r["kind"] for r in written[first:]]
    assert verify(trail).ok


def test_cli_replay_with_audit_when_trail_broken_exits_1_before_replaying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_system: type[EngineSystem]
) -> None:
    config = write_small_config(tmp_path)
    trail = write_sample(tmp_path / "replay.jsonl")
    raw = lines(trail)
    trail.write_bytes(b"".join(raw[:2] + raw[3:]))
    tampered = trail.read_bytes()

    code, _out, err = run_cli(capsys, "replay", str(write_quotes(tmp_path / "quotes.csv")), "--format",
                              "histdata", "--config", str(config), "--audit", str(trail))

    assert code == 1
    assert err.startswith(f"error: {trail}: audit trail broken at record 3: ")
    assert "refusing to extend it" in err
    assert engine_system.started == 0
    assert trail.read_bytes() == tampered


@pytest.mark.skipif(not EURUSD_FILE.is_file(), reason=f"real EURUSD quotes not found at {EURUSD_FILE}")
def test_cli_replay_with_audit_when_real_eurusd_file_states_match_the_reference_engine_tick_by_tick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_system: type[EngineSystem]
) -> None:
    limits = {"drawdown_warning": 0.004, "max_daily_drawdown": 0.008, "leverage_warning": 30.0,
              "max_account_leverage": 40.0}
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({**SMALL_CONFIG, "accounts": [{**a, "limits": limits}
                                                                    for a in SMALL_CONFIG["accounts"]]}),
                      encoding="utf-8")
    trail = tmp_path / "replay.jsonl"

    code, _out, err = run_cli(capsys, "replay", str(EURUSD_FILE), "--format", "histdata", "--config",
                              str(config), "--report", str(tmp_path / "report.json"), "--audit", str(trail))

    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    changes = [r for r in records(trail) if r["kind"] in ("alert", "breaker")]
    assert len(changes) == len(report["events"]) > 0
    assert verify(trail).ok
    # Independently: the reference engine one tick at a time, read either side of each changing tick.
    wanted = {(r.get("account") or r["id"], r["tick_seq"]): (r["before"], r["after"]) for r in changes}
    engine = ReferenceEngine(parse_config(yaml.safe_load(config.read_text(encoding="utf-8"))))
    seen = {}
    for index, tick in read_records(EURUSD_FILE, "histdata", "EURUSD"):
        assert isinstance(tick, Tick)  # the file is whole: no refused line
        accounts = [a for a, seq in wanted if seq == index]
        before = {a: engine.book(a).state().to_dict() for a in accounts}
        engine.apply(EventBatch.from_events([tick], engine.symbol_ids))
        seen.update({(a, index): (before[a], engine.book(a).state().to_dict()) for a in accounts})
    assert seen == wanted


def test_write_audit_when_report_disagrees_with_the_rerun_raises_after_writing_what_agreed(
        tmp_path: Path) -> None:
    quotes = write_quotes(tmp_path / "quotes.csv")
    limit = {"type": "limit", "scope": "portfolio", "id": "fx", "metric": "daily_loss", "value": 2e6,
             "threshold": 1e6, "stream": "EURUSD", "tick_seq": 2, "tick_ts": "2020-01-02T15:00:02.000000Z"}
    invented = {"type": "alert", "account": "long-1", "from": "NORMAL", "to": "CRITICAL",
                "metric": "drawdown_pct", "value": 0.5, "threshold": 0.008, "stream": "EURUSD", "tick_seq": 3,
                "tick_ts": "2020-01-02T15:00:03.000000Z"}
    report = {"source": str(quotes), "format": "histdata", "events": [limit, invented], "rejections": []}

    disagrees = "disagrees with the system about account long-1 at tick_seq 3"
    with AuditTrail(tmp_path / "audit.jsonl") as trail, pytest.raises(RiskmonError, match=disagrees):
        replay.write_audit(trail, report, parse_config(SMALL_CONFIG), "EURUSD")

    (written,) = records(tmp_path / "audit.jsonl")
    assert written["kind"] == "limit"
    assert "before" not in written
    assert "after" not in written
    assert verify(tmp_path / "audit.jsonl").ok
