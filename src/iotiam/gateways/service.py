"""Gateway use cases: children registered and moved, their keys delivered sealed to the
gateway, and what a gateway says for its children (relayed actions, sightings) judged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import DeviceChanged
from iotiam.clock import Clock
from iotiam.credentials.models import Psk, PskStatus
from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.detection.ports import FindingSink
from iotiam.errors import IamError, InvalidInput, Unauthenticated
from iotiam.gateways import rotation, rules, sealed_keys
from iotiam.gateways.models import (
    REPORTS_NAMESPACE,
    ChildKey,
    GatewayChildren,
    GatewayLink,
    SightingResult,
    answers_topic,
    report_of_topic,
)
from iotiam.gateways.ports import ChildKeys, ChildSubjects, GatewaysUnitOfWork
from iotiam.gateways.rotation import RotationReport
from iotiam.inventory.lifecycle import Transport, may, refusal
from iotiam.inventory.models import Device, DeviceType, check_identifier, is_identifier
from iotiam.inventory.ports import visible_device
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, Principal, Role, Transactions
from iotiam.pki.client_certificates import presented_device
from iotiam.pki.ports import DeviceIssuers
from iotiam.policy.actions import PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.policy.models import Decision, Deny, Permit, RequestContext
from iotiam.policy.ports import PolicyDecisions

#: most children one sighting report may name
MAX_SIGHTINGS = 1000
DETECTOR = "gateway"
#: who re-keys children on schedule and after their gateway's revocation (audited)
ROTATION = Principal(name="gateway-key-rotation", role=Role.ADMIN, org_unit_id=ROOT_ORG_ID,
                     org_path=ROOT_PATH)


class Gateways:
    """Children under gateways, and gateways speaking for them (docs/gateways.md)."""

    def __init__(self, uow: Transactions[GatewaysUnitOfWork], clock: Clock, audit: Auditor,
                 keys: ChildKeys, issuers: DeviceIssuers, decisions: PolicyDecisions,
                 subjects: ChildSubjects, findings: FindingSink) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._keys = keys
        self._issuers = issuers
        self._decisions = decisions
        self._subjects = subjects
        self._findings = findings

    # -- the admin side ------------------------------------------------------------------

    def check(self, uow: GatewaysUnitOfWork, actor: Principal, child: Device, via: str
              ) -> Device:
        """The gateway ``child`` (about to be registered) may be placed under, or raise
        why not (an import judges every row before it writes any)."""
        return self._gateway(uow, actor, child, via)

    def attach(self, uow: GatewaysUnitOfWork, actor: Principal, child: Device, via: str
               ) -> GatewayLink:
        """Inside the caller's transaction (registration): place a new ``child`` under
        gateway ``via`` and give it the PSK its gateway will receive."""
        gateway = self._gateway(uow, actor, child, via)
        link = GatewayLink(child.id, gateway.id, self._clock.now())
        uow.gateway_links.put(link)
        psk = self._keys.issue_within(uow, actor, child, rotate=False)
        uow.devices.activate_if_pending([child.id], link.linked_at)
        self._changed(uow, link.linked_at, child.id, gateway.id)
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.GATEWAY_CHILD_ATTACHED, actor=actor.name, org_path=child.org_path,
            subject=f"device:{child.id}", details={"gateway": gateway.id, "psk": psk.id}))
        return link

    def move(self, actor: Principal, child_id: str, via: str) -> GatewayLink:
        """Move a child to another gateway; its PSK is replaced, so the gateway it leaves
        holds a dead key."""
        draft = AuditDraft(tag=AuditTag.GATEWAY_CHILD_MOVED, actor=actor.name,
                           org_path=actor.org_path, subject=f"device:{child_id}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "moving devices between gateways")
            child = visible_device(uow.devices, actor, child_id, for_update=True)
            current = uow.gateway_links.get(child.id)
            if current is None:
                raise InvalidInput(f"device {child_id!r} is not under a gateway; register "
                                   "it with --via to place it under one")
            refused = refusal(child.id, child.state, Transport.ENROLL)
            if refused is not None:
                raise InvalidInput(f"{refused}; it cannot be re-keyed")
            gateway = self._gateway(uow, actor, child, via)
            if gateway.id == current.gateway_id:
                raise InvalidInput(f"device {child_id!r} is already under {via!r}")
            link = GatewayLink(child.id, gateway.id, self._clock.now())
            uow.gateway_links.put(link)
            psk = self._keys.issue_within(uow, actor, child, rotate=True)
            self._changed(uow, link.linked_at, child.id, gateway.id, current.gateway_id)
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.GATEWAY_CHILD_MOVED, actor=actor.name, org_path=child.org_path,
                subject=f"device:{child.id}",
                details={"from": current.gateway_id, "to": gateway.id, "psk": psk.id}))
            return link

    def gateway_of(self, actor: Principal, device_id: str) -> str | None:
        """The gateway a device the caller sees is registered under (None: none)."""
        with self._uow.reading() as uow:
            device = visible_device(uow.devices, actor, device_id)
            link = uow.gateway_links.get(device.id)
            return link.gateway_id if link is not None else None

    def _gateway(self, uow: GatewaysUnitOfWork, actor: Principal, child: Device, via: str
                 ) -> Device:
        check_identifier(via, "gateway id")
        gateway = uow.devices.get(via)
        if gateway is not None and not actor.sees(gateway.org_path):
            gateway = None  # another tenant's device is unknown (G9)
        gateway_type = uow.device_types.get(gateway.type_name) if gateway else None

        def gateway_of(device_id: str) -> str | None:
            link = uow.gateway_links.get(device_id)
            return link.gateway_id if link is not None else None

        return rules.check_via(child, gateway, gateway_type, gateway_of, via=via)

    def _changed(self, uow: GatewaysUnitOfWork, at: datetime, *device_ids: str) -> None:
        # the gateways' broker ACLs carry their children's topics: they are re-synced too
        uow.devices.touch(list(device_ids), at)
        uow.changes.record(DeviceChanged(tuple(device_ids)))

    def rotate_child_keys(self, period: timedelta | None,
                          overlap: timedelta | None = None) -> RotationReport:
        """Re-key every child whose gateway lost its standing after the child's key was
        made, at once, and (``period``) every child whose key is older than that: with
        an ``overlap``, a next key valid beside the current one, promoted on first use
        or when the overlap ends. One child a transaction, each audited
        (``gateways.rotation``)."""
        with self._uow.reading() as uow:
            due = rotation.due_keys(uow, self._clock.now(), period)
        rotated, skipped = [], 0
        for item in due:
            with self._uow() as uow:
                made = self._rotate_one(uow, item, overlap)
            if made is None:
                skipped += 1  # changed meanwhile, or may get no new key now
            else:
                rotated.append(item)
        return RotationReport(tuple(rotated), skipped)

    def _rotate_one(self, uow: GatewaysUnitOfWork, item: rotation.DueKey,
                    overlap: timedelta | None) -> str | None:
        child = uow.devices.get(item.child_id, for_update=True)
        current = uow.psks.active_for_device(item.child_id)
        link = uow.gateway_links.get(item.child_id)
        if child is None or current is None or current.id != item.psk_id \
                or link is None or link.gateway_id != item.gateway_id \
                or refusal(child.id, child.state, Transport.ENROLL) is not None:
            return None
        details: dict[str, object] = {}
        if item.reason == rotation.OVERLAP_ENDED and item.next_id is not None:
            psk_id = self._keys.promote_within(uow, ROTATION.name, child.id, item.next_id,
                                               rotation.OVERLAP_ENDED).id
        elif item.reason == rotation.SCHEDULED and overlap:
            psk = self._keys.issue_next_within(uow, ROTATION, child, overlap)
            psk_id, details = psk.id, {"next": True, "overlap_ends": (
                self._clock.now() + overlap).isoformat()}
        else:  # gateway-revoked (a pending next key is revoked too), or no overlap
            psk_id = self._keys.issue_within(uow, ROTATION, child, rotate=True).id
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.GATEWAY_CHILD_REKEYED, actor=ROTATION.name,
            org_path=child.org_path, subject=f"device:{child.id}",
            details={"gateway": item.gateway_id, "reason": item.reason,
                     "psk": psk_id, "replaced": item.psk_id, **details}))
        return psk_id

    def next_key_used(self, certificate: x509.Certificate | None, child_id: str,
                      psk_id: str) -> str:
        """A gateway saw its child connect with its next key: the next key becomes the
        current one and the old one is revoked (audited). The child's PSK id now."""
        gateway = self.authenticate(certificate, "key-used")
        draft = AuditDraft(tag=AuditTag.GATEWAY_CHILD_KEY_USED, actor=f"gateway:{gateway.id}",
                           org_path=gateway.org_path, subject=f"device:{child_id}"[:200],
                           details={"gateway": gateway.id, "psk": psk_id[:64]})
        with self._audit.refusals(draft):
            decision = self._speaks_for(gateway, child_id)
            if not decision.allowed:
                raise InvalidInput(decision.reason)
            with self._uow() as uow:
                child = uow.devices.get(child_id, for_update=True)
                current = uow.psks.active_for_device(child_id)
                if child is None:
                    raise InvalidInput(f"device {child_id!r} not found")
                if current is not None and current.id == psk_id:
                    return psk_id  # reported again: already the current key
                self._keys.promote_within(uow, f"gateway:{gateway.id}", child_id, psk_id,
                                          "superseded")
                self._audit.append(uow, replace(draft, org_path=child.org_path, details={
                    **draft.details, "replaced": current.id if current else None}))
        return psk_id

    # -- the gateway's side (authenticated by its certificate) ----------------------------

    def children(self, certificate: x509.Certificate | None) -> GatewayChildren:
        """The gateway's live children, each PSK sealed to the certificate's key."""
        gateway = self.authenticate(certificate, "children")
        assert certificate is not None
        public_key = certificate.public_key()
        draft = _draft(AuditTag.GATEWAY_CHILDREN_DELIVERED, gateway)
        with self._audit.refusals(draft), self._uow.reading() as uow:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise InvalidInput("child keys are sealed to EC P-256 keys; this gateway's "
                                   "certificate holds another kind")
            links = uow.gateway_links.children_of(gateway.id)
            devices = uow.devices.get_many([link.child_id for link in links])
            psks = uow.psks.for_devices(list(devices))
            now = self._clock.now()
            keys = []
            for link in links:
                child = devices.get(link.child_id)
                if child is None or not may(child.state, Transport.MQTT_PSK):
                    continue  # suspended or retired: its gateway drops it
                for psk in _served(psks.get(link.child_id, []), now):
                    context = sealed_keys.context_of(gateway.id, child.id, psk.id)
                    keys.append(ChildKey(
                        child.id, psk.identity, psk.id, sealed_keys.seal_to(
                            public_key, self._keys.reveal(psk), context), psk.expires_at,
                        next=psk.status is PskStatus.NEXT))
        self._audit.record(_draft(AuditTag.GATEWAY_CHILDREN_DELIVERED, gateway,
                                  {"children": len({k.child_id for k in keys})}))
        return GatewayChildren(gateway.id, tuple(keys))

    def relay(self, certificate: x509.Certificate | None, child_id: str, action: str,
              resource: str, *, source_ip: str | None = None) -> Decision:
        """Judge an action a gateway relays for a child: as the child's own (its
        policies, ``${device}`` the child), and only if the gateway may speak for it."""
        gateway = self.authenticate(certificate, "relay")
        decision = self._speaks_for(gateway, child_id)
        if decision.allowed:
            subject = self._subjects.cached(child_id)
            if subject is None:
                decision = Deny(f"device {child_id!r} not found")
            else:
                try:
                    context = RequestContext.now(self._clock, source_ip=source_ip)
                    decision = self._decisions.decide_in(subject, action, resource, context)
                except IamError as e:  # a malformed topic or address
                    decision = Deny(e.detail)
        self._audit.record(_draft(
            AuditTag.GATEWAY_RELAY_DECIDED, gateway,
            {"child": child_id, "action": action, "resource": resource[:256],
             "allowed": decision.allowed, "reason": decision.reason[:500]}))
        return decision

    def decide_relayed(self, gateway_id: str, action: str, topic: str, *,
                       source_ip: str | None = None) -> Decision | None:
        """A broker's question about a gateway's request on a topic that names one of its
        children, judged as that child's (``relay``'s rules, for the plugin-authorized
        broker); None when the topic names no child of this gateway."""
        try:
            levels = [level for level in topic.split("/") if is_identifier(level)]
            with self._uow.reading() as uow:
                links = [link for link in uow.gateway_links.get_many(levels).values()
                         if link.gateway_id == gateway_id]
                if not links:
                    return None
                devices = uow.devices.get_many([gateway_id, links[0].child_id])
            gateway, child = devices.get(gateway_id), devices.get(links[0].child_id)
            gateway_subject = self._subjects.cached(gateway_id)
            child_subject = self._subjects.cached(links[0].child_id)
            if gateway is None or gateway_subject is None or child_subject is None:
                return Deny(f"gateway {gateway_id!r} or its child not found")
            decision = rules.may_speak_for(gateway, gateway_subject.credentialed is not False,
                                           links[0].child_id, child, links[0])
            if not decision.allowed:
                return decision
            context = RequestContext.now(self._clock, source_ip=source_ip)
            return self._decisions.decide_in(child_subject, action, topic, context)
        except IamError as e:  # a malformed topic or address, the store unavailable
            return Deny(e.detail)

    def report_sightings(self, certificate: x509.Certificate | None,
                         child_ids: Sequence[str]) -> list[SightingResult]:
        """Take a gateway's report of the children it saw; a device it may not speak for
        is refused, audited and raised as a ``gateway_mismatch`` finding."""
        return self.sightings_from(self.authenticate(certificate, "sightings"), child_ids)

    def sightings_from(self, gateway: Device, child_ids: Sequence[str]
                       ) -> list[SightingResult]:
        """``report_sightings`` for a gateway already authenticated (by its certificate
        on HTTPS, by the broker's ACL on MQTT: ``named``)."""
        if len(child_ids) > MAX_SIGHTINGS:
            raise InvalidInput(f"at most {MAX_SIGHTINGS} children per report")
        results, findings = [], []
        for child_id in child_ids:
            decision = self._speaks_for(gateway, child_id)
            results.append(SightingResult(child_id, decision.allowed,
                                          "" if decision.allowed else decision.reason))
            if not decision.allowed:
                self._audit.record(AuditDraft(
                    tag=AuditTag.GATEWAY_SIGHTING_REFUSED, actor=f"gateway:{gateway.id}",
                    org_path=gateway.org_path, subject=f"device:{child_id}"[:200],
                    reason=decision.reason[:500], details={"gateway": gateway.id}))
                findings.append(self._mismatch(gateway, child_id, decision.reason))
        if findings:
            self._findings.report(findings)
        return results

    def _speaks_for(self, gateway: Device, child_id: str) -> Decision:
        try:
            check_identifier(child_id, "child device id")
        except InvalidInput as e:
            return Deny(e.detail)
        with self._uow.reading() as uow:
            child = uow.devices.get(child_id)
            link = uow.gateway_links.get(child_id)
        # the gateway authenticated with a live certificate: it holds a credential
        return rules.may_speak_for(gateway, True, child_id, child, link)

    def _mismatch(self, gateway: Device, child_id: str, reason: str) -> Finding:
        return Finding(
            type=FindingType.GATEWAY_MISMATCH, severity=Severity.HIGH,
            at=self._clock.now().timestamp(), device_id=gateway.id,
            device_type=gateway.type_name, detector=DETECTOR,
            summary=f"gateway {gateway.id} spoke for {child_id}, which it may not: {reason}",
            evidence={"child": child_id, "reason": reason})

    def named(self, gateway_id: str, step: str) -> Device:
        """The gateway that published a report on its own topic, which only it may
        publish on (the broker's ACL authenticated it): still a gateway, in a state that
        may take decisions and holding a live credential, or ``Unauthenticated``."""
        draft = AuditDraft(tag=AuditTag.GATEWAY_CHILDREN_DELIVERED,
                           actor=f"gateway:{gateway_id}"[:200], org_path=ROOT_PATH,
                           subject=f"device:{gateway_id}"[:200],
                           details={"step": step, "transport": "mqtt"})
        with self._audit.refusals(draft):
            check_identifier(gateway_id, "gateway id")
            with self._uow.reading() as uow:
                device = uow.devices.get(gateway_id)
                device_type = uow.device_types.get(device.type_name) if device else None
            subject = self._subjects.cached(gateway_id)
            if device is None or subject is None:
                raise Unauthenticated(f"gateway {gateway_id!r} no longer exists")
            return _acting_gateway(device, device_type, subject.credentialed)

    def decide_report_topic(self, device_id: str, action: str, topic: str) -> Decision:
        """A broker's question about a topic in the namespace kept for gateways' reports
        (``models.REPORTS_NAMESPACE``): a gateway may publish on its own report topics
        and subscribe to and receive its own answers; nobody may do anything else there,
        whatever the policies grant."""
        report = report_of_topic(topic)
        own = (action == PUBLISH and report is not None and report[0] == device_id) or (
            action in (SUBSCRIBE, RECEIVE) and topic == answers_topic(device_id))
        if not own:
            return Deny(f"{REPORTS_NAMESPACE}/... is kept for gateways' reports: "
                        f"{device_id!r} may not {action.removeprefix('mqtt:')} on {topic!r}")
        try:
            self.named(device_id, "broker")
        except IamError as e:  # not a trusted gateway now, or the store unavailable
            return Deny(e.detail)
        return Permit(())

    def authenticate(self, certificate: x509.Certificate | None, step: str) -> Device:
        """The gateway holding this live iotiam certificate, or ``Unauthenticated``."""
        name = certificate.subject.rfc4514_string()[:200] if certificate else "anonymous"
        draft = AuditDraft(tag=AuditTag.GATEWAY_CHILDREN_DELIVERED, actor=f"gateway:{name}",
                           org_path=ROOT_PATH, subject=f"certificate:{name}",
                           details={"step": step})
        with self._audit.refusals(draft):
            if certificate is None:
                raise Unauthenticated("the gateway API needs the gateway's iotiam "
                                      "certificate over TLS (mTLS)")
            if self._issuers.issuer_named(certificate.issuer) is None:
                raise Unauthenticated("the client certificate was not issued by iotiam")
            with self._uow.reading() as uow:
                device = self._holder(uow, certificate)
                device_type = uow.device_types.get(device.type_name)
            return _acting_gateway(device, device_type)

    def _holder(self, uow: GatewaysUnitOfWork, certificate: x509.Certificate) -> Device:
        issuer_id = self._issuers.issuer_named(certificate.issuer)
        record = None if issuer_id is None else \
            uow.certificates.get(issuer_id, certificate.serial_number)
        device = uow.devices.get(presented_device(record, certificate, self._clock.now()))
        if device is None:
            raise Unauthenticated("the device of this certificate no longer exists")
        return device


