from __future__ import annotations

import base64
import os
from datetime import timedelta
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from iotiam.errors import InvalidInput, SetupError
from iotiam.pki.models import KeyAlgorithm, RevocationReason
from iotiam.pki.ocsp import GOOD, UNKNOWN, CertStatusInfo, OcspResponder, parse_ocsp_get_path
from iotiam.pki.profiles import DEVICE

DER = serialization.Encoding.DER
SHA1 = hashes.SHA1()  # the CertID hash openssl uses by default


class Lookup:
    """A status table that records every serial it is asked about."""

    def __init__(self) -> None:
        self.statuses: dict[int, CertStatusInfo] = {}
        self.calls: list[int] = []

    def __call__(self, serial: int) -> CertStatusInfo:
        self.calls.append(serial)
        return self.statuses.get(serial, GOOD)


@pytest.fixture
def responder(hierarchy):
    return OcspResponder.from_material(hierarchy.issuing.certificate, hierarchy.responder)


@pytest.fixture
def leaf(leaf_builder, device_identity, ec_key, now):
    serial = x509.random_serial_number()
    return leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, serial, now)


def _request(cert, issuer, algorithm=SHA1, nonce=None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(DER)


def _revoked(now, reason=RevocationReason.KEY_COMPROMISE):
    return CertStatusInfo("revoked", now - timedelta(minutes=3), reason)


def test_respond_ok_good(hierarchy, responder, leaf, now):
    lookup = Lookup()
    response = ocsp.load_der_ocsp_response(
        responder.respond(_request(leaf, hierarchy.issuing.certificate), lookup, now)
    )
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == leaf.serial_number
    assert lookup.calls == [leaf.serial_number]
    assert response.this_update_utc == now
    assert response.next_update_utc == now + timedelta(hours=1)
    assert isinstance(response.hash_algorithm, hashes.SHA1)
    # signed by the delegated responder, named by key hash, its certificate included
    responder_cert = hierarchy.responder.certificate
    assert response.responder_key_hash == (
        x509.SubjectKeyIdentifier.from_public_key(responder_cert.public_key()).digest
    )
    assert response.certificates == [responder_cert]
    responder_cert.public_key().verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256())
    )


def test_respond_ok_revoked_with_time_and_reason(hierarchy, responder, leaf, now):
    lookup = Lookup()
    lookup.statuses[leaf.serial_number] = _revoked(now, RevocationReason.SUPERSEDED)
    response = ocsp.load_der_ocsp_response(
        responder.respond(_request(leaf, hierarchy.issuing.certificate), lookup, now)
    )
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == now - timedelta(minutes=3)
    assert response.revocation_reason is x509.ReasonFlags.superseded


def test_respond_ok_revoked_unspecified_omits_reason(hierarchy, responder, leaf, now):
    lookup = Lookup()
    lookup.statuses[leaf.serial_number] = _revoked(now, RevocationReason.UNSPECIFIED)
    response = ocsp.load_der_ocsp_response(
        responder.respond(_request(leaf, hierarchy.issuing.certificate), lookup, now)
    )
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None


def test_respond_ok_unknown(hierarchy, responder, leaf, now):
    lookup = Lookup()
    lookup.statuses[leaf.serial_number] = UNKNOWN
    response = ocsp.load_der_ocsp_response(
        responder.respond(_request(leaf, hierarchy.issuing.certificate), lookup, now)
    )
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.parametrize(
    "algorithm",
    [SHA1, hashes.SHA256(), hashes.SHA384(), hashes.SHA512()],
    ids=lambda a: a.name,
)
def test_respond_ok_cert_id_hash_algorithms(hierarchy, responder, leaf, now, algorithm):
    request = _request(leaf, hierarchy.issuing.certificate, algorithm)
    response = ocsp.load_der_ocsp_response(responder.respond(request, Lookup(), now))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    # RFC 6960 §4.2.1: the response's CertID uses the request's hash algorithm
    assert response.hash_algorithm.name == algorithm.name
    parsed_request = ocsp.load_der_ocsp_request(request)
    assert response.issuer_name_hash == parsed_request.issuer_name_hash
    assert response.issuer_key_hash == parsed_request.issuer_key_hash


