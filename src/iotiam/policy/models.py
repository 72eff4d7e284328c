"""Policy value types: documents, attachments, subjects, request context and decisions."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from iotiam.clock import Clock
from iotiam.errors import Forbidden, InvalidInput
from iotiam.inventory.models import Device, DeviceState
from iotiam.policy.actions import ACTION_KINDS, ResourceKind, expand_action
from iotiam.policy.conditions import Conditions, IpNetwork, network_masks
from iotiam.policy.variables import variable_values

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Effect(enum.StrEnum):
    """What a matching statement does."""

    ALLOW = "allow"
    DENY = "deny"


# -- documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One rule: effect, actions, resources per kind and conditions.

    A resource list that is None does not restrict; if all three are None the statement
    covers every resource of its actions. If any list is given, the statement covers
    only the actions whose kind has a list (``mqtt:*`` with only ``topics`` does not
    cover ``mqtt:connect``).
    """

    effect: Effect
    actions: tuple[str, ...]
    topics: tuple[str, ...] | None = None
    clients: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    conditions: Conditions = field(default_factory=Conditions)
    sid: str | None = None
    #: where the statement starts in its YAML source (diagnostics only)
    line: int | None = field(default=None, compare=False)

    @property
    def restricted(self) -> bool:
        """Whether any resource list is given."""
        return self.topics is not None or self.clients is not None or self.paths is not None

    def resources(self, kind: ResourceKind) -> tuple[str, ...] | None:
        """The resource patterns of ``kind`` (None: unrestricted or not covered)."""
        if kind is ResourceKind.TOPIC:
            return self.topics
        if kind is ResourceKind.CLIENT:
            return self.clients
        return self.paths

    def covered_actions(self) -> tuple[str, ...]:
        """The concrete actions this statement covers (wildcards expanded)."""
        seen: dict[str, None] = {}
        for pattern in self.actions:
            for action in expand_action(pattern):
                if not self.restricted or self.resources(ACTION_KINDS[action]) is not None:
                    seen[action] = None
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        """The document form."""
        data: dict[str, Any] = {}
        if self.sid:
            data["sid"] = self.sid
        data["effect"] = str(self.effect)
        data["actions"] = list(self.actions)
        for kind in ResourceKind:
            values = self.resources(kind)
            if values is not None:
                data[kind.value] = list(values)
        if not self.conditions.empty:
            data["conditions"] = self.conditions.to_dict()
        return data


@dataclass(frozen=True)
class PolicyDocument:
    """A named, versioned list of statements. ``guardrail`` denies bound the subtree."""

    name: str
    version: int
    statements: tuple[Statement, ...]
    description: str = ""
    #: its deny statements refuse, at write time, overlapping allows below its attachment
    guardrail: bool = False

    def label(self, index: int) -> str:
        """How statement ``index`` (0-based) is named in messages: its sid or its number."""
        sid = self.statements[index].sid
        return sid if sid else str(index + 1)

    def to_dict(self) -> dict[str, Any]:
        """The document form (parse_policy of its JSON gives back an equal document)."""
        data: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            data["description"] = self.description
        if self.guardrail:
            data["guardrail"] = True
        data["statements"] = [s.to_dict() for s in self.statements]
        return data


@dataclass(frozen=True)
class StoredPolicy:
    """A version of a policy as kept by storage: the document and who owns it."""

    document: PolicyDocument
    #: org path of the owning org unit: only admins whose scope contains it may change it
    owner_path: str
    source: str
    created_at: datetime
    created_by: str


# -- attachments --------------------------------------------------------------------------


class TargetKind(enum.StrEnum):
    """What a policy can be attached to."""

    ORG_UNIT = "org-unit"
    DEVICE_TYPE = "device-type"
    GROUP = "group"
    DEVICE = "device"


@dataclass(frozen=True, slots=True)
class AttachmentTarget:
    """An org unit, device type, group or single device, by id (type: by name)."""

    kind: TargetKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """Policy ``policy`` (its latest version) applies to ``target``.

    ``scope`` is the org path the attachment lives in: the org unit's own path, the
    group's or device's org path, or for a device type the subtree whose devices of that
    type it applies to (device types are global; their attachments are not).
    """

    policy: str
    target: AttachmentTarget
    scope: str