def _acting_gateway(device: Device, device_type: DeviceType | None,
                    credentialed: bool | None = None) -> Device:
    """``device``, when it may act as a gateway now: in a state that may take decisions,
    holding a live credential (``credentialed``; None: its certificate was just
    checked), of a gateway type; else ``Unauthenticated``."""
    refused = refusal(device.id, device.state, Transport.DECISION)
    if refused is not None:
        raise Unauthenticated(refused)
    if credentialed is False:
        raise Unauthenticated(f"gateway {device.id!r} holds no live credential")
    if device_type is None or not rules.is_gateway_type(device_type):
        raise Unauthenticated(f"device {device.id!r} is not a gateway")
    return device


def _served(held: Sequence[Psk], now: datetime) -> list[Psk]:
    """The keys a gateway serves for one child: its active key until it expires, and its
    next key while it holds an active one (expired or not: the overlap ended and the job
    promotes it). A child whose PSK was revoked gets neither."""
    active = [p for p in held if p.status is PskStatus.ACTIVE]
    if not active:
        return []
    pending = [p for p in held if p.status is PskStatus.NEXT][-1:]
    live = [active[-1]] if active[-1].expires_at is None or active[-1].expires_at > now \
        else []
    return live + pending


def _draft(tag: AuditTag, gateway: Device, details: dict[str, object] | None = None
           ) -> AuditDraft:
    return AuditDraft(tag=tag, actor=f"gateway:{gateway.id}", org_path=gateway.org_path,
                      subject=f"device:{gateway.id}", details=dict(details or {}))
