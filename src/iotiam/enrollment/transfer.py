"""Ownership transfer: a device changes hands and starts over with its new owner.

Everything the old owner gave it is taken away in one transaction — certificates and
PSKs revoked (``affiliationChanged``), unused claim tokens ended, held enrollment
requests closed, group memberships the new org unit cannot hold dropped — then the
device moves, goes back to ``pending`` and gets a fresh one-time claim token for its
new owner. History (revoked credentials, audit records) stays with the old owner.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Generic, TypeVar

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import DeviceChanged
from iotiam.clock import Clock
from iotiam.enrollment.models import Transfer
from iotiam.enrollment.ports import EnrollmentUnitOfWork
from iotiam.enrollment.service import check_claim_ttl, mint_claim
from iotiam.errors import Conflict, NotFound
from iotiam.inventory.models import DeviceState
from iotiam.inventory.ports import CredentialRevoker, visible_device
from iotiam.kernel import Principal, Role, Transactions
from iotiam.policy.ports import DeviceAttachments

DEFAULT_TRANSFER_CLAIM_TTL = timedelta(days=1)
#: a quarantined device stays where it is (moving it would lift the quarantine)
TRANSFERABLE = frozenset({DeviceState.PENDING, DeviceState.ACTIVE, DeviceState.SUSPENDED})
REVOCATION_REASON = "affiliationChanged"

UnitOfWorkT = TypeVar("UnitOfWorkT", bound=EnrollmentUnitOfWork)


class OwnershipTransfer(Generic[UnitOfWorkT]):
    """Move a device to another org unit with a clean slate.

    The device's credentials are revoked and the old owner's policy attachments of the
    device detached in the transaction that moves it, so the transfer's transactions are
    ones its revoker and the policy domain work in too (``UnitOfWorkT``).
    """

    def __init__(self, uow: Transactions[UnitOfWorkT], clock: Clock, audit: Auditor,
                 revoker: CredentialRevoker[UnitOfWorkT],
                 attachments: DeviceAttachments[UnitOfWorkT]) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._revoker = revoker
        self._attachments = attachments

    def transfer(
        self, actor: Principal, device_id: str, to_org: str,
        claim_ttl: timedelta = DEFAULT_TRANSFER_CLAIM_TTL,
    ) -> Transfer:
        """Needs admin rights over both the device's org unit and ``to_org`` (G9: 404)."""
        draft = AuditDraft(tag=AuditTag.DEVICE_TRANSFERRED, actor=actor.name,
                           org_path=actor.org_path, subject=f"device:{device_id[:128]}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.ADMIN, "transferring devices")
            check_claim_ttl(claim_ttl)
            device = visible_device(uow.devices, actor, device_id,
                                                    for_update=True)
            target = uow.org_units.get(to_org)
            if target is None or not actor.sees(target.path):
                raise NotFound(f"org unit {to_org[:128]!r} not found")
            if target.id == device.org_unit_id:
                raise Conflict(f"device {device.id!r} already belongs to {target.id!r}")
            if device.state not in TRANSFERABLE:
                raise Conflict(f"device {device.id!r} is {device.state}; only pending, active "
                               "or suspended devices change owner")
            now = self._clock.now()
            revoked = self._revoker.revoke_device_credentials(uow, actor, device,
                                                              REVOCATION_REASON)
            claims_ended = uow.claims.expire_for_device(device.id, now)
            requests_closed = uow.enrollment_requests.close_for_device(
                device.id, now, actor.name, "ownership transferred")
            groups_left = uow.ownership.leave_groups_outside(device.id, target.path)
            uow.ownership.move_device(device.id, target.id, target.path, now)
            uow.changes.record(DeviceChanged((device.id,), str(DeviceState.PENDING)))
            # the old owner's policies attached to this very device do not come along
            # (the policy domain records the policy change after the device's, as before)
            policies_detached = self._attachments.detach_device_outside(
                uow, device.id, target.path)
            moved = replace(device, org_unit_id=target.id, org_path=target.path,
                            state=DeviceState.PENDING, updated_at=now)
            claim, plaintext = mint_claim(moved, now, claim_ttl, actor.name)
            uow.claims.add(claim)
            details = {"from": device.org_unit_id, "to": target.id,
                       "previous_state": str(device.state), "credentials_revoked": revoked,
                       "claims_ended": claims_ended, "requests_closed": requests_closed,
                       "groups_left": groups_left, "policies_detached": policies_detached,
                       "claim": claim.id,
                       "claim_expires_at": claim.expires_at.isoformat()}
            # one record on each side, so that both owners' admins see the hand-over
            for side, path in (("from", device.org_path), ("to", target.path)):
                self._audit.append(uow, replace(draft, org_path=path,
                                                subject=f"device:{device.id}",
                                                details={**details, "side": side}))
        return Transfer(device_id=device.id, from_org=device.org_unit_id, to_org=target.id,
                        credentials_revoked=revoked, groups_left=groups_left, claim=claim,
                        claim_token=plaintext)