def test_respond_ok_nonce_echoed(hierarchy, responder, leaf, now):
    nonce = os.urandom(32)
    request = _request(leaf, hierarchy.issuing.certificate, nonce=nonce)
    response = ocsp.load_der_ocsp_response(responder.respond(request, Lookup(), now))
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


@pytest.mark.parametrize(
    "request_der",
    [b"", b"\x30\x00", b"garbage", b"\x30" * 5000],
    ids=["empty", "empty-sequence", "garbage", "oversize"],
)
def test_respond_fail_malformed(responder, now, request_der):
    lookup = Lookup()
    response = ocsp.load_der_ocsp_response(responder.respond(request_der, lookup, now))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert lookup.calls == []


def test_respond_fail_two_requests_in_one(hierarchy, responder, openssl, tmp_path, now):
    request_path = tmp_path / "two.der"
    result = openssl(
        f"ocsp -issuer {hierarchy.issuing_pem} -serial 0x1001 -serial 0x1002"
        f" -no_nonce -reqout {request_path}"
    )
    assert result.returncode == 0, result.stderr
    response = ocsp.load_der_ocsp_response(
        responder.respond(request_path.read_bytes(), Lookup(), now)
    )
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("size", [0, 129], ids=["empty", "129-octets"])
def test_respond_fail_nonce_length(hierarchy, responder, leaf, now, size):
    # RFC 9654 §2.1: a nonce of 0 or more than 128 octets is malformedRequest.
    request = _request(leaf, hierarchy.issuing.certificate, nonce=b"\x07" * size)
    response = ocsp.load_der_ocsp_response(responder.respond(request, Lookup(), now))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_respond_fail_unknown_issuer_is_unauthorized(hierarchy, responder, now):
    # A CertID naming the root as issuer: this responder only speaks for the issuing CA.
    request = _request(hierarchy.issuing.certificate, hierarchy.root.certificate)
    lookup = Lookup()
    response = ocsp.load_der_ocsp_response(responder.respond(request, lookup, now))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert lookup.calls == []


def test_respond_fail_same_name_other_key_is_unauthorized(hierarchy, build_chain, responder, now):
    """Another CA with the very same name but its own key: the key hash tells them apart."""
    impostor = build_chain(KeyAlgorithm.EC_P256)
    assert impostor.issuing.certificate.subject == hierarchy.issuing.certificate.subject
    request = _request(impostor.server.certificate, impostor.issuing.certificate)
    response = ocsp.load_der_ocsp_response(responder.respond(request, Lookup(), now))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_respond_ok_cache_serves_same_bytes_and_still_asks_lookup(hierarchy, responder, leaf, now):
    request = _request(leaf, hierarchy.issuing.certificate)
    lookup = Lookup()
    first = responder.respond(request, lookup, now)
    second = responder.respond(request, lookup, now + timedelta(minutes=29))
    assert second == first  # ECDSA signatures are randomised: equal bytes mean a cache hit
    assert lookup.calls == [leaf.serial_number, leaf.serial_number]


def test_respond_ok_revocation_reflected_immediately_despite_cache(hierarchy, responder, leaf, now):
    request = _request(leaf, hierarchy.issuing.certificate)
    lookup = Lookup()
    good = ocsp.load_der_ocsp_response(responder.respond(request, lookup, now))
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD

    lookup.statuses[leaf.serial_number] = _revoked(now)  # G3: the revocation call returned
    revoked = ocsp.load_der_ocsp_response(
        responder.respond(request, lookup, now + timedelta(seconds=1))
    )
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert revoked.this_update_utc == now + timedelta(seconds=1)


