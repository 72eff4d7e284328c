"""Policy use cases: write versions, attach and detach under delegation and guardrails,
diff and lint, and the in-process decision point over the current compiled set.

Every change commits with its audit record in one unit of work; refusals are audited
too. Storage, REST, CLI and broker sync are adapters around this.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import PolicyChanged, Published
from iotiam.clock import Clock
from iotiam.errors import Conflict, Forbidden, IdNotAvailable, InvalidInput, NotFound
from iotiam.kernel import Principal, Role, Transactions, within
from iotiam.policy.conditions import SITE_OF_DEVICE, IpNetwork
from iotiam.policy.diff import PolicyDiff, diff_policies
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.guardrails import Guardrail, check_delegation, check_guardrails
from iotiam.policy.lint import lint_policy
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Decision,
    EffectivePolicy,
    LintFinding,
    PolicyDocument,
    PolicySyntaxError,
    Problem,
    RequestContext,
    Site,
    StoredPolicy,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy, valid_site_name
from iotiam.policy.ports import PolicyUnitOfWork
from iotiam.policy.queries import decide_filter, effective_policy


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A stored policy version, what the linter thinks of it, and what changed."""

    stored: StoredPolicy
    findings: tuple[LintFinding, ...]
    diff: PolicyDiff | None  # None for the first version


@dataclass(frozen=True, slots=True)
class PolicyOverview:
    """A policy version with every stored version number and the attachments the caller
    may know of (its own subtree's and its ancestors', never another tenant's)."""

    stored: StoredPolicy
    versions: tuple[int, ...]
    attachments: tuple[Attachment, ...]


#: most networks one site may list
MAX_SITE_NETWORKS = 256