# -- who asks, and in which situation -----------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A known site: its time zone and its networks (named in conditions by ``name``)."""

    name: str
    timezone: str
    networks: tuple[IpNetwork, ...] = ()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise InvalidInput(f"site {self.name!r}: unknown time zone {self.timezone!r}") from e

    @cached_property
    def zone(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)

    @cached_property
    def masks(self) -> tuple[tuple[int, int, int], ...]:
        """The networks as integer masks, for fast membership tests."""
        return network_masks(self.networks)


class _Memoised:
    """Slots where the policy engine memoises per-subject work; never dataclass fields, so
    equality, ``repr``, ``replace`` and ``asdict`` do not see them."""

    __slots__ = ("_memo", "_values")
    _memo: Any
    _values: dict[str, str | None] | None



@dataclass(frozen=True)
class DevicePosture:
    """What the detection layer knows of a device, as policy conditions read it."""

    trust_score: float | None
    firmware_compliant: bool | None
    #: whether the device holds a valid credential (an unrevoked, unexpired certificate,
    #: a live PSK or an active OAuth client with its own keys); None: not looked up
    credentialed: bool | None = None

@dataclass(frozen=True, slots=True)
class Subject(_Memoised):
    """The device a decision is about, with the groups it belongs to (immutable).

    The engine memoises, per subject object, which compiled view applies, as
    ``variables`` memoises the variable values.
    """

    device_id: str
    type_name: str
    org_unit_id: str
    org_path: str
    state: DeviceState = DeviceState.ACTIVE
    site: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    #: the device's stored trust score and firmware verdict (None: unknown); a request
    #: context that carries its own values wins
    trust_score: float | None = None
    firmware_compliant: bool | None = None
    #: False: the device holds no valid credential, so it is denied everything (G3);
    #: None: not a question here (a hand-built subject, a service client)
    credentialed: bool | None = None

    __hash__ = None  # type: ignore[assignment]  # attributes is a mapping

    def __post_init__(self) -> None:
        object.__setattr__(self, "_memo", None)
        object.__setattr__(self, "_values", None)

    @staticmethod
    def from_device(device: Device, groups: Iterable[str] = (),
                    posture: DevicePosture | None = None) -> Subject:
        """The subject of an inventory device (with its posture, if known)."""
        return Subject(
            device_id=device.id,
            type_name=device.type_name,
            org_unit_id=device.org_unit_id,
            org_path=device.org_path,
            state=device.state,
            site=device.site,
            attributes=dict(device.attributes),
            groups=frozenset(groups),
            trust_score=posture.trust_score if posture else None,
            firmware_compliant=posture.firmware_compliant if posture else None,
            credentialed=posture.credentialed if posture else None,
        )

    @property
    def variables(self) -> dict[str, str | None]:
        """Every policy variable's value for this subject (None: missing or unsafe)."""
        values: dict[str, str | None] | None = getattr(self, "_values", None)  # unpickled: unset
        if values is None:
            values = variable_values(
                device_id=self.device_id,
                type_name=self.type_name,
                site=self.site,
                org_unit_id=self.org_unit_id,
                attributes=self.attributes,
            )
            object.__setattr__(self, "_values", values)
        return values


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The situation of a request. None means unknown (and fails closed in conditions)."""

    at: datetime
    source_ip: IpAddress | None = None
    trust_score: float | None = None
    firmware_compliant: bool | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise InvalidInput("a request context needs an aware datetime")

    @staticmethod
    def now(
        clock: Clock,
        *,
        source_ip: str | IpAddress | None = None,
        trust_score: float | None = None,
        firmware_compliant: bool | None = None,
    ) -> RequestContext:
        """A context at the clock's current time."""
        if isinstance(source_ip, str):
            try:
                source_ip = ipaddress.ip_address(source_ip)
            except ValueError as e:
                raise InvalidInput(f"source address {source_ip!r} is not an IP address") from e
        return RequestContext(clock.now(), source_ip, trust_score, firmware_compliant)