def test_respond_ok_cache_refreshed_after_half_validity(hierarchy, responder, leaf, now):
    request = _request(leaf, hierarchy.issuing.certificate)
    first = responder.respond(request, Lookup(), now)
    later = now + timedelta(minutes=30)
    refreshed = responder.respond(request, Lookup(), later)
    assert refreshed != first
    assert ocsp.load_der_ocsp_response(refreshed).this_update_utc == later


def test_respond_ok_cache_ignores_clock_going_back(hierarchy, responder, leaf, now):
    request = _request(leaf, hierarchy.issuing.certificate)
    first = responder.respond(request, Lookup(), now)
    assert responder.respond(request, Lookup(), now - timedelta(minutes=1)) != first


def test_respond_ok_cache_is_per_hash_algorithm(hierarchy, responder, leaf, now):
    issuer = hierarchy.issuing.certificate
    responder.respond(_request(leaf, issuer, SHA1), Lookup(), now)
    sha256 = ocsp.load_der_ocsp_response(
        responder.respond(_request(leaf, issuer, hashes.SHA256()), Lookup(), now)
    )
    assert isinstance(sha256.hash_algorithm, hashes.SHA256)


def test_respond_ok_nonce_requests_are_never_cached(hierarchy, responder, leaf, now):
    issuer = hierarchy.issuing.certificate
    plain = responder.respond(_request(leaf, issuer), Lookup(), now)
    nonce = b"\x01" * 16
    with_nonce = responder.respond(_request(leaf, issuer, nonce=nonce), Lookup(), now)
    again = responder.respond(_request(leaf, issuer, nonce=nonce), Lookup(), now)
    assert len({plain, with_nonce, again}) == 3


def test_respond_ok_unknown_is_not_cached(hierarchy, responder, leaf, now):
    request = _request(leaf, hierarchy.issuing.certificate)
    lookup = Lookup()
    lookup.statuses[leaf.serial_number] = UNKNOWN
    assert responder.respond(request, lookup, now) != responder.respond(request, lookup, now)


def test_respond_ok_cache_size_is_bounded(hierarchy, leaf_builder, device_identity, ec_key, now):
    small = OcspResponder.from_material(
        hierarchy.issuing.certificate, hierarchy.responder, cache_size=2
    )
    issuer = hierarchy.issuing.certificate
    leaves = [
        leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 0x5000 + i, now)
        for i in range(3)
    ]
    first = small.respond(_request(leaves[0], issuer), Lookup(), now)
    small.respond(_request(leaves[1], issuer), Lookup(), now)
    small.respond(_request(leaves[2], issuer), Lookup(), now)  # evicts the oldest
    assert small.respond(_request(leaves[0], issuer), Lookup(), now) != first


def test_respond_ok_next_update_never_beyond_responder_cert(hierarchy, responder, leaf):
    late = hierarchy.responder.certificate.not_valid_after_utc - timedelta(minutes=10)
    request = _request(leaf, hierarchy.issuing.certificate)
    response = ocsp.load_der_ocsp_response(responder.respond(request, Lookup(), late))
    assert response.next_update_utc == hierarchy.responder.certificate.not_valid_after_utc


def test_respond_fail_responder_cert_expired(hierarchy, responder, leaf):
    after = hierarchy.responder.certificate.not_valid_after_utc
    with pytest.raises(SetupError, match="responder certificate expired"):
        responder.respond(_request(leaf, hierarchy.issuing.certificate), Lookup(), after)


def test_ocsp_responder_fail_not_a_delegated_responder(hierarchy):
    with pytest.raises(SetupError, match="id-kp-OCSPSigning"):
        OcspResponder.from_material(hierarchy.issuing.certificate, hierarchy.server)


def test_ocsp_responder_fail_other_issuer(hierarchy):
    with pytest.raises(SetupError, match="not issued by this CA"):
        OcspResponder.from_material(hierarchy.root.certificate, hierarchy.responder)


def test_ocsp_responder_fail_key_mismatch(hierarchy):
    with pytest.raises(SetupError, match="does not match"):
        OcspResponder(
            hierarchy.issuing.certificate,
            hierarchy.responder.certificate,
            hierarchy.server.signer,
        )