class PolicyAdministration:
    """Writing, attaching and reading policies on behalf of an admin; the
    ``DeviceAttachments`` an ownership transfer ends a device's old attachments with."""

    def __init__(self, uow: Transactions[PolicyUnitOfWork], clock: Clock, audit: Auditor) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit

    def write(
        self, actor: Principal, source: str | bytes, *, owner_path: str | None = None,
        fmt: str = "auto",
    ) -> WriteResult:
        """Store the next version of a policy, refusing what its author may not grant."""
        with self._audit.refusals(self._refusal(actor, "policy")):
            actor.require(Role.ADMIN, "writing policies")
            document = parse_policy(source, fmt=fmt)
            with self._uow() as uow:
                result = self._write(uow, actor, document, source, owner_path)
                uow.changes.record(PolicyChanged(document.name))
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.POLICY_WRITTEN, actor=actor.name,
                    org_path=result.stored.owner_path,
                    subject=f"policy:{document.name}",
                    details={"version": document.version,
                             "sha256": hashlib.sha256(result.stored.source.encode())
                             .hexdigest()}))
        return result

    def _write(self, uow: PolicyUnitOfWork, actor: Principal, document: PolicyDocument,
               source: str | bytes, owner_path: str | None) -> WriteResult:
        self._check_networks(uow, document)
        if owner_path is not None and not actor.sees(owner_path):
            # before any lookup: the same answer whether that org unit exists or not (G9)
            raise Forbidden(f"owner {owner_path!r} is outside your scope {actor.org_path}")
        latest = uow.policies.latest(document.name)
        if latest is not None and not may_know_of(actor, latest.owner_path):
            # another tenant's: its name is taken, by whom is not said (G9)
            raise IdNotAvailable("policy name", document.name)
        if latest is not None and owner_path not in (None, latest.owner_path):
            raise InvalidInput(f"policy {document.name!r} belongs to {latest.owner_path}; "
                               "its owner cannot change")
        if latest is None and owner_path is not None:
            unit = AttachmentTarget(TargetKind.ORG_UNIT, owner_path.strip("/").split("/")[-1])
            if uow.policy_targets.scope_of(unit) != owner_path:
                raise InvalidInput(f"owner {owner_path!r} is not the path of an org unit")
        owner = latest.owner_path if latest else owner_path or actor.org_path
        attached = uow.policy_attachments.for_policy(document.name)
        check_delegation(actor, owner_path=owner,
                         targets=[(a.target, a.scope) for a in attached])
        expected = latest.document.version + 1 if latest else 1
        if document.version != expected:
            current = f"is at version {latest.document.version}" if latest else "does not exist"
            raise Conflict(f"policy {document.name!r} {current}; the new document must be "
                           f"version {expected}, not {document.version}")
        check_guardrails(document, [a.scope for a in attached], self._guardrails(uow))
        text = source.decode("utf-8") if isinstance(source, bytes) else source
        stored = StoredPolicy(document, owner, text, self._clock.now(), actor.name)
        uow.policies.add(stored)
        return WriteResult(stored, tuple(lint_policy(document)),
                           diff_policies(latest.document, document) if latest else None)

    def attach(
        self, actor: Principal, policy: str, target: AttachmentTarget, *,
        scope: str | None = None,
    ) -> Attachment:
        """Attach the latest version of ``policy`` to ``target``.

        ``scope`` matters for device types only (they are global): the subtree whose
        devices of that type get the policy; it defaults to the caller's own scope.
        """
        with self._audit.refusals(self._refusal(actor, f"policy:{policy[:128]}")):
            actor.require(Role.ADMIN, "attaching policies")
            with self._uow() as uow:
                attachment = self._attach(uow, actor, policy, target, scope)
                uow.changes.record(PolicyChanged(policy))
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.POLICY_ATTACHED, actor=actor.name, org_path=attachment.scope,
                    subject=f"policy:{policy}",
                    details={"target": str(target), "scope": attachment.scope}))
        return attachment

    def _attach(self, uow: PolicyUnitOfWork, actor: Principal, policy: str,
                target: AttachmentTarget, scope: str | None) -> Attachment:
        stored = self._visible(uow, actor, policy)
        where = uow.policy_targets.scope_of(target)
        if where is None or not may_know_of(actor, where):
            raise NotFound(f"{target} not found")  # another tenant's: do not reveal it
        if target.kind is TargetKind.DEVICE_TYPE:
            where = scope or actor.org_path
        elif scope not in (None, where):
            raise InvalidInput(f"{target} lives at {where}; only device-type attachments "
                               "take a scope")
        check_delegation(actor, owner_path=stored.owner_path, targets=[(target, where)],
                         editing=False)
        check_guardrails(stored.document, [where], self._guardrails(uow))
        attachment = Attachment(policy, target, where)
        uow.policy_attachments.attach(attachment)
        return attachment

    def detach(self, actor: Principal, policy: str, target: AttachmentTarget) -> None:
        """Remove an attachment; a guardrail only by an admin who may edit it."""
        with self._audit.refusals(self._refusal(actor, f"policy:{policy[:128]}")):
            actor.require(Role.ADMIN, "detaching policies")
            with self._uow() as uow:
                scope = self._detach(uow, actor, policy, target)
                uow.changes.record(PolicyChanged(policy))
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.POLICY_DETACHED, actor=actor.name, org_path=scope,
                    subject=f"policy:{policy}", details={"target": str(target)}))

    def detach_device_outside(self, uow: PolicyUnitOfWork, device_id: str,
                              org_path: str) -> list[str]:
        """Inside a caller's transaction (an ownership transfer, which checked the
        caller's rights and audits the hand-over): detach from the device every policy
        attached at a scope outside ``org_path`` (``policy.ports.DeviceAttachments``)."""
        device = AttachmentTarget(TargetKind.DEVICE, device_id)
        detached = []
        for attachment in uow.policy_attachments.all():
            if attachment.target == device and not attachment.scope.startswith(org_path):
                uow.policy_attachments.detach(attachment.policy, attachment.target)
                detached.append(attachment.policy)
        if detached:
            uow.changes.record(PolicyChanged())
        return detached

    def _detach(self, uow: PolicyUnitOfWork, actor: Principal, policy: str,
                target: AttachmentTarget) -> str:
        stored = self._visible(uow, actor, policy)
        current = [a for a in uow.policy_attachments.for_policy(policy)
                   if a.target == target and may_know_of(actor, a.scope)]
        if not current:
            raise NotFound(f"policy {policy!r} is not attached to {target}")
        if not actor.sees(current[0].scope):
            raise Forbidden(f"{target} is outside your scope {actor.org_path}")
        if stored.document.guardrail and not actor.sees(stored.owner_path):
            raise Forbidden(f"guardrail {policy!r} was set by {stored.owner_path}; only an "
                            "admin of that scope may detach it")
        uow.policy_attachments.detach(policy, target)
        return current[0].scope

    def get(self, actor: Principal, name: str, version: int | None = None) -> StoredPolicy:
        """One version (default: the latest) of a policy the caller may see."""
        with self._uow.reading() as uow:
            latest = self._visible(uow, actor, name)
            if version is None:
                return latest
            stored = uow.policies.get(name, version)
        if stored is None:
            raise NotFound(f"policy {name!r} has no version {version}")
        return stored

    def diff(self, actor: Principal, name: str, old: int, new: int) -> PolicyDiff:
        """Structural diff between two versions of a policy."""
        return diff_policies(self.get(actor, name, old).document,
                             self.get(actor, name, new).document)

    def list_policies(self, actor: Principal) -> list[PolicyOverview]:
        """The latest version of every policy the caller may see, by name."""
        with self._uow.reading() as uow:
            return [self._overview(uow, actor, stored)
                    for name in uow.policies.names_under(actor.org_path)
                    if (stored := uow.policies.latest(name)) is not None]

    def describe(self, actor: Principal, name: str, version: int | None = None
                 ) -> PolicyOverview:
        """One version (default: the latest) of a visible policy, with its versions and
        the attachments the caller may know of."""
        with self._uow.reading() as uow:
            latest = self._visible(uow, actor, name)
            stored = latest if version is None else uow.policies.get(name, version)
            if stored is None:
                raise NotFound(f"policy {name!r} has no version {version}")
            return self._overview(uow, actor, stored)

    @staticmethod
    def _overview(uow: PolicyUnitOfWork, actor: Principal, stored: StoredPolicy
                  ) -> PolicyOverview:
        name = stored.document.name
        attachments = tuple(a for a in uow.policy_attachments.for_policy(name)
                            if may_know_of(actor, a.scope))
        return PolicyOverview(stored, tuple(uow.policies.versions(name)), attachments)

    def save_site(
        self, actor: Principal, name: str, timezone: str, networks: Sequence[str] = ()
    ) -> tuple[Site, bool]:
        """Create or replace a site (fleet-wide, so root-scoped admins only); True if new."""
        with self._audit.refusals(self._refusal(actor, f"site:{name[:128]}")):
            actor.require(Role.ADMIN, "saving sites")
            if not actor.is_global:
                raise Forbidden("sites are fleet-wide: saving one needs an admin scoped to "
                                f"the root, not {actor.org_path}")
            site = _site(name, timezone, networks)
            with self._uow() as uow:
                created = uow.sites.save(site, self._clock.now())
                uow.changes.record(PolicyChanged())
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.SITE_SAVED, actor=actor.name, org_path=actor.org_path,
                    subject=f"site:{name}",
                    details={"timezone": timezone, "networks": [str(n) for n in site.networks],
                             "created": created}))
        return site, created

    def sites(self) -> list[Site]:
        """Every known site (fleet-wide, like device types: any caller may read them)."""
        with self._uow.reading() as uow:
            return uow.sites.sites()

    def lint(self, source: str | bytes, fmt: str = "auto") -> list[LintFinding]:
        """Lint a document without storing it."""
        return lint_policy(parse_policy(source, fmt=fmt))

    def compile(self) -> PolicyEngine:
        """The current policy set, compiled."""
        with self._uow.reading() as uow:
            generation = uow.policies.generation()
            policies = [p.document for p in uow.policies.current()]
            attachments = uow.policy_attachments.all()
            sites = uow.sites.sites()
        return PolicyEngine(policies, attachments, sites, generation=generation)

    def generation(self) -> int:
        """The store's change counter."""
        with self._uow.reading() as uow:
            return uow.policies.generation()

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _refusal(actor: Principal, subject: str) -> AuditDraft:
        return AuditDraft(tag=AuditTag.POLICY_REFUSED, actor=actor.name,
                          org_path=actor.org_path, subject=subject)

    @staticmethod
    def _visible(uow: PolicyUnitOfWork, actor: Principal, name: str) -> StoredPolicy:
        stored = uow.policies.latest(name)
        if stored is None or not may_know_of(actor, stored.owner_path):
            raise NotFound(f"policy {name!r} not found")
        return stored

    @staticmethod
    def _guardrails(uow: PolicyUnitOfWork) -> list[Guardrail]:
        found = []
        for attachment in uow.policy_attachments.all():
            if attachment.target.kind is not TargetKind.ORG_UNIT:
                continue
            stored = uow.policies.latest(attachment.policy)
            if stored is not None and stored.document.guardrail:
                found.append(Guardrail(stored.document, attachment))
        return found

    @staticmethod
    def _check_networks(uow: PolicyUnitOfWork, document: PolicyDocument) -> None:
        known = {site.name for site in uow.sites.sites()}
        problems = []
        for index, statement in enumerate(document.statements):
            for entry in statement.conditions.source_networks:
                named = entry != SITE_OF_DEVICE and not entry[:1].isdigit() and ":" not in entry
                if named and entry not in known:
                    problems.append(Problem(f"source network {entry!r} is not a known site",
                                            statement.line, f"statement {index + 1}"))
        if problems:
            raise PolicySyntaxError(problems)


