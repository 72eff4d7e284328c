"""A set revocation's selection and bulk writes (``response.ports.RevocationSetStore``).

Where each filter field lives (nothing new is stored for it):

* ``type``, ``site``: the device's columns;
* ``manufacturer``: the device's ``manufacturer`` attribute (set when a manufacturer's
  IDevID or its approval-queue request registered the device, or given at import), or
  the manufacturer's manifest listing the device's id as a serial;
* ``issuer``: a registered manufacturer IDevID CA, by name or SHA-256 fingerprint; it
  selects the devices that manufacturer vouches for, as ``manufacturer`` does;
* ``batch``: the device's ``batch`` attribute (import rows and ``POST /v1/devices`` set
  it), or the ``batch`` column of the manufacturer's manifest row of the device's id;
* ``firmware``: the version the device last attested (``device_firmware``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, or_, select, update

from iotiam.credentials.models import PskStatus
from iotiam.pki.models import CertificateStatus, RevocationReason, serial_hex
from iotiam.response.device_filter import DeviceFilter, FilterField
from iotiam.response.models import CredentialKind, LiveCredential
from iotiam.storage.credential_standing import refresh_standing
from iotiam.storage.rows import load_json, one_of, under_path
from iotiam.storage.tables import attestation as ta
from iotiam.storage.tables import credentials as tc
from iotiam.storage.tables import enrollment as te
from iotiam.storage.tables import inventory as ti
from iotiam.storage.tables import pki as tp
from iotiam.storage.tables import tokens as tt
from iotiam.tokens.models import ClientStatus


class SqlRevocationSetStore:
    """Selection by filter, live credentials and their revocation, a batch at a time."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def matching(self, wanted: DeviceFilter, org_path: str) -> list[str]:
        """Ids of the devices under ``org_path`` that ``wanted`` selects, sorted."""
        d = ti.devices.c
        query = select(d.id, d.attributes).where(under_path(d.org_path, org_path))
        if (kind := wanted.value(FilterField.TYPE)) is not None:
            query = query.where(d.type_name == kind)
        if (site := wanted.value(FilterField.SITE)) is not None:
            query = query.where(d.site == site)
        if (version := wanted.value(FilterField.FIRMWARE)) is not None:
            f = ta.device_firmware.c
            query = query.where(d.id.in_(select(f.device_id)
                                         .where(f.firmware_version == version)))
        maker = self._maker(wanted)
        if maker == "":
            return []
        m = te.manifest_entries.c
        listed: set[str] = set()
        if maker is not None:
            listed = set(self._c.execute(select(m.serial).where(m.manufacturer == maker))
                         .scalars())
        batch = wanted.value(FilterField.BATCH)
        in_batch: set[str] = set()
        if batch is not None:
            in_batch = set(self._c.execute(select(m.serial).where(m.batch == batch))
                           .scalars())
        found = []
        for device_id, attributes_text in self._c.execute(query):
            attributes = load_json(attributes_text) if attributes_text else {}
            if maker is not None and attributes.get("manufacturer") != maker \
                    and device_id not in listed:
                continue
            if batch is not None and attributes.get("batch") != batch \
                    and device_id not in in_batch:
                continue
            found.append(device_id)
        return sorted(found)

    def _maker(self, wanted: DeviceFilter) -> str | None:
        """The manufacturer the filter names (None: any; "": none can match)."""
        named = wanted.value(FilterField.MANUFACTURER)
        issuer = wanted.value(FilterField.ISSUER)
        if issuer is None:
            return named
        m = te.manufacturers.c
        fingerprint = issuer.replace(":", "").lower()
        found = self._c.execute(select(m.name).where(
            or_(m.name == issuer, m.fingerprint_sha256 == fingerprint))).scalar()
        if found is None or (named is not None and named != found):
            return ""
        return str(found)

    def live_credentials(self, device_ids: Sequence[str], now: datetime, *,
                         lock: bool = False) -> list[LiveCredential]:
        """Issued unexpired certificates, active PSKs and OAuth clients of the devices;
        ``lock``: their rows stay this transaction's until it ends (PostgreSQL: two set
        revocations of one device never both count its credentials)."""
        if not device_ids:
            return []
        ids = list(device_ids)
        c, p, o = tp.certificates.c, tc.psks.c, tt.oauth_clients.c
        queries = (
            select(c.issuer_id, c.serial, c.device_id).where(
                one_of(self._c, c.device_id, ids), c.status == str(CertificateStatus.ISSUED),
                c.not_after > now).order_by(c.id),
            select(p.id, p.device_id).where(one_of(self._c, p.device_id, ids),
                                            p.status == str(PskStatus.ACTIVE)),
            select(o.client_id, o.device_id).where(one_of(self._c, o.device_id, ids),
                                                   o.status == str(ClientStatus.ACTIVE)),
        )
        certificates, psks, clients = (
            self._c.execute(q.with_for_update() if lock else q) for q in queries)
        live = [LiveCredential(CredentialKind.CERTIFICATE, r.serial, r.device_id,
                               issuer_id=r.issuer_id, serial=int(r.serial, 16))
                for r in certificates]
        live += [LiveCredential(CredentialKind.PSK, r.id, r.device_id) for r in psks]
        live += [LiveCredential(CredentialKind.OAUTH_CLIENT, r.client_id, r.device_id)
                 for r in clients]
        return live

    def revoke(self, credentials: Sequence[LiveCredential], device_ids: Sequence[str],
               at: datetime, reason: RevocationReason) -> None:
        """One statement per kind for the whole batch; tokens of the devices end at ``at``."""
        certificates = [x for x in credentials if x.kind is CredentialKind.CERTIFICATE]
        if certificates:
            c = tp.certificates.c
            self._c.execute(
                update(tp.certificates).where(
                    c.issuer_id == bindparam("b_issuer"), c.serial == bindparam("b_serial"),
                    c.status != str(CertificateStatus.REVOKED))
                .values(status=str(CertificateStatus.REVOKED), revoked_at=at,
                        revocation_reason=str(reason)),
                [{"b_issuer": x.issuer_id, "b_serial": serial_hex(x.serial or 0)}
                 for x in certificates])
        psks = [x.id for x in credentials if x.kind is CredentialKind.PSK]
        if psks:
            p = tc.psks.c
            self._c.execute(update(tc.psks).where(one_of(self._c, p.id, psks),
                                                  p.status == str(PskStatus.ACTIVE))
                            .values(status=str(PskStatus.REVOKED), revoked_at=at,
                                    revocation_reason=str(reason)))
        clients = [x.id for x in credentials if x.kind is CredentialKind.OAUTH_CLIENT]
        if clients:
            o = tt.oauth_clients.c
            self._c.execute(update(tt.oauth_clients).where(
                one_of(self._c, o.client_id, clients), o.status == str(ClientStatus.ACTIVE))
                .values(status=str(ClientStatus.REVOKED), revoked_at=at))
        # every kind counts in the report's credential status
        refresh_standing(self._c, {x.device_id for x in credentials})
        if device_ids:
            d = ti.devices.c
            self._c.execute(update(ti.devices).where(one_of(self._c, d.id, list(device_ids)))
                            .values(tokens_not_before=at))
