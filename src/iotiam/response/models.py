"""Response value types: stored findings, playbook rules, mitigations, trust scores."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iotiam.detection.models import (
    DEFAULT_EPISODE_GAP,
    FINDING_TRANSITIONS,
    DetectionMode,
    Finding,
    FindingState,
    FindingType,
    Severity,
)
from iotiam.errors import Conflict, InvalidInput
from iotiam.inventory.models import DeviceState


class Action(enum.StrEnum):
    """What a playbook may do about a finding."""

    #: signed webhook and syslog, in monitor and enforce modes
    ALERT = "alert"
    #: move the device to ``quarantined`` (reversible), enforce mode only
    QUARANTINE = "quarantine"
    #: revoke every credential of the device (final, G4), enforce mode only
    REVOKE = "revoke"


@dataclass(frozen=True)
class PlaybookRule:
    """``finding_type`` (None: any) at ``min_severity`` or worse -> ``actions``."""

    finding_type: FindingType | None
    min_severity: Severity
    actions: tuple[Action, ...]

    def matches(self, finding: Finding) -> bool:
        """Whether the rule applies to ``finding``."""
        return self.applies_to(finding.type, finding.severity)

    def applies_to(self, finding_type: FindingType, severity: Severity) -> bool:
        """Whether the rule applies to findings of this type and severity."""
        return ((self.finding_type is None or self.finding_type is finding_type)
                and severity >= self.min_severity)

    def to_json(self) -> dict[str, Any]:
        """The document form."""
        return {"finding_type": self.finding_type.value if self.finding_type else "*",
                "min_severity": self.min_severity.label,
                "actions": [a.value for a in self.actions]}

    @staticmethod
    def from_json(data: object, where: str) -> PlaybookRule:
        """Parse one rule; ``InvalidInput`` says which and why."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{where}: a rule must be an object")
        unknown = set(data) - {"finding_type", "min_severity", "actions"}
        if unknown:
            raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kind = data.get("finding_type", "*")
        finding_type: FindingType | None = None
        if kind != "*":
            try:
                finding_type = FindingType(kind)
            except ValueError:
                names = ", ".join(t.value for t in FindingType)
                raise InvalidInput(f"{where}: unknown finding_type {kind!r}; '*' or one of "
                                   f"{names}") from None
        severity = data.get("min_severity", "low")
        if not isinstance(severity, str):
            raise InvalidInput(f"{where}: min_severity must be a string")
        actions = data.get("actions")
        if not isinstance(actions, list) or not actions:
            raise InvalidInput(f"{where}: actions must be a non-empty list")
        parsed: list[Action] = []
        for action in actions:
            try:
                parsed.append(Action(action))
            except ValueError:
                names = ", ".join(a.value for a in Action)
                raise InvalidInput(f"{where}: unknown action {action!r}; one of {names}") \
                    from None
        try:
            level = Severity.parse(severity)
        except InvalidInput as e:
            raise InvalidInput(f"{where}: {e}") from None
        return PlaybookRule(finding_type, level, tuple(dict.fromkeys(parsed)))


@dataclass(frozen=True)
class Playbook:
    """Rules per finding type and severity; a finding gets the union of matching actions."""

    rules: tuple[PlaybookRule, ...]

    def actions_for(self, finding: Finding) -> frozenset[Action]:
        """Every action the matching rules name."""
        return self.actions_of(finding.type, finding.severity)

    def actions_of(self, finding_type: FindingType, severity: Severity) -> frozenset[Action]:
        """Every action the rules matching this type and severity name."""
        return frozenset(a for rule in self.rules if rule.applies_to(finding_type, severity)
                         for a in rule.actions)

    def to_json(self) -> dict[str, Any]:
        """The document form."""
        return {"rules": [r.to_json() for r in self.rules]}

    @staticmethod
    def from_json(data: object) -> Playbook:
        """Parse ``{"rules": [...]}``."""
        if not isinstance(data, Mapping) or set(data) != {"rules"} \
                or not isinstance(data["rules"], list):
            raise InvalidInput('a playbook is {"rules": [...]}')
        if len(data["rules"]) > 200:
            raise InvalidInput("a playbook has at most 200 rules")
        return Playbook(tuple(PlaybookRule.from_json(r, f"rule {i + 1}")
                              for i, r in enumerate(data["rules"])))


#: alert on everything; quarantine on high and critical findings and non-compliant
#: firmware; revocation (final) only when an admin writes it into the playbook
DEFAULT_PLAYBOOK = Playbook((
    PlaybookRule(None, Severity.LOW, (Action.ALERT,)),
    PlaybookRule(None, Severity.HIGH, (Action.QUARANTINE,)),
    PlaybookRule(FindingType.FIRMWARE_NONCOMPLIANT, Severity.LOW, (Action.QUARANTINE,)),
))


