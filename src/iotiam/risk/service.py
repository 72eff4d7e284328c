"""The risk register's use cases: rebuild (full, streamed in batches), refresh some
devices (the change feed), read, export, and accept a risk for a while.

Every read and write is scoped by the caller's org path (G9): an entry outside it
answers "not found" like a missing one.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.discovery.models import ADOPTED_FROM
from iotiam.discovery.ports import DiscoveryReader
from iotiam.errors import Conflict, InvalidInput, NotFound
from iotiam.inventory.models import Device, DeviceState
from iotiam.kernel import ROOT_PATH, SYSTEM, Principal, Role, Transactions, collector_paused
from iotiam.response.models import TrustScore
from iotiam.risk.builder import RegisterBuilder
from iotiam.risk.models import (
    Acceptance,
    EntryFilter,
    RebuildReport,
    RiskEntry,
    RiskFactor,
    RiskSettings,
    RiskSummary,
    Subject,
    TrendPoint,
    entry_id,
    is_entry_id,
)
from iotiam.risk.ports import Cursor, FleetSettings, PolicyLinter, RiskUnitOfWork
from iotiam.risk.reading import Snapshot, read_index
from iotiam.risk.scoring import MAX_SCORE, score

#: a device as the trust refresher stored it, with the score it stored
ScoredDevice = tuple[Device, TrustScore]

#: entries written per write transaction by a rebuild (larger batches dirty fewer
#: index pages per entry: entry ids are hashes, spread over the whole table)
BATCH = 10_000
#: devices whose findings, trust and firmware are read together
DEVICES_PER_READ = 2000
MAX_REASON = 500
MAX_ACCEPT_DAYS = 365
#: no filter
ANY = EntryFilter()
EXPORT_COLUMNS = ("id", "subject", "subject_id", "org_path", "site", "type", "score",
                  "factors", "severities", "accepted")


def encode_cursor(entry: RiskEntry) -> str:
    """The ``next`` of a page ending with ``entry``."""
    return f"{entry.score}.{entry.id}"


#: a score as ``encode_cursor`` writes it: ASCII digits, no sign, no leading zero
_SCORE = re.compile(f"0|[1-9][0-9]{{0,{len(str(MAX_SCORE)) - 1}}}")


def decode_cursor(text: str | None) -> Cursor | None:
    """``after`` back into (score, id); ``InvalidInput`` if it is not one of ours: a score
    an entry can have (0 to ``MAX_SCORE``) and an entry id (``is_entry_id``). Checked
    whole here, so nothing the register never gave reaches a query."""
    if text is None or text == "":
        return None
    head, _, tail = text.partition(".")
    if _SCORE.fullmatch(head) is None or int(head) > MAX_SCORE or not is_entry_id(tail):
        raise InvalidInput("'after' is not a cursor this API returned: give the 'next' "
                           "of a previous page")
    return int(head), tail


class RiskRegister:
    """The identity risk register."""

    def __init__(self, transactions: Transactions[RiskUnitOfWork], auditor: Auditor,
                 clock: Clock, discovery: DiscoveryReader, fleet: FleetSettings,
                 linter: PolicyLinter, settings: RiskSettings | None = None,
                 batch: int = BATCH) -> None:
        self._tx = transactions
        self._audit = auditor
        self._clock = clock
        self._discovery = discovery
        self._fleet = fleet
        self._linter = linter
        self.settings = settings or RiskSettings()
        self._batch = batch
        self._expired_until = 0.0

    # -- building -----------------------------------------------------------------------

    def rebuild(self, principal: Principal = SYSTEM) -> RebuildReport:
        """Judge every identity again; entries no longer at risk leave the register."""
        principal.require(Role.ADMIN, "rebuilding the risk register")
        if not principal.is_global:
            raise InvalidInput("the register is rebuilt for the whole installation: "
                               "only a root-scoped admin may rebuild it")
        started = self._clock.now().timestamp()
        with self._tx() as uow:
            generation = uow.risk.start_rebuild(started)
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        #: every entry of this rebuild (the store leaves unchanged ones as they were)
        kept: set[str] = set()
        with collector_paused(), self._tx.reading() as reader, BatchWriter(
                lambda batch: self._write(batch, generation, started)) as writer:
            snapshot = read_index(reader, self._discovery, self._linter, self._fleet,
                                  self.settings, started)
            builder = RegisterBuilder(snapshot.index)
            for batch in self._batches(reader, snapshot, builder, counts):
                _count(batch, started, counts)
                kept.update(e.id for e, _ in batch)
                writer.put(batch)
        finished = self._clock.now().timestamp()
        with self._tx() as uow:
            removed = uow.risk.remove_stale(generation, kept)
            frozen = {path: dict(keys) for path, keys in counts.items()}
            uow.risk.finish_rebuild(generation, finished, frozen)
            totals = _totals(frozen)
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.RISK_REGISTER_REBUILT, actor=principal.name, org_path=ROOT_PATH,
                subject="risk-register", details={"rebuild": generation, "entries": len(kept),
                                                  "removed": removed, "counts": totals}))
        return RebuildReport(generation, started, finished, len(kept), removed, totals)

    def _batches(self, reader: RiskUnitOfWork, snapshot: Snapshot, builder: RegisterBuilder,
                 counts: dict[str, dict[str, int]]
                 ) -> Iterator[list[tuple[RiskEntry, str | None]]]:
        batch: list[tuple[RiskEntry, str | None]] = []
        devices: list[Any] = []

        def judge_devices() -> None:
            ids = [d.id for d in devices]
            findings = reader.findings.live_for_devices(ids)
            trust = reader.trust.for_devices(ids)
            firmware = reader.firmware.statuses(ids)
            for device in devices:
                batch.extend((e, device.id) for e in builder.device_entries(
                    device, findings=findings.get(device.id, ()), trust=trust.get(device.id),
                    firmware=firmware.get(device.id)))
            devices.clear()

        registered: set[str] = set()
        for device in reader.devices.iter_all(org_path=ROOT_PATH):
            registered.add(device.id)
            if device.state is not DeviceState.DECOMMISSIONED:
                counts[device.org_path]["managed"] += 1
            devices.append(device)
            if len(devices) >= min(self._batch, DEVICES_PER_READ):
                judge_devices()
            if len(batch) >= self._batch:
                yield batch
                batch = []
        judge_devices()
        # an asset using a registered device's id as its MQTT client id clashes with it
        snapshot.index.registered_ids = frozenset(registered)
        for asset in self._discovery.iter_assets(org_path=ROOT_PATH):
            entry = builder.asset_entry(asset)
            if entry is not None:
                batch.append((entry, None))
            if len(batch) >= self._batch:
                yield batch
                batch = []
        for seen in snapshot.index.seen_credentials.values():
            entry = builder.seen_credential_entry(seen, registered=snapshot.registered(seen))
            if entry is not None:
                batch.append((entry, None))
        batch.extend(snapshot.revoked_psk_entries(builder))
        batch.extend((e, None) for e in builder.fleet_entries())
        if batch:
            yield batch

    def _write(self, batch: Sequence[tuple[RiskEntry, str | None]], generation: int,
               now: float) -> None:
        with self._tx() as uow:
            uow.risk.put_entries([e for e, _ in batch], generation=generation,
                                 holder={e.id: h for e, h in batch}, now=now)

    def refresh_devices(self, device_ids: Sequence[str],
                        scored: Mapping[str, ScoredDevice] | None = None) -> int:
        """Judge these devices (and their credentials) again now; how many entries.
        ``scored``: devices and trust scores as the trust refresher just stored them (the
        rest are read here; a device changed since is handed over again, newer)."""
        wanted = sorted(set(device_ids))
        if not wanted:
            return 0
        known = scored or {}
        now = self._clock.now().timestamp()
        with self._tx.reading() as reader:
            snapshot = read_index(reader, self._discovery, self._linter, self._fleet,
                                  self.settings, now, devices=wanted)
            builder = RegisterBuilder(snapshot.index)
            unread = [d for d in wanted if d not in known]
            devices = {d: known[d][0] for d in wanted if d in known}
            trust = {d: known[d][1] for d in devices}
            devices.update(reader.devices.get_many(unread))
            findings = reader.findings.live_for_devices(list(devices))
            trust.update(reader.trust.for_devices([d for d in devices if d not in known]))
            firmware = reader.firmware.statuses(list(devices))
            batch = [(e, d.id) for d in devices.values() for e in builder.device_entries(
                d, findings=findings.get(d.id, ()), trust=trust.get(d.id),
                firmware=firmware.get(d.id))]
            batch.extend(snapshot.revoked_psk_entries(builder))
        # an asset adopted as one of these devices is that device now: its entry goes
        adopted = [entry_id(Subject.ASSET, d.attributes[ADOPTED_FROM])
                   for d in devices.values() if ADOPTED_FROM in d.attributes]
        with self._tx() as uow:
            uow.risk.remove_for_devices(wanted)
            uow.risk.remove_entries(adopted)
            uow.risk.put_entries([e for e, _ in batch],
                                 generation=uow.risk.current_generation(),
                                 holder={e.id: h for e, h in batch}, now=now)
        return len(batch)

    def expire_acceptances(self) -> int:
        """Rescore entries whose acceptance ran out since the last call: the factor it hid
        counts again. How many entries were rescored."""
        now = self._clock.now().timestamp()
        with self._tx() as uow:
            ids = uow.risk.with_expired_acceptances(now, since=self._expired_until)
            for ident in ids:
                entry = uow.risk.get(ident)
                if entry is not None:
                    uow.risk.set_score(ident, score(entry.visible(now), entry.weighting))
        self._expired_until = now
        return len(ids)

    # -- reading ------------------------------------------------------------------------

    def _present(self, entry: RiskEntry, now: float) -> RiskEntry:
        """The entry as a caller sees it: hidden factors out, only live acceptances."""
        live = tuple(a for a in entry.accepted if a.live(now))
        return replace(entry, factors=entry.visible(now), accepted=live)

    def _scope(self, principal: Principal, where: EntryFilter) -> str | None:
        """The subtree to read: the caller's, or the narrower one ``where`` names inside it;
        None when ``where`` names one outside it (answered as empty, G9)."""
        if where.org_path is None:
            return principal.org_path
        if not where.org_path.startswith("/") or not where.org_path.endswith("/"):
            raise InvalidInput("'org' must be an org path such as /root/acme/")
        return where.org_path if principal.sees(where.org_path) else None

    def entries(self, principal: Principal, where: EntryFilter = ANY, *,
                after: str | None = None, limit: int = 100
                ) -> tuple[list[RiskEntry], int, str | None]:
        """A page of entries by score, the total that match, and the next cursor."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        cursor = decode_cursor(after)
        scope = self._scope(principal, where)
        if scope is None:
            return [], 0, None
        now = self._clock.now().timestamp()
        with self._tx.reading() as uow:
            items = uow.risk.page(org_path=scope, where=where, after=cursor, limit=limit,
                                  now=now)
            total = uow.risk.count(org_path=scope, where=where, now=now)
        following = encode_cursor(items[-1]) if len(items) == limit else None
        return [self._present(e, now) for e in items], total, following

    def entry(self, principal: Principal, entry_id: str) -> RiskEntry:
        """One entry in the caller's subtree, or NotFound."""
        now = self._clock.now().timestamp()
        with self._tx.reading() as uow:
            entry = uow.risk.get(entry_id)
        if entry is None or not principal.sees(entry.org_path):
            raise NotFound(f"risk entry {entry_id[:100]!r} not found")
        return self._present(entry, now)

    def summary(self, principal: Principal) -> RiskSummary:
        """Counts of the caller's part of the register."""
        now = self._clock.now().timestamp()
        with self._tx.reading() as uow:
            total, by_factor, by_severity = uow.risk.factor_counts(
                org_path=principal.org_path, now=now)
            last = uow.risk.trend(org_path=principal.org_path, limit=1)
        latest = last[-1] if last else None
        managed = latest.counts.get("managed", 0) if latest else 0
        # the factors' counts are kept as entries change (a refresh, an adoption), the
        # managed count is the last rebuild's
        return RiskSummary(total, by_factor, by_severity, managed,
                           by_factor.get(RiskFactor.UNMANAGED.value, 0),
                           by_factor.get(RiskFactor.DORMANT_VALID_CREDENTIALS.value, 0),
                           by_factor.get(RiskFactor.ZOMBIE.value, 0),
                           latest.at if latest else None)

    def trend(self, principal: Principal, limit: int = 90) -> list[TrendPoint]:
        """The counts per factor of the last rebuilds, oldest first."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        with self._tx.reading() as uow:
            return uow.risk.trend(org_path=principal.org_path, limit=limit)

    def export(self, principal: Principal, fmt: str,
               where: EntryFilter = ANY) -> Iterator[str]:
        """The caller's entries as CSV or JSON, in chunks (streamed, never all at once)."""
        if fmt not in ("csv", "json"):
            raise InvalidInput(f"unknown export format {fmt[:20]!r}; csv or json")
        return self._export(self._scope(principal, where), fmt, where)

    def _export(self, scope: str | None, fmt: str, where: EntryFilter) -> Iterator[str]:
        now = self._clock.now().timestamp()
        with self._tx.reading() as uow:
            rows = (self._present(e, now) for e in
                    (uow.risk.iter_entries(org_path=scope, where=where, now=now)
                     if scope is not None else ()))
            if fmt == "json":
                yield from _json_chunks(rows)
            else:
                yield from _csv_chunks(rows)

    # -- accepting ----------------------------------------------------------------------

    def accept(self, principal: Principal, entry_id: str, factor: str, reason: str,
               expires_in_days: int) -> RiskEntry:
        """Hide one factor of an entry for a while, with a reason (audited)."""
        draft = AuditDraft(tag=AuditTag.RISK_FACTOR_ACCEPTED, actor=principal.name,
                           org_path=principal.org_path, subject=entry_id[:200])
        with self._audit.refusals(draft):
            principal.require(Role.ADMIN, "accepting a risk")
            accepted_factor = RiskFactor.parse(factor)
            text = (reason or "").strip()
            if not text or len(text) > MAX_REASON or "\x00" in text:
                raise InvalidInput(f"a reason of 1-{MAX_REASON} characters is required")
            if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) \
                    or not 1 <= expires_in_days <= MAX_ACCEPT_DAYS:
                raise InvalidInput(f"expires_in_days must be 1-{MAX_ACCEPT_DAYS}")
            now = self._clock.now().timestamp()
            with self._tx() as uow:
                entry = uow.risk.get(entry_id)
                if entry is None or not principal.sees(entry.org_path):
                    raise NotFound(f"risk entry {entry_id[:100]!r} not found")
                if all(h.factor is not accepted_factor for h in entry.factors):
                    raise Conflict(f"entry {entry_id} has no factor {accepted_factor}")
                acceptance = Acceptance(entry.id, accepted_factor, text,
                                        now + expires_in_days * 86400.0, principal.name, now,
                                        entry.org_path)
                uow.risk.accept(acceptance)
                others = tuple(a for a in entry.accepted if a.factor is not accepted_factor)
                updated = replace(entry, accepted=(*others, acceptance))
                uow.risk.set_score(entry.id, score(updated.visible(now), entry.weighting))
                self._audit.append(uow, replace(draft, org_path=entry.org_path, details={
                    "factor": accepted_factor.value, "reason": text,
                    "expires_at": acceptance.expires_at, "subject": entry.subject_id}))
        return self._present(replace(updated, score=score(updated.visible(now),
                                                          entry.weighting)), now)


