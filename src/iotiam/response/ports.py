"""The storage and outside systems the response layer needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.credentials.ports import PskStore
from iotiam.detection.models import DetectionMode, Finding, FindingState, FindingType
from iotiam.inventory.ports import DeviceTypeStore, DeviceUnitOfWork
from iotiam.pki.models import RevocationReason
from iotiam.pki.ports import CertificateStore, CounterStore
from iotiam.response.device_filter import DeviceFilter
from iotiam.response.models import (
    EventBatch,
    LiveCredential,
    Mitigation,
    StoredFinding,
    TrustScore,
    WouldActCount,
)
from iotiam.tokens.ports import OAuthClientStore


class FindingStore(Protocol):
    """Findings with their lifecycle."""

    def add(self, stored: StoredFinding) -> None:
        """Store a new finding."""
        ...

    def live_for(self, subject: str, finding_type: FindingType) -> StoredFinding | None:
        """The latest open or acknowledged finding of this subject (``Finding.subject``)
        and type."""
        ...

    def repeat(self, finding_id: str, at: datetime, event_at: float) -> None:
        """Its episode was raised again while live: count it, move last_seen_at, and
        last_event_at if ``event_at`` is later."""
        ...

    def escalate(self, finding_id: str, worse: Finding, at: datetime) -> None:
        """The live finding was raised again at a higher severity: take its severity,
        summary and evidence (its first event time stays: the episode began then)."""
        ...

    def add_batch(self, batch: EventBatch) -> None:
        """Record an upload of events."""
        ...

    def get_batch(self, batch_id: str) -> EventBatch | None:
        """One upload."""
        ...

    def remove_batch(self, batch_id: str) -> None:
        """Forget an upload whose events were not taken (and its links)."""
        ...

    def prune_batches(self, before: datetime) -> int:
        """Forget the uploads recorded before ``before`` and their links (their findings
        stay); how many uploads."""
        ...

    def link_batch(self, batch_id: str, finding_ids: Sequence[str]) -> None:
        """These findings were raised (or raised again) by the upload's events (a link
        made before is kept once)."""
        ...

    def batch_findings(self, batch_id: str) -> list[StoredFinding]:
        """The findings an upload's events raised, oldest first."""
        ...

    def would_act_counts(self, *, org_path: str, since: datetime) -> list[WouldActCount]:
        """Findings under ``org_path`` raised since ``since``, counted by type, device
        type, severity, mode and whether they name a device."""
        ...

    def get(self, finding_id: str, *, for_update: bool = False) -> StoredFinding | None:
        """One finding."""
        ...

    def set_state(self, finding_id: str, state: FindingState, at: datetime, by: str,
                  note: str | None) -> None:
        """Move a finding along its lifecycle."""
        ...

    def add_actions(self, finding_id: str, actions: Sequence[str]) -> None:
        """Record what was done about a finding."""
        ...

    def page(self, *, org_path: str, state: FindingState | None, device_id: str | None,
             finding_type: FindingType | None, before_id: str | None,
             limit: int) -> list[StoredFinding]:
        """Newest first, under ``org_path``."""
        ...

    def live_for_devices(self, device_ids: Sequence[str]) -> dict[str, list[StoredFinding]]:
        """Open and acknowledged findings of each device."""
        ...


class MitigationStore(Protocol):
    """Actions taken on devices, and their undoing."""

    def add(self, mitigation: Mitigation) -> None:
        """Record an applied action."""
        ...

    def active_for(self, device_id: str) -> list[Mitigation]:
        """Mitigations of a device that were not lifted, oldest first."""
        ...

    def lift(self, mitigation_id: str, at: datetime, by: str) -> None:
        """Mark a mitigation lifted."""
        ...

    def lifted_since(self, finding_id: str, at: datetime) -> bool:
        """Whether an admin lifted one of this finding's mitigations at or after ``at``."""
        ...


class DetectionSettingsStore(Protocol):
    """Detection modes per device type and the playbook document."""

    def modes(self) -> dict[str, DetectionMode]:
        """Every device type with a mode set."""
        ...

    def set_mode(self, device_type: str, mode: DetectionMode, at: datetime, by: str) -> None:
        """Set one device type's mode."""
        ...

    def get_document(self, name: str) -> str | None:
        """A named JSON document (the playbook)."""
        ...

    def put_document(self, name: str, value: str, at: datetime) -> None:
        """Replace a named JSON document."""
        ...


