"""Discovery use cases: import what sources saw, take what iotiam itself saw, list assets.

An import streams: the source yields a record at a time, records are gathered into
batches of ``BATCH_SIZE``, and each batch is one transaction that looks up every
identifier it needs in one query per kind, reconciles (``reconcile.py``), writes its
rows in bulk and appends one audit record naming its count and the digest of its
rows. Memory holds a batch or three (reading ahead), never the input. A sighting's digest
(``Sighting.digest``) under the importing caller's org path (``scoped_digests``) is its
identity: importing the same file twice adds nothing, and each org's imports are its own.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, NamedTuple

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import SightingsImported
from iotiam.clock import Clock, idle
from iotiam.discovery.catalog import source_named
from iotiam.discovery.models import (
    AssetStatus,
    CredentialSeen,
    DeviceSeen,
    DiscoveredAsset,
    IdentifierKind,
    ImportReport,
    Refusal,
    Sighting,
    SourceContext,
    scoped_digests,
)
from iotiam.discovery.ports import (
    DiscoveryUnitOfWork,
    SightingRow,
    SightingSource,
)
from iotiam.discovery.reconcile import (
    Key,
    Lookups,
    Reconciler,
    batch_values,
    keys_of,
)
from iotiam.errors import InvalidInput, NotFound
from iotiam.kernel import (
    SYSTEM,
    Principal,
    Role,
    Transactions,
    collector_paused,
    pipelined,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
#: an import runs one full pass of the cyclic collector every this many batches, or
#: after this many seconds, whichever comes first
COLLECT_BATCHES = 20
COLLECT_SECONDS = 5.0
#: sightings of iotiam's own traffic waiting to be stored; beyond it the oldest go
MAX_OBSERVED = 100_000
#: how often the observer stores what was queued, at the latest
OBSERVE_SECONDS = 1.0
#: how soon the observer sees that it must stop
STOP_SECONDS = 0.25
MAX_PAGE = 1000

#: a sighting with its identifiers as reconciliation looks them up (computed once)
Keyed = tuple[Sighting, list[Key]]
#: what a batch looks up (``keys.batch_values``): among registered identities, bindings
_Values = tuple[dict[IdentifierKind, list[str]], dict[IdentifierKind, list[str]]]


def new_asset_id() -> str:
    """A fresh asset id (64 random bits)."""
    return "as-" + secrets.token_hex(8)


class Discovery:
    """Imports sightings, reconciles them with the registered fleet, serves the assets."""

    def __init__(self, uow: Transactions[DiscoveryUnitOfWork], clock: Clock, audit: Auditor,
                 *, sources: Callable[[str], SightingSource] = source_named,
                 new_id: Callable[[], str] = new_asset_id, batch_size: int = BATCH_SIZE,
                 read_ahead: bool = False) -> None:
        """``read_ahead``: read each batch while the one before is stored, on two
        threads (``_store_all``); worth it where a database call leaves the interpreter
        for a whole statement (PostgreSQL), not where it does so row by row (SQLite)."""
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._sources = sources
        self._new_id = new_id
        self._batch_size = batch_size
        self._read_ahead = read_ahead
        self._observed: deque[Sighting] = deque(maxlen=MAX_OBSERVED)
        self._observed_lock = threading.Lock()
        self._wake = threading.Event()
        #: sightings of our own traffic dropped because the queue was full
        self.observed_dropped = 0

    # -- imports ----------------------------------------------------------------------

    def import_stream(self, principal: Principal, source_name: str, stream: IO[bytes],
                      context: SourceContext,
                      progress: Callable[[int], None] | None = None) -> ImportReport:
        """Read ``stream`` with the named source and store what it saw, batch by batch.

        Scope (G9): the sightings are stored under the caller's org path and matched
        only against devices and assets inside it. ``InvalidInput`` (with the refusals)
        when the input holds no sighting at all: it is not of the named kind.
        """
        draft = AuditDraft(tag=AuditTag.DISCOVERY_IMPORT_REFUSED, actor=principal.name,
                           org_path=principal.org_path, subject=f"discovery:{source_name[:60]}")
        with self._audit.refusals(draft):
            principal.require(Role.OPERATOR, "importing sightings")
            source = self._sources(source_name)
            check_options(source, context.options)
            if context.default_time is None:
                context = replace(context, default_time=self._clock.now().timestamp())
            report = ImportReport(source=source.name)
            self._store_all(principal, source, stream, context, report, progress)
            if report.read == report.refused:
                refusals = [{"line": r.position, "reason": r.reason}
                            for r in report.refusals[:100]]
                what = ("is empty" if not report.read else
                        f"has no {source.name} record that could be read")
                first = (f" (line {report.refusals[0].position}: {report.refusals[0].reason})"
                         if report.refusals else "")
                raise InvalidInput(f"the input {what}{first}", refusals=refusals)
            return report

    def _store_all(self, principal: Principal, source: SightingSource, stream: IO[bytes],
                   context: SourceContext, report: ImportReport,
                   progress: Callable[[int], None] | None) -> None:
        """Read and store every batch, with the cyclic collector paused but for one full
        pass after every ``COLLECT_BATCHES`` batches or ``COLLECT_SECONDS``, whichever
        comes first.

        With ``read_ahead`` the batches are read, keyed and digested on this thread
        while the one before is stored on another (``kernel.pipelined``): reading a line
        and gathering its values (about 20 µs) runs while the storing waits on the
        PostgreSQL server (about 45 µs a line of a first import). On SQLite, whose calls
        give the interpreter back only around each row, it showed no gain
        (``docs/discovery.md``, "Speed"). The order of the batches, and of the sightings
        in each, is the file's either way.

        Reading, keying and storing a batch allocate acyclic objects only (reference
        counting frees them), but the batch held in memory is what the collector's
        passes kept traversing: a fifth of a re-import's CPU (26 µs a line against
        21), a tenth of a first import's. Whatever else the process runs meanwhile
        may leave cycles: the regular pass frees them, so memory stays bounded however
        long the import. (A body that stalls mid-batch keeps the pass waiting until
        that batch is read.)
        """
        last = time.monotonic()
        stored = 0
        #: whether the last batch stored was all new: the next one's values to look up
        #: are then gathered while it is stored (a re-import needs none)
        all_new = True

        def store(batch: _Digested) -> None:
            nonlocal last, stored, all_new
            before = report.duplicates
            self._store_batch(principal, source.name, batch, report)
            all_new = report.duplicates == before
            stored += 1
            if progress is not None:
                progress(batch.read)
            if stored % COLLECT_BATCHES == 0 or time.monotonic() - last > COLLECT_SECONDS:
                gc.collect()
                last = time.monotonic()

        scope = principal.org_path
        with collector_paused():
            batches = (_digested(scope, batch, report.read, gather=all_new) for batch
                       in self._batches(source.read(stream, context), report))
            if self._read_ahead:
                pipelined(batches, store)
            else:
                for batch in batches:
                    store(batch)

    def _batches(self, records: Iterable[Sighting | Refusal], report: ImportReport
                 ) -> Iterator[list[Keyed]]:
        batch: list[Keyed] = []
        for record in records:
            report.read += 1
            if isinstance(record, Refusal):
                report.refuse(record)
                continue
            keys = keys_of(record)
            if not keys:
                report.refuse(Refusal(report.read, "no identifier"))
                continue
            batch.append((record, keys))
            if len(batch) >= self._batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _store_batch(self, principal: Principal, source: str, batch: _Digested,
                     report: ImportReport) -> None:
        """One transaction: dedup, look up, reconcile, write, audit."""
        report.duplicates += batch.sightings - len(batch.unique)
        scope = principal.org_path
        scoped = batch.scoped
        unique = batch.unique
        # a batch's rows, lookups and decisions are acyclic: reference counting frees
        # them, and the collector's passes over them were a tenth of an import's CPU (an
        # import pauses it throughout, ``_store_all``; iotiam's own traffic per batch)
        with collector_paused(), self._uow() as uow:
            store = uow.discovery
            store.begin_import()
            claimed = store.claim_digests(list(scoped))
            fresh = [(key, keyed) for key, keyed in scoped.items() if key in claimed]
            report.duplicates += len(unique) - len(fresh)
            added = matched = new_assets = 0
            if fresh:
                # the values gathered with the digests are the fresh sightings' when
                # every sighting is fresh (a first import), and only then
                values = batch.values if len(fresh) == len(scoped) else None
                reconciler = Reconciler(scope, self._lookups(
                    uow, scope, [k for _, k in fresh], values), self._new_id)
                rows: list[SightingRow] = [(s, key, scope, reconciler.place(s, keys))
                                           for key, (s, keys) in fresh]
                outcome = reconciler.outcome()
                store.merge_assets(outcome.merged)
                store.save_assets(outcome.assets)
                store.save_bindings(outcome.bindings)
                store.save_presence(outcome.presence)
                store.add_sightings(rows)
                added = len(fresh)
                matched, new_assets = outcome.matched, outcome.new_assets
                uow.changes.record(SightingsImported(scope, added))
            rows_digest = hashlib.blake2b(b"".join(unique), digest_size=16).hexdigest()
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.SIGHTINGS_IMPORTED, actor=principal.name, org_path=scope,
                subject=f"discovery:{source}", details={
                    "count": batch.sightings, "added": added, "matched": matched,
                    "new_assets": new_assets, "rows_blake2b": rows_digest}))
        report.added += added
        report.matched += matched
        report.new_assets += new_assets

    @staticmethod
    def _lookups(uow: DiscoveryUnitOfWork, scope: str, keyed: Sequence[Keyed],
                 gathered: _Values | None = None) -> Lookups:
        """Everything the batch's identifiers are bound to: one query per kind
        (``gathered``: their ``batch_values``, when the caller has them already)."""
        lookups = Lookups()
        registered, bound = batch_values(keyed) if gathered is None else gathered
        for kind, values in registered.items():
            for value, device in uow.registered_identities.devices_for(
                    kind, values, org_path=scope).items():
                lookups.registered[(kind, value)] = device
        for kind, values in bound.items():
            for value, binding in uow.discovery.bindings_for(kind, values,
                                                             org_path=scope).items():
                lookups.bindings[(kind, value)] = binding
        asset_ids = sorted({b.asset_id for b in lookups.bindings.values() if b.asset_id})
        lookups.assets = dict(uow.discovery.assets_by_id(asset_ids))
        device_ids = {d.device_id for d in lookups.registered.values()}
        device_ids |= {b.device_id for b in lookups.bindings.values() if b.device_id}
        device_ids |= {a.device_id for a in lookups.assets.values() if a.device_id}
        lookups.presence = dict(uow.discovery.presence_for(sorted(device_ids)))
        return lookups

    # -- iotiam's own traffic (SightingSink) ---------------------------------------

    def observe(self, sightings: Sequence[Sighting]) -> None:
        """Queue sightings iotiam made itself; stored by :meth:`run_observer` (never
        blocks: when the queue is full the oldest are dropped and counted)."""
        with self._observed_lock:
            overflow = len(self._observed) + len(sightings) - MAX_OBSERVED
            if overflow > 0:
                self.observed_dropped += overflow
            self._observed.extend(sightings)
        self._wake.set()

    def flush_observed(self) -> int:
        """Store what was observed (under the root org, as iotiam); how many were taken."""
        taken = 0
        while True:
            with self._observed_lock:
                batch = [self._observed.popleft()
                         for _ in range(min(self._batch_size, len(self._observed)))]
            if not batch:
                return taken
            taken += len(batch)
            report = ImportReport(source="observed")
            kept = [(s, keys) for s in batch if (keys := keys_of(s))]
            if kept:
                self._store_batch(SYSTEM, "observed",
                                  _digested(SYSTEM.org_path, kept, len(batch),
                                            gather=False), report)

    def run_observer(self, stop: threading.Event) -> None:
        """The background loop the composition root runs: store observed sightings."""
        while not stop.is_set():
            # stop is seen within STOP_SECONDS: serve shuts down at once
            idle(self._wake, stop, OBSERVE_SECONDS, STOP_SECONDS)
            self._wake.clear()
            try:
                self.flush_observed()
            except Exception:  # a database hiccup must not end the loop
                log.exception("storing observed sightings failed; retrying")
        self.flush_observed()

    # -- reads ----------------------------------------------------------------------

    def assets(self, principal: Principal, *, status: str | None = None,
               site: str | None = None, source: str | None = None,
               after: str | None = None, limit: int = 100) -> list[DiscoveredAsset]:
        """Assets in the caller's subtree, in id order after ``after``."""
        _check_filters(status, limit)
        with self._uow.reading() as uow:
            return uow.discovery.assets(org_path=principal.org_path, after=after, limit=limit,
                                        status=status, site=site, source=source)

    def count_assets(self, principal: Principal, *, status: str | None = None,
                     site: str | None = None, source: str | None = None) -> int:
        """How many assets the same filters select."""
        _check_filters(status, 1)
        with self._uow.reading() as uow:
            return uow.discovery.count_assets(org_path=principal.org_path, status=status,
                                              site=site, source=source)

    def asset(self, principal: Principal, asset_id: str) -> DiscoveredAsset:
        """One asset; outside the caller's subtree it is not found, like a missing one."""
        with self._uow.reading() as uow:
            found = uow.discovery.asset(asset_id)
        if found is None or not principal.sees(found.org_path):
            raise NotFound(f"no asset {asset_id[:80]!r}")
        return found

    def mark_adopted(self, principal: Principal, adopted: Mapping[str, str]) -> None:
        """Record that these assets are now these devices: their sightings, past bindings
        and future ones, are the device's from here on (``adoption.Adoption``)."""
        principal.require(Role.OPERATOR, "bringing discovered assets under management")
        with self._uow() as uow:
            found = uow.discovery.assets_by_id(list(adopted))
            missing = [a for a in adopted
                       if a not in found or not principal.sees(found[a].org_path)]
            if missing:
                raise NotFound(f"no asset {missing[0][:80]!r}")
            uow.discovery.save_assets([
                found[asset_id]._replace(status=AssetStatus.ADOPTED, device_id=device_id)
                for asset_id, device_id in adopted.items()])
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.ASSETS_ADOPTED, actor=principal.name,
                org_path=principal.org_path, subject=f"assets:{len(adopted)}",
                details={"adopted": dict(adopted)}))

    @property
    def reader(self) -> StoredDiscovery:
        """What the risk register reads (``ports.DiscoveryReader``)."""
        return StoredDiscovery(self._uow)


