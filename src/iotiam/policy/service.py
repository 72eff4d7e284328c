"""Policy use cases: write versions, attach and detach under delegation and guardrails,
diff and lint, and the in-process decision point over the current compiled set.

Storage, REST, CLI and broker sync are adapters around this; audit records for these
changes are the adapter's to append in the same transaction as the store calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iotiam.admin.models import Principal, Role
from iotiam.clock import Clock
from iotiam.errors import Conflict, Forbidden, InvalidInput, NotFound
from iotiam.policy.conditions import SITE_OF_DEVICE
from iotiam.policy.diff import PolicyDiff, diff_policies
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.guardrails import Guardrail, check_delegation, check_guardrails
from iotiam.policy.lint import lint_policy
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Decision,
    LintFinding,
    PolicyDocument,
    PolicySyntaxError,
    Problem,
    RequestContext,
    StoredPolicy,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy
from iotiam.policy.ports import AttachmentStore, PolicyStore, SiteDirectory, TargetDirectory


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A stored policy version, what the linter thinks of it, and what changed."""

    stored: StoredPolicy
    findings: tuple[LintFinding, ...]
    diff: PolicyDiff | None  # None for the first version


class PolicyAdministration:
    """Writing, attaching and reading policies on behalf of an admin."""

    def __init__(
        self,
        policies: PolicyStore,
        attachments: AttachmentStore,
        targets: TargetDirectory,
        sites: SiteDirectory,
        clock: Clock,
    ) -> None:
        self._policies = policies
        self._attachments = attachments
        self._targets = targets
        self._sites = sites
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every stored change (e.g. ``DecisionPoint.invalidate``)."""
        self._listeners.append(listener)

    def write(
        self, actor: Principal, source: str | bytes, *, owner_path: str | None = None,
        fmt: str = "auto",
    ) -> WriteResult:
        """Store the next version of a policy, refusing what its author may not grant."""
        actor.require(Role.ADMIN, "writing policies")
        document = parse_policy(source, fmt=fmt)
        self._check_networks(document)
        latest = self._policies.latest(document.name)
        if latest is not None and owner_path not in (None, latest.owner_path):
            raise InvalidInput(f"policy {document.name!r} belongs to {latest.owner_path}; "
                               "its owner cannot change")
        if latest is None and owner_path is not None:
            unit = AttachmentTarget(TargetKind.ORG_UNIT, owner_path.strip("/").split("/")[-1])
            if self._targets.scope_of(unit) != owner_path:
                raise InvalidInput(f"owner {owner_path!r} is not the path of an org unit")
        owner = latest.owner_path if latest else owner_path or actor.org_path
        if latest is not None and not _may_read(actor, owner):
            raise NotFound(f"policy {document.name!r} not found")  # do not reveal it
        attached = self._attachments.for_policy(document.name)
        check_delegation(actor, owner_path=owner,
                         targets=[(a.target, a.scope) for a in attached])
        expected = latest.document.version + 1 if latest else 1
        if document.version != expected:
            current = f"is at version {latest.document.version}" if latest else "does not exist"
            raise Conflict(f"policy {document.name!r} {current}; the new document must be "
                           f"version {expected}, not {document.version}")
        check_guardrails(document, [a.scope for a in attached], self._guardrails())
        text = source.decode("utf-8") if isinstance(source, bytes) else source
        stored = StoredPolicy(document, owner, text, self._clock.now(), actor.name)
        self._policies.add(stored)
        self._changed()
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
        actor.require(Role.ADMIN, "attaching policies")
        stored = self._visible(actor, policy)
        where = self._targets.scope_of(target)
        if where is None or not _may_read(actor, where):
            raise NotFound(f"{target} not found")  # another tenant's: do not reveal it
        if target.kind is TargetKind.DEVICE_TYPE:
            where = scope or actor.org_path
        elif scope not in (None, where):
            raise InvalidInput(f"{target} lives at {where}; only device-type attachments "
                               "take a scope")
        check_delegation(actor, owner_path=stored.owner_path, targets=[(target, where)],
                         editing=False)
        check_guardrails(stored.document, [where], self._guardrails())
        attachment = Attachment(policy, target, where)
        self._attachments.attach(attachment)
        self._changed()
        return attachment

    def detach(self, actor: Principal, policy: str, target: AttachmentTarget) -> None:
        """Remove an attachment; a guardrail only by an admin who may edit it."""
        actor.require(Role.ADMIN, "detaching policies")
        stored = self._visible(actor, policy)
        current = [a for a in self._attachments.for_policy(policy)
                   if a.target == target and _may_read(actor, a.scope)]
        if not current:
            raise NotFound(f"policy {policy!r} is not attached to {target}")
        if not actor.sees(current[0].scope):
            raise Forbidden(f"{target} is outside your scope {actor.org_path}")
        if stored.document.guardrail and not actor.sees(stored.owner_path):
            raise Forbidden(f"guardrail {policy!r} was set by {stored.owner_path}; only an "
                            "admin of that scope may detach it")
        self._attachments.detach(policy, target)
        self._changed()

    def get(self, actor: Principal, name: str, version: int | None = None) -> StoredPolicy:
        """One version (default: the latest) of a policy the caller may see."""
        latest = self._visible(actor, name)
        if version is None:
            return latest
        stored = self._policies.get(name, version)
        if stored is None:
            raise NotFound(f"policy {name!r} has no version {version}")
        return stored

    def diff(self, actor: Principal, name: str, old: int, new: int) -> PolicyDiff:
        """Structural diff between two versions of a policy."""
        return diff_policies(self.get(actor, name, old).document,
                             self.get(actor, name, new).document)

    def lint(self, source: str | bytes) -> list[LintFinding]:
        """Lint a document without storing it."""
        return lint_policy(parse_policy(source))

    def compile(self) -> PolicyEngine:
        """The current policy set, compiled."""
        generation = self._policies.generation()
        return PolicyEngine([p.document for p in self._policies.current()],
                            self._attachments.all(), self._sites.sites(),
                            generation=generation)

    def generation(self) -> int:
        """The store's change counter."""
        return self._policies.generation()

    # -- internals ------------------------------------------------------------------------

    def _visible(self, actor: Principal, name: str) -> StoredPolicy:
        stored = self._policies.latest(name)
        if stored is None or not _may_read(actor, stored.owner_path):
            raise NotFound(f"policy {name!r} not found")
        return stored

    def _guardrails(self) -> list[Guardrail]:
        found = []
        for attachment in self._attachments.all():
            if attachment.target.kind is not TargetKind.ORG_UNIT:
                continue
            stored = self._policies.latest(attachment.policy)
            if stored is not None and stored.document.guardrail:
                found.append(Guardrail(stored.document, attachment))
        return found

    def _check_networks(self, document: PolicyDocument) -> None:
        known = {site.name for site in self._sites.sites()}
        problems = []
        for index, statement in enumerate(document.statements):
            for entry in statement.conditions.source_networks:
                named = entry != SITE_OF_DEVICE and not entry[:1].isdigit() and ":" not in entry
                if named and entry not in known:
                    problems.append(Problem(f"source network {entry!r} is not a known site",
                                            statement.line, f"statement {index + 1}"))
        if problems:
            raise PolicySyntaxError(problems)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()