def test_cert_status_info_fail_inconsistent(now):
    with pytest.raises(ValueError, match="revoked_at"):
        CertStatusInfo("revoked")
    with pytest.raises(ValueError, match="revoked_at"):
        CertStatusInfo("good", revoked_at=now)
    with pytest.raises(ValueError, match="reason"):
        CertStatusInfo("good", reason=RevocationReason.SUPERSEDED)


def test_respond_ok_spliced_certs_match_cryptography(build_chain, now):
    """Ed25519 signatures are deterministic: our spliced response must equal the bytes
    cryptography produces when it embeds the responder certificate itself."""
    chain = build_chain(KeyAlgorithm.ED25519)
    issuer = chain.issuing.certificate
    responder_cert = chain.responder.certificate
    responder = OcspResponder.from_material(issuer, chain.responder)
    request = ocsp.load_der_ocsp_request(_request(chain.server.certificate, issuer))
    for _ in range(3):  # producedAt is the wall clock's second; retry across a tick
        ours = responder.respond(request.public_bytes(DER), Lookup(), now)
        theirs = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                request.issuer_name_hash,
                request.issuer_key_hash,
                request.serial_number,
                SHA1,
                ocsp.OCSPCertStatus.GOOD,
                now,
                now + timedelta(hours=1),
                None,
                None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_cert)
            .certificates([responder_cert])
            .sign(chain.responder.key, None)
            .public_bytes(DER)
        )
        responder.clear_cache()
        if ours == theirs:
            break
    assert ours == theirs


# -- interoperability: openssl reads our responses


def _openssl_round_trip(hierarchy, responder, lookup, openssl, clock, leaf_path, *req_args):
    """openssl builds the request (with a nonce), we answer, openssl checks the answer."""
    now, attime, tmp_path = clock
    request_path = tmp_path / "req.der"
    response_path = tmp_path / "resp.der"
    made = openssl(
        f"ocsp {' '.join(req_args)} -issuer {hierarchy.issuing_pem} -cert {leaf_path}"
        f" -reqout {request_path}"
    )
    assert made.returncode == 0, made.stderr
    response_path.write_bytes(responder.respond(request_path.read_bytes(), lookup, now))
    return openssl(
        f"ocsp -reqin {request_path} -respin {response_path} -resp_text"
        f" -CAfile {hierarchy.root_pem} -verify_other {hierarchy.issuing_pem} -attime {attime}"
    )


@pytest.mark.parametrize("digest", [[], ["-sha256"]], ids=["sha1-certid", "sha256-certid"])
def test_respond_ok_openssl_reads_good_with_nonce(
    hierarchy, responder, leaf, openssl, write, tmp_path, now, attime, digest
):
    clock = (now, attime, tmp_path)
    result = _openssl_round_trip(
        hierarchy, responder, Lookup(), openssl, clock, write("leaf.pem", leaf), *digest
    )
    assert "Response verify OK" in result.stderr, result.stdout + result.stderr
    assert "no nonce" not in result.stderr and "Nonce Verify error" not in result.stderr
    assert "OCSP Nonce" in result.stdout
    assert "Cert Status: good" in result.stdout
    assert ("Hash Algorithm: sha256" if digest else "Hash Algorithm: sha1") in result.stdout


def test_respond_ok_openssl_reads_revoked(
    hierarchy, responder, leaf, openssl, write, tmp_path, now, attime
):
    lookup = Lookup()
    lookup.statuses[leaf.serial_number] = _revoked(now)
    clock = (now, attime, tmp_path)
    result = _openssl_round_trip(
        hierarchy, responder, lookup, openssl, clock, write("leaf.pem", leaf)
    )
    assert "Response verify OK" in result.stderr, result.stdout + result.stderr
    assert "Cert Status: revoked" in result.stdout
    assert "Revocation Reason: keyCompromise (0x1)" in result.stdout


