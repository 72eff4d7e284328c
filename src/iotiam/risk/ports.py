"""What the risk register stores, and what it reads of the other domains.

The register reads other domains through their own store protocols (the narrowest
each offers), inside one read transaction of :class:`RiskUnitOfWork`; discovery through
``discovery.ports.DiscoveryReader``; where audit records and alerts go through
:class:`FleetSettings`; and the policy linter as a function (:data:`PolicyLinter`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Protocol

from iotiam.attestation.models import FirmwareStatus
from iotiam.audit.ports import AuditUnitOfWork
from iotiam.credentials.ports import PskStore
from iotiam.discovery.models import CredentialSeen, DeviceSeen, DiscoveredAsset, IdentifierKind
from iotiam.inventory.ports import DeviceReader, DeviceTypeStore, GroupStore
from iotiam.pki.ports import CaStore, CertificateStore
from iotiam.policy.models import LintFinding, PolicyDocument
from iotiam.policy.ports import AttachmentStore, PolicyStore
from iotiam.response.ports import FindingStore, TrustStore
from iotiam.risk.models import (
    Acceptance,
    EntryFilter,
    FleetChannels,
    RiskEntry,
    TrendPoint,
)

#: ``policy.lint.lint_policy``, handed in by the composition root
PolicyLinter = Callable[[PolicyDocument], list[LintFinding]]

#: a page cursor: the last entry's (score, id); entries go by score down, then id up
Cursor = tuple[int, str]


class RiskStore(Protocol):
    """The register: entries, acceptances and the counts of every rebuild."""

    def put_entries(self, entries: Sequence[RiskEntry], *, generation: int,
                    holder: Mapping[str, str | None], now: float) -> None:
        """Insert or replace entries (one statement per batch); ``holder`` maps an entry
        id to the device it belongs to (for :meth:`remove_for_devices`). A store may
        leave an entry whose stored content is the same as it is (its generation too)."""
        ...

    def remove_stale(self, generation: int, kept: Collection[str] = frozenset()) -> int:
        """Delete entries no rebuild since ``generation`` wrote, but those in ``kept``
        (the rebuild's own, which it may have left as they were); how many."""
        ...

    def remove_for_devices(self, device_ids: Sequence[str]) -> int:
        """Delete the entries these devices hold (their own and their credentials')."""
        ...

    def remove_entries(self, entry_ids: Sequence[str]) -> int:
        """Delete these entries (those that exist); how many."""
        ...

    def get(self, entry_id: str) -> RiskEntry | None:
        """One entry, with its acceptances."""
        ...

    def page(self, *, org_path: str, where: EntryFilter, after: Cursor | None,
             limit: int, now: float) -> list[RiskEntry]:
        """Entries under ``org_path`` matching ``where``, by score down then id, after
        ``after``; a factor accepted until after ``now`` does not match."""
        ...

    def count(self, *, org_path: str, where: EntryFilter, now: float) -> int:
        """How many entries :meth:`page` would page through."""
        ...

    def iter_entries(self, *, org_path: str, where: EntryFilter, now: float
                     ) -> Iterator[RiskEntry]:
        """Every matching entry in page order, streamed (exports)."""
        ...

    def factor_counts(self, *, org_path: str, now: float
                      ) -> tuple[int, dict[str, int], dict[str, int]]:
        """(entries, visible hits per factor, visible hits per severity) under a path."""
        ...

    def set_score(self, entry_id: str, score: int) -> None:
        """Replace an entry's score (an acceptance hid a factor, or stopped hiding it)."""
        ...

    def accept(self, acceptance: Acceptance) -> None:
        """Store an acceptance (replacing an earlier one of the same entry and factor)."""
        ...

    def live_acceptances(self, now: float) -> list[Acceptance]:
        """Every acceptance that has not expired."""
        ...

    def with_expired_acceptances(self, now: float, *, since: float) -> list[str]:
        """Ids of entries an acceptance hid until some time in ``(since, now]``: their
        score must count the factor again."""
        ...

    def start_rebuild(self, at: float) -> int:
        """Number a new rebuild (strictly increasing); it is the generation it writes."""
        ...

    def current_generation(self) -> int:
        """The newest rebuild's number (0 before the first)."""
        ...

    def finish_rebuild(self, generation: int, at: float,
                       counts: Mapping[str, Mapping[str, int]]) -> None:
        """Record a finished rebuild and its counts per org path, then per key."""
        ...

    def trend(self, *, org_path: str, limit: int) -> list[TrendPoint]:
        """The counts of the last ``limit`` finished rebuilds under a path, oldest first."""
        ...


class FirmwareStatuses(Protocol):
    """The attested firmware status of devices (``attestation.ports.FirmwareStore``)."""

    def statuses(self, device_ids: Sequence[str]) -> dict[str, FirmwareStatus]:
        """The firmware status of each of ``device_ids`` that has one."""
        ...


class RiskUnitOfWork(AuditUnitOfWork, Protocol):
    """The register's own store, and what it reads of the inventory, the PKI, the PSKs,
    response, attestation and policy (read only: the register changes none of them)."""

    @property
    def risk(self) -> RiskStore:
        """The register."""
        ...

    @property
    def devices(self) -> DeviceReader:
        """Devices (read)."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """Device types: criticality, class and rotation policy (read)."""
        ...

    @property
    def groups(self) -> GroupStore:
        """Groups, for the policies attached to them (read)."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Issued certificates (read)."""
        ...

    @property
    def cas(self) -> CaStore:
        """The CAs iotiam runs (read)."""
        ...

    @property
    def psks(self) -> PskStore:
        """PSKs (read)."""
        ...

    @property
    def findings(self) -> FindingStore:
        """Open findings (read)."""
        ...

    @property
    def trust(self) -> TrustStore:
        """Trust scores (read)."""
        ...

    @property
    def policies(self) -> PolicyStore:
        """Policy documents (read)."""
        ...

    @property
    def policy_attachments(self) -> AttachmentStore:
        """Which policy applies to what (read)."""
        ...

    @property
    def firmware(self) -> FirmwareStatuses:
        """Attested firmware statuses (read)."""
        ...


class FleetSettings(Protocol):
    """Whether audit records are exported and where alerts go (the composition root
    answers from the installation's settings)."""

    def channels(self) -> FleetChannels:
        """The fleet's audit export and alert channels, now."""
        ...


class StaticChannels:
    """Fleet settings fixed at start-up (the composition root reads them from config)."""

    def __init__(self, channels: FleetChannels) -> None:
        self._channels = channels

    def channels(self) -> FleetChannels:
        """The channels given at start-up."""
        return self._channels


class NoDiscovery:
    """A ``discovery.ports.DiscoveryReader`` that has seen nothing: the register judges
    registered identities only (until discovery's reader is wired)."""

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """Nothing."""
        return iter(())

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """Nothing."""
        return iter(())

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """Nothing."""
        return iter(())

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """Nothing."""
        return []

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """Nothing."""
        return []