# -- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementRef:
    """Which statement of which policy version, attached where, took part in a decision."""

    policy: str
    version: int
    statement: str  # its sid, or its 1-based number
    index: int
    effect: Effect
    target: AttachmentTarget | None = None

    def __str__(self) -> str:
        via = f" via {self.target}" if self.target else ""
        return f"policy {self.policy!r} v{self.version} statement {self.statement!r}{via}"


@dataclass(frozen=True, slots=True)
class Permit:
    """The request is allowed; ``matched`` are the allow statements that grant it."""

    matched: tuple[StatementRef, ...]
    allowed: ClassVar[bool] = True

    @property
    def reason(self) -> str:
        """Which statements allowed it."""
        return "allowed by " + "; ".join(str(ref) for ref in self.matched)


@dataclass(frozen=True, slots=True)
class Deny:
    """The request is refused; ``matched`` is the deny statement, empty for default deny."""

    reason: str
    matched: tuple[StatementRef, ...] = ()
    allowed: ClassVar[bool] = False


Decision = Permit | Deny


@dataclass(frozen=True, slots=True)
class EffectiveStatement:
    """A statement as it applies to one device: variables substituted, denies shown.

    ``resource`` None: any resource. ``denied_by`` lists the deny statements that take
    away some (``fully_denied``: all, when unconditional) of what an allow grants.
    ``note`` explains a variable without a safe value.
    """

    ref: StatementRef
    effect: Effect
    actions: tuple[str, ...]
    resource: str | None
    conditions: Conditions
    denied_by: tuple[StatementRef, ...] = ()
    fully_denied: bool = False
    note: str = ""

    def __str__(self) -> str:
        target = self.resource if self.resource is not None else "any resource"
        text = f"{self.effect} {', '.join(self.actions)} on {target!r} ({self.ref})"
        if not self.conditions.empty:
            text += f" if {self.conditions.to_dict()}"
        if self.denied_by:
            how = "entirely" if self.fully_denied else "partly"
            text += f" — {how} overridden by " + "; ".join(str(r) for r in self.denied_by)
        if self.note:
            text += f" [{self.note}]"
        return text


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """Everything that applies to one device, denies first."""

    device_id: str
    statements: tuple[EffectiveStatement, ...]
    blocked: str | None = None  # why the device may do nothing at all

    def lines(self) -> list[str]:
        """One line per statement, for a CLI."""
        if self.blocked:
            return [f"nothing: {self.blocked}"]
        return [str(s) for s in self.statements]


# -- lint and broker ----------------------------------------------------------------------


class Severity(enum.StrEnum):
    """How bad a lint finding is."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One overly permissive (or suspicious) thing in a policy."""

    severity: Severity
    code: str
    statement: str  # sid or 1-based number
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.severity}: {where}statement {self.statement}: {self.message} [{self.code}]"


# -- errors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy document, located by line (YAML) and field path."""

    message: str
    line: int | None = None
    where: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"line {self.line}: {text}" if self.line else text


class PolicySyntaxError(InvalidInput):
    """A policy document that cannot be stored; ``problems`` lists every issue found."""

    kind = "invalid-policy"
    title = "Invalid policy document"

    def __init__(self, problems: list[Problem]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}", problems=[str(p) for p in problems])
        self.problems = problems


@dataclass(frozen=True, slots=True)
class GuardrailConflict:
    """A candidate allow statement that overlaps a guardrail's deny."""

    statement: str  # label of the refused statement
    action: str
    guardrail: StatementRef
    guardrail_scope: str
    overlap: str  # the resources that overlap, for the message

    def __str__(self) -> str:
        return (f"statement {self.statement} would allow {self.action} on {self.overlap}, "
                f"which {self.guardrail} (guardrail at {self.guardrail_scope}) denies")


class GuardrailViolation(Forbidden):
    """A write that would grant what a parent guardrail denies."""

    kind = "guardrail-violation"
    title = "Refused by a guardrail"

    def __init__(self, conflicts: list[GuardrailConflict]) -> None:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        super().__init__(f"{conflicts[0]}{more}", conflicts=[str(c) for c in conflicts])
        self.conflicts = conflicts