@dataclass(frozen=True)
class StoredFinding:
    """A finding as the response layer keeps it: with an id, a state and what was done."""

    id: str
    finding: Finding
    org_path: str
    state: FindingState
    mode: DetectionMode
    raised_at: datetime
    updated_at: datetime
    #: how many times its episode was raised again while this one was live
    repeats: int = 0
    last_seen_at: datetime | None = None
    #: the time of the latest event folded into it (None: only the first, ``finding.at``)
    last_event_at: float | None = None
    actions: tuple[str, ...] = ()
    note: str | None = None
    updated_by: str | None = None

    def can_move_to(self, target: FindingState) -> None:
        """Raise ``Conflict`` unless the lifecycle allows ``state -> target``."""
        if target not in FINDING_TRANSITIONS[self.state]:
            allowed = ", ".join(sorted(FINDING_TRANSITIONS[self.state])) or "none (final)"
            raise Conflict(f"finding {self.id} is {self.state}; it can move to: {allowed}")


    @property
    def episode_end(self) -> float:
        """The time of the latest event of its episode so far."""
        return self.last_event_at if self.last_event_at is not None else self.finding.at

    def same_episode(self, finding: Finding) -> bool:
        """Whether ``finding`` (of this one's subject and type) belongs to its episode:
        its event came within the episode's gap of the episode's events."""
        gap = finding.episode_gap if finding.episode_gap is not None else DEFAULT_EPISODE_GAP
        return self.finding.at - gap <= finding.at <= self.episode_end + gap


@dataclass(frozen=True)
class EventBatch:
    """One upload of events (``POST /v1/events``): the findings its events raise are
    linked to it, whenever they are raised (in process, or later by a stream worker)."""

    id: str
    org_path: str
    created_at: datetime
    created_by: str
    events: int


@dataclass(frozen=True)
class WouldActCount:
    """Findings of one type, device type and severity raised in one mode since a time;
    ``deviceless`` ones name no device (no playbook action but an alert reaches them)."""

    finding_type: FindingType
    device_type: str | None
    severity: Severity
    mode: DetectionMode
    deviceless: bool
    findings: int
    repeats: int


@dataclass
class WouldActTally:
    """How often the playbook acted, or would have in enforce mode, on some findings."""

    findings: int = 0
    repeats: int = 0
    alert: int = 0
    quarantine: int = 0
    revoke: int = 0

    def count(self, group: WouldActCount, actions: frozenset[Action]) -> None:
        """Add a group of findings the playbook names ``actions`` for; quarantine and
        revoke reach only findings that name a device (as in enforce mode)."""
        self.findings += group.findings
        self.repeats += group.repeats
        if Action.ALERT in actions:
            self.alert += group.findings
        if not group.deviceless:
            if Action.QUARANTINE in actions:
                self.quarantine += group.findings
            if Action.REVOKE in actions:
                self.revoke += group.findings

    def to_json(self) -> dict[str, int]:
        """The JSON form."""
        return {"findings": self.findings, "repeats": self.repeats,
                "would_alert": self.alert, "would_quarantine": self.quarantine,
                "would_revoke": self.revoke}


@dataclass(frozen=True)
class Mitigation:
    """An action taken on a device because of a finding, and how to undo it."""

    id: str
    finding_id: str
    device_id: str
    action: Action
    #: the device state before a quarantine (restored when it is lifted)
    previous_state: DeviceState | None
    applied_at: datetime
    lifted_at: datetime | None = None
    lifted_by: str | None = None


@dataclass(frozen=True)
class TrustFactor:
    """One reason a device's trust score moved."""

    name: str
    delta: int
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"factor": self.name, "delta": self.delta, "detail": self.detail}


@dataclass(frozen=True)
class TrustScore:
    """0-100 (100: nothing against the device) with the factors that moved it."""

    device_id: str
    score: int
    factors: Sequence[TrustFactor] = field(default_factory=tuple)
    firmware_compliant: bool | None = None
    computed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"device_id": self.device_id, "score": self.score,
                "firmware_compliant": self.firmware_compliant,
                "computed_at": self.computed_at.isoformat() if self.computed_at else None,
                "factors": [f.to_json() for f in self.factors]}


class CredentialKind(enum.StrEnum):
    """The credentials a set revocation takes away."""

    CERTIFICATE = "certificate"
    PSK = "psk"
    OAUTH_CLIENT = "oauth-client"


@dataclass(frozen=True, slots=True)
class LiveCredential:
    """A credential of a selected device that still works (a certificate issued and not
    expired, an active PSK or OAuth client)."""

    kind: CredentialKind
    id: str  # the serial in hex, the PSK's id or the client id
    device_id: str
    issuer_id: str | None = None
    serial: int | None = None


@dataclass(frozen=True)
class SetRevocationReport:
    """What a set revocation took away (or, dry run, would take away)."""

    filter: str
    dry_run: bool
    devices: int
    certificates: int
    psks: int
    oauth_clients: int
    #: live broker sessions of the selected devices (None: no broker session view)
    sessions: int | None
    reason: str
    batches: int = 0
    set_id: str | None = None
    #: SHA-256 of the selected device ids, sorted, one per line (the audit names it)
    devices_sha256: str = ""
    sample: tuple[str, ...] = ()
    #: a drill: the writes were made in a transaction that was rolled back
    drill: bool = False
    #: a drill's check: credentials the selected devices would still hold afterwards
    left_live: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The API's and CLI's JSON form."""
        return {"filter": self.filter, "dry_run": self.dry_run, "drill": self.drill,
                "left_live": self.left_live, "devices": self.devices,
                "certificates": self.certificates, "psks": self.psks,
                "oauth_clients": self.oauth_clients, "sessions": self.sessions,
                "reason": self.reason, "batches": self.batches, "set_id": self.set_id,
                "devices_sha256": self.devices_sha256, "sample": list(self.sample)}
