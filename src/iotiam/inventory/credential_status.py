"""Credential hygiene: which bucket each device's credentials put it in.

Every credential kind the device page lists is judged alike (docs/console.md,
"Credential status"): a certificate from its validity; a PSK as a credential valid from
its creation until it expires (never, without a lifetime); a device's OAuth client as
one valid from its registration with no end. A PSK made as the *next* key of a
scheduled rotation is not the device's credential until it is promoted. An OAuth client
holds no key of its own that iotiam rotates (it signs with the device's certificate or
its registered keys), so it decides a device's status only when the device holds no
live certificate or PSK.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from iotiam.credentials.models import Psk, PskStatus
from iotiam.inventory.models import CredentialStatus, CredentialTally, Device
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.tokens.models import ClientStatus, OAuthClient

#: the end of a credential that has none (a PSK without a lifetime, an OAuth client)
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
#: the kinds a device's credential status is judged from, as ``HeldCredential.kind``
CERTIFICATE, PSK, OAUTH_CLIENT = "certificate", "psk", "oauth-client"


@dataclass(frozen=True)
class HeldCredential:
    """One credential of a device as its credential status sees it, whatever its kind."""

    device_id: str
    kind: str
    #: not revoked (an issued certificate, an active PSK or client); it may have expired
    live: bool
    not_before: datetime
    not_after: datetime
    #: what names its key (a key age is counted per key); None: not known
    key: str | None

    @property
    def fallback(self) -> bool:
        """Judged only when the device holds no live certificate or PSK."""
        return self.kind == OAUTH_CLIENT


def held_certificate(cert: CertificateRecord) -> HeldCredential | None:
    """A device certificate as judged (None: no device's, or not signed yet)."""
    if cert.device_id is None or cert.status is CertificateStatus.RESERVED:
        return None
    return HeldCredential(cert.device_id, CERTIFICATE, cert.status is CertificateStatus.ISSUED,
                          cert.not_before, cert.not_after, cert.public_key_sha256)


def held_psk(psk: Psk) -> HeldCredential | None:
    """A PSK as judged (None: a next key, not the device's credential until promoted)."""
    if psk.status is PskStatus.NEXT:
        return None
    return HeldCredential(psk.device_id, PSK, psk.status is PskStatus.ACTIVE, psk.created_at,
                          psk.expires_at or NEVER, f"psk:{psk.id}")


def held_client(client: OAuthClient) -> HeldCredential | None:
    """A device's OAuth client as judged (None: a service's)."""
    if client.device_id is None:
        return None
    return HeldCredential(client.device_id, OAUTH_CLIENT, client.status is ClientStatus.ACTIVE,
                          client.created_at, NEVER, f"oauth:{client.client_id}")


def held_credentials(certificates: Iterable[CertificateRecord], psks: Iterable[Psk],
                     clients: Iterable[OAuthClient | None]) -> list[HeldCredential]:
    """Every credential of these kinds as judged, those that judge nothing left out (a
    reserved certificate, a next PSK, a service's client)."""
    found = [*map(held_certificate, certificates), *map(held_psk, psks),
             *(held_client(c) for c in clients if c is not None)]
    return [held for held in found if held is not None]


def _held(credentials: Iterable[CertificateRecord | HeldCredential]) -> list[HeldCredential]:
    found = []
    for item in credentials:
        held = held_certificate(item) if isinstance(item, CertificateRecord) else item
        if held is not None:
            found.append(held)
    return found


def _current(held: Iterable[HeldCredential], now: datetime
             ) -> tuple[dict[str, HeldCredential], set[str], set[str]]:
    """Per device, the credential that decides its status (the newest live key, else the
    newest live OAuth client); the devices with an expired unrevoked one; every holder."""
    newest: dict[str, HeldCredential] = {}
    fallback: dict[str, HeldCredential] = {}
    has_expired: set[str] = set()
    seen: set[str] = set()
    for cred in held:
        seen.add(cred.device_id)
        if not cred.live:
            continue
        if cred.not_after <= now:
            has_expired.add(cred.device_id)
            continue
        slot = fallback if cred.fallback else newest
        current = slot.get(cred.device_id)
        if current is None or cred.not_before > current.not_before:
            slot[cred.device_id] = cred
    return {**fallback, **newest}, has_expired, seen

#: a certificate is renewed at this fraction of its lifetime (what the agent does) ...
RENEWAL_POINT = 2 / 3
#: ... give or take this fraction of the lifetime, so that a fleet does not renew at once
RENEWAL_JITTER = 0.05
#: how ``expiring`` is judged by default, for reports
EXPIRING_RULE = (f"past its renewal point ({RENEWAL_POINT:.0%} of its lifetime, "
                 f"+{RENEWAL_JITTER:.0%} jitter) and not renewed")


def renewal_point(not_before: datetime, not_after: datetime) -> datetime:
    """When a healthy renewer would certainly have replaced a credential valid from
    ``not_before`` to ``not_after``.

    Judged against each credential's own lifetime: with 24 h certificates a fixed
    window of days would call every device "expiring".
    """
    return not_before + (not_after - not_before) * (RENEWAL_POINT + RENEWAL_JITTER)


def credential_status_by_device(
    credentials: Iterable[CertificateRecord | HeldCredential],
    *,
    now: datetime,
    rotation_age: timedelta,
    expiring_within: timedelta | None = None,
) -> dict[str, CredentialStatus]:
    """Classify each device by its current credential (:func:`_current`).

    A device with a live (not revoked, unexpired) credential is ``expiring`` when that
    credential is past its renewal point (:func:`renewal_point` of its validity: a
    newer one would be current) or, if ``expiring_within`` is given, ends within it;
    ``older-than-rotation-age`` when it was made longer ago than ``rotation_age``,
    otherwise ``active``. Without a live one it is ``expired`` if any unrevoked
    credential expired, else ``revoked``.
    """
    current, has_expired, seen = _current(_held(credentials), now)
    result: dict[str, CredentialStatus] = {}
    for device_id in seen:
        live = current.get(device_id)
        if live is None:
            result[device_id] = (
                CredentialStatus.EXPIRED if device_id in has_expired else CredentialStatus.REVOKED
            )
        elif now >= renewal_point(live.not_before, live.not_after) or (
                expiring_within is not None and live.not_after - now <= expiring_within):
            result[device_id] = CredentialStatus.EXPIRING
        elif now - live.not_before >= rotation_age:
            result[device_id] = CredentialStatus.OVERDUE_ROTATION
        else:
            result[device_id] = CredentialStatus.ACTIVE
    return result


def never_rotated_devices(
    credentials: Iterable[CertificateRecord | HeldCredential],
    *,
    now: datetime,
    max_age_by_device: dict[str, timedelta],
) -> set[str]:
    """Devices whose current key was first certified longer ago than their type allows.

    Renewing onto the same key keeps the certificate fresh but not the key: the age
    that matters is the key's, counted from its first certificate (a PSK's and an
    OAuth client's from their creation).
    """
    keyed = [cred for cred in _held(credentials) if cred.key is not None]
    first_seen: dict[tuple[str, str], datetime] = {}
    for cred in keyed:
        key = (cred.device_id, cred.key or "")
        if key not in first_seen or cred.not_before < first_seen[key]:
            first_seen[key] = cred.not_before
    current, _, _ = _current(keyed, now)
    return {
        device_id
        for device_id, cred in current.items()
        if device_id in max_age_by_device
        and now - first_seen[(device_id, cred.key or "")] >= max_age_by_device[device_id]
    }


def credential_tally(
    devices: Iterable[Device],
    credentials: Iterable[CertificateRecord | HeldCredential],
    *,
    now: datetime,
    rotation_age: timedelta,
    expiring_within: timedelta | None,
    max_age_by_type: dict[str, timedelta],
) -> CredentialTally:
    """Statuses and never-rotated keys of ``devices``, judged from every credential.

    The full recount: the in-memory stores answer with it, and the maintained counts of
    the SQL stores must always equal it.
    """
    type_of = {d.id: d.type_name for d in devices}
    mine = [c for c in _held(credentials) if c.device_id in type_of]
    statuses = credential_status_by_device(mine, now=now, rotation_age=rotation_age,
                                           expiring_within=expiring_within)
    max_age = {device: max_age_by_type[kind] for device, kind in type_of.items()
               if kind in max_age_by_type}
    never_rotated = never_rotated_devices(mine, now=now, max_age_by_device=max_age)
    return CredentialTally(dict(Counter(str(s) for s in statuses.values())),
                           len(never_rotated))
