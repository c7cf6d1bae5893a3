"""The supervisor: aggregates, portfolio and global breakers, the event log, the gates' view.

A plain class; ``supervisor.deploy`` makes it a named, detached Ray actor. It
is the single writer of breaker states: account breakers trip inside their
account actor at the exact tick (and the supervisor records them from the
report), portfolio and global breakers trip here, and every operator command
comes through here. Gates long-poll :meth:`poll` for a versioned view.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import warnings
from collections import Counter
from typing import Any

import msgpack
import numpy as np
import ray

from actors.shard import HALTS_GROUP, KeyedEvent, ShardReport
from riskcore.aggregate import Aggregate, Aggregator, SummaryColumns, breaches
from riskcore.audit import AuditError, AuditTrail, refusal_summary
from riskcore.clock import parse_rfc3339, rfc3339_us
from riskcore.config import AggregateLimits, RiskConfig, config_to_raw, resolve_config
from riskcore.errors import RiskmonError, UnknownAccountError
from riskcore.events import AlertEvent, BreakerEvent
from riskcore.journal import Journal
from riskcore.states import AlertLevel, Breaker, EngageCause, KillSwitchMode, Scope

SCOPES = ("account", "portfolio", "global")


def _now_ns() -> int:
    return time.time_ns()


def _upper_record(breaker: Breaker, op: str) -> dict[str, Any]:
    return {"k": "upper", "scope": str(breaker.scope), "id": breaker.id, "op": op, "now_ns": breaker.engaged_at_ns,
            "cause": str(breaker.cause or ""), "reason": breaker.reason, "by": breaker.engaged_by,
            "metric": breaker.metric}


def _command_key(body: dict[str, Any]) -> tuple[str, ...] | None:
    """An operator command's identity, from the breaker event it made: (action, scope, id, operator, reason, time)."""
    if body.get("type") == "breaker" and body.get("cause") in ("operator", "reset") and body.get("stream") == "operator":
        action = "engage" if body["cause"] == "operator" else "reset"
        return (action, body["scope"], body["id"], body["operator"], body["reason"], body["tick_ts"])
    return None


def _audit_key(key: tuple[int, int, int] | list[int]) -> str:
    return "log:" + ":".join(str(int(k)) for k in key)


def _event_kind(body: dict[str, Any]) -> str:
    """What an event-log entry is counted as (metrics): ``alert:<to level>``, ``breaker:<scope>:<state>``,
    or its type (``limit``, ``command``)."""
    kind = str(body.get("type", "event"))
    if kind == "alert":
        return f"alert:{body.get('to')}"
    if kind == "breaker":
        return f"breaker:{body.get('scope')}:{body.get('state')}"
    return kind


