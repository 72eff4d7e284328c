"""Credential status over every kind a device holds (``inventory/credential_status``):
the rules on PSKs and OAuth clients, one case each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iotiam.credentials.models import Psk, PskStatus
from iotiam.inventory.credential_status import (
    credential_status_by_device,
    held_client,
    held_psk,
    never_rotated_devices,
)
from iotiam.inventory.models import CredentialStatus
from iotiam.tokens.models import AuthMethod, ClientKind, ClientStatus, GrantType, OAuthClient

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def psk(psk_id: str, status: PskStatus = PskStatus.ACTIVE, *, made: datetime = T0,
        expires: datetime | None = None) -> Psk:
    return Psk(id=psk_id, identity="dev", device_id="dev", org_path="/root/",
               encrypted_key=b"sealed", status=status, created_at=made, expires_at=expires)


def client(status: ClientStatus = ClientStatus.ACTIVE, *, made: datetime = T0) -> OAuthClient:
    return OAuthClient(client_id="dev", kind=ClientKind.DEVICE, device_id="dev",
                       org_unit_id="root", org_path="/root/",
                       auth_methods=(AuthMethod.TLS_CLIENT_AUTH,),
                       grant_types=(GrantType.CLIENT_CREDENTIALS,), scopes=(), audiences=(),
                       jwks=None, status=status, created_at=made, created_by="test")


def status_of(*held: Psk | OAuthClient, at: datetime, rotation_age: timedelta = 30 * DAY
              ) -> CredentialStatus:
    judged = [h for h in (held_psk(x) if isinstance(x, Psk) else held_client(x)
                          for x in held) if h is not None]
    return credential_status_by_device(judged, now=at, rotation_age=rotation_age).get(
        "dev", CredentialStatus.NONE)


def test_psk_ok_pending_rotation_makes_current_key_expiring() -> None:
    """A scheduled rotation's next key is not the device's credential: the current key,
    its end moved to the overlap's, is due (expiring) until the next one is promoted."""
    at = T0 + 10 * DAY
    assert status_of(psk("a"), at=at) is CredentialStatus.ACTIVE
    assert status_of(psk("a", expires=at + DAY), psk("b", PskStatus.NEXT, made=at),
                     at=at + timedelta(hours=1)) is CredentialStatus.EXPIRING
    assert status_of(psk("a", PskStatus.REVOKED), psk("b", made=at),
                     at=at + timedelta(hours=1)) is CredentialStatus.ACTIVE


def test_psk_ok_without_lifetime_ages_past_rotation_age() -> None:
    assert status_of(psk("a"), at=T0 + 31 * DAY) is CredentialStatus.OVERDUE_ROTATION
    assert status_of(psk("a", PskStatus.REVOKED), at=T0) is CredentialStatus.REVOKED
    assert status_of(psk("a", expires=T0 + DAY), at=T0 + 2 * DAY) is CredentialStatus.EXPIRED


def test_client_ok_decides_only_without_live_key() -> None:
    """An older live PSK decides over a newer client; without a live key the client does."""
    at = T0 + 40 * DAY
    newer = client(made=T0 + 39 * DAY)
    assert status_of(psk("a"), newer, at=at) is CredentialStatus.OVERDUE_ROTATION
    assert status_of(psk("a", PskStatus.REVOKED), newer, at=at) is CredentialStatus.ACTIVE
    assert status_of(client(ClientStatus.REVOKED), at=at) is CredentialStatus.REVOKED


def test_never_rotated_ok_counts_psk_age_from_its_creation() -> None:
    held = [h for h in (held_psk(psk("a")), held_psk(psk("b", made=T0 + 20 * DAY)))
            if h is not None]
    assert never_rotated_devices(held, now=T0 + 25 * DAY,
                                 max_age_by_device={"dev": 10 * DAY}) == set()
    assert never_rotated_devices(held, now=T0 + 31 * DAY,
                                 max_age_by_device={"dev": 10 * DAY}) == {"dev"}
