"""Inventory value types: org units, device types, devices, groups and lifecycle."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from iotiam.errors import Conflict, InvalidInput
from iotiam.inventory.bulk_import import readable_row, row_text, text_of

# Device ids become certificate CNs and MQTT usernames; keep them boring.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Names a device may never take: they are (or may become) privileged broker users. A
# certificate's CN is its MQTT username on the broker's identity listener, with no password.
RESERVED_DEVICE_IDS = frozenset({"admin", "root", "iotiam", "system", "mosquitto", "broker",
                                 "iotiam-broker-admin", "iotiam-broker"})
#: every id starting so is the system's (broker users, internal clients)
RESERVED_PREFIX = "iotiam-"


def is_reserved_id(value: str) -> bool:
    """Whether a device may not take this id (case-insensitive)."""
    lowered = value.lower()
    return lowered in RESERVED_DEVICE_IDS or lowered.startswith(RESERVED_PREFIX)


def is_identifier(value: object) -> bool:
    """Whether ``value`` is an id ``check_identifier`` accepts."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_identifier(value: str, what: str) -> str:
    """Validate an id: 1-128 chars of letters, digits, ``.``, ``_``, ``-``."""
    # fullmatch: ``$`` alone also matches before a trailing newline ("admin\n")
    if not is_identifier(value):
        raise InvalidInput(
            f"{what} {value!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


class OrgUnitKind(enum.StrEnum):
    """Levels of the org-unit tree."""

    ROOT = "root"
    TENANT = "tenant"
    BUSINESS_UNIT = "business-unit"
    SITE = "site"


# which kind may hang under which
ALLOWED_CHILDREN = {
    OrgUnitKind.ROOT: {OrgUnitKind.TENANT},
    OrgUnitKind.TENANT: {OrgUnitKind.BUSINESS_UNIT, OrgUnitKind.SITE},
    OrgUnitKind.BUSINESS_UNIT: {OrgUnitKind.SITE},
    OrgUnitKind.SITE: set(),
}


@dataclass(frozen=True)
class OrgUnit:
    """A node of the org-unit tree; ``path`` is ``/root/tenant/.../self/``."""

    id: str
    name: str
    kind: OrgUnitKind
    parent_id: str | None
    path: str
    created_at: datetime


class DeviceClass(enum.StrEnum):
    """Broad hardware classes; they drive default profiles and baselines."""

    CONSTRAINED_SENSOR = "constrained-sensor"
    SENSOR = "sensor"
    GATEWAY = "gateway"
    CONTROLLER = "controller"
    ACTUATOR = "actuator"
    CAMERA = "camera"
    OTHER = "other"


class Criticality(enum.StrEnum):
    """How much it hurts when a device of this type is compromised."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class RotationPolicy:
    """How a device type's credentials are rotated.

    ``certificate_lifetime`` overrides the profile's (None: the profile decides);
    devices renew at about 2/3 of it. ``grace_period`` is how long after expiry a
    device that was offline may still recover by proving it holds the old key.
    ``max_credential_age`` flags keys kept longer than this as never-rotated.
    """

    certificate_lifetime: timedelta | None = None
    grace_period: timedelta = timedelta(days=3)
    max_credential_age: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.certificate_lifetime is not None and not (
            timedelta(seconds=30) <= self.certificate_lifetime <= timedelta(days=825)
        ):
            raise InvalidInput("certificate lifetime must be between 30 s and 825 days")
        if not timedelta(0) <= self.grace_period <= timedelta(days=90):
            raise InvalidInput("grace period must be between 0 and 90 days")
        if not timedelta(minutes=1) <= self.max_credential_age <= timedelta(days=3650):
            raise InvalidInput("maximum credential age must be between 1 minute and 10 years")


@dataclass(frozen=True)
class DeviceType:
    """A kind of device in the fleet."""

    name: str
    device_class: DeviceClass
    criticality: Criticality
    description: str
    certificate_profile: str
    created_at: datetime
    rotation: RotationPolicy = field(default_factory=RotationPolicy)


class DeviceState(enum.StrEnum):
    """Device lifecycle states."""

    PENDING = "pending"
    ACTIVE = "active"
    QUARANTINED = "quarantined"
    SUSPENDED = "suspended"
    DECOMMISSIONED = "decommissioned"


TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = {
    DeviceState.PENDING: frozenset({DeviceState.ACTIVE, DeviceState.DECOMMISSIONED}),
    DeviceState.ACTIVE: frozenset(
        {DeviceState.QUARANTINED, DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED}
    ),
    DeviceState.QUARANTINED: frozenset(
        {DeviceState.ACTIVE, DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED}
    ),
    DeviceState.SUSPENDED: frozenset(
        {DeviceState.ACTIVE, DeviceState.QUARANTINED, DeviceState.DECOMMISSIONED}
    ),
    DeviceState.DECOMMISSIONED: frozenset(),
}


def check_transition(current: DeviceState, target: DeviceState) -> None:
    """Raise ``Conflict`` unless ``current -> target`` is a lifecycle edge."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final state)"
        raise Conflict(
            f"a device cannot go from {current} to {target}; allowed from {current}: {allowed}"
        )


@dataclass(frozen=True, init=False)
class Device:
    """A device in the inventory."""

    id: str
    type_name: str
    org_unit_id: str
    org_path: str
    state: DeviceState
    site: str | None
    location: str | None
    attributes: dict[str, str]
    created_at: datetime
    updated_at: datetime
    #: the last time the device stopped being trusted (it left ``active``, or every
    #: credential it had was revoked): an access token issued until then stays dead,
    #: even once the device is active again (G3, G4)
    tokens_not_before: datetime | None = None

    def __init__(self, id: str, type_name: str, org_unit_id: str, org_path: str,
                 state: DeviceState, site: str | None, location: str | None,
                 attributes: dict[str, str], created_at: datetime, updated_at: datetime,
                 tokens_not_before: datetime | None = None) -> None:
        # the fields filled at once: a frozen dataclass's generated constructor sets each
        # through ``object.__setattr__`` (2.5 times as long), and an import builds
        # thousands, then the scorer as many again when it reads them
        vars(self).update(
            id=id, type_name=type_name, org_unit_id=org_unit_id, org_path=org_path,
            state=state, site=site, location=location, attributes=attributes,
            created_at=created_at, updated_at=updated_at,
            tokens_not_before=tokens_not_before)

    def touched(self, at: datetime) -> Device:
        """This device with ``updated_at`` moved to ``at``. A batch makes thousands: the
        copy takes the fields at once (``replace`` was 4.6 times as long)."""
        copied = object.__new__(Device)
        copied.__dict__.update(self.__dict__, updated_at=at)
        return copied

    def trusts_token_issued_at(self, issued_at: float) -> bool:
        """Whether a token issued at ``issued_at`` (a NumericDate) postdates every distrust.

        ``iat`` has whole seconds: a token of the same second as the distrust counts as
        issued before it (a token refused once too often, never one accepted wrongly).
        """
        return self.tokens_not_before is None or \
            issued_at > self.tokens_not_before.timestamp()


#: the keys of an import row that are no free attribute
_DRAFT_KEYS = frozenset({"id", "type", "org", "site", "location", "attributes", "via"})
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, init=False)
class DeviceDraft:
    """What a caller supplies to register a device."""

    id: str
    type_name: str
    org_unit_id: str | None = None
    site: str | None = None
    location: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    #: the gateway the device is registered under (docs/gateways.md); None: none
    via: str | None = None

    def __init__(self, id: str, type_name: str, org_unit_id: str | None = None,
                 site: str | None = None, location: str | None = None,
                 attributes: dict[str, str] | None = None, via: str | None = None) -> None:
        # the fields filled at once, as ``Device``'s: an import builds one a row
        vars(self).update(
            id=id, type_name=type_name, org_unit_id=org_unit_id, site=site,
            location=location, attributes={} if attributes is None else attributes, via=via)

    @staticmethod
    def from_mapping(raw: Any) -> DeviceDraft:
        """Build a draft from an import row (CSV columns or a JSON object); its values
        must be strings, as ``POST /v1/devices`` requires (``bulk_import.text_of``)."""
        row = readable_row(raw)
        device_id = row_text(row, "id")
        type_name = row_text(row, "type")
        if not device_id:
            raise InvalidInput("missing 'id'")
        if not type_name:
            raise InvalidInput("missing 'type'")
        attributes: dict[str, str] = {}
        raw_attrs = row.get("attributes")
        if isinstance(raw_attrs, dict):
            for key, value in raw_attrs.items():
                # the place is named only when it fails (a bulk import checks 10,000s)
                attributes[str(key)] = value if isinstance(value, str) else text_of(
                    value, f"attributes.{key}")
        elif raw_attrs not in (None, ""):
            raise InvalidInput("'attributes' must be an object")
        # CSV: every other column ("attr.k" or plain) is a free attribute
        for key, value in row.items():
            if key in _DRAFT_KEYS or value in (None, ""):
                continue
            name = key[5:] if key.startswith("attr.") else key
            attributes[str(name)] = text_of(value, str(key))
        return DeviceDraft(
            id=device_id,
            type_name=type_name,
            org_unit_id=row_text(row, "org"),
            site=row_text(row, "site"),
            location=row_text(row, "location"),
            attributes=attributes,
            via=row_text(row, "via"),
        )