class Supervisor:
    def __init__(self, config: RiskConfig | str, journal_path: str | None = None, audit_path: str | None = None) -> None:
        """``config``: the config, or where the service stored it (``riskcore.config.save_config``).
        ``journal_path``: where portfolio and global breaker changes, the event log and the shard wiring are
        journaled, and from which a restarted supervisor rebuilds them (None: nothing outlives the process).
        ``audit_path``: the audit trail this supervisor is the single writer of (None: none)."""
        self.config = config = resolve_config(config)
        self.aggregator = Aggregator(config)
        self.global_breaker = Breaker(Scope.GLOBAL, "firm")
        self.portfolio_breakers = {pid: Breaker(Scope.PORTFOLIO, pid) for pid in config.portfolios}
        self.account_breakers: dict[str, dict[str, Any]] = {spec.id: {"state": "SAFE", "reason": ""} for spec in config.accounts}
        self.account_index = {spec.id: i for i, spec in enumerate(config.accounts)}
        self.breaker_seen: dict[str, int] = {}  # account -> the shard's breaker-change number last taken
        self._answered: dict[tuple[str, ...], dict[str, Any]] = {}  # operator commands carried out (by identity)
        self.shards: dict[str, Any] = {}
        self.shard_of: dict[str, str] = {}
        self.accounts_of: dict[str, list[str]] = {}  # shard -> its accounts (placement)
        self.up: dict[str, bool] = {spec.id: False for spec in config.accounts}  # fail closed until registered
        self.log: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
        self.active_breaches: set[tuple[str, str, str]] = set()
        self.refused: Counter[str] = Counter()
        self.reports = 0  # distinct shard batches reported (a re-delivered batch's report counts once)
        self._reported: dict[str, tuple[int, set[int]]] = {}  # shard -> (all below this seen, those seen above)
        self._event_keys: set[tuple[int, int, int]] = set()
        self.last_pos = 0
        # Views are numbered from the clock, so a restarted supervisor's are newer than any a gate holds.
        self.version = time.time_ns() // 1_000
        self._changed: asyncio.Condition | None = None
        self._view_cache: tuple[int, dict[str, Any]] | None = None
        # Figures (positions, equity) changed since the last view; sent with the next heartbeat, not at once.
        self._positions_dirty = False
        self.figures_version = 0  # bumped when changed figures are published (a heartbeat); gates track it
        self._breaker_changed = False
        self._upper_pushes = time.time_ns() // 1_000  # newer than any a shard heard before a restart
        self.mids: dict[str, float] = {}
        # Batch-ordered aggregation: reports wait here until every shard their batch went to has reported.
        self.pending: dict[int, dict[str, ShardReport]] = {}
        self.targets_of: dict[int, tuple[str, ...]] = {}
        self.next_batch = 0
        self.down_shards: set[str] = set()  # dead or restarting: gates deny their accounts
        # Dead for good (not restartable): batches close without them. A restarting shard's batches wait for
        # it (its journal brings it back with every batch it had), so aggregates stay exact through a restart.
        self.gone_shards: set[str] = set()
        self.watch_failures: Counter[str] = Counter()  # "shard: exception" -> failed liveness watches
        self.feeds: dict[str, dict[str, int]] = {}  # feed server -> its counts (riskmon run reports them)
        # Event-log entries by kind (_event_kind); rebuilt with the log, so a restart keeps the counts (metrics).
        self.event_counts: Counter[str] = Counter()
        self.started_ns = time.time_ns()  # tells a restarted supervisor from this one (metrics)
        # A shard that rebuilt from its journal has applied every batch below this, reported or not.
        self._caught_up: dict[str, int] = {}
        self.watch_interval_s = 0.5
        self.shard_names: dict[str, str] = {}
        self._rejoin: asyncio.Task[None] | None = None
        self._rejoining = False  # batches close only once a restarted supervisor has its figures back
        self._unjournaled: list[dict[str, Any]] = []
        self._unaudited: list[tuple[str, str, dict[str, Any]]] = []  # (key, kind, fields), written after the journal
        self._journaled_audits: list[tuple[str, str, dict[str, Any]]] = []  # from the journal, for the trail
        self._audits_made = 0
        self.journal: Journal | None = None
        self.snapshot_bytes = int(config.durability.snapshot_mb * 1024 * 1024)
        self.compact_at = self.snapshot_bytes
        self.compactions = 0
        records: list[dict[str, Any]] = []
        if journal_path is not None:
            records = Journal.read(journal_path)
            self._replay(records)
            self.journal = Journal(journal_path, config.durability.fsync)
        self.audit: AuditTrail | None = None
        self.audit_path = audit_path
        self.audit_failures = 0  # writes to the trail that failed (retried at the next change); an alarm
        self.audit_error: str | None = None
        self.journal_error: str | None = None  # set once a journal write failed: gates are refused (fail closed)
        if audit_path is not None:
            self.audit = AuditTrail(audit_path, fsync=config.durability.fsync)
            written = self.audit.keys()
            # Journaled before this process died, not yet audited: written now, once (records are keyed).
            for key, body in self.log:
                if _audit_key(key) not in written:
                    self._audit_event(key, body, {})
            self._unaudited += [item for item in self._journaled_audits if item[0] not in written]
            stored = msgpack.packb(config_to_raw(config), use_bin_type=True)
            self._audit("config_load", {
                "source": config.source, "config_sha256": hashlib.sha256(stored).hexdigest(),
                "accounts": len(config.accounts), "portfolios": len(config.portfolios), "symbols": len(config.symbols),
                "restart": bool(records)})
            self._flush_journal()
        self._journaled_audits.clear()

    # ------------------------------------------------------------------ durability

    def _replay(self, records: list[dict[str, Any]]) -> None:
        """Portfolio and global breakers, the event log and the shard wiring, as the journal left them."""
        for record in records:
            kind = record.get("k")
            if kind == "register":
                self.shard_names = dict(record["names"])
                self.shard_of = {a: s for s, accounts in record["placement"].items() for a in accounts}
                self.accounts_of = {s: list(accounts) for s, accounts in record["placement"].items()}
            elif kind == "upper":
                breaker = self.global_breaker if record["scope"] == "global" else self.portfolio_breakers[record["id"]]
                if record["op"] == "engage":
                    breaker.engage(record["now_ns"], EngageCause(record["cause"]), record["reason"], record["by"],
                                   record["metric"])
                else:
                    breaker.reset()
            elif kind == "breaches":
                scope = (record["scope"], record["id"])
                self.active_breaches = {k for k in self.active_breaches if k[:2] != scope}
                self.active_breaches |= {(*scope, metric) for metric in record["metrics"]}
            elif kind == "audit":
                self._journaled_audits.append((record["key"], record["kind"], dict(record["fields"])))
            elif kind == "closed":
                self.next_batch = record["next_batch"]
                self.aggregator.peak = np.asarray(record["peak"], np.float64)
                self.aggregator.peak_sod = np.asarray(record["peak_sod"], np.float64)
            elif kind == "reported":
                if "through" in record:
                    self._reported_through(record["shard"], record["through"])
                else:
                    self._mark_reported(record["shard"], record["seq"])
            elif kind == "log":
                key = tuple(record["key"])
                body = record["body"]
                self.log.append((key, body))  # type: ignore[arg-type]
                self.event_counts[_event_kind(body)] += 1
                self._note_command(body)
                self._event_keys.add(key)  # type: ignore[arg-type]
                self.last_pos = max(self.last_pos, int(key[0]))
                if body.get("type") == "breaker" and body.get("scope") == "account":
                    self.account_breakers[body["id"]] = {"state": body["state"], "reason": body["reason"]}
        for account, breaker in self.account_breakers.items():  # the aggregates count them from here
            self.aggregator.set_engaged(account, breaker["state"] == "ENGAGED")

    def _journal(self, record: dict[str, Any]) -> None:
        if self.journal is not None:
            self._unjournaled.append(record)

    def _flush_journal(self) -> None:
        """Write what this call changed before anyone is told of it (gates, the caller): the journal, then the
        audit trail (a record journaled but not audited when the process died is audited on restart)."""
        if self.journal is not None and self._unjournaled:
            try:
                while self._unjournaled:
                    self.journal.append(self._unjournaled[0])
                    self._unjournaled.pop(0)
            except OSError as exc:
                # Nothing more can be made durable: gates are refused from now on and go stale (deny).
                self.journal_error = f"journal write failed: {exc}"
                raise RiskmonError(self.journal_error) from None
        if self.audit_path is not None and self._unaudited:
            self._write_audit()
        if self.journal is not None and self.journal.size > self.compact_at:
            self.journal.rewrite(self._compacted())
            self.compactions += 1
            # Compact again only once the journal has doubled past its compacted size: a state that is itself
            # over the threshold is not rewritten on every change.
            self.compact_at = max(self.snapshot_bytes, 2 * self.journal.size)

    def _write_audit(self) -> None:
        """Write the records waiting for the trail. A failed write (a full disk) is counted and retried at the
        next change, with the trail reopened (a torn line is repaired); keyed records are never written twice."""
        try:
            if self.audit is None:
                self.audit = AuditTrail(self.audit_path, fsync=self.config.durability.fsync)  # type: ignore[arg-type]
            while self._unaudited:
                key, kind, fields = self._unaudited[0]
                if not (key and self.audit.has_key(key)):
                    fields = dict(fields)
                    stamp = fields.pop("_ts_ns", None)
                    self.audit.append(kind, stamp, key=key or None, **fields)
                self._unaudited.pop(0)
            self.audit_error = None
        except (AuditError, OSError) as exc:
            self.audit_failures += 1
            self.audit_error = str(exc)
            if self.audit is not None:
                with contextlib.suppress(OSError):
                    self.audit.close()
            self.audit = None

    def _audit(self, kind: str, fields: dict[str, Any], key: str = "") -> None:
        """A record for the trail that is not an event of the log: journaled first (keyed), so a restart that
        finds it missing from the trail writes it then."""
        if self.audit_path is None:
            return
        if not key:
            self._audits_made += 1
            key = f"{kind}:{self.started_ns}:{self._audits_made}"
        self._journal({"k": "audit", "key": key, "kind": kind, "fields": fields})
        self._unaudited.append((key, kind, fields))  # written to the trail after the journal (_flush_journal)

    def _audit_event(self, key: tuple[int, int, int], body: dict[str, Any], extra: dict[str, Any]) -> None:
        """An alert, breaker, limit or command record; ``extra``: what only the trail keeps (states before and
        after, an operator's identity)."""
        if self.audit_path is None:
            return
        fields = {k: v for k, v in body.items() if k not in ("type", "ts")}
        fields.update(extra)
        stamp = body.get("tick_ts") or body.get("ts")
        if stamp is not None:
            fields["_ts_ns"] = parse_rfc3339(stamp)
        self._unaudited.append((_audit_key(key), str(body.get("type", "event")), fields))

    def _journal_upper(self, breaker: Breaker, op: str) -> None:
        self._journal(_upper_record(breaker, op))

    def _compacted(self) -> list[dict[str, Any]]:
        """The journal's whole effect in as few records as replay needs: wiring, engaged upper breakers,
        active breaches, reported marks, the last closed batch with its day peaks, and the event log."""
        records: list[dict[str, Any]] = [{"k": "register", "names": self.shard_names, "placement": self.accounts_of}]
        records += [_upper_record(b, "engage") for b in (self.global_breaker, *self.portfolio_breakers.values())
                    if b.engaged]
        for scope in sorted({k[:2] for k in self.active_breaches}):
            records.append({"k": "breaches", "scope": scope[0], "id": scope[1],
                            "metrics": sorted(k[2] for k in self.active_breaches if k[:2] == scope)})
        for shard, (below, above) in sorted(self._reported.items()):
            records.append({"k": "reported", "shard": shard, "through": below})
            records += [{"k": "reported", "shard": shard, "seq": seq} for seq in sorted(above)]
        records.append({"k": "closed", "next_batch": self.next_batch, "peak": self.aggregator.peak.tolist(),
                        "peak_sod": self.aggregator.peak_sod.tolist()})
        records += [{"k": "log", "key": list(key), "body": body} for key, body in self.log]
        # Records the trail has not taken yet (it is failing): kept until it does. Log events are re-derived.
        records += [{"k": "audit", "key": key, "kind": kind, "fields": fields}
                    for key, kind, fields in self._unaudited if not key.startswith("log:")]
        return records

    def rejoin_if_restarted(self) -> None:
        """After Ray restarted this actor: find the shards again, take their figures, watch them (once)."""
        if self._rejoin is None and not self.shards and self.shard_names and self._reconstructed():
            self._rejoining = True
            self._rejoin = asyncio.get_event_loop().create_task(self._rejoin_shards())

    @staticmethod
    def _reconstructed() -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own property reads a deprecated one
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)

    async def _rejoin_shards(self) -> None:
        """Take each shard's state as of the first batch this supervisor had not closed, and close its open
        batches with the figures they had: aggregates, day peaks and limit events as if it had not died.
        A shard that no longer keeps every report from there on gives its current figures instead. A shard
        that cannot be found or answered is gone: its accounts stay down and batches close without it."""
        try:
            handles: dict[str, Any] = {}
            for sid, name in self.shard_names.items():
                try:
                    handles[sid] = ray.get_actor(name)
                except ValueError:
                    continue  # gone for good (stopped by hand)
            answers = await asyncio.gather(*(
                asyncio.wrap_future(h.rejoin_state.remote(self.next_batch,
                                                          self._reported.get(sid, (0, set()))[0]).future())
                for sid, h in handles.items()), return_exceptions=True)
            states = {sid: a for sid, a in zip(handles, answers) if not isinstance(a, BaseException)}
            handles = {sid: handles[sid] for sid in states}
            self.gone_shards |= set(self.shard_names) - set(handles)
            exact = all(state["covered"] for state in states.values())
            for sid, state in states.items():
                self.mids.update(state["mids"])  # every mark, not only those the next batches quote (price collars)
                # Reports received but not yet journaled when this process died, or lost in flight: their events,
                # breaker changes applied in order (the shard's state below has the last word).
                for keyed in sorted(state["events"], key=lambda e: e[:3]):
                    self._take_event(keyed, -1)
                self.aggregator.update(state["before"] if exact else state["summaries"])
                if exact:
                    for report in state["reports"]:  # batches it had open: closed below, in order, as they were
                        self.pending.setdefault(report.batch, {}).setdefault(sid, report)
                        self.targets_of.setdefault(report.batch, report.targets)
                self._take_breakers(state["summaries"], state["halts_version"])
                self._reported_through(sid, state["numbering"]["next_seq"])
                self._journal({"k": "reported", "shard": sid, "through": state["numbering"]["next_seq"]})
            if not exact:  # figures as of now: batches up to now count as closed
                self.next_batch = max([s["numbering"]["next_batch"] for s in states.values()] + [self.next_batch])
                for batch in sorted(b for b in self.pending if b < self.next_batch):  # came in while rejoining
                    got = self.pending.pop(batch)
                    self.targets_of.pop(batch, None)
                    self._apply_reports(list(got.values()))
            self.shards = handles
            for sid in handles:
                for account in self.accounts_of.get(sid, ()):
                    self.up[account] = True  # a gone shard's accounts stay down: gates deny them
        finally:
            self._rejoining = False
        self._apply_complete_batches()
        self._bump()
        await self.start_watch(self.watch_interval_s)

    # ------------------------------------------------------------------ wiring

    async def register(self, shards: dict[str, Any], placement: dict[str, list[str]],
                       summaries: list[SummaryColumns], names: dict[str, str] | None = None,
                       resume: dict[str, dict[str, int]] | None = None) -> int:
        """Wire the shards in. ``resume``: each shard's numbering when a service restarts on its journals."""
        self.shards = dict(shards)
        self.shard_of = {account: shard for shard, accounts in placement.items() for account in accounts}
        self.accounts_of = {shard: list(accounts) for shard, accounts in placement.items()}
        self.shard_names = dict(names or {})
        for sid, point in (resume or {}).items():
            self._reported_through(sid, point["next_seq"])
            self.next_batch = max(self.next_batch, point["next_batch"])
        self._journal({"k": "register", "names": self.shard_names, "placement": placement})
        self._take_registration(summaries)
        return self.version

    def _take_breakers(self, columns: SummaryColumns, version: int) -> None:
        """Account breakers as their shard holds them now (after a restart, the log may lack the change),
        numbered with the shard's breaker-change number as of these figures, so newer news still wins."""
        for index, engaged in zip(columns.index.tolist(), columns.engaged.tolist()):
            account = self.config.accounts[index].id
            held = self.account_breakers[account]["state"] == "ENGAGED"
            if engaged != held:
                self._set_account_breaker(account, "ENGAGED" if engaged else "SAFE",
                                          "engaged, as its shard holds it" if engaged else "", version)

    def _take_registration(self, summaries: list[SummaryColumns]) -> None:
        for columns in summaries:
            self.aggregator.update(columns)
            self._take_breakers(columns, -1)
        for account in self.shard_of:
            self.up[account] = True
        self._bump()

    def _bump(self) -> None:
        """A change gates must see at once (a breaker, an account's liveness): a new view version. (If the
        journal cannot be written, gates are refused by ``poll`` and go stale: they deny.)"""
        try:
            self._flush_journal()
        finally:
            self.version += 1
            self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            condition = self._changed

            async def notify() -> None:
                async with condition:
                    condition.notify_all()

            asyncio.get_event_loop().create_task(notify())

    # ------------------------------------------------------------------ reports

    async def report(self, report: ShardReport) -> None:
        """Take one shard's report: its events at once, its figures once the whole batch has reported.

        Alert and breaker changes are recorded (and pushed to gates) the moment they arrive. Summaries are
        applied to the aggregates batch by batch, in the router's order, once every shard the batch went to
        has reported (or is down), so aggregate figures and breaches depend on batch boundaries only, never
        on which shard happened to report first.
        """
        self.rejoin_if_restarted()
        # A restarted shard first sends again the last batches it replayed: those whose report never came
        # (its process died first) complete their batches with their own figures, exactly.
        for resent in report.resent:
            self._take_report(resent)
        self._take_report(report)
        self._flush_journal()
        if self._breaker_changed:
            self._breaker_changed = False
            self._bump()
        else:
            self._positions_dirty = True
            self._notify()  # wakes wait_reported; gates keep waiting for a new version

    def _take_report(self, report: ShardReport) -> None:
        reported: dict[str, Any] | None = None  # journaled after the report's events, never before them
        if report.recovered_upto >= 0:
            # Every batch the shard's recovery covers, unless its own report came (now or before).
            covered = self._reported.get(report.shard, (0, set()))[0] > report.recovered_upto
            self.reports += sum(self._mark_reported(report.shard, s) for s in range(report.recovered_upto + 1))
            reported = {"k": "reported", "shard": report.shard, "through": report.recovered_upto + 1}
        elif report.seq is None or self._mark_reported(report.shard, report.seq):
            self.reports += 1
            if report.seq is not None:
                reported = {"k": "reported", "shard": report.shard, "seq": report.seq}
        else:
            return  # this batch was reported already (the shard restarted and it was delivered again)
        for refusal in report.refusals:
            self.refused[refusal.code] += 1
        if report.refusals:  # keyed by batch: the trail writer skips one it already has (a replayed report)
            key = "" if report.seq is None else f"refused:{report.shard}:{report.seq}"
            self._audit("rejected_input", {"source": f"shard {report.shard}", "batch": report.batch,
                                           **refusal_summary(r.to_dict() for r in report.refusals)}, key)
        for keyed in report.events:
            self._take_event(keyed, report.halts_version)
        if reported is not None:
            self._journal(reported)
        if report.recovered_upto >= 0:
            if not covered:
                # Reports lost beyond those sent again: the shard's figures as of everything it has applied,
                # and the batches it applied while replaying count as reported by it.
                self._apply_reports([report])
                self._caught_up[report.shard] = max(self._caught_up.get(report.shard, 0), report.recovered_batch)
                self._apply_complete_batches()
            # The resent reports' breaker news is older than any the supervisor heard since (an operator's
            # reset): the shard's breakers as they stand now have the last word.
            self._take_breakers(report.summaries, report.halts_version)
        elif report.targets and report.batch < self.next_batch:
            # Its batch closed without it (the shard was gone): the figures are still the newest we have.
            self._apply_reports([report])
        elif report.targets:
            self.pending.setdefault(report.batch, {})[report.shard] = report
            self.targets_of.setdefault(report.batch, report.targets)
            self._apply_complete_batches()
        elif report.batch >= 0:
            self._apply_reports([report])

    async def breaker_now(self, account: str, state: str, reason: str, version: int) -> None:
        """An account breaker changed inside a batch: tell the gates now; the batch's report records it."""
        self.rejoin_if_restarted()
        self._set_account_breaker(account, state, reason, version)
        if self._breaker_changed:
            self._breaker_changed = False
            self._bump()

    def _take_event(self, keyed: KeyedEvent, version: int) -> None:
        """An account's alert or breaker event from its shard, kept once by its key (a shard that restarted
        sends again what it replayed); a breaker change also moves the supervisor's breaker table."""
        pos, account_index, order, event = keyed
        if (pos, account_index, order) in self._event_keys:
            return
        self._event_keys.add((pos, account_index, order))
        self._record((pos, account_index, order), event)
        if isinstance(event, BreakerEvent):
            self._set_account_breaker(event.id, event.state, event.reason, version)

    def _reported_through(self, shard: str, next_seq: int) -> None:
        """Every batch of ``shard`` below ``next_seq`` counts as reported (its figures came another way)."""
        below, above = self._reported.get(shard, (0, set()))
        below = max(below, next_seq)
        above = {s for s in above if s >= below}
        while below in above:
            above.discard(below)
            below += 1
        self._reported[shard] = (below, above)

    def _mark_reported(self, shard: str, seq: int) -> bool:
        """Note batch ``seq`` of ``shard`` as reported; False if it already was."""
        below, above = self._reported.get(shard, (0, set()))
        if seq < below or seq in above:
            return False
        above.add(seq)
        while below in above:
            above.discard(below)
            below += 1
        self._reported[shard] = (below, above)
        return True

    def _apply_complete_batches(self) -> None:
        if self._rejoining:
            return  # a restarted supervisor closes batches once it has every shard's figures back
        first = self.next_batch
        self._close_complete_batches()
        if self.next_batch != first:  # a restart resumes here, with the day peaks these batches left
            self._journal({"k": "closed", "next_batch": self.next_batch, "peak": self.aggregator.peak.tolist(),
                           "peak_sod": self.aggregator.peak_sod.tolist()})

    def _close_complete_batches(self) -> None:
        while True:
            targets = self.targets_of.get(self.next_batch)
            if targets is None:
                # Nothing heard of this batch yet. Only if its shards may all be dead, and a later batch is
                # complete, is it skipped; otherwise it is on its way and later batches wait for it.
                if self.gone_shards and any(self._complete(b) for b in self.targets_of if b > self.next_batch):
                    self.next_batch += 1
                    continue
                if self.next_batch < max(self._caught_up.values(), default=0):
                    # A rebuilt shard applied it; its report may be lost. Any other report of it that comes
                    # later is applied as it arrives (its batch has closed).
                    self.next_batch += 1
                    continue
                return
            if not self._complete(self.next_batch):
                return
            got = self.pending.pop(self.next_batch, {})
            del self.targets_of[self.next_batch]
            self._apply_reports([got[shard] for shard in targets if shard in got])
            self.next_batch += 1

    def _complete(self, batch: int) -> bool:
        got = self.pending.get(batch, {})
        return all(shard in got or shard in self.gone_shards or batch < self._caught_up.get(shard, 0)
                   for shard in self.targets_of[batch])

    def _apply_reports(self, reports: list[ShardReport]) -> None:
        touched: set[str] = set()
        for report in reports:
            # Breaker counts come from the supervisor's own states (an operator may have acted since the batch).
            touched |= self.aggregator.update(report.summaries)
            self.mids.update(report.mids)
        if not reports:
            return
        mark = reports[0].watermark  # every shard derives the same watermark from the same frame
        if "pos" in mark:
            self.last_pos = max(self.last_pos, int(mark["pos"]))
        if "ts_ns" in mark:
            for portfolio in sorted(touched):
                self._check_aggregate(self.aggregator.row(portfolio), self.portfolio_breakers[portfolio],
                                      self.config.portfolios[portfolio].limits, mark)
            self._check_aggregate(len(self.config.portfolios), self.global_breaker, self.config.firm, mark)

    def _check_aggregate(self, row: int, breaker: Breaker, limits: AggregateLimits, mark: dict[str, Any]) -> None:
        scope = ("portfolio", self.aggregator.portfolio_ids[row]) if row < len(self.config.portfolios) else ("global", "firm")
        if (not breaker.engaged and not self.aggregator.may_breach(row, limits)
                and not any(k[:2] == scope for k in self.active_breaches)):
            return  # nothing breached, nothing to clear, nothing to release
        aggregate = self.aggregator.aggregate(row)
        found = breaches(aggregate, limits)
        key_base = (int(mark["pos"]), len(self.account_index) + (0 if aggregate.scope == "portfolio" else 1))
        current = {(b.scope, b.id, b.metric) for b in found}
        for breach in found:
            if (breach.scope, breach.id, breach.metric) not in self.active_breaches:
                self._record((*key_base, len(self.log)), {
                    "type": "limit", "scope": breach.scope, "id": breach.id, "metric": breach.metric,
                    "value": breach.value, "threshold": breach.threshold, "stream": mark.get("stream"),
                    "tick_seq": mark.get("seq"), "tick_ts": rfc3339_us(mark["ts_ns"]),
                })
        before = {k for k in self.active_breaches if k[:2] == (aggregate.scope, aggregate.id)}
        self.active_breaches -= before - current
        self.active_breaches |= current
        if current != before:  # a restarted supervisor must not log a breach still in force as new
            self._journal({"k": "breaches", "scope": aggregate.scope, "id": aggregate.id,
                           "metrics": sorted(k[2] for k in current)})
        ts_ns = int(mark["ts_ns"])
        if found and not breaker.engaged and limits.kill_switch_mode is KillSwitchMode.AUTO:
            breaker.engage(ts_ns, EngageCause.LIMIT, found[0].reason, "limit", found[0].metric)
            self._journal_upper(breaker, "engage")
            self._push_upper_breakers()
            self._record((*key_base, len(self.log)), BreakerEvent(
                aggregate.scope, aggregate.id, "ENGAGED", found[0].reason, "limit", "", str(mark.get("stream")),
                mark.get("seq"), ts_ns))
        elif (not found and breaker.engaged and breaker.cause is EngageCause.LIMIT and limits.auto_reset
              and breaker.cooldown_left_seconds(ts_ns, limits.recovery_cooldown_seconds) == 0):
            breaker.reset()
            self._journal_upper(breaker, "reset")
            self._push_upper_breakers()
            self._record((*key_base, len(self.log)), BreakerEvent(
                aggregate.scope, aggregate.id, "SAFE", "auto_reset: back within limits", "auto_reset", "",
                str(mark.get("stream")), mark.get("seq"), ts_ns))

    def _push_upper_breakers(self) -> None:
        """Tell every shard the portfolio and global breaker states (fire and forget, versioned)."""
        self._breaker_changed = True
        states = {"global": str(self.global_breaker.state)}
        states.update({f"portfolio:{pid}": str(b.state) for pid, b in self.portfolio_breakers.items()})
        # Numbered by their own counter: two changes in one report (a portfolio and the firm) must both land.
        self._upper_pushes += 1
        for handle in self.shards.values():
            handle.set_upper_breakers.remote(self._upper_pushes, states)

    def _record(self, key: tuple[int, int, int], event: AlertEvent | BreakerEvent | dict[str, Any],
                audit: dict[str, Any] | None = None) -> None:
        body = event if isinstance(event, dict) else event.to_dict()
        self._note_command(body)
        self.log.append((key, body))
        self.event_counts[_event_kind(body)] += 1
        self._journal({"k": "log", "key": list(key), "body": body})
        self._audit_event(key, body, audit or {})

    # ------------------------------------------------------------------ operator commands

    def _aggregate_breaker(self, scope: str, target: str) -> tuple[Breaker, AggregateLimits, Aggregate]:
        if scope == "global":
            return self.global_breaker, self.config.firm, self.aggregator.firm()
        if target not in self.portfolio_breakers:
            raise RiskmonError(f"unknown portfolio {target!r}")
        return self.portfolio_breakers[target], self.config.portfolios[target].limits, self.aggregator.portfolio(target)

    @staticmethod
    def _check_command(scope: str, operator: str, reason: str) -> None:
        if scope not in SCOPES:
            raise RiskmonError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if not operator.strip() or not reason.strip():
            raise RiskmonError("an operator command needs an operator name and a reason")

    async def engage(self, scope: str, target: str, operator: str, reason: str, now_ns: int | None = None) -> dict[str, Any]:
        """Engage a breaker by hand. Always allowed."""
        self.rejoin_if_restarted()
        answered = self._answered_before("engage", scope, target, operator, reason, now_ns)
        if answered is not None:
            return answered
        now_ns = self._command_time("engage", scope, target, operator, reason, now_ns)
        if scope == "account":
            shard = self._shard(target)
            done = await shard.engage.remote(target, now_ns, operator, reason)
            event, before, after = done["event"], done["before"], done["after"]
            self._set_account_breaker(target, "ENGAGED", reason, done["version"])
        else:
            breaker, _limits, aggregate = self._aggregate_breaker(scope, target)
            before = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
            breaker.engage(now_ns, EngageCause.OPERATOR, reason, operator)
            after = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
            self._journal_upper(breaker, "engage")
            self._push_upper_breakers()
            event = BreakerEvent(scope, breaker.id, "ENGAGED", reason, "operator", operator, "operator", None, now_ns)
        self._record((self.last_pos, len(self.account_index) + 2, len(self.log)), event,
                     {"action": "engage", "before": before, "after": after})
        self._bump()
        return {"ok": True, "refusal": None, "event": event.to_dict()}

    async def reset(self, scope: str, target: str, operator: str, reason: str, now_ns: int | None = None) -> dict[str, Any]:
        """Release a breaker if its cooldown has passed and its limits are no longer breached."""
        self.rejoin_if_restarted()
        answered = self._answered_before("reset", scope, target, operator, reason, now_ns)
        if answered is not None:
            return answered
        now_ns = self._command_time("reset", scope, target, operator, reason, now_ns)
        if scope == "account":
            done = await self._shard(target).reset.remote(target, now_ns, operator, reason)
            event, refusal, before, after = done["event"], done["refusal"], done["before"], done["after"]
            if event is not None:
                self._set_account_breaker(target, "SAFE", "", done["version"])
        else:
            breaker, limits, aggregate = self._aggregate_breaker(scope, target)
            before = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
            refusal = breaker.reset_refusal(now_ns, limits.recovery_cooldown_seconds, bool(breaches(aggregate, limits)),
                                            limits.kill_switch_mode)
            event = None
            if refusal is None:
                breaker.reset()
                self._journal_upper(breaker, "reset")
                self._push_upper_breakers()
                event = BreakerEvent(scope, breaker.id, "SAFE", reason, "reset", operator, "operator", None, now_ns)
            after = {"breaker": breaker.snapshot(), "aggregate": aggregate.to_dict()}
        record: dict[str, Any] = {"type": "command", "action": "reset", "scope": scope, "id": target,
                                  "operator": operator, "reason": reason, "refused": refusal, "ts": rfc3339_us(now_ns)}
        self._record((self.last_pos, len(self.account_index) + 2, len(self.log)), event if event is not None else record,
                     {"action": "reset", "before": before, "after": after})
        self._bump()
        return {"ok": event is not None, "refusal": refusal, "event": None if event is None else event.to_dict()}

    def _note_command(self, body: dict[str, Any]) -> None:
        """Remember a command that changed a breaker (a refused one changed nothing: carried out again, it is
        judged again, as the same command sent again later would be)."""
        key = _command_key(body)
        if key is not None:
            self._answered[key] = {"ok": True, "refusal": None, "event": body}

    def _answered_before(self, action: str, scope: str, target: str, operator: str, reason: str,
                         now_ns: int | None) -> dict[str, Any] | None:
        """The answer a command already got: Ray delivers a call again when the supervisor died before its answer
        left, and a command carries its caller's time, so the same command is not carried out twice."""
        if now_ns is None:
            return None
        target = "firm" if scope == "global" else target
        return self._answered.get((action, scope, target, operator, reason, rfc3339_us(now_ns)))

    def _command_time(self, action: str, scope: str, target: str, operator: str, reason: str,
                      now_ns: int | None) -> int:
        """Check an operator command; one refused here (no operator, no reason, unknown target) is audited too."""
        now_ns = _now_ns() if now_ns is None else now_ns
        try:
            self._check_command(scope, operator, reason)
            if scope == "account":
                self._shard(target)
            elif scope == "portfolio":
                self._aggregate_breaker(scope, target)
        except RiskmonError as exc:
            self._audit("command", {"action": action, "scope": scope, "id": target, "operator": operator,
                                    "reason": reason, "refused": str(exc), "_ts_ns": now_ns})
            self._flush_journal()
            raise
        return now_ns

    async def input_refused(self, source: str, refusals: list[dict[str, Any]]) -> None:
        """Input refused before it reached a shard (by the router of ``source``): counted, and summarised in the
        audit trail. (Shards' refusals arrive in their reports.)"""
        for refusal in refusals:
            self.refused[str(refusal["code"])] += 1
        if refusals:
            self._audit("rejected_input", {"source": source, **refusal_summary(refusals)})
            self._flush_journal()

    def _set_account_breaker(self, account: str, state: str, reason: str, version: int = -1) -> None:
        """``version``: the shard's breaker-change number as of the news (-1: unnumbered). News older than
        what is already known for the account (a report that arrives after the operator's reset) is ignored."""
        if version >= 0:
            if version < self.breaker_seen.get(account, -1):
                return
            self.breaker_seen[account] = version
        # The breaker counts per portfolio and firm come from the summaries: keep them in step at once.
        if self.account_breakers[account] == {"state": state, "reason": reason}:
            return  # already known (published mid-batch, now in the report)
        self.account_breakers[account] = {"state": state, "reason": reason}
        self._breaker_changed = True
        self.aggregator.set_engaged(account, state == "ENGAGED")

    def _shard(self, account: str) -> Any:
        shard = self.shard_of.get(account)
        if shard is None:
            raise UnknownAccountError(account)
        if shard not in self.shards:
            raise RiskmonError(f"account {account}'s shard is not reachable yet (the supervisor is rejoining it); retry")
        return self.shards[shard]

    # ------------------------------------------------------------------ views

    async def wait_reported(self, upto: dict[str, int], timeout_s: float) -> dict[str, int]:
        """Wait until every shard has reported every batch of its sequence below ``upto[shard]`` (and a
        restarted supervisor has closed the batches it had open); return the shards still short (shard -> first
        batch not reported), empty when all are in."""
        self.rejoin_if_restarted()
        deadline = time.monotonic() + timeout_s
        condition = self._condition()

        def short() -> dict[str, int]:
            return {s: self._reported.get(s, (0, set()))[0] for s, n in upto.items()
                    if self._reported.get(s, (0, set()))[0] < n or self._rejoining}

        async with condition:
            while short():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(condition.wait(), left)
                except TimeoutError:
                    break
        return short()

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def poll(self, known_version: int, timeout_s: float, known_figures: int = -1) -> dict[str, Any]:
        """Long-poll: news as soon as the view is newer than ``known_version``, else a heartbeat at the timeout.

        A gate whose figures (equity, exposure, positions, marks) are older than the last published ones gets
        the whole view; otherwise a breaker or liveness change sends only the breaker table (small, whatever
        the number of accounts). Figures that changed since they were last published are published by the
        next heartbeat (a new figures version), so every gate gets them on its next poll.
        """
        self.rejoin_if_restarted()
        if self.journal_error is not None:
            raise RiskmonError(f"{self.journal_error}: no view until it is repaired (gates go stale and deny)")
        condition = self._condition()
        if self.version <= known_version and known_figures >= self.figures_version:
            async with condition:
                try:
                    await asyncio.wait_for(condition.wait_for(lambda: self.version > known_version), timeout_s)
                except TimeoutError:
                    if not self._positions_dirty:
                        return {"version": self.version, "unchanged": True}
                    self._positions_dirty = False
                    self.figures_version += 1
                    self.version += 1
        if known_version < 0 or known_figures < self.figures_version:
            return {"version": self.version, "unchanged": False, "view": self.gate_view()}
        return {"version": self.version, "unchanged": False, "breakers": self.breaker_table()}

    def shard_handles(self) -> dict[str, Any]:
        """Every account shard's actor handle (gates watch them for halts)."""
        return dict(self.shards)

    def breaker_table(self) -> dict[str, Any]:
        """Every breaker's state and every account's liveness: what a gate needs to deny at once."""
        return {
            "version": self.version,
            "global_engaged": self.global_breaker.engaged,
            "portfolios": {pid: b.engaged for pid, b in self.portfolio_breakers.items()},
            "engaged": [a for a, b in self.account_breakers.items() if b["state"] == "ENGAGED"],
            "down": [a for a, up in self.up.items() if not up],
        }

    def gate_view(self) -> dict[str, Any]:
        if self._view_cache is not None and self._view_cache[0] == self.version:
            return self._view_cache[1]
        agg = self.aggregator
        equity, exposure = agg.equity.tolist(), agg.exposure.tolist()
        accounts: dict[str, Any] = {}
        for index, spec in enumerate(self.config.accounts):
            account, limits, reported = spec.id, spec.limits, bool(agg.has[index])
            accounts[account] = {
                "portfolio": spec.portfolio,
                "engaged": self.account_breakers[account]["state"] == "ENGAGED",
                "reduce_only": limits.reduce_only_when_halted,
                "up": self.up[account],
                "equity": equity[index] if reported else spec.balance,
                "exposure": exposure[index] if reported else 0.0,
                "positions": agg.positions(account) if reported else {},
                "max_account_leverage": limits.max_account_leverage,
                "max_order_notional": limits.max_order_notional,
                "max_position_notional": limits.max_position_notional,
                "max_orders_per_second": limits.max_orders_per_second,
            }
        view = {
            "version": self.version,
            "figures_version": self.figures_version,
            "global_engaged": self.global_breaker.engaged,
            "global_reduce_only": self.config.firm.reduce_only_when_halted,
            "portfolios": {pid: (b.engaged, self.config.portfolios[pid].limits.reduce_only_when_halted)
                           for pid, b in self.portfolio_breakers.items()},
            "accounts": accounts,
            "marks": dict(self.mids),
            "multipliers": {name: spec.multiplier for name, spec in self.config.symbols.items()},
            "price_bands": {name: spec.price_band_pct for name, spec in self.config.symbols.items()},
        }
        self._view_cache = (self.version, view)
        return view

    def event_log(self) -> list[dict[str, Any]]:
        return [body for _key, body in sorted(self.log, key=lambda item: item[0])]

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "reports": self.reports,
            "firm": self.aggregator.firm().to_dict(),
            "portfolios": {pid: self.aggregator.portfolio(pid).to_dict() for pid in self.config.portfolios},
            "breakers": {
                "global": self.global_breaker.snapshot(),
                "portfolios": {pid: b.snapshot() for pid, b in self.portfolio_breakers.items()},
                "accounts": {a: dict(v) for a, v in self.account_breakers.items()},
            },
            "up": dict(self.up),
            "refused": dict(self.refused),
            "watch_failures": dict(self.watch_failures),
            "event_counts": dict(self.event_counts),
            "started_ns": self.started_ns,
            "feeds": dict(self.feeds),
            "audit": {"failures": self.audit_failures, "error": self.audit_error, "waiting": len(self._unaudited)},
            "journal_error": self.journal_error,
        }

    def accounts_view(self) -> dict[str, dict[str, Any]]:
        """Every account's figures as of its last report, its breaker and liveness (``riskmon status``)."""
        agg = self.aggregator
        equity, sod, exposure, rank = agg.equity.tolist(), agg.sod_equity.tolist(), agg.exposure.tolist(), agg.rank.tolist()
        return {
            spec.id: {"portfolio": spec.portfolio, "reported": bool(agg.has[i]), "equity": equity[i],
                      "daily_pnl": equity[i] - sod[i], "exposure": exposure[i],
                      "alert_level": str(AlertLevel.from_rank(rank[i])),
                      "breaker": self.account_breakers[spec.id]["state"], "up": self.up[spec.id]}
            for i, spec in enumerate(self.config.accounts)
        }

    def note_feeds(self, source: str, stats: dict[str, int]) -> None:
        """What a feed server (``riskmon run``) has taken so far: connections, frames, events, refusals."""
        self.feeds[source] = dict(stats)

    async def watch_shard(self, shard_id: str, handle: Any, interval_s: float) -> None:
        """Liveness of one shard: while it is down (dead, or restarting), gates deny its accounts.

        The supervisor keeps one halt watch (``AccountShard.watch_halts``) outstanding on the shard. It runs on
        the shard's own threads, so a long batch does not delay it, and it returns at least every
        ``interval_s``. When the shard's process dies the call fails at once: down. The next call waits while
        Ray restarts the shard and it rebuilds from its journal, and its answer brings the shard back up.
        """
        version = -1
        while True:
            call = handle.watch_halts.options(concurrency_group=HALTS_GROUP, max_task_retries=0)
            try:
                version, _halted = await asyncio.wrap_future(call.remote(version, interval_s).future())
                alive, gone = True, False
            except ray.exceptions.ActorDiedError:
                alive, gone = False, True  # Ray will not restart it (no journal, or stopped for good)
                self.watch_failures[f"{shard_id}: ActorDiedError"] += 1
            except Exception as exc:
                alive, gone = False, False  # restarting (ActorUnavailableError) or unreachable for now
                self.watch_failures[f"{shard_id}: {type(exc).__name__}"] += 1
            try:
                self._set_shard_alive(shard_id, alive, gone)
            except Exception as exc:
                self.watch_failures[f"{shard_id}: {type(exc).__name__} noting it"] += 1
            if not alive:
                await asyncio.sleep(interval_s)

    def _set_shard_alive(self, shard_id: str, alive: bool, gone: bool = False) -> None:
        if alive:
            self.down_shards.discard(shard_id)
        else:
            self.down_shards.add(shard_id)
        if gone and shard_id not in self.gone_shards:
            self.gone_shards.add(shard_id)
            self._apply_complete_batches()  # batches waiting on a dead shard complete without it
        accounts = self.accounts_of.get(shard_id, ())
        if all(self.up[account] == alive for account in accounts[:1]):
            return  # as it was (every answer of the watch lands here): no scan of the shard's accounts
        for account in accounts:
            self.up[account] = alive
        if accounts:
            self._bump()

    async def start_watch(self, interval_s: float) -> bool:
        self.watch_interval_s = interval_s
        for shard_id, handle in self.shards.items():
            asyncio.get_event_loop().create_task(self.watch_shard(shard_id, handle, interval_s))
        return True