def test_respond_ok_openssl_reads_unauthorized(hierarchy, responder, openssl, write, tmp_path, now):
    request_path = tmp_path / "req.der"
    made = openssl(
        f"ocsp -issuer {hierarchy.root_pem} -cert {hierarchy.issuing_pem} -reqout {request_path}"
    )
    assert made.returncode == 0, made.stderr
    response = write("resp.der", responder.respond(request_path.read_bytes(), Lookup(), now))
    result = openssl(f"ocsp -respin {response} -resp_text -noverify")
    assert "Responder Error: unauthorized (6)" in result.stdout + result.stderr


@pytest.mark.parametrize("status", ["good", "revoked", "unknown"])
def test_respond_ok_pkilint_clean(hierarchy, responder, leaf, write, pkilint, now, status):
    lookup = Lookup()
    lookup.statuses[leaf.serial_number] = {
        "good": GOOD,
        "revoked": _revoked(now),
        "unknown": UNKNOWN,
    }[status]
    request = _request(leaf, hierarchy.issuing.certificate, hashes.SHA256(), nonce=b"n" * 32)
    code, findings = pkilint(
        "lint_ocsp_response", write("resp.der", responder.respond(request, lookup, now))
    )
    assert (code, findings) == (0, "")


# -- GET requests (RFC 6960 Appendix A.1)


def test_parse_ocsp_get_path_ok(hierarchy, leaf):
    request = _request(leaf, hierarchy.issuing.certificate, nonce=b"\xff" * 16)
    encoded = base64.b64encode(request).decode()
    assert parse_ocsp_get_path(quote(encoded, safe="")) == request
    assert parse_ocsp_get_path("/" + quote(encoded, safe="")) == request
    assert parse_ocsp_get_path(encoded) == request  # unescaped "/" and "+" are fine
    assert parse_ocsp_get_path(encoded.rstrip("=")) == request  # RFC 5019 §5


@pytest.mark.parametrize("segment", ["", "%%%", "not base64!", "QUJD\nREVG"])
def test_parse_ocsp_get_path_fail_garbage(segment):
    with pytest.raises(InvalidInput, match="OCSP GET path"):
        parse_ocsp_get_path(segment)


def test_parse_ocsp_get_path_fail_too_long():
    with pytest.raises(InvalidInput, match="too long"):
        parse_ocsp_get_path("A" * 10_000)


def test_respond_ok_openssl_detects_a_foreign_nonce(
    hierarchy, responder, leaf, openssl, write, tmp_path, now, attime
):
    """Proves the nonce check above is real: openssl refuses an answer to another nonce."""
    leaf_pem = write("leaf.pem", leaf)
    request_path = tmp_path / "req.der"
    made = openssl(f"ocsp -issuer {hierarchy.issuing_pem} -cert {leaf_pem} -reqout {request_path}")
    assert made.returncode == 0, made.stderr
    other = _request(leaf, hierarchy.issuing.certificate, nonce=b"\x00" * 16)
    response = write("resp.der", responder.respond(other, Lookup(), now))
    result = openssl(
        f"ocsp -reqin {request_path} -respin {response}"
        f" -CAfile {hierarchy.root_pem} -verify_other {hierarchy.issuing_pem} -attime {attime}"
    )
    assert "Nonce Verify error" in result.stderr
    assert result.returncode != 0


@pytest.mark.parametrize("alg", list(KeyAlgorithm), ids=lambda a: a.value)
def test_respond_ok_every_key_algorithm(build_chain, write, pkilint, now, alg):
    chain = build_chain(alg)
    issuer = chain.issuing.certificate
    responder = OcspResponder.from_material(issuer, chain.responder)
    lookup = Lookup()
    lookup.statuses[chain.server.certificate.serial_number] = _revoked(now)
    request = _request(chain.server.certificate, issuer, hashes.SHA256(), nonce=b"\x01" * 32)
    der = responder.respond(request, lookup, now)
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.certificates == [chain.responder.certificate]
    assert pkilint("lint_ocsp_response", write("resp.der", der)) == (0, "")
