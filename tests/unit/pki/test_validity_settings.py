"""The CRL and OCSP validity settings reach what the installation signs (RFC 5280
§5.1.2.5 nextUpdate of a CRL, RFC 6960 §4.2.1 nextUpdate of an OCSP response)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import START
from iotiam.bootstrap import Services, build_services
from iotiam.clock import FrozenClock
from iotiam.config import Settings
from iotiam.installation import initialize

CRL_VALIDITY = timedelta(hours=2)
OCSP_VALIDITY = timedelta(minutes=10)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """An installation whose CRLs last two hours and OCSP responses ten minutes."""
    clock = FrozenClock(START)
    settings = Settings(data_dir=tmp_path / "data", port=18443, http_port=18080,
                        broker_mode="off", crl_validity=CRL_VALIDITY,
                        ocsp_validity=OCSP_VALIDITY)
    initialize(settings, clock=clock)
    wired = build_services(settings, clock=clock)
    try:
        yield wired
    finally:
        wired.close()


def test_crl_validity_ok_sets_next_update(services: Services) -> None:
    pki = services.pki
    stored = pki.current_crl(pki.cas.issuing_id)
    crl = x509.load_der_x509_crl(stored.der)
    assert crl.last_update_utc == START
    assert crl.next_update_utc == START + CRL_VALIDITY
    assert stored.next_update == START + CRL_VALIDITY


def test_crl_validity_ok_rebuilt_once_half_is_gone(services: Services) -> None:
    pki = services.pki
    first = pki.current_crl(pki.cas.issuing_id)
    assert isinstance(services.clock, FrozenClock)
    services.clock.advance(CRL_VALIDITY / 2 - timedelta(seconds=1))
    assert pki.current_crl(pki.cas.issuing_id).number == first.number
    services.clock.advance(timedelta(seconds=1))
    assert pki.current_crl(pki.cas.issuing_id).number > first.number


def test_ocsp_validity_ok_sets_next_update(services: Services) -> None:
    cas = services.pki.cas
    # the responder's own certificate: issued by the issuing CA, so the CertID is ours
    request = ocsp.OCSPRequestBuilder().add_certificate(
        cas.responder.certificate, cas.issuing.certificate, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(
        services.pki.ocsp_response(request.public_bytes(serialization.Encoding.DER)))
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.this_update_utc == START
    assert answer.next_update_utc == START + OCSP_VALIDITY
