"""Credential checks: certificates and PSKs iotiam issued, and those the sources saw.

Pure functions over values: a check takes what it judges and the time, and returns
the hits it finds, each with the values that prove it. Nothing here reads a store.
"""

from __future__ import annotations

from datetime import datetime

from iotiam.credentials.models import Psk, PskStatus
from iotiam.discovery.models import CredentialSeen
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.risk.models import FactorHit, RiskFactor, RiskSettings, Severity, hit, when

#: PSK identities shipped as defaults or used in every example, so anyone may guess them:
#: OpenSSL's ``s_client``/``s_server`` default (``Client_identity``), and the identities
#: of vendor and tutorial examples
WELL_KNOWN_PSK_IDENTITIES = frozenset({
    "client_identity", "identity", "psk_identity", "test", "testing", "default",
    "device", "iot", "admin", "user", "client", "hint", "psk",
})

#: minimum RSA modulus (NIST SP 800-131A Rev. 2 §2: < 2048 bits is disallowed)
MIN_RSA_BITS = 2048
#: curves below 224 bits (P-192, secp160r1 ...) are disallowed by the same section
WEAK_CURVES = frozenset({"secp192r1", "prime192v1", "p-192", "p192", "secp160r1",
                         "secp160k1", "secp160r2", "secp112r1", "secp128r1"})
#: signature hashes with practical collisions (SHA-1: SHAttered, 2017; MD5, MD2)
WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})


def ts(moment: datetime | None) -> float | None:
    """A datetime as seconds since the epoch (None stays None)."""
    return None if moment is None else moment.timestamp()


def weak_key(key: str | None, signature_hash: str | None) -> FactorHit | None:
    """RSA below 2048 bits, a curve below 224 bits, or a SHA-1/MD5 signature."""
    reasons: list[str] = []
    severity = Severity.HIGH
    kind, _, size = (key or "").lower().partition(":")
    if kind == "rsa" and size.isdigit() and int(size) < MIN_RSA_BITS:
        reasons.append(f"RSA key of {size} bits (< {MIN_RSA_BITS})")
        if int(size) <= 1024:
            severity = Severity.CRITICAL  # 512 and 768 are factored; 1024 is in reach
    if kind in ("ec", "ecdsa") and size in WEAK_CURVES:
        reasons.append(f"elliptic curve {size} (< 224 bits)")
    digest = (signature_hash or "").lower().replace("-", "")
    if digest in WEAK_HASHES:
        reasons.append(f"{digest.upper()} signature (collisions are practical)")
    if not reasons:
        return None
    return hit(RiskFactor.WEAK_KEY, "; ".join(reasons),
               {"key": key, "signature_hash": signature_hash}, severity=severity)


def shared(seen: CredentialSeen | None, key_holders: tuple[str, ...] = ()) -> FactorHit | None:
    """The same credential on two devices (or assets), or used from two places at once."""
    holders = sorted(set(key_holders) | set(seen.device_ids if seen else ()))
    assets = sorted(seen.asset_ids) if seen else []
    places = sorted(seen.places, key=lambda p: (p[0] or "", p[1])) if seen else []
    if len(holders) + len(assets) < 2 and len(places) < 2:
        return None
    if len(holders) + len(assets) >= 2:
        summary = f"held by {len(holders)} devices and {len(assets)} unmanaged assets"
    else:
        summary = f"used from {len(places)} places within the same day"
    return hit(RiskFactor.SHARED_CREDENTIAL, summary, {
        "devices": holders[:50], "assets": assets[:50],
        "places": [{"site": s, "ip": ip} for s, ip in places[:50]]})


def certificate_checks(cert: CertificateRecord, *, now: float, settings: RiskSettings,
                       max_key_age: float | None, key_since: float | None,
                       renewed: bool, seen: CredentialSeen | None,
                       key_holders: tuple[str, ...] = ()) -> list[FactorHit]:
    """The factors of one certificate iotiam issued.

    ``key_since`` is when its key was first certified (a renewal with the same key is no
    rotation); ``renewed`` says a newer certificate of the same device exists.
    """
    found: list[FactorHit] = []
    not_before, not_after = cert.not_before.timestamp(), cert.not_after.timestamp()
    last_seen = seen.last_seen if seen else None
    live = cert.status is CertificateStatus.ISSUED and now < not_after
    # the evidence names the certificate as a sensor saw it, and its device
    named = certificate_names(cert)
    if cert.status is CertificateStatus.REVOKED and cert.revoked_at is not None \
            and last_seen is not None and last_seen > cert.revoked_at.timestamp():
        found.append(hit(RiskFactor.REVOKED_IN_USE, "seen in use after it was revoked", {
            **named, "revoked_at": when(ts(cert.revoked_at)), "last_seen": when(last_seen),
            "reason": str(cert.revocation_reason) if cert.revocation_reason else None},
            since=cert.revoked_at.timestamp()))
    # judged by what the sources saw against its notAfter, whatever its status now: a
    # revoked certificate used after it expired was both (RFC 5280 §4.1.2.5)
    if cert.status is not CertificateStatus.RESERVED and last_seen is not None \
            and last_seen > not_after:
        found.append(hit(RiskFactor.EXPIRED_IN_USE, "seen in use after it expired",
                         {**named, "not_after": when(not_after), "last_seen": when(last_seen)},
                         since=not_after))
    renewal_point = not_before + (not_after - not_before) * settings.renewal_fraction
    if live and now >= renewal_point and not renewed:
        found.append(hit(RiskFactor.EXPIRING_NO_RENEWAL,
                         "past its renewal point and no newer certificate was issued",
                         {"renewal_point": when(renewal_point), "not_after": when(not_after)},
                         since=renewal_point))
    if live and max_key_age is not None and key_since is not None \
            and now - key_since > max_key_age:
        found.append(_never_rotated(now, key_since, max_key_age,
                                    {"public_key_sha256": cert.public_key_sha256}))
    if cert.status is not CertificateStatus.RESERVED:
        weak = weak_key(seen.key, seen.signature_hash) if seen else None
        found += [h for h in (weak, shared(seen, key_holders)) if h is not None]
    return found


