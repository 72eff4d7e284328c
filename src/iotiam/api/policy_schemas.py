"""Request bodies and renderers of the policy API (documents, attachments, sites,
decisions and the questions about them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, StrictBool, StrictFloat

from iotiam.api.schemas import Body
from iotiam.policy.diff import PolicyDiff
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Decision,
    EffectivePolicy,
    EffectiveStatement,
    LintFinding,
    Site,
    StatementRef,
    StoredPolicy,
    TargetKind,
)
from iotiam.policy.queries import TargetGrant
from iotiam.policy.service import PolicyOverview, WriteResult

#: longer than any valid topic (65,535 bytes of UTF-8), so the engine names the problem
MAX_RESOURCE_CHARS = 70_000


class AttachmentIn(Body):
    """Attach a policy to an org unit, device type, group or device."""

    kind: TargetKind
    id: str = Field(min_length=1, max_length=128)
    #: device types only: the org unit whose subtree's devices of that type get it
    scope: str | None = Field(default=None, max_length=128)


class SiteIn(Body):
    """A site's time zone and networks."""

    timezone: str = Field(min_length=1, max_length=64)
    networks: list[str] = Field(default_factory=list, max_length=256)


class DecisionIn(Body):
    """Ask what the decision point would answer for a device."""

    device: str = Field(min_length=1, max_length=128)
    action: str = Field(min_length=1, max_length=64)
    resource: str = Field(max_length=MAX_RESOURCE_CHARS)
    source_ip: str | None = Field(default=None, max_length=64)
    #: simulate: decide as if it were this instant (never changes a real decision)
    at: datetime | None = None
    trust_score: StrictFloat | None = Field(default=None, ge=0, le=100)
    firmware_compliant: StrictBool | None = None


def render_target(target: AttachmentTarget | None) -> dict[str, str] | None:
    """JSON for an attachment target."""
    return None if target is None else {"kind": str(target.kind), "id": target.id}


def render_attachment(a: Attachment) -> dict[str, Any]:
    """JSON for an attachment."""
    return {"policy": a.policy, "target": render_target(a.target), "scope": a.scope}


def render_finding(f: LintFinding) -> dict[str, Any]:
    """JSON for a lint finding."""
    return {"severity": str(f.severity), "code": f.code, "statement": f.statement,
            "message": f.message, "line": f.line, "text": str(f)}


def render_policy(stored: StoredPolicy) -> dict[str, Any]:
    """JSON for a stored policy version (without its source)."""
    document = stored.document
    return {"name": document.name, "version": document.version,
            "description": document.description, "guardrail": document.guardrail,
            "owner_path": stored.owner_path, "created_at": stored.created_at.isoformat(),
            "created_by": stored.created_by, "statements": len(document.statements)}


def render_overview(overview: PolicyOverview, *, full: bool) -> dict[str, Any]:
    """JSON for a policy with its versions and visible attachments (and, ``full``, its
    source text and parsed document)."""
    body = render_policy(overview.stored)
    body["versions"] = list(overview.versions)
    body["attachments"] = [render_attachment(a) for a in overview.attachments]
    if full:
        body["source"] = overview.stored.source
        body["document"] = overview.stored.document.to_dict()
    return body


def render_diff(diff: PolicyDiff) -> dict[str, Any]:
    """JSON for a diff: one line per change, and the changes as data."""
    return {"name": diff.name, "from": diff.from_version, "to": diff.to_version,
            "lines": diff.lines(), "changes": [c.to_dict() for c in diff.changes]}


def render_write(result: WriteResult) -> dict[str, Any]:
    """JSON for a stored version: the version, what the linter found, what changed."""
    body = render_policy(result.stored)
    body["findings"] = [render_finding(f) for f in result.findings]
    body["diff"] = result.diff.lines() if result.diff is not None else []
    return body


def render_ref(ref: StatementRef) -> dict[str, Any]:
    """JSON for a statement that took part in a decision."""
    return {"policy": ref.policy, "version": ref.version, "statement": ref.statement,
            "effect": str(ref.effect), "target": render_target(ref.target), "text": str(ref)}


def render_decision(decision: Decision) -> dict[str, Any]:
    """JSON for a Permit or Deny with its reason and the statements behind it."""
    return {"decision": "permit" if decision.allowed else "deny", "reason": decision.reason,
            "statements": [render_ref(r) for r in decision.matched]}


def render_effective(statement: EffectiveStatement) -> dict[str, Any]:
    """JSON for a statement as it applies to one device."""
    return {"effect": str(statement.effect), "actions": list(statement.actions),
            "resource": statement.resource, "conditions": statement.conditions.to_dict(),
            "source": render_ref(statement.ref),
            "denied_by": [render_ref(r) for r in statement.denied_by],
            "fully_denied": statement.fully_denied, "note": statement.note,
            "text": str(statement)}


def render_permissions(effective: EffectivePolicy) -> dict[str, Any]:
    """JSON for everything that applies to one device, denies first."""
    return {"device": effective.device_id, "blocked": effective.blocked,
            "statements": [render_effective(s) for s in effective.statements],
            "lines": effective.lines()}


def render_grant(grant: TargetGrant) -> dict[str, Any]:
    """JSON for an attachment whose allow may grant the asked action."""
    return {"attachment": render_attachment(grant.attachment), "source": render_ref(grant.ref),
            "pattern": grant.pattern, "conditional": grant.conditional}


def render_site(site: Site) -> dict[str, Any]:
    """JSON for a site."""
    return {"name": site.name, "timezone": site.timezone,
            "networks": [str(n) for n in site.networks]}