class _Digested(NamedTuple):
    """A batch as read, with its sightings' identities (computed while the batch before
    it is stored)."""

    #: its sightings, duplicates within it included
    sightings: int
    #: each distinct sighting's digest (``Sighting.digest``), in the batch's order
    unique: list[bytes]
    #: the same under the importing caller's org path -> the sighting and its keys
    scoped: dict[bytes, Keyed]
    #: the lines read from the source up to the end of this batch
    read: int
    #: the distinct sightings' ``batch_values``, when gathered ahead
    values: _Values | None


def _digested(scope: str, batch: Sequence[Keyed], read: int, *, gather: bool
               ) -> _Digested:
    """``batch`` with its digests: what is claimed is the digest under the caller's org
    path, so another org importing the same line gets it as its own (G9). ``gather``:
    with the values its distinct sightings look up (``batch_values``), which is what a
    batch looks up when none of them was imported before."""
    unique: dict[bytes, Keyed] = {}
    for keyed in batch:
        unique.setdefault(keyed[0].digest(), keyed)
    scoped = dict(zip(scoped_digests(scope, unique), unique.values(), strict=True))
    values = batch_values(scoped.values()) if gather else None
    return _Digested(len(batch), list(unique), scoped, read, values)


def check_options(source: SightingSource, options: Mapping[str, str]) -> None:
    """Refuse an option the source does not read: a misspelt one must not be ignored."""
    for name in options:
        if name not in source.options and not any(
                family.endswith(".") and name.startswith(family) for family in source.options):
            known = ", ".join(sorted(source.options)) or "none"
            raise InvalidInput(f"the {source.name} source has no option {name[:64]!r}; "
                               f"its options: {known}")


