"""Risk register value types: factors, their hits with evidence, entries, acceptances,
and the snapshots of other domains' data the checks run over.

Times inside the checks are floats (seconds since the epoch, UTC), as in discovery: a
rebuild judges hundreds of thousands of identities and datetime arithmetic would be most
of it. What the API shows is ISO 8601.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotiam.detection.models import Severity
from iotiam.errors import InvalidInput
from iotiam.inventory.models import Criticality, DeviceClass

__all__ = ["Severity"]


class RiskFactor(enum.StrEnum):
    """Every reason an identity lands in the register (the REST contract's names)."""

    UNMANAGED = "unmanaged"
    UNKNOWN_ISSUER = "unknown-issuer"
    SHARED_CREDENTIAL = "shared-credential"
    NEVER_ROTATED = "never-rotated"
    EXPIRED_IN_USE = "expired-in-use"
    EXPIRING_NO_RENEWAL = "expiring-no-renewal"
    WEAK_KEY = "weak-key"
    DEFAULT_CREDENTIAL = "default-credential"
    REVOKED_IN_USE = "revoked-in-use"
    ZOMBIE = "zombie"
    DORMANT_VALID_CREDENTIALS = "dormant-valid-credentials"
    FIRMWARE_NONCOMPLIANT = "firmware-noncompliant"
    OPEN_FINDINGS = "open-findings"
    LOW_TRUST = "low-trust"
    OVER_PERMISSIVE_POLICY = "over-permissive-policy"
    CA_EXPIRING = "ca-expiring"
    CA_WEAK = "ca-weak"
    REVOKED_CA_TRUSTED = "revoked-ca-trusted"
    ACTIVE_UNDER_REVOKED_CA = "active-under-revoked-ca"
    CONFLICTING_CLIENT_ID = "conflicting-client-id"
    AUDIT_EXPORT_DISABLED = "audit-export-disabled"
    ALERT_CHANNELS_DISABLED = "alert-channels-disabled"

    @staticmethod
    def parse(text: str) -> RiskFactor:
        """``weak-key`` -> ``RiskFactor.WEAK_KEY``; ``InvalidInput`` names the choices."""
        try:
            return RiskFactor(text.strip())
        except ValueError:
            names = ", ".join(f.value for f in RiskFactor)
            raise InvalidInput(f"unknown risk factor {text[:60]!r}; one of {names}") from None


#: the usual severity of each factor; a check may raise it when its evidence is worse
#: (an RSA-512 key is critical where RSA-1024 is high)
FACTOR_SEVERITY: Mapping[RiskFactor, Severity] = {
    RiskFactor.UNMANAGED: Severity.HIGH,
    RiskFactor.UNKNOWN_ISSUER: Severity.HIGH,
    RiskFactor.SHARED_CREDENTIAL: Severity.CRITICAL,
    RiskFactor.NEVER_ROTATED: Severity.MEDIUM,
    RiskFactor.EXPIRED_IN_USE: Severity.HIGH,
    RiskFactor.EXPIRING_NO_RENEWAL: Severity.MEDIUM,
    RiskFactor.WEAK_KEY: Severity.HIGH,
    RiskFactor.DEFAULT_CREDENTIAL: Severity.CRITICAL,
    RiskFactor.REVOKED_IN_USE: Severity.CRITICAL,
    RiskFactor.ZOMBIE: Severity.HIGH,
    RiskFactor.DORMANT_VALID_CREDENTIALS: Severity.MEDIUM,
    RiskFactor.FIRMWARE_NONCOMPLIANT: Severity.HIGH,
    RiskFactor.OPEN_FINDINGS: Severity.MEDIUM,
    RiskFactor.LOW_TRUST: Severity.MEDIUM,
    RiskFactor.OVER_PERMISSIVE_POLICY: Severity.MEDIUM,
    RiskFactor.CA_EXPIRING: Severity.HIGH,
    RiskFactor.CA_WEAK: Severity.CRITICAL,
    RiskFactor.REVOKED_CA_TRUSTED: Severity.CRITICAL,
    RiskFactor.ACTIVE_UNDER_REVOKED_CA: Severity.CRITICAL,
    RiskFactor.CONFLICTING_CLIENT_ID: Severity.HIGH,
    RiskFactor.AUDIT_EXPORT_DISABLED: Severity.LOW,
    RiskFactor.ALERT_CHANNELS_DISABLED: Severity.MEDIUM,
}


class Subject(enum.StrEnum):
    """What a register entry is about."""

    DEVICE = "device"
    ASSET = "asset"
    CERTIFICATE = "certificate"
    PSK = "psk"
    CA = "ca"
    FLEET = "fleet"

    @staticmethod
    def parse(text: str) -> Subject:
        """``device`` -> ``Subject.DEVICE``; ``InvalidInput`` names the choices."""
        try:
            return Subject(text.strip())
        except ValueError:
            names = ", ".join(s.value for s in Subject)
            raise InvalidInput(f"unknown subject {text[:60]!r}; one of {names}") from None


#: bytes of the hash in an entry id (twice as many hex digits)
ENTRY_ID_DIGEST_BYTES = 10
_ENTRY_ID = re.compile("(?:{})-[0-9a-f]{{{}}}".format(
    "|".join(re.escape(s.value) for s in Subject), 2 * ENTRY_ID_DIGEST_BYTES))


def entry_id(subject: Subject, subject_id: str) -> str:
    """A stable, URL-safe id for the entry of ``subject_id``: the same identity keeps its
    id across rebuilds, so an acceptance made on it survives them."""
    digest = hashlib.blake2b(f"{subject}\x1f{subject_id}".encode(),
                             digest_size=ENTRY_ID_DIGEST_BYTES).hexdigest()
    return f"{subject}-{digest}"


def is_entry_id(text: str) -> bool:
    """Whether ``text`` has the shape :func:`entry_id` gives (``psk-`` and 20 hex digits)."""
    return _ENTRY_ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class FactorHit:
    """One factor found on one identity, with the values that prove it."""

    factor: RiskFactor
    severity: Severity
    summary: str
    #: JSON-safe (str, int, float, bool, None, lists and dicts of them)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: since when it holds, when known (seconds since the epoch)
    since: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form (API, export, storage)."""
        return {"factor": self.factor.value, "severity": self.severity.label,
                "summary": self.summary, "evidence": dict(self.evidence),
                "since": self.since}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> FactorHit:
        """Back from :meth:`to_json` (stored rows)."""
        return FactorHit(RiskFactor(data["factor"]), Severity.parse(data["severity"]),
                         str(data["summary"]), dict(data.get("evidence") or {}),
                         data.get("since"))


def when(seconds: float | None) -> str | None:
    """A time in evidence as the rest of the API writes one: ISO 8601 in UTC with ``Z``
    (the text ``GET /v1/discovery/assets`` gives for the same time)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def hit(factor: RiskFactor, summary: str, evidence: Mapping[str, Any] | None = None, *,
        severity: Severity | None = None, since: float | None = None) -> FactorHit:
    """A hit at the factor's usual severity unless ``severity`` says otherwise."""
    return FactorHit(factor, severity or FACTOR_SEVERITY[factor], summary,
                     dict(evidence or {}), since)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """An admin accepted one factor of one entry until ``expires_at``, for a reason."""

    entry_id: str
    factor: RiskFactor
    reason: str
    expires_at: float
    by: str
    created_at: float
    #: the entry's org path, so acceptances are scoped like entries (G9)
    org_path: str = "/root/"

    def live(self, now: float) -> bool:
        """Whether it still hides its factor (an expired one stops hiding it)."""
        return self.expires_at > now


@dataclass(frozen=True)
class Weighting:
    """What the score knows of the identity an entry is about (see ``scoring.py``)."""

    criticality: Criticality | None = None
    device_class: DeviceClass | None = None
    #: may publish (write) somewhere, per the policies that apply to it
    can_write: bool = False


@dataclass(frozen=True)
class RiskEntry:
    """One identity of the register, with every factor found on it."""

    id: str
    subject: Subject
    subject_id: str
    org_path: str
    site: str | None
    #: the device type (the holder's, for a credential), when known
    type: str | None
    score: int
    #: every factor found, accepted ones included (``visible`` hides those)
    factors: tuple[FactorHit, ...]
    accepted: tuple[Acceptance, ...] = ()
    weighting: Weighting = field(default_factory=Weighting)

    def visible(self, now: float) -> tuple[FactorHit, ...]:
        """The factors no live acceptance hides."""
        hidden = {a.factor for a in self.accepted if a.live(now)}
        return tuple(h for h in self.factors if h.factor not in hidden)


@dataclass(frozen=True)
class EntryFilter:
    """What ``GET /v1/risk/entries`` narrows by."""

    factor: RiskFactor | None = None
    site: str | None = None
    type: str | None = None
    #: an org path inside the caller's scope (``/root/acme/``)
    org_path: str | None = None
    subject: Subject | None = None
    min_score: int | None = None

    def __post_init__(self) -> None:
        # refused here, before a streamed export starts: PostgreSQL refuses a NUL byte
        # in text, and a refusal once the answer has begun can only break it
        for name in ("site", "type", "org_path"):
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                raise InvalidInput(f"the {name.replace('_', ' ')} filter has a NUL byte")


@dataclass(frozen=True)
class RiskSummary:
    """Counts of the register as the caller may see it."""

    total: int
    by_factor: dict[str, int]
    by_severity: dict[str, int]
    managed: int
    unmanaged: int
    dormant: int
    zombie: int
    rebuilt_at: float | None


@dataclass(frozen=True)
class TrendPoint:
    """The counts of one rebuild: per factor, and the presence counts."""

    rebuild: int
    at: float
    counts: dict[str, int]


@dataclass(frozen=True)
class RebuildReport:
    """What one rebuild did."""

    rebuild: int
    started_at: float
    finished_at: float
    entries: int
    removed: int
    #: counts per factor and presence (``managed``, ``unmanaged``, ``dormant``, ``zombie``)
    counts: dict[str, int]


# -- what the checks read of other domains (built by the register from their stores) ----


@dataclass(frozen=True)
class RiskSettings:
    """The thresholds of the checks (``config.py`` may override each)."""

    #: a registered device nobody saw for this long, with a live credential, is dormant
    dormancy_seconds: float = 30 * 86400.0
    #: a trust score below this is low (0-100, ``response/scoring.py``)
    low_trust_below: int = 50
    #: a CA certificate expiring within this is flagged
    ca_expiry_seconds: float = 90 * 86400.0
    #: a PSK identity seen on at least this many devices and assets is a default one
    default_credential_holders: int = 3
    #: devices renew at this fraction of their certificate's lifetime (``agent``: ~2/3)
    renewal_fraction: float = 2 / 3

    def __post_init__(self) -> None:
        if not 3600.0 <= self.dormancy_seconds <= 3650 * 86400.0:
            raise InvalidInput("the dormancy period must be between 1 hour and 10 years")
        if not 0 <= self.low_trust_below <= 100:
            raise InvalidInput("the low-trust threshold must be between 0 and 100")
        if self.default_credential_holders < 2:
            raise InvalidInput("a default credential is one held by at least 2 identities")


@dataclass(frozen=True)
class CaFacts:
    """A CA iotiam runs, as the fleet checks need it (parsed from its certificate)."""

    id: str
    role: str
    subject: str
    not_after: float
    #: ``rsa:2048``, ``ec:secp256r1``, ``ed25519`` (``checks`` in ``credentials.py``)
    key: str
    signature_hash: str | None
    #: when its own issuer revoked it (None: not revoked)
    revoked_at: float | None = None


@dataclass(frozen=True)
class PolicyFacts:
    """One policy as the posture checks need it: its worst lint findings, and whether it
    grants publishing (write access)."""

    name: str
    #: ``(severity, code, statement)`` of its high and critical lint findings
    problems: tuple[tuple[str, str, str], ...]
    can_write: bool


@dataclass(frozen=True)
class FleetChannels:
    """Where the fleet's audit records and alerts go (``risk.ports.FleetSettings``)."""

    audit_export: bool
    alert_channels: tuple[str, ...]
