"""What the compliance report reads, each as the narrow call the owning domain's
service already answers (the composition root hands the services in)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from iotiam.attestation.models import FirmwareImage, FirmwareRule, FirmwareSigner
from iotiam.audit.models import StoredCheckpoint
from iotiam.detection.models import DetectionMode
from iotiam.inventory.models import DeviceType, InventorySummary
from iotiam.kernel import Principal
from iotiam.policy.models import StoredPolicy
from iotiam.response.models import StoredFinding
from iotiam.risk.models import RiskSummary


class FleetCounts(Protocol):
    """The inventory's maintained counts (``GET /v1/inventory``)."""

    def summary(self, actor: Principal, *, rotation_age: timedelta,
                expiring_within: timedelta | None = None) -> InventorySummary:
        """Counts by state, type and credential status of the caller's subtree."""
        ...

    def list_device_types(self) -> list[DeviceType]:
        """Every device type."""
        ...


class RegisterCounts(Protocol):
    """The risk register's counts per factor (``GET /v1/risk/summary``)."""

    def summary(self, principal: Principal) -> RiskSummary:
        """Counts of the caller's part of the register."""
        ...


class ListedPolicy(Protocol):
    """A policy as the catalogue lists it."""

    @property
    def stored(self) -> StoredPolicy:
        """Its latest version."""
        ...


class PolicyCatalogue(Protocol):
    """The policies the caller may see (``GET /v1/policies``)."""

    def list_policies(self, actor: Principal) -> Sequence[ListedPolicy]:
        """The latest version of every visible policy."""
        ...


class FirmwareCatalogue(Protocol):
    """Signers, signed images and minimum-firmware rules (``/v1/firmware/…``)."""

    def list_signers(self, actor: Principal) -> list[FirmwareSigner]:
        """Signers in the caller's subtree."""
        ...

    def list_images(self, actor: Principal, device_type: str | None = None
                    ) -> list[FirmwareImage]:
        """Images in the caller's subtree."""
        ...

    def list_rules(self, actor: Principal) -> list[FirmwareRule]:
        """Rules set in the caller's subtree."""
        ...


class FindingLog(Protocol):
    """Findings and the detection mode of each device type (``/v1/findings``)."""

    def list_findings(self, actor: Principal, *, state: str | None = None,
                      device_id: str | None = None, finding_type: str | None = None,
                      before_id: str | None = None, limit: int = 100) -> list[StoredFinding]:
        """Findings under the caller's subtree, newest first."""
        ...

    def mode_of(self, device_type: str | None) -> DetectionMode:
        """The detection mode of a device type."""
        ...


class Checkpoints(Protocol):
    """The audit chain's signed checkpoints (``GET /v1/audit/checkpoint``)."""

    def latest_checkpoint(self, actor: Principal) -> StoredCheckpoint | None:
        """The latest signed checkpoint (root admins)."""
        ...