def _check_filters(status: str | None, limit: int) -> None:
    if status is not None and status not in {s.value for s in AssetStatus}:
        raise InvalidInput(f"unknown status {status[:40]!r}; one of "
                           f"{', '.join(s.value for s in AssetStatus)}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE}")


class StoredDiscovery:
    """``ports.DiscoveryReader`` over the store: each iteration in one read transaction."""

    def __init__(self, uow: Transactions[DiscoveryUnitOfWork]) -> None:
        self._uow = uow

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """Every asset under ``org_path``, streamed."""
        with self._uow.reading() as uow:
            yield from uow.discovery.iter_assets(org_path=org_path)

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """What the sources saw of each registered device under ``org_path``."""
        with self._uow.reading() as uow:
            yield from uow.discovery.iter_devices_seen(org_path=org_path)

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """Every certificate and PSK identity the sources saw under ``org_path``."""
        with self._uow.reading() as uow:
            yield from uow.discovery.iter_credentials_seen(org_path=org_path)

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """What the sources saw of these devices under ``org_path``."""
        with self._uow.reading() as uow:
            return uow.discovery.devices_seen(org_path=org_path, device_ids=device_ids)

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """The credentials of ``keys`` the sources saw under ``org_path``."""
        with self._uow.reading() as uow:
            return uow.discovery.credentials_seen(org_path=org_path, keys=keys)
