"""Every store in memory behind one unit of work, and the transactions that open it.

The memory unit of work has every store of every domain, so it is what each domain's
own narrow unit of work asks for. A write transaction copies the rows when it begins
and puts them back when the block raises: a failed use case leaves nothing behind, as
on the database (``savepoint`` does the same for its inner block).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from iotiam.testing.fakes.admin import MemoryAdminTokenStore
from iotiam.testing.fakes.attestation import MemoryFirmwareStore
from iotiam.testing.fakes.audit import MemoryActivityTallies, MemoryAuditLog
from iotiam.testing.fakes.credentials import MemoryPskStore
from iotiam.testing.fakes.discovery import MemoryDiscoveryStore, MemoryRegisteredIdentities
from iotiam.testing.fakes.enrollment import (
    MemoryClaimTokenStore,
    MemoryEnrollmentRequestStore,
    MemoryManifestStore,
    MemoryManufacturerStore,
    MemoryOwnershipStore,
)
from iotiam.testing.fakes.gateways import MemoryGatewayLinkStore
from iotiam.testing.fakes.inventory import (
    MemoryDeviceStore,
    MemoryDeviceTypeStore,
    MemoryFleetCounts,
    MemoryGroupStore,
    MemoryOrgUnitStore,
)
from iotiam.testing.fakes.memory import MemoryStore
from iotiam.testing.fakes.pki import (
    MemoryCaStore,
    MemoryCertificateStore,
    MemoryCounterStore,
    MemoryCrlStore,
)
from iotiam.testing.fakes.policy import MemoryPolicyStore, MemorySiteStore, MemoryTargetDirectory
from iotiam.testing.fakes.response import (
    MemoryDetectionSettingsStore,
    MemoryFindingStore,
    MemoryMitigationStore,
    MemoryTrustStore,
)
from iotiam.testing.fakes.risk import MemoryRiskStore
from iotiam.testing.fakes.tokens import (
    MemoryAssertionJtiStore,
    MemoryDeviceCodeStore,
    MemoryOAuthClientStore,
    MemorySigningKeyStore,
    MemoryTokenDenyList,
)


@dataclass
class MemoryChangeRecorder(MemoryStore):
    """The changes use cases record, in order; those of a transaction that rolls back
    go with it (a feed delivers ``recorded`` from its last position after a commit)."""

    recorded: list[object] = field(default_factory=list)

    def record(self, change: object) -> None:
        """Keep ``change``; it stays only if its transaction commits."""
        self.recorded.append(change)


class MemoryUnitOfWork:
    """Every store of every domain, in memory (what ``SqlUnitOfWork`` holds)."""

    def __init__(self) -> None:
        self.changes = MemoryChangeRecorder()
        self.org_units = MemoryOrgUnitStore()
        self.device_types = MemoryDeviceTypeStore()
        self.devices = MemoryDeviceStore()
        self.groups = MemoryGroupStore(self.devices)
        self.cas = MemoryCaStore()
        self.certificates = MemoryCertificateStore()
        self.crls = MemoryCrlStore()
        self.counters = MemoryCounterStore()
        self.audit = MemoryAuditLog()
        self.activity = MemoryActivityTallies()
        self.admin_tokens = MemoryAdminTokenStore()
        self.claims = MemoryClaimTokenStore()
        self.psks = MemoryPskStore()
        self.gateway_links = MemoryGatewayLinkStore()
        self.manufacturers = MemoryManufacturerStore()
        self.manifest = MemoryManifestStore()
        self.enrollment_requests = MemoryEnrollmentRequestStore()
        self.ownership = MemoryOwnershipStore(self.devices, self.groups)
        self.policies = MemoryPolicyStore(counters=self.counters)
        self.policy_attachments = self.policies
        self.policy_targets = MemoryTargetDirectory(self.org_units, self.devices, self.groups,
                                                    self.device_types)
        self.sites = MemorySiteStore(self.counters)
        self.firmware = MemoryFirmwareStore(self.devices)
        self.findings = MemoryFindingStore()
        self.mitigations = MemoryMitigationStore()
        self.detection_settings = MemoryDetectionSettingsStore()
        self.trust = MemoryTrustStore(self.devices)
        self.oauth_clients = MemoryOAuthClientStore(self.devices, self.groups, self.trust,
                                                    self.firmware, self.certificates)
        self.fleet_counts = MemoryFleetCounts(self.devices, self.certificates, self.psks,
                                              self.oauth_clients)
        self.oauth_signing_keys = MemorySigningKeyStore()
        self.oauth_assertion_jtis = MemoryAssertionJtiStore()
        self.oauth_revoked_tokens = MemoryTokenDenyList()
        self.oauth_device_codes = MemoryDeviceCodeStore()
        self.discovery = MemoryDiscoveryStore()
        self.registered_identities = MemoryRegisteredIdentities(
            self.devices, self.certificates, self.psks, self.cas)
        self.risk = MemoryRiskStore()

    def stores(self) -> dict[str, MemoryStore]:
        """Every store by its attribute name (one entry per store object)."""
        found: dict[int, tuple[str, MemoryStore]] = {}
        for name, value in vars(self).items():
            if isinstance(value, MemoryStore):
                found.setdefault(id(value), (name, value))
        return dict(found.values())

    def saved(self) -> dict[str, dict[str, Any]]:
        """A copy of every store's rows."""
        return {name: store.saved() for name, store in self.stores().items()}

    def restore(self, saved: dict[str, dict[str, Any]]) -> None:
        """Put back rows taken by :meth:`saved`."""
        stores = self.stores()
        for name, rows in saved.items():
            stores[name].restore(rows)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside rolls back only its own work."""
        saved = self.saved()
        try:
            yield
        except BaseException:
            self.restore(saved)
            raise


class NestedWrite(RuntimeError):
    """A write transaction was opened inside another on the same thread."""


class MemoryDatabase:
    """``Transactions`` over one :class:`MemoryUnitOfWork`: one writer at a time (as
    SQLite), readers never wait; a write block that raises leaves the rows as they were.

    Unlike the database, a reader sees a writer's rows before it commits: tests of
    concurrent transactions belong on the database. A write opened inside another on
    one thread is refused (:class:`NestedWrite`): on SQLite it would wait for the outer
    one's writer lock until it timed out, so no use case may do it.
    """

    def __init__(self, uow: MemoryUnitOfWork | None = None) -> None:
        self.uow = uow or MemoryUnitOfWork()
        #: called after each committed write (a change feed delivering what it recorded)
        self.after_commit: list[Callable[[], None]] = []
        # re-entrant: a thread holding it through ``writer_if_free`` then writes
        self._writer = threading.RLock()
        self._writing = threading.local()

    @contextmanager
    def __call__(self) -> Iterator[MemoryUnitOfWork]:
        """A write transaction: commit on normal exit, roll back on an exception."""
        if getattr(self._writing, "active", False):
            raise NestedWrite("a write transaction inside another would wait for its "
                              "writer lock on SQLite")
        with self._writer:
            self._writing.active = True
            try:
                with self.uow.savepoint():
                    yield self.uow
            finally:
                self._writing.active = False
        for committed in self.after_commit:
            committed()

    @contextmanager
    def reading(self) -> Iterator[MemoryUnitOfWork]:
        """A read transaction (it sees the rows as they are)."""
        yield self.uow

    @contextmanager
    def writer_if_free(self) -> Iterator[bool]:
        """Hold the writer lock if no one holds it now (True), else don't wait (False);
        while True, this thread's write transactions start without waiting."""
        if not self._writer.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            self._writer.release()

    def after_fork(self) -> None:
        """Nothing to reopen: the rows live in this process."""

    def dispose(self) -> None:
        """Nothing to close."""
