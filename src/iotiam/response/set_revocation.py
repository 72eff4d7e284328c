"""Revocation that cascades: every credential of every device a filter selects.

The playbook for a compromised manufacturer batch, firmware version or IDevID CA
(``docs/revocation.md``). The selected devices are revoked in batches, one transaction
each: a batch revokes its devices' certificates, PSKs and OAuth clients in one statement
per kind, ends their access tokens, bumps the CRL watermark of each issuer once, records
one change per credential (OCSP, the PDP's subjects and the broker sync follow the feed
exactly as for a single revocation, G3) and appends one audit record naming its
members' digest. The set itself is audited once, before its first batch, with the
filter, the reason and the digest of every selected device.

A batch that fails rolls back whole; the batches before it stay revoked (G4): the
reply of a failed run is the error, and running the same filter again takes the rest.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import CertificateRevoked, CredentialRevoked
from iotiam.clock import Clock
from iotiam.errors import InvalidInput
from iotiam.kernel import Principal, Role, Transactions
from iotiam.pki.models import RevocationReason, revocation_counter
from iotiam.response.device_filter import DeviceFilter, parse_filter
from iotiam.response.models import CredentialKind, LiveCredential, SetRevocationReport
from iotiam.response.ports import LiveSessions, SetRevocationUnitOfWork

#: devices per batch: one transaction, one audit record (10,000 devices: 20 batches)
BATCH_DEVICES = 500
#: how many device ids a reply or an audit record lists (the digest covers them all)
SAMPLE_IDS = 20


class SetRevocation:
    """Selects devices by a :class:`DeviceFilter` and revokes all their credentials."""

    def __init__(self, uow: Transactions[SetRevocationUnitOfWork], clock: Clock,
                 audit: Auditor, sessions: LiveSessions, *,
                 batch_devices: int = BATCH_DEVICES) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self.sessions = sessions
        self._batch = batch_devices

    def preview(self, actor: Principal, where: str, reason: str = "unspecified"
                ) -> SetRevocationReport:
        """Dry run: what ``revoke`` would take away now, changing nothing."""
        actor.require(Role.OPERATOR, "previewing a set revocation")
        wanted, parsed = parse_filter(where), RevocationReason.parse(reason)
        now = self._clock.now()
        with self._uow.reading() as uow:
            device_ids = uow.revocation_sets.matching(wanted, actor.org_path)
            live: list[LiveCredential] = []
            for batch in _batches(device_ids, self._batch):
                live += uow.revocation_sets.live_credentials(batch, now)
        return self._report(wanted, parsed, device_ids, live, dry_run=True)

    def revoke(self, actor: Principal, where: str, reason: str = "unspecified"
               ) -> SetRevocationReport:
        """Revoke every live credential of the selected devices, batch by batch."""
        draft = AuditDraft(tag=AuditTag.REVOCATION_SET_REFUSED, actor=actor.name,
                           org_path=actor.org_path,
                           subject=f"revocation-set:{str(where)[:200]}")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "revoking a set of devices")
            wanted, parsed = parse_filter(where), RevocationReason.parse(reason)
            with self._uow.reading() as uow:
                device_ids = uow.revocation_sets.matching(wanted, actor.org_path)
        sessions = self.sessions.connected(device_ids)
        set_id = secrets.token_hex(8)
        batches = _batches(device_ids, self._batch)
        with self._uow() as uow:
            # the set is on record before its first credential goes
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.REVOCATION_SET_STARTED, actor=actor.name,
                org_path=actor.org_path, subject=f"revocation-set:{set_id}",
                details={"filter": wanted.text(), "reason": str(parsed),
                         "devices": len(device_ids), "batches": len(batches),
                         "devices_sha256": ids_digest(device_ids),
                         "sample": device_ids[:SAMPLE_IDS]}))
        revoked: list[LiveCredential] = []
        for number, batch in enumerate(batches, 1):
            with self._uow() as uow:
                revoked += self._revoke_batch(uow, actor, set_id, number, batch, parsed)
        report = self._report(wanted, parsed, device_ids, revoked, dry_run=False)
        return replace(report, sessions=sessions, batches=len(batches), set_id=set_id)

    def _revoke_batch(self, uow: SetRevocationUnitOfWork, actor: Principal, set_id: str,
                      number: int, batch: Sequence[str], reason: RevocationReason, *,
                      audited: bool = True) -> list[LiveCredential]:
        """Inside ``uow``: the batch's credentials, its changes, its audit record."""
        now = self._clock.now()
        live = uow.revocation_sets.live_credentials(batch, now, lock=True)
        uow.revocation_sets.revoke(live, batch, now, reason)
        for issuer_id in sorted({c.issuer_id for c in live if c.issuer_id}):
            uow.counters.next(revocation_counter(issuer_id))
        for credential in live:
            uow.changes.record(_change(credential))
        if not audited:
            return live
        counts = Counter(c.kind for c in live)
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.REVOCATION_SET_BATCH_REVOKED, actor=actor.name,
            org_path=actor.org_path, subject=f"revocation-set:{set_id}:{number}",
            details={"set": set_id, "batch": number, "reason": str(reason),
                     "devices": len(batch), "devices_sha256": ids_digest(batch),
                     "credentials_sha256": credentials_digest(live),
                     "certificates": counts[CredentialKind.CERTIFICATE],
                     "psks": counts[CredentialKind.PSK],
                     "oauth_clients": counts[CredentialKind.OAUTH_CLIENT],
                     "first": batch[0], "last": batch[-1]}))
        return live

    def drill(self, actor: Principal, where: str, reason: str = "unspecified"
              ) -> SetRevocationReport:
        """Rehearse ``revoke``: the same writes, batch by batch, in one transaction that is
        rolled back, then checked: ``left_live`` counts what the selected devices would
        still hold (0: the playbook takes everything). Only the drill itself is audited."""
        actor.require(Role.ADMIN, "drilling a set revocation")
        wanted, parsed = parse_filter(where), RevocationReason.parse(reason)
        outcome: list[tuple[list[str], list[LiveCredential], int]] = []
        try:
            with self._uow() as uow:
                outcome.append(self._rehearse(uow, actor, wanted, parsed))
                raise _RolledBack
        except _RolledBack:
            pass
        device_ids, revoked, left = outcome[0]
        report = replace(self._report(wanted, parsed, device_ids, revoked, dry_run=True),
                         drill=True, left_live=left,
                         batches=len(_batches(device_ids, self._batch)))
        self._audit.record(AuditDraft(
            tag=AuditTag.REVOCATION_SET_DRILLED, actor=actor.name, org_path=actor.org_path,
            subject="revocation-set:drill", details={
                "filter": report.filter, "reason": report.reason, "devices": report.devices,
                "certificates": report.certificates, "psks": report.psks,
                "oauth_clients": report.oauth_clients, "left_live": left,
                "devices_sha256": report.devices_sha256}))
        return report

    def _rehearse(self, uow: SetRevocationUnitOfWork, actor: Principal, wanted: DeviceFilter,
                  reason: RevocationReason) -> tuple[list[str], list[LiveCredential], int]:
        device_ids = uow.revocation_sets.matching(wanted, actor.org_path)
        revoked: list[LiveCredential] = []
        batches = _batches(device_ids, self._batch)
        for number, batch in enumerate(batches, 1):
            revoked += self._revoke_batch(uow, actor, "drill", number, batch, reason,
                                          audited=False)
        now = self._clock.now()
        left = sum(len(uow.revocation_sets.live_credentials(batch, now)) for batch in batches)
        return device_ids, revoked, left

    def _report(self, wanted: DeviceFilter, reason: RevocationReason,
                device_ids: list[str], live: Sequence[LiveCredential], *, dry_run: bool
                ) -> SetRevocationReport:
        counts = Counter(c.kind for c in live)
        return SetRevocationReport(
            filter=wanted.text(), dry_run=dry_run, devices=len(device_ids),
            certificates=counts[CredentialKind.CERTIFICATE], psks=counts[CredentialKind.PSK],
            oauth_clients=counts[CredentialKind.OAUTH_CLIENT],
            sessions=self.sessions.connected(device_ids) if dry_run else None,
            reason=str(reason), devices_sha256=ids_digest(device_ids),
            sample=tuple(device_ids[:SAMPLE_IDS]))


