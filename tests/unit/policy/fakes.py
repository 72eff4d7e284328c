"""The policy tests' org tree and small builders; the stores are the in-memory ones of
``iotiam.testing.fakes.policy``."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from iotiam.inventory.models import DeviceState
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    PolicyDocument,
    RequestContext,
    Site,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy
from iotiam.testing.fakes.policy import MemoryDirectory

T0 = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC
ROOT = AttachmentTarget(TargetKind.ORG_UNIT, "root")
ACME = AttachmentTarget(TargetKind.ORG_UNIT, "acme")
PLANT = AttachmentTarget(TargetKind.ORG_UNIT, "plant1")
BETA = AttachmentTarget(TargetKind.ORG_UNIT, "beta")
PATHS = {"root": "/root/", "acme": "/root/acme/", "plant1": "/root/acme/plant1/",
         "beta": "/root/beta/"}
BERLIN = Site("berlin", "Europe/Berlin", (ipaddress.ip_network("10.1.0.0/16"),))
TOKYO = Site("tokyo", "Asia/Tokyo", (ipaddress.ip_network("10.2.0.0/16"),))


def subject(device_id: str = "d1", *, type_name: str = "sensor", org: str = "plant1",
            state: DeviceState = DeviceState.ACTIVE, site: str | None = "berlin",
            attributes: dict[str, str] | None = None,
            groups: frozenset[str] = frozenset()) -> Subject:
    """A device in the test org tree."""
    return Subject(device_id, type_name, org, PATHS[org], state, site, attributes or {}, groups)


def context(at: datetime = T0, *, ip: str | None = "10.1.2.3", trust: float | None = 80.0,
            firmware: bool | None = True) -> RequestContext:
    """A request context; pass None for what is unknown."""
    return RequestContext(at, ipaddress.ip_address(ip) if ip else None, trust, firmware)


def policy(text: str) -> PolicyDocument:
    """Parse a YAML policy."""
    return parse_policy(text)


def engine(*attached: tuple[PolicyDocument, AttachmentTarget],
           sites: tuple[Site, ...] = (BERLIN, TOKYO)) -> PolicyEngine:
    """An engine with each policy attached to its target (scope from the test tree)."""
    attachments = []
    for document, target in attached:
        scope = PATHS.get(target.id, "/root/") if target.kind is TargetKind.ORG_UNIT \
            else "/root/"
        attachments.append(Attachment(document.name, target, scope))
    return PolicyEngine([d for d, _ in attached], attachments, sites)


def directory() -> MemoryDirectory:
    """Targets and sites of the test org tree: d1 in plant1, b1 in beta, group line-1."""
    return MemoryDirectory(PATHS, {"d1": "/root/acme/plant1/", "b1": "/root/beta/"},
                           {"line-1": "/root/acme/plant1/"}, ("sensor", "gateway"),
                           (BERLIN, TOKYO))