class BatchWriter:
    """Writes a rebuild's batches on a thread of its own while the next batch is judged:
    the database works (the driver waits without the GIL) while Python judges.

    At most ``depth`` batches wait; the first failure of a write stops the writer and is
    raised to the judging thread at its next ``put`` or at the end.
    """

    def __init__(self, write: Callable[[list[tuple[RiskEntry, str | None]]], None],
                 depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[list[tuple[RiskEntry, str | None]] | None] = \
            queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="risk-rebuild-writer",
                                        daemon=True)

    def __enter__(self) -> BatchWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._write(batch)
                except BaseException as e:  # handed to the judging thread, which raises it
                    self._failure = e

    def put(self, batch: list[tuple[RiskEntry, str | None]]) -> None:
        """Queue a batch (waits while ``depth`` are queued)."""
        self._raise_failure()
        self._queue.put(batch)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if error is None:
            self._raise_failure()


def _count(batch: Sequence[tuple[RiskEntry, str | None]], now: float,
           counts: dict[str, dict[str, int]]) -> None:
    """Add a batch's visible factors to the rebuild's counts per org path (the trend);
    the presence counts are factor counts: unmanaged, zombie, dormant-valid-..."""
    for entry, _ in batch:
        keys = counts[entry.org_path]
        for hit in entry.visible(now) if entry.accepted else entry.factors:
            keys[hit.factor.value] += 1


