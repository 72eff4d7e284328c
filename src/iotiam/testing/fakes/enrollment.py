"""The enrollment stores in memory (``iotiam.enrollment.ports``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.enrollment.models import (
    ClaimToken,
    EnrollmentRequest,
    ManifestEntry,
    Manufacturer,
    RequestStatus,
)
from iotiam.errors import Conflict
from iotiam.inventory.models import DeviceState
from iotiam.testing.fakes.inventory import MemoryDeviceStore, MemoryGroupStore
from iotiam.testing.fakes.memory import MemoryStore, under


@dataclass
class MemoryClaimTokenStore(MemoryStore):
    """``ClaimTokenStore``: tokens by id, in creation order."""

    tokens: dict[str, ClaimToken] = field(default_factory=dict)

    def add(self, token: ClaimToken) -> None:
        """Store a new token (Conflict if the id exists)."""
        if token.id in self.tokens:
            raise Conflict(f"claim {token.id} exists")
        self.tokens[token.id] = token

    def get(self, token_id: str) -> ClaimToken | None:
        """One token by id."""
        return self.tokens.get(token_id)

    def redeem(self, token_id: str, at: datetime) -> bool:
        """Mark used if still unused and unexpired; True for exactly one caller (G8)."""
        token = self.tokens.get(token_id)
        if token is None or token.used_at is not None or token.expires_at <= at:
            return False
        self.tokens[token_id] = replace(token, used_at=at)
        return True

    def for_device(self, device_id: str) -> list[ClaimToken]:
        """Every token of a device, oldest first."""
        return sorted((t for t in self.tokens.values() if t.device_id == device_id),
                      key=lambda t: t.created_at)

    def expire_for_device(self, device_id: str, at: datetime) -> int:
        """End every unused, unexpired token of a device now; return how many."""
        ending = [t for t in self.tokens.values() if t.device_id == device_id
                  and t.used_at is None and t.expires_at > at]
        for token in ending:
            self.tokens[token.id] = replace(token, expires_at=at)
        return len(ending)


@dataclass
class MemoryManufacturerStore(MemoryStore):
    """``ManufacturerStore``: manufacturers by name."""

    manufacturers: dict[str, Manufacturer] = field(default_factory=dict)

    def add(self, manufacturer: Manufacturer) -> None:
        """Store a new manufacturer (Conflict if the name or certificate exists)."""
        if manufacturer.name in self.manufacturers or \
                self.by_fingerprint(manufacturer.fingerprint_sha256) is not None:
            raise Conflict(f"manufacturer {manufacturer.name} exists")
        self.manufacturers[manufacturer.name] = manufacturer

    def get(self, name: str) -> Manufacturer | None:
        """One manufacturer by name."""
        return self.manufacturers.get(name)

    def by_fingerprint(self, fingerprint_sha256: str) -> Manufacturer | None:
        """The manufacturer registered with this CA certificate."""
        return next((m for m in self.manufacturers.values()
                     if m.fingerprint_sha256 == fingerprint_sha256), None)

    def list_all(self) -> list[Manufacturer]:
        """Every manufacturer, by name."""
        return [self.manufacturers[n] for n in sorted(self.manufacturers)]

    def list_under(self, org_path: str) -> list[Manufacturer]:
        """Manufacturers inside the subtree at ``org_path``, by name."""
        return [m for m in self.list_all() if under(m.org_path, org_path)]


@dataclass
class MemoryManifestStore(MemoryStore):
    """``ManifestStore``: entries by serial (so a serial has one manufacturer)."""

    entries: dict[str, ManifestEntry] = field(default_factory=dict)

    def add(self, entry: ManifestEntry) -> None:
        """Store an entry (Conflict if the serial is listed already)."""
        if entry.serial in self.entries:
            raise Conflict(f"serial {entry.serial} is in a manifest already")
        self.entries[entry.serial] = entry

    def get(self, serial: str) -> ManifestEntry | None:
        """The entry of a serial."""
        return self.entries.get(serial)

    def count(self, manufacturer: str) -> int:
        """How many serials a manufacturer's manifest lists."""
        return sum(1 for e in self.entries.values() if e.manufacturer == manufacturer)

    def pin_key(self, serial: str, public_key_sha256: str) -> bool:
        """Record the key of an entry that has none; False if one is set."""
        entry = self.entries.get(serial)
        if entry is None or entry.public_key_sha256 is not None:
            return False
        self.entries[serial] = replace(entry, public_key_sha256=public_key_sha256)
        return True

    def mark_enrolled(self, serial: str, at: datetime) -> None:
        """Remember the first enrollment of a serial."""
        entry = self.entries.get(serial)
        if entry is not None and entry.enrolled_at is None:
            self.entries[serial] = replace(entry, enrolled_at=at)


