"""PKCS#11 URIs (RFC 7512) as ``init --ca-key`` takes them."""

from __future__ import annotations

import pytest

from iotiam.errors import InvalidInput
from iotiam.hsm.uri import CaKeyUris, is_pkcs11_uri, parse_pkcs11_uri


def test_parse_ok_token_and_object():
    uri = parse_pkcs11_uri("pkcs11:token=iotiam;object=issuing-ca")
    assert (uri.token, uri.object, uri.id, uri.module_path) == ("iotiam", "issuing-ca", None, None)
    assert str(uri) == "pkcs11:token=iotiam;object=issuing-ca"


def test_parse_ok_percent_encoding_id_and_query():
    uri = parse_pkcs11_uri("pkcs11:token=My%20Token;id=%01%a2;type=private"
                           "?module-path=/usr/lib/x.so&pin-source=file:/run/pin")
    assert uri.token == "My Token"
    assert uri.id == b"\x01\xa2"
    assert uri.module_path == "/usr/lib/x.so"
    assert uri.pin_source == "file:/run/pin"
    # round trip, and the canonical form parses to the same
    assert parse_pkcs11_uri(str(uri)) == uri


def test_str_ok_never_shows_pin_value():
    uri = parse_pkcs11_uri("pkcs11:token=t;object=k?pin-value=1234")
    assert uri.pin_value == "1234"
    assert "1234" not in str(uri)


@pytest.mark.parametrize("text, message", [
    ("file:/tmp/key.pem", "not a PKCS#11 URI"),
    ("pkcs11:object=k", "names its token"),
    ("pkcs11:token=t", "names its key"),
    ("pkcs11:token=t;object=k;colour=red", "'colour' is not one iotiam takes"),
    ("pkcs11:token=t;object=k;object=j", "given twice"),
    ("pkcs11:token=t;object=k;type=public", "type=private"),
    ("pkcs11:token=t;object=a b", "must be percent-encoded"),
    ("pkcs11:token=t;object=k?pin-value=1&pin-source=/p", "not both"),
    ("pkcs11:token=t;object=k;slot-id=x", "slot-id must be a decimal"),
    ("pkcs11:token=t;object=%ff", "not UTF-8"),
], ids=["fail/scheme", "fail/no-token", "fail/no-key", "fail/unknown-attribute",
        "fail/twice", "fail/public-key", "fail/space", "fail/two-pins", "fail/slot",
        "fail/utf8"])
def test_parse_fail(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_pkcs11_uri(text)


def test_is_pkcs11_uri():
    assert is_pkcs11_uri(" PKCS11:token=t;object=k")
    assert not is_pkcs11_uri("/etc/key.pem")


def test_ca_key_uris_ok_root_and_responder_beside_issuing():
    uris = CaKeyUris.parse("pkcs11:token=hsm;object=issuing-ca?module-path=/m.so")
    assert str(uris.root) == "pkcs11:token=hsm;object=root-ca?module-path=/m.so"
    assert uris.responder.object == "ocsp-responder"
    assert uris.issuing.object == "issuing-ca"


def test_ca_key_uris_ok_root_elsewhere():
    uris = CaKeyUris.parse("pkcs11:token=online;object=issuing-ca",
                           root="pkcs11:token=offline;object=root")
    assert (uris.root.token, uris.root.object) == ("offline", "root")
    assert uris.responder.token == "online"


def test_ca_key_uris_fail_one_key_twice():
    with pytest.raises(InvalidInput, match="three different keys"):
        CaKeyUris.parse("pkcs11:token=t;object=root-ca")
