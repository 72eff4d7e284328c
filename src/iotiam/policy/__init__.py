"""Policy orchestration: documents, attachments, guardrails and the decision point.

Layer 2 of iotiam. The pure core lives here; storage, REST, CLI and the Mosquitto
sync are adapters around it. Start with ``parse_policy`` (documents),
``PolicyEngine.decide`` (decisions), ``PolicyAdministration`` (use cases) and
``compile_broker_acl`` (dynamic-security roles).
"""

from iotiam.policy.broker_acl import AclEntry, AclType, BrokerAcl, compile_broker_acl
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY, QUARANTINE_POLICY
from iotiam.policy.diff import PolicyDiff, diff_policies
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.guardrails import check_delegation, check_guardrails, guardrail_conflicts
from iotiam.policy.lint import lint_policy
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Decision,
    Deny,
    Effect,
    GuardrailViolation,
    Permit,
    PolicyDocument,
    PolicySyntaxError,
    RequestContext,
    Site,
    Statement,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy, policy_from_mapping
from iotiam.policy.queries import effective_policy, granting_targets, who_can, who_can_publish
from iotiam.policy.service import DecisionPoint, PolicyAdministration

__all__ = [
    "DEFAULT_DEVICE_POLICY",
    "QUARANTINE_POLICY",
    "AclEntry",
    "AclType",
    "Attachment",
    "AttachmentTarget",
    "BrokerAcl",
    "Decision",
    "DecisionPoint",
    "Deny",
    "Effect",
    "GuardrailViolation",
    "Permit",
    "PolicyAdministration",
    "PolicyDiff",
    "PolicyDocument",
    "PolicyEngine",
    "PolicySyntaxError",
    "RequestContext",
    "Site",
    "Statement",
    "Subject",
    "TargetKind",
    "check_delegation",
    "check_guardrails",
    "compile_broker_acl",
    "diff_policies",
    "effective_policy",
    "granting_targets",
    "guardrail_conflicts",
    "lint_policy",
    "parse_policy",
    "policy_from_mapping",
    "who_can",
    "who_can_publish",
]