def _site(name: str, timezone: str, networks: Sequence[str]) -> Site:
    """A site from what an admin typed; every problem is a clear InvalidInput."""
    if not valid_site_name(name):
        raise InvalidInput(f"site name {name[:130]!r} is not valid: 1-128 letters, digits, "
                           "spaces, '.', '_' or '-', starting with a letter")
    if len(networks) > MAX_SITE_NETWORKS:
        raise InvalidInput(f"a site lists at most {MAX_SITE_NETWORKS} networks, "
                           f"not {len(networks)}")
    parsed: list[IpNetwork] = []
    for text in networks:
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            raise InvalidInput(f"network {text[:100]!r} of site {name!r} is not a CIDR "
                               f"({e})") from e
        if network not in parsed:
            parsed.append(network)
    return Site(name, timezone, tuple(parsed))


def may_know_of(actor: Principal, org_path: str) -> bool:
    """Whether the caller may know of what lives at ``org_path``: its own subtree and its
    ancestors (e.g. the root's baseline policy), never another tenant's (G9)."""
    return actor.sees(org_path) or within(actor.org_path, org_path)


class DecisionPoint:
    """The in-process PDP: the current compiled set, rebuilt after a change.

    ``policies_changed`` (subscribed to ``PolicyChanged`` on the change feed, which
    brings this process's changes and every other's) makes the next decision
    recompile; ``refresh`` compares the store's generation. Context time always comes
    from the clock.
    """

    def __init__(self, administration: PolicyAdministration, clock: Clock, *,
                 check_every: float = 1.0) -> None:
        self._administration = administration
        self._clock = clock
        self._engine: PolicyEngine | None = None
        # another process (serve --workers, a replica) may change policies: look at the
        # store's generation at most this often (seconds of monotonic time)
        self._check_every = check_every
        self._checked = 0.0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Recompile before the next decision."""
        self._engine = None

    def policies_changed(self, published: Published) -> None:
        """A policy, attachment or site changed (in any process): recompile."""
        self.invalidate()

    def refresh(self) -> PolicyEngine:
        """Recompile if the store changed since the current set was compiled."""
        with self._lock:
            engine = self._engine
            self._checked = time.monotonic()
            if engine is None or engine.generation != self._administration.generation():
                engine = self._engine = self._administration.compile()
            return engine

    @property
    def engine(self) -> PolicyEngine:
        """The compiled set decisions use now (checked against the store every second)."""
        engine = self._engine
        if engine is None or time.monotonic() - self._checked >= self._check_every:
            return self.refresh()
        return engine

    def decide(
        self, subject: Subject, action: str, resource: str, *,
        source_ip: str | None = None, trust_score: float | None = None,
        firmware_compliant: bool | None = None, at: datetime | None = None,
    ) -> Decision:
        """Decide in the current situation (time from the clock).

        ``at`` asks "what if it were then?" (the simulator): the context carries that
        instant instead of the clock's. Nothing is stored or cached either way, so a
        simulated decision never changes a real one.
        """
        context = RequestContext.now(self._clock, source_ip=source_ip, trust_score=trust_score,
                                     firmware_compliant=firmware_compliant)
        if at is not None:
            context = RequestContext(at, context.source_ip, trust_score, firmware_compliant)
        return self.engine.decide(subject, action, resource, context)

    def decide_in(self, subject: Subject, action: str, resource: str,
                  context: RequestContext) -> Decision:
        """Decide on the current set in a context the caller built."""
        return self.engine.decide(subject, action, resource, context)

    def decide_filter(self, subject: Subject, action: str, topic_filter: str,
                      context: RequestContext) -> Decision:
        """Permit a publish or receive on every topic a filter matches, or Deny."""
        return decide_filter(self.engine, subject, action, topic_filter, context)

    def effective_policy(self, subject: Subject) -> EffectivePolicy:
        """What ``subject`` may do under the current set."""
        return effective_policy(self.engine, subject)