def certificate_names(cert: CertificateRecord) -> dict[str, object]:
    """What names an issued certificate in evidence: its device, serial, fingerprint."""
    return {"device": cert.device_id, "serial": cert.serial_hex,
            "fingerprint": cert.fingerprint_sha256}


def _never_rotated(now: float, since: float, max_age: float,
                   evidence: dict[str, object]) -> FactorHit:
    days = (now - since) / 86400.0
    return hit(RiskFactor.NEVER_ROTATED,
               f"key in use for {days:.0f} days; its type allows {max_age / 86400.0:.0f}",
               {**evidence, "key_since": when(since), "age_days": round(days, 1),
                "max_age_days": round(max_age / 86400.0, 1)}, since=since + max_age)


def default_psk(identity: str, seen: CredentialSeen | None,
                settings: RiskSettings) -> FactorHit | None:
    """A well-known PSK identity, or one seen on many devices and assets."""
    holders = len(seen.device_ids) + len(seen.asset_ids) if seen else 0
    well_known = identity.strip().lower() in WELL_KNOWN_PSK_IDENTITIES
    if not well_known and holders < settings.default_credential_holders:
        return None
    summary = f"well-known PSK identity {identity!r}" if well_known \
        else f"PSK identity {identity!r} is used by {holders} devices and assets"
    return hit(RiskFactor.DEFAULT_CREDENTIAL, summary,
               {"identity": identity, "well_known": well_known, "holders": holders})


def psk_checks(psk: Psk, *, now: float, settings: RiskSettings, max_key_age: float | None,
               seen: CredentialSeen | None) -> list[FactorHit]:
    """The factors of one PSK iotiam issued."""
    found: list[FactorHit] = []
    last_seen = seen.last_seen if seen else None
    created = psk.created_at.timestamp()
    expires = ts(psk.expires_at)
    if psk.status is PskStatus.REVOKED and psk.revoked_at is not None \
            and last_seen is not None and last_seen > psk.revoked_at.timestamp():
        found.append(hit(RiskFactor.REVOKED_IN_USE, "PSK seen in use after it was revoked", {
            "revoked_at": when(ts(psk.revoked_at)), "last_seen": when(last_seen),
            "reason": psk.revocation_reason}, since=psk.revoked_at.timestamp()))
    active = psk.status is PskStatus.ACTIVE and (expires is None or now < expires)
    if psk.status is PskStatus.ACTIVE and expires is not None and last_seen is not None \
            and last_seen > expires:
        found.append(hit(RiskFactor.EXPIRED_IN_USE, "PSK seen in use after it expired",
                         {"expires_at": when(expires), "last_seen": when(last_seen)},
                         since=expires))
    if active and max_key_age is not None and now - created > max_key_age:
        found.append(_never_rotated(now, created, max_key_age, {"identity": psk.identity}))
    found += [h for h in (default_psk(psk.identity, seen, settings), shared(seen))
              if h is not None]
    return found


def seen_certificate_checks(seen: CredentialSeen, *, ca_subjects: frozenset[str],
                            revoked_cas: dict[str, float]) -> list[FactorHit]:
    """The factors of a certificate the sources saw that iotiam did not issue.

    ``ca_subjects`` are the subjects (RFC 4514) of the CAs iotiam runs; ``revoked_cas``
    maps a revoked one's subject to when it was revoked.
    """
    found: list[FactorHit] = []
    if seen.issuer is not None and seen.issuer in revoked_cas \
            and seen.last_seen > revoked_cas[seen.issuer]:
        found.append(hit(RiskFactor.ACTIVE_UNDER_REVOKED_CA,
                         "seen in use under a CA that was revoked",
                         {"issuer": seen.issuer, "serial": seen.serial,
                          "ca_revoked_at": when(revoked_cas[seen.issuer]),
                          "last_seen": when(seen.last_seen)}))
    elif seen.issuer is None or seen.issuer not in ca_subjects:
        found.append(hit(RiskFactor.UNKNOWN_ISSUER,
                         "issued by a CA iotiam does not run" if seen.issuer
                         else "presented without a known issuer",
                         {"issuer": seen.issuer, "serial": seen.serial,
                          "subject": seen.subject, "fingerprint": seen.value}))
    if seen.not_after is not None and seen.last_seen > seen.not_after:
        found.append(hit(RiskFactor.EXPIRED_IN_USE, "seen in use after it expired",
                         {"not_after": when(seen.not_after), "last_seen": when(seen.last_seen)},
                         since=seen.not_after))
    found += [h for h in (weak_key(seen.key, seen.signature_hash), shared(seen))
              if h is not None]
    return found


def seen_psk_checks(seen: CredentialSeen, settings: RiskSettings) -> list[FactorHit]:
    """The factors of a PSK identity the sources saw that nobody registered."""
    found = [hit(RiskFactor.UNMANAGED, "PSK identity nobody registered",
                 {"identity": seen.value, "devices": list(seen.device_ids[:50]),
                  "assets": list(seen.asset_ids[:50]), "last_seen": when(seen.last_seen)})]
    return found + [h for h in (default_psk(seen.value, seen, settings), shared(seen))
                    if h is not None]
