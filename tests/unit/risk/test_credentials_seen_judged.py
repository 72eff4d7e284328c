"""Issued certificates judged by what the sources saw: the entry names the certificate,
expiry is judged from the time seen whatever the status, and a sensor that logged only
the issuer and serial still counts (the accuracy classes of issue 13)."""

from __future__ import annotations

from iotiam.discovery.models import CredentialSeen, IdentifierKind
from iotiam.pki.models import CertificateStatus
from iotiam.risk import credentials
from iotiam.risk.builder import FleetIndex, RegisterBuilder
from iotiam.risk.models import CaFacts, RiskFactor, RiskSettings

from .facts import DAY, NOW, cert, device, device_type

SETTINGS = RiskSettings()


def seen(kind: IdentifierKind, value: str, *, last_days: float = 0) -> CredentialSeen:
    return CredentialSeen(kind, value, "/root/acme/", NOW - last_days * DAY, ("dev-1",))


def judged(record, seen_as):  # type: ignore[no-untyped-def]
    return credentials.certificate_checks(
        record, now=NOW, settings=SETTINGS, max_key_age=None, key_since=None, renewed=True,
        seen=seen_as)


def test_fail_revoked_in_use_names_the_certificate_and_device() -> None:
    record = cert(status=CertificateStatus.REVOKED, revoked_days=3)
    hits = judged(record, seen(IdentifierKind.CERTIFICATE, record.fingerprint_sha256 or "",
                               last_days=1))
    (hit,) = [h for h in hits if h.factor is RiskFactor.REVOKED_IN_USE]
    assert hit.evidence["device"] == "dev-1"
    assert hit.evidence["serial"] == record.serial_hex
    assert hit.evidence["fingerprint"] == record.fingerprint_sha256


def test_fail_expired_in_use_names_the_certificate() -> None:
    record = cert(issued_days=20, lifetime_days=10)
    hits = judged(record, seen(IdentifierKind.CERTIFICATE, record.fingerprint_sha256 or ""))
    (hit,) = [h for h in hits if h.factor is RiskFactor.EXPIRED_IN_USE]
    assert (hit.evidence["device"], hit.evidence["serial"]) == ("dev-1", record.serial_hex)


def test_fail_revoked_certificate_seen_after_it_expired_is_also_expired_in_use() -> None:
    record = cert(issued_days=20, lifetime_days=10, status=CertificateStatus.REVOKED,
                  revoked_days=15)
    hits = judged(record, seen(IdentifierKind.CERTIFICATE, record.fingerprint_sha256 or ""))
    assert {h.factor for h in hits} >= {RiskFactor.REVOKED_IN_USE, RiskFactor.EXPIRED_IN_USE}


def test_ok_revoked_certificate_seen_before_it_expired_is_not_expired_in_use() -> None:
    record = cert(issued_days=20, lifetime_days=10, status=CertificateStatus.REVOKED,
                  revoked_days=15)
    hits = judged(record, seen(IdentifierKind.CERTIFICATE, record.fingerprint_sha256 or "",
                               last_days=12))
    assert {h.factor for h in hits} == {RiskFactor.REVOKED_IN_USE}


def test_fail_revoked_in_use_when_the_sensor_logged_issuer_and_serial_only() -> None:
    record = cert(status=CertificateStatus.REVOKED, revoked_days=3)
    ca = CaFacts(id=record.issuer_id, role="issuing", subject="CN=iotiam issuing",
                 not_after=NOW + 400 * DAY, key="ec:secp256r1", signature_hash="sha256")
    key = (IdentifierKind.ISSUER_SERIAL, f"CN=iotiam issuing|{record.serial_hex}")
    builder = RegisterBuilder(FleetIndex(
        now=NOW, settings=SETTINGS, types={"sensor": device_type()}, cas=[ca],
        certificates={"dev-1": [record]},
        seen_credentials={key: seen(*key, last_days=1)}))
    entries = builder.device_entries(device())
    found = {h.factor for e in entries for h in e.factors}
    assert RiskFactor.REVOKED_IN_USE in found


def test_ok_issuer_serial_of_another_ca_is_not_this_certificate() -> None:
    record = cert(status=CertificateStatus.REVOKED, revoked_days=3)
    ca = CaFacts(id=record.issuer_id, role="issuing", subject="CN=iotiam issuing",
                 not_after=NOW + 400 * DAY, key="ec:secp256r1", signature_hash="sha256")
    key = (IdentifierKind.ISSUER_SERIAL, f"CN=Other CA|{record.serial_hex}")
    builder = RegisterBuilder(FleetIndex(
        now=NOW, settings=SETTINGS, types={"sensor": device_type()}, cas=[ca],
        certificates={"dev-1": [record]},
        seen_credentials={key: seen(*key, last_days=1)}))
    found = {h.factor for e in builder.device_entries(device()) for h in e.factors}
    assert RiskFactor.REVOKED_IN_USE not in found