@dataclass
class MemoryEnrollmentRequestStore(MemoryStore):
    """``EnrollmentRequestStore``: requests by id."""

    requests: dict[str, EnrollmentRequest] = field(default_factory=dict)

    def add(self, request: EnrollmentRequest) -> None:
        """Store a new request (Conflict if its id or CSR is already queued)."""
        if request.id in self.requests or self.by_csr(request.csr_sha256) is not None:
            raise Conflict("the enrollment request exists")
        self.requests[request.id] = request

    def get(self, request_id: str) -> EnrollmentRequest | None:
        """One request by id."""
        return self.requests.get(request_id)

    def by_csr(self, csr_sha256: str) -> EnrollmentRequest | None:
        """The request made with this CSR."""
        return next((r for r in self.requests.values() if r.csr_sha256 == csr_sha256), None)

    def count_pending(self, *, source: str | None = None) -> int:
        """Pending requests, in all or from one source."""
        return sum(1 for r in self.requests.values() if r.status is RequestStatus.PENDING
                   and (source is None or r.source == source))

    def drop_stale(self, before: datetime) -> int:
        """Delete pending requests created before ``before``; return how many."""
        stale = [r.id for r in self.requests.values()
                 if r.status is RequestStatus.PENDING and r.created_at < before]
        for request_id in stale:
            del self.requests[request_id]
        return len(stale)

    def touch(self, request_id: str, at: datetime) -> None:
        """Count a poll."""
        request = self.requests.get(request_id)
        if request is not None:
            self.requests[request_id] = replace(request, last_seen_at=at,
                                                polls=request.polls + 1)

    def decide(self, request_id: str, status: RequestStatus, at: datetime, by: str,
               note: str | None) -> bool:
        """Close a pending request; True only for the caller that closed it."""
        request = self.requests.get(request_id)
        if request is None or request.status is not RequestStatus.PENDING:
            return False
        self.requests[request_id] = replace(request, status=status, decided_at=at,
                                            decided_by=by, decision_note=note)
        return True

    def set_certificate(self, request_id: str, serial_hex: str) -> None:
        """Record the certificate an approval produced."""
        request = self.requests.get(request_id)
        if request is not None:
            self.requests[request_id] = replace(request, certificate_serial=serial_hex)

    def page(self, *, org_path: str, include_unscoped: bool, status: RequestStatus | None,
             limit: int) -> list[EnrollmentRequest]:
        """Requests under ``org_path`` (and unscoped ones when allowed), oldest first."""
        found = [r for r in self.requests.values()
                 if (under(r.org_path, org_path) or (include_unscoped and r.org_path is None))
                 and (status is None or r.status is status)]
        return sorted(found, key=lambda r: (r.created_at, r.id))[:limit]

    def close_for_device(self, device_id: str, at: datetime, by: str, note: str) -> int:
        """Reject every pending request of a device; return how many."""
        pending = [r.id for r in self.requests.values()
                   if r.device_id == device_id and r.status is RequestStatus.PENDING]
        for request_id in pending:
            self.decide(request_id, RequestStatus.REJECTED, at, by, note)
        return len(pending)


@dataclass
class MemoryOwnershipStore(MemoryStore):
    """``DeviceOwnership``: writes on the inventory's device and membership rows."""

    devices: MemoryDeviceStore
    groups: MemoryGroupStore

    def move_device(self, device_id: str, org_unit_id: str, org_path: str,
                    at: datetime) -> None:
        """Put a device into another org unit, back in the pending state."""
        self.devices.update(device_id, org_unit_id=org_unit_id, org_path=org_path,
                            state=DeviceState.PENDING, updated_at=at)

    def leave_groups_outside(self, device_id: str, org_path: str) -> list[str]:
        """Drop the device from every group not above ``org_path``; return their ids."""
        leaving = [g for g in self.groups.groups_of(device_id)
                   if not org_path.startswith(self.groups.groups[g].org_path)]
        for group_id in leaving:
            self.groups.memberships.discard((group_id, device_id))
        return leaving
