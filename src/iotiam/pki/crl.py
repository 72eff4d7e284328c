"""Certificate revocation lists (RFC 5280 §5): build them fast, check them before use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from iotiam.errors import InvalidInput
from iotiam.pki.keys import PublicKey
from iotiam.pki.leaf_builder import authority_key_identifier
from iotiam.pki.models import Revocation, RevocationReason
from iotiam.pki.signer import Signer

Ext = x509.Extension[x509.ExtensionType]

# RFC 5280 §5.3.1: the reasonCode entry extension is omitted rather than sent as
# unspecified (0). One shared extension list per reason, reused by every entry.
_ENTRY_EXTENSIONS: dict[RevocationReason, list[Ext]] = {
    reason: (
        []
        if reason is RevocationReason.UNSPECIFIED
        else [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(reason.flag))]
    )
    for reason in RevocationReason
}


def build_crl(
    *,
    signer: Signer,
    issuer_cert: x509.Certificate,
    revocations: Sequence[Revocation],
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """Sign a complete CRL listing ``revocations`` (RFC 5280 §5.1, v2 with CRLNumber and AKI)."""
    if crl_number < 0:
        raise ValueError("RFC 5280 §5.2.3: a CRL number is a non-negative integer")
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate")
    # Entries are built through RevokedCertificateBuilder's constructor: the fluent
    # setters copy the builder three times per entry, which dominates at 100k entries.
    # The serials were validated when the certificates were issued.
    builder_cls = x509.RevokedCertificateBuilder
    entries = [
        builder_cls(r.serial, r.revoked_at, _ENTRY_EXTENSIONS[r.reason]).build()
        for r in revocations
    ]
    return sign_crl_entries(signer=signer, issuer_cert=issuer_cert, entries=entries,
                            crl_number=crl_number, this_update=this_update,
                            next_update=next_update)


def sign_crl_entries(
    *,
    signer: Signer,
    issuer_cert: x509.Certificate,
    entries: Sequence[x509.RevokedCertificate],
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """Sign a CRL from ready-made entries (see ``CrlEntryCache``)."""
    if crl_number < 0:
        raise ValueError("RFC 5280 §5.2.3: a CRL number is a non-negative integer")
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate")
    extensions: list[Ext] = [
        # RFC 5280 §5.2.3 (CRL number, G2 keeps it increasing) and §5.2.1 (AKI): both
        # are required in a conforming CRL.
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(crl_number)),
        x509.Extension(
            x509.AuthorityKeyIdentifier.oid, False, authority_key_identifier(issuer_cert)
        ),
    ]
    # Passing the whole list to the constructor: add_revoked_certificate copies the
    # list on every call, which is quadratic.
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_cert.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=extensions,
        revoked_certificates=list(entries),
    )
    return signer.sign_crl(builder)


#: a revocation as the database row has it: serial hex, revocation time, reason name
RevocationRow = tuple[str, "str | datetime", str]


class CrlEntryCache:
    """Built CRL entries, kept between rebuilds of one issuer's CRL.

    Revocation is final (G4), so an entry never changes once built: a rebuild after
    one more revocation builds one entry, not 100k. Entries that left the CRL (expired
    past the safety buffer) leave the cache with it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, x509.RevokedCertificate] = {}
        self._reasons = {r.value: r for r in RevocationReason}

    def entries(self, rows: Sequence[RevocationRow]) -> list[x509.RevokedCertificate]:
        """Entries for exactly these rows, building only the ones not seen before."""
        cached = self._entries
        current: dict[str, x509.RevokedCertificate] = {}
        builder_cls = x509.RevokedCertificateBuilder
        for serial_hex, revoked_at, reason in rows:
            entry = cached.get(serial_hex)
            if entry is None:
                when = (revoked_at if isinstance(revoked_at, datetime)
                        else datetime.fromisoformat(revoked_at))
                entry = builder_cls(int(serial_hex, 16), when.replace(tzinfo=UTC),
                                    _ENTRY_EXTENSIONS[self._reasons[reason]]).build()
            current[serial_hex] = entry
        self._entries = current
        return list(current.values())


def verify_crl(
    crl: x509.CertificateRevocationList, issuer_cert: x509.Certificate, now: datetime
) -> None:
    """Refuse a CRL that ``issuer_cert`` did not sign or that is no longer current.

    Mosquitto fails open on a bad CRL and locks everyone out with an expired one, so
    every CRL is checked with this before it is installed.
    """
    if crl.issuer != issuer_cert.subject:
        raise InvalidInput(
            f"CRL issuer {crl.issuer.rfc4514_string()!r} is not "
            f"{issuer_cert.subject.rfc4514_string()!r}"
        )
    issuer_key = issuer_cert.public_key()
    if not isinstance(issuer_key, PublicKey):
        raise InvalidInput("the issuing CA certificate holds a key type iotiam does not use")
    try:
        valid = crl.is_signature_valid(issuer_key)
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        raise InvalidInput("CRL signature algorithm is not supported") from e
    if not valid:
        raise InvalidInput("CRL signature does not verify against the issuing CA")
    next_update = crl.next_update_utc
    if next_update is None:
        # RFC 5280 §5.1.2.5: conforming CRL issuers MUST include nextUpdate.
        raise InvalidInput("CRL has no nextUpdate")
    if next_update <= now:
        raise InvalidInput(f"CRL expired at {next_update.isoformat()} (nextUpdate has passed)")
    if crl.last_update_utc > now:
        raise InvalidInput(f"CRL thisUpdate {crl.last_update_utc.isoformat()} is in the future")
