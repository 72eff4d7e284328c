"""The transaction boundary every use case works inside.

A use case opens one unit of work, changes what it must and appends its audit
record in the same transaction, so a change is never stored without its audit
record and a failed change leaves nothing behind.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from iotiam.admin.ports import AdminTokenStore
from iotiam.attestation.ports import FirmwareStore
from iotiam.audit.ports import AuditLog
from iotiam.changes import ChangeRecorder
from iotiam.credentials.ports import PskStore
from iotiam.enrollment.ports import (
    ClaimTokenStore,
    EnrollmentRequestStore,
    ManifestStore,
    ManufacturerStore,
    OwnershipStore,
)
from iotiam.inventory.ports import DeviceStore, DeviceTypeStore, GroupStore, OrgUnitStore
from iotiam.pki.ports import CaStore, CertificateStore, CounterStore, CrlStore
from iotiam.policy.ports import PolicyUnitOfWork
from iotiam.response.ports import (
    DetectionSettingsStore,
    FindingStore,
    MitigationStore,
    TrustStore,
)
from iotiam.tokens.ports import (
    AssertionJtiStore,
    DeviceCodeStore,
    OAuthClientStore,
    SigningKeyStore,
    TokenDenyList,
)


class UnitOfWork(PolicyUnitOfWork, Protocol):
    """The stores, bound to one open transaction (the policy ones from ``PolicyUnitOfWork``)."""

    @property
    def changes(self) -> ChangeRecorder:
        """Publishes what changed when the transaction commits (``iotiam.changes``)."""
        ...

    @property
    def org_units(self) -> OrgUnitStore:
        """The org units store."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """The device types store."""
        ...

    @property
    def devices(self) -> DeviceStore:
        """The devices store."""
        ...

    @property
    def groups(self) -> GroupStore:
        """The groups store."""
        ...

    @property
    def cas(self) -> CaStore:
        """The cas store."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """The certificates store."""
        ...

    @property
    def crls(self) -> CrlStore:
        """The crls store."""
        ...

    @property
    def counters(self) -> CounterStore:
        """The counters store."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit store."""
        ...

    @property
    def admin_tokens(self) -> AdminTokenStore:
        """The admin tokens store."""
        ...

    @property
    def claims(self) -> ClaimTokenStore:
        """The claim token store."""
        ...

    @property
    def psks(self) -> PskStore:
        """The PSK store."""
        ...

    @property
    def manufacturers(self) -> ManufacturerStore:
        """The manufacturer CA store."""
        ...

    @property
    def manifest(self) -> ManifestStore:
        """The manufacturing manifest store."""
        ...

    @property
    def enrollment_requests(self) -> EnrollmentRequestStore:
        """The store of enrollment requests held for an admin."""
        ...

    @property
    def ownership(self) -> OwnershipStore:
        """The inventory writes of ownership transfers."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an error inside rolls back only what it did."""
        ...

    @property
    def oauth_clients(self) -> OAuthClientStore:
        """OAuth2 clients."""
        ...

    @property
    def oauth_signing_keys(self) -> SigningKeyStore:
        """Access-token signing keys."""
        ...

    @property
    def oauth_assertion_jtis(self) -> AssertionJtiStore:
        """Used client-assertion jtis."""
        ...

    @property
    def oauth_revoked_tokens(self) -> TokenDenyList:
        """Revoked access tokens."""
        ...

    @property
    def oauth_device_codes(self) -> DeviceCodeStore:
        """RFC 8628 device codes."""
        ...

    @property
    def firmware(self) -> FirmwareStore:
        """Firmware signers, images, rules, attestation nonces and device status."""
        ...

    @property
    def findings(self) -> FindingStore:
        """Findings of the detectors and attestation."""
        ...

    @property
    def mitigations(self) -> MitigationStore:
        """Actions taken on devices because of findings."""
        ...

    @property
    def detection_settings(self) -> DetectionSettingsStore:
        """Detection modes per device type and the playbook."""
        ...

    @property
    def trust(self) -> TrustStore:
        """Device trust scores."""
        ...


class UnitOfWorkFactory(Protocol):
    """Opens units of work."""

    def __call__(self) -> AbstractContextManager[UnitOfWork]:
        """Begin a write transaction; commit on normal exit, roll back on an exception."""
        ...

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        """Begin a read-only transaction that never waits for writers."""
        ...
