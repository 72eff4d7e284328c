"""A client certificate presented over mTLS, checked against iotiam's own record of it:
the services that authenticate devices by their certificate (attestation, gateways)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.errors import Unauthenticated
from iotiam.pki.models import CertificateRecord, CertificateStatus


def presented_device(record: CertificateRecord | None, certificate: x509.Certificate,
                     now: datetime) -> str:
    """The device id ``certificate`` stands for: ``record`` (stored under its issuer and
    serial) must be this very certificate, held by a device, issued and valid at ``now``;
    otherwise ``Unauthenticated``."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    if record is None or record.device_id is None or \
            record.fingerprint_sha256 != hashlib.sha256(der).hexdigest():
        raise Unauthenticated("unknown client certificate")
    if record.status is not CertificateStatus.ISSUED:
        raise Unauthenticated(f"the client certificate is {record.status}")
    if not record.not_before <= now < record.not_after:
        raise Unauthenticated("the client certificate is not valid now")
    return record.device_id