class _RolledBack(Exception):
    """Ends a drill's transaction: everything it wrote is rolled back."""


def ids_digest(device_ids: Sequence[str]) -> str:
    """SHA-256 of the device ids, sorted, one per line (what an auditor recomputes)."""
    return hashlib.sha256("".join(f"{d}\n" for d in sorted(device_ids)).encode()).hexdigest()


def credentials_digest(live: Sequence[LiveCredential]) -> str:
    """SHA-256 of ``kind:issuer:id`` per credential, sorted, one per line."""
    lines = sorted(f"{c.kind}:{c.issuer_id or ''}:{c.id}\n" for c in live)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _batches(device_ids: Sequence[str], size: int) -> list[Sequence[str]]:
    if size < 1:
        raise InvalidInput("batch size must be at least 1")
    return [device_ids[i:i + size] for i in range(0, len(device_ids), size)]


def _change(credential: LiveCredential) -> CertificateRevoked | CredentialRevoked:
    if credential.kind is CredentialKind.CERTIFICATE:
        assert credential.serial is not None and credential.issuer_id is not None
        return CertificateRevoked(credential.serial, credential.issuer_id,
                                  credential.device_id)
    return CredentialRevoked(str(credential.kind), credential.id, credential.device_id)


__all__ = ["BATCH_DEVICES", "SetRevocation", "credentials_digest", "ids_digest",
           "parse_filter"]
