"""A :class:`~iotiam.pki.signer.Signer` for a key this process cannot hold (an HSM's).

``cryptography`` signs a builder only with a private key object of its own. So the
builder is signed with a throw-away *stand-in* key of the same signature algorithm,
and the stand-in's signature is replaced by one ``sign_bytes`` makes with the real key
over the very same to-be-signed bytes. Nothing of the stand-in survives: a certificate's
or CRL's TBS names the issuer by name and key identifier, which the builder was given,
never by the signing key; an OCSP response names its responder by key hash or name,
which is put back from the real responder certificate before signing.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from iotiam.pki.der import elements, tlv
from iotiam.pki.keys import PublicKey
from iotiam.pki.ocsp import replace_basic_response

_DER = serialization.Encoding.DER
_SEQUENCE = 0x30
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
# RFC 6960 §4.2.1: ResponderID ::= CHOICE { byName [1] Name, byKey [2] KeyHash }
_BY_NAME = 0xA1
_BY_KEY = 0xA2


class ExternalKeySigner:
    """Signs certificates, CRLs and OCSP responses with ECDSA-SHA256 through ``sign_bytes``.

    Subclasses give :meth:`public_key` and :meth:`sign_bytes` (a DER Ecdsa-Sig-Value
    over SHA-256 of the data); every other method is built on them here.
    """

    def __init__(self) -> None:
        # the stand-in only carries cryptography through its builders; any P-256 key does
        self._stand_in = ec.generate_private_key(ec.SECP256R1())
        self._stand_in_responder: x509.Certificate | None = None
        self._lock = threading.Lock()

    def public_key(self) -> PublicKey:
        """The public half of the signing key."""
        raise NotImplementedError

    def sign_bytes(self, data: bytes) -> bytes:
        """The DER Ecdsa-Sig-Value over SHA-256 of ``data``."""
        raise NotImplementedError

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a certificate (RFC 5280 §4.1: tbsCertificate, algorithm, signature)."""
        stand_in = builder.sign(self._stand_in, hashes.SHA256())
        der = self._resigned(stand_in.public_bytes(_DER))
        return x509.load_der_x509_certificate(der)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL (RFC 5280 §5.1: tbsCertList, algorithm, signature)."""
        stand_in = builder.sign(self._stand_in, hashes.SHA256())
        return x509.load_der_x509_crl(self._resigned(stand_in.public_bytes(_DER)))

    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder
                 ) -> x509.CertificateSigningRequest:
        """Sign a PKCS#10 request for the real key (RFC 2986 §4.1: the request info names
        the subject's public key, so the stand-in's is replaced there before signing)."""
        stand_in = builder.sign(self._stand_in, hashes.SHA256()).public_bytes(_DER)
        info, algorithm, _ = elements(stand_in)
        # CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes }
        fields = elements(info)
        fields[2] = self.public_key().public_bytes(
            _DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        info = tlv(_SEQUENCE, b"".join(fields))
        return x509.load_der_x509_csr(tlv(_SEQUENCE, info + algorithm + self._bit_string(info)))

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse:
        """Sign an OCSP response (RFC 6960 §4.2.1 BasicOCSPResponse)."""
        # cryptography refuses a key that is not the responder certificate's, so the
        # builder is rebuilt around a stand-in responder; its ResponderID is replaced
        # below. The builder keeps its parts in attributes its constructor takes back.
        responder = builder._responder_id
        if responder is None:
            raise ValueError("the OCSP response builder has no responder id")
        real_cert, encoding = responder
        stand_in_builder = ocsp.OCSPResponseBuilder(
            builder._response,
            (self._stand_in_certificate(), encoding),
            builder._certs,
            builder._extensions,
        )
        stand_in = stand_in_builder.sign(self._stand_in, hashes.SHA256())
        if encoding is ocsp.OCSPResponderEncoding.HASH:
            digest = x509.SubjectKeyIdentifier.from_public_key(real_cert.public_key()).digest
            responder_id = tlv(_BY_KEY, tlv(_OCTET_STRING, digest))
        else:
            responder_id = tlv(_BY_NAME, real_cert.subject.public_bytes())
        der = replace_basic_response(stand_in.public_bytes(_DER),
                                      lambda basic: self._resigned_basic(basic, responder_id))
        return ocsp.load_der_ocsp_response(der)

    def _resigned(self, signed_der: bytes) -> bytes:
        """The same SEQUENCE { tbs, algorithm, signature }, signed with the real key."""
        tbs, algorithm, _ = elements(signed_der)
        return tlv(_SEQUENCE, tbs + algorithm + self._bit_string(tbs))

    def _resigned_basic(self, basic_der: bytes, responder_id: bytes) -> bytes:
        tbs, algorithm, _, *certs = elements(basic_der)
        fields = elements(tbs)
        # ResponderID follows the version only if that is not the DEFAULT v1 (omitted)
        at = 1 if fields[0][0] == 0xA0 else 0
        if fields[at][0] not in (_BY_NAME, _BY_KEY):
            raise ValueError("no ResponderID where RFC 6960 puts it")
        fields[at] = responder_id
        tbs = tlv(_SEQUENCE, b"".join(fields))
        return tlv(_SEQUENCE, tbs + algorithm + self._bit_string(tbs) + b"".join(certs))

    def _bit_string(self, tbs: bytes) -> bytes:
        return tlv(_BIT_STRING, b"\x00" + self.sign_bytes(tbs))

    def _stand_in_certificate(self) -> x509.Certificate:
        with self._lock:
            if self._stand_in_responder is None:
                name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in")])
                start = datetime(2000, 1, 1, tzinfo=UTC)
                self._stand_in_responder = (
                    x509.CertificateBuilder().issuer_name(name).subject_name(name)
                    .public_key(self._stand_in.public_key()).serial_number(1)
                    .not_valid_before(start).not_valid_after(start + timedelta(days=1))
                    .sign(self._stand_in, hashes.SHA256()))
            return self._stand_in_responder