def _may_read(actor: Principal, org_path: str) -> bool:
    """Whether the caller may know of what lives at ``org_path``: its own subtree and its
    ancestors (e.g. the root's baseline policy), never another tenant's (G9)."""
    return actor.sees(org_path) or actor.org_path.startswith(org_path)


class DecisionPoint:
    """The in-process PDP: the current compiled set, rebuilt after a change.

    ``invalidate`` (wired to ``PolicyAdministration.on_change``, or to a NOTIFY from
    another replica) makes the next decision recompile; ``refresh`` compares the
    store's generation. Context time always comes from the clock.
    """

    def __init__(self, administration: PolicyAdministration, clock: Clock) -> None:
        self._administration = administration
        self._clock = clock
        self._engine: PolicyEngine | None = None

    def invalidate(self) -> None:
        """Recompile before the next decision."""
        self._engine = None

    def refresh(self) -> PolicyEngine:
        """Recompile if the store changed since the current set was compiled."""
        engine = self._engine
        if engine is None or engine.generation != self._administration.generation():
            engine = self._engine = self._administration.compile()
        return engine

    @property
    def engine(self) -> PolicyEngine:
        """The compiled set decisions use now."""
        return self._engine or self.refresh()

    def decide(
        self, subject: Subject, action: str, resource: str, *,
        source_ip: str | None = None, trust_score: float | None = None,
        firmware_compliant: bool | None = None,
    ) -> Decision:
        """Decide in the current situation (time from the clock)."""
        context = RequestContext.now(self._clock, source_ip=source_ip, trust_score=trust_score,
                                     firmware_compliant=firmware_compliant)
        return self.engine.decide(subject, action, resource, context)