class TrustStore(Protocol):
    """The last computed trust score of each device."""

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, TrustScore]:
        """Stored scores of these devices."""
        ...

    def put(self, score: TrustScore) -> None:
        """Store (replace) a device's score."""
        ...

    def put_many(self, scores: Sequence[TrustScore]) -> None:
        """Store (replace) these devices' scores (one statement for a batch)."""
        ...

    def touch_devices(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at``: decision caches and the broker sync re-read
        them (their policy conditions may flip with the new score)."""
        ...


class ResponseUnitOfWork(DeviceUnitOfWork, AuditUnitOfWork, Protocol):
    """The stores response use cases and the trust score work with, inside one
    transaction (the inventory's and the PKI's read only: a device changes state through
    the inventory's ``DeviceLifecycle``)."""

    @property
    def findings(self) -> FindingStore:
        """Findings."""
        ...

    @property
    def mitigations(self) -> MitigationStore:
        """Mitigations."""
        ...

    @property
    def detection_settings(self) -> DetectionSettingsStore:
        """Detection modes and the playbook."""
        ...

    @property
    def trust(self) -> TrustStore:
        """Trust scores."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """Device types (modes are set per type; rotation ages count in the score)."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Certificates, read for the credential factor of the score."""
        ...

    @property
    def psks(self) -> PskStore:
        """PSKs, read for the credential factor of the score."""
        ...

    @property
    def oauth_clients(self) -> OAuthClientStore:
        """OAuth clients, read for the credential factor of the score."""
        ...


class FirmwareStatusLike(Protocol):
    """What the trust score needs to know of a device's attested firmware."""

    @property
    def compliant(self) -> bool:
        """Whether the attested firmware is a signed image at or above the minimum."""
        ...

    @property
    def reason(self) -> str | None:
        """Why not, if not."""
        ...


class FirmwareCompliance(Protocol):
    """Attested firmware compliance of devices (the attestation service)."""

    def compliance_of(self, device_ids: Sequence[str]) -> Mapping[str, FirmwareStatusLike]:
        """Devices that attested, with their verdict; others are missing."""
        ...


class NoFirmwareData:
    """Compliance source that knows nothing (every device 'unknown'): for set-ups
    without attestation, and for tests."""

    def compliance_of(self, device_ids: Sequence[str]) -> Mapping[str, FirmwareStatusLike]:
        """Nothing."""
        return {}


class RevocationSetStore(Protocol):
    """The devices a filter selects and their live credentials, revoked in bulk (one
    statement per kind of credential for a whole batch)."""

    def matching(self, wanted: DeviceFilter, org_path: str) -> list[str]:
        """Ids of the devices under ``org_path`` that ``wanted`` selects, sorted."""
        ...

    def live_credentials(self, device_ids: Sequence[str], now: datetime, *,
                         lock: bool = False) -> list[LiveCredential]:
        """The credentials of these devices that still work at ``now`` (``lock``: held
        by this transaction until it ends, for revoking them)."""
        ...

    def revoke(self, credentials: Sequence[LiveCredential], device_ids: Sequence[str],
               at: datetime, reason: RevocationReason) -> None:
        """Revoke ``credentials`` (final, G4) and end the devices' access tokens issued
        until ``at``."""
        ...


class SetRevocationUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores a set revocation works with in one batch's transaction."""

    @property
    def revocation_sets(self) -> RevocationSetStore:
        """Selection and bulk revocation."""
        ...

    @property
    def counters(self) -> CounterStore:
        """Revocation watermarks (CRLs are rebuilt when theirs moves)."""
        ...

    @property
    def changes(self) -> ChangeRecorder:
        """The change feed (OCSP, PDP, broker kicks follow it)."""
        ...


class LiveSessions(Protocol):
    """Which devices hold a live broker session (the managed broker's log says so)."""

    def connected(self, device_ids: Sequence[str]) -> int | None:
        """How many of these devices are connected now (None: not known here)."""
        ...


class NoSessionView:
    """No broker session view (no managed broker, or its events are off)."""

    def connected(self, device_ids: Sequence[str]) -> int | None:
        """Not known."""
        return None