MAX_ATTRIBUTES = 64
#: the longest reason a state change records (API, CLI and console alike)
MAX_STATE_REASON = 500


def check_state_reason(reason: str) -> None:
    """A state change's reason is a short note for the audit trail."""
    if len(reason) > MAX_STATE_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_STATE_REASON} characters")


def check_attributes(attributes: dict[str, str]) -> None:
    """Attributes are a small flat map of short strings."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(f"at most {MAX_ATTRIBUTES} attributes per device")
    for key, value in attributes.items():
        if not _ATTRIBUTE_NAME.fullmatch(key):
            raise InvalidInput(f"attribute name {key!r} is not valid")
        if len(value) > 1024 or "\x00" in value:
            raise InvalidInput(f"attribute {key!r} is too long or has a NUL byte")


@dataclass(frozen=True)
class Group:
    """A named set of devices inside one org unit."""

    id: str
    name: str
    org_unit_id: str
    org_path: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class ImportRowResult:
    """Outcome of one row of a bulk import."""

    row: int
    device_id: str | None
    ok: bool
    error: str | None = None
    #: refused because the row's device id is held already (``IdNotAvailable``): the
    #: same row under another id may land
    id_taken: bool = False


class CredentialStatus(enum.StrEnum):
    """Credential hygiene of a device, for the inventory report."""

    NONE = "none"
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OVERDUE_ROTATION = "older-than-rotation-age"


@dataclass(frozen=True)
class InventorySummary:
    """Counts for ``iotiam inventory``."""

    total: int
    by_type: dict[str, int]
    by_state: dict[str, int]
    by_credential_status: dict[str, int]
    #: None: expiry judged by each certificate's renewal point only
    expiring_within_days: int | None
    rotation_age_days: int
    #: devices whose current key is older than their type's maximum credential age
    never_rotated: int = 0
    #: devices per site (``""``: none recorded) and per org unit path
    by_site: dict[str, int] = field(default_factory=dict)
    by_org: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceTally:
    """How many devices of one type, in one state, at one site live in one org unit."""

    org_path: str
    type_name: str
    state: str
    #: ``""`` when the devices record no site
    site: str
    count: int


@dataclass(frozen=True)
class CredentialTally:
    """Credential hygiene of the devices that hold or held a certificate."""

    #: devices per status; devices with no certificate are not counted (``none``)
    by_status: dict[str, int]
    #: devices whose live key is older than their type allows
    never_rotated: int