def _totals(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for keys in counts.values():
        for key, n in keys.items():
            totals[key] += n
    return dict(totals)


def entry_json(entry: RiskEntry) -> dict[str, Any]:
    """An entry as the API and the JSON export show it (the REST contract)."""
    return {"id": entry.id, "subject": entry.subject.value, "subject_id": entry.subject_id,
            "org_path": entry.org_path, "site": entry.site, "type": entry.type,
            "score": entry.score,
            "factors": [{"factor": h.factor.value, "severity": h.severity.label,
                         "summary": h.summary, "evidence": dict(h.evidence)}
                        for h in entry.factors],
            "accepted": [{"factor": a.factor.value, "reason": a.reason,
                          "expires_at": _iso(a.expires_at), "by": a.by}
                         for a in entry.accepted]}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_chunks(rows: Iterator[RiskEntry]) -> Iterator[str]:
    yield "["
    first = True
    for entry in rows:
        yield ("" if first else ",") + json.dumps(entry_json(entry), sort_keys=True)
        first = False
    yield "]\n"


def _csv_chunks(rows: Iterator[RiskEntry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for n, entry in enumerate(rows, start=1):
        writer.writerow([entry.id, entry.subject.value, _cell(entry.subject_id),
                         entry.org_path, _cell(entry.site or ""), _cell(entry.type or ""),
                         entry.score, " ".join(h.factor.value for h in entry.factors),
                         " ".join(h.severity.label for h in entry.factors),
                         " ".join(a.factor.value for a in entry.accepted)])
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection, OWASP): a leading = + - @."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


__all__ = ["RiskRegister", "entry_json"]
