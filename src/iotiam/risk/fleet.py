"""Fleet-level checks in the spirit of AWS IoT Device Defender's audit: the CAs
(expiring, weak, revoked yet trusted), device certificates still active under a revoked
CA, and whether audit records and alerts leave the installation. Pure functions."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.pki.ports import StoredCa
from iotiam.risk.credentials import weak_key
from iotiam.risk.models import (
    CaFacts,
    FactorHit,
    FleetChannels,
    RiskFactor,
    RiskSettings,
    Severity,
    hit,
    when,
)


def ca_checks(ca: CaFacts, *, now: float, settings: RiskSettings) -> list[FactorHit]:
    """Expiring or expired, weak key or signature, revoked yet still trusted."""
    found: list[FactorHit] = []
    left = ca.not_after - now
    if left < settings.ca_expiry_seconds:
        found.append(hit(
            RiskFactor.CA_EXPIRING,
            "expired" if left <= 0 else f"expires in {left / 86400.0:.0f} days",
            {"ca": ca.id, "subject": ca.subject, "not_after": when(ca.not_after),
             "warn_days": round(settings.ca_expiry_seconds / 86400.0, 1)},
            severity=Severity.CRITICAL if left < 7 * 86400.0 else None))
    weak = weak_key(ca.key, ca.signature_hash)
    if weak is not None:
        found.append(hit(RiskFactor.CA_WEAK, weak.summary,
                         {"ca": ca.id, "subject": ca.subject, **weak.evidence}))
    if ca.revoked_at is not None:
        # it is one iotiam runs: still in the trust stores it publishes
        found.append(hit(RiskFactor.REVOKED_CA_TRUSTED, "revoked, yet still a trusted CA",
                         {"ca": ca.id, "subject": ca.subject, "revoked_at": when(ca.revoked_at)},
                         since=ca.revoked_at))
    return found


def under_revoked_ca(cert: CertificateRecord, revoked_ca_ids: dict[str, float],
                     now: float) -> FactorHit | None:
    """A device certificate still active (issued, unexpired) under a revoked CA."""
    revoked_at = revoked_ca_ids.get(cert.issuer_id)
    if revoked_at is None or cert.status is not CertificateStatus.ISSUED \
            or cert.not_after.timestamp() <= now:
        return None
    return hit(RiskFactor.ACTIVE_UNDER_REVOKED_CA, "active under a revoked CA",
               {"issuer": cert.issuer_id, "serial": cert.serial_hex,
                "ca_revoked_at": when(revoked_at)}, since=revoked_at)


def channel_checks(channels: FleetChannels) -> list[FactorHit]:
    """Audit records not exported, alerts going nowhere."""
    found: list[FactorHit] = []
    if not channels.audit_export:
        found.append(hit(RiskFactor.AUDIT_EXPORT_DISABLED,
                         "audit records are not exported to a SIEM or syslog",
                         {"audit_export": False}))
    if not channels.alert_channels:
        found.append(hit(RiskFactor.ALERT_CHANNELS_DISABLED,
                         "findings raise no alert: no webhook and no syslog target",
                         {"alert_channels": []}))
    return found


def key_description(certificate: x509.Certificate) -> str:
    """``rsa:2048``, ``ec:secp256r1``, ``ed25519``: the form ``credentials.weak_key`` reads."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa:{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec:{key.curve.name}"
    return type(key).__name__.lower().removesuffix("publickey").lstrip("_")


def ca_facts(stored: StoredCa, revoked_at: float | None) -> CaFacts:
    """What the fleet checks read of a CA iotiam holds."""
    certificate = x509.load_pem_x509_certificate(stored.certificate_pem.encode())
    digest = certificate.signature_hash_algorithm
    return CaFacts(stored.id, str(stored.role), certificate.subject.rfc4514_string(),
                   certificate.not_valid_after_utc.timestamp(), key_description(certificate),
                   digest.name if digest is not None else None, revoked_at)
