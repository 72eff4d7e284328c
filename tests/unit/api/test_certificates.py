"""Issued certificates: the name comes from the inventory, the lifetime from the profile,
and a serial can be looked up in the forms people paste."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from expect import assert_problem
from fleet import add_device, add_org_unit, certificate_of, issue, revoke

from conftest import Installation
from iotiam.testing import make_csr, make_key

BACKDATE = timedelta(minutes=5)


def test_issue_ok_name_from_inventory(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "berlin", "site", parent="acme")
    add_device(api, "meter-7", org="berlin")
    key = make_key()
    answer = api.post("/v1/certificates", json={"device": "meter-7",
                                                "csr": make_csr(None, key).decode()})
    assert answer.status_code == 201, answer.text
    certificate = certificate_of(answer.json())
    assert certificate.subject == x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "berlin"),
        x509.NameAttribute(NameOID.COMMON_NAME, "meter-7"),
    ])
    # the inventory gives no alternative names, so the certificate carries none
    assert x509.SubjectAlternativeName.oid not in [e.oid for e in certificate.extensions]
    assert certificate.public_key() == key.public_key()
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (constraints.critical, constraints.value.ca) == (True, False)
    body = answer.json()
    assert (body["subject"], body["org"], body["device"]) == ("CN=meter-7", "berlin", "meter-7")


def test_issue_fail_csr_asks_for_any_alternative_name(installation: Installation) -> None:
    """The device has no SAN in the inventory: even one naming itself is refused."""
    api = installation.api()
    add_device(api, "dev-1")
    for extra in ({"uris": ("spiffe://iotiam.local/device/dev-1",)},
                  {"dns_names": ("dev-1",)}):
        answer = api.post("/v1/certificates", json={"device": "dev-1",
                                                    "csr": make_csr("dev-1", **extra).decode()})
        assert_problem(answer, 400, "which this device does not have")


def test_issue_ok_chained_to_issuing_ca(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    issued = issue(api, "dev-1")
    chain = x509.load_pem_x509_certificates(issued["chain_pem"].encode())
    issuing, root = chain
    certificate = certificate_of(issued)
    certificate.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    assert issued["issuer"] == installation.services.pki.cas.issuing_id
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert issued["sha256"] == hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize(
    ("device_type", "lifetime", "usages"),
    [
        ("sensor", timedelta(hours=24), [ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("controller", timedelta(hours=24), [ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("gateway", timedelta(days=7),
         [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
    ],
)
def test_issue_ok_profile_lifetime(installation: Installation, device_type: str,
                                   lifetime: timedelta, usages: list[x509.ObjectIdentifier]
                                   ) -> None:
    api = installation.api()
    add_device(api, "dev-1", device_type)
    issued = issue(api, "dev-1")
    certificate = certificate_of(issued)
    now = installation.clock.now()
    assert certificate.not_valid_before_utc == now - BACKDATE
    assert certificate.not_valid_after_utc == now - BACKDATE + lifetime
    assert (issued["not_before"], issued["not_after"]) == (
        (now - BACKDATE).isoformat(), (now - BACKDATE + lifetime).isoformat())
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert sorted(eku, key=str) == sorted(usages, key=str)
    assert issued["profile"] == ("gateway" if device_type == "gateway" else "device")


def test_issue_ok_explicit_profile(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    issued = issue(api, "dev-1", profile="gateway")
    certificate = certificate_of(issued)
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == timedelta(days=7)


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "ed25519", "rsa-2048"])
def test_issue_ok_key_types(installation: Installation, kind: str) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    key = make_key(kind)
    assert certificate_of(issue(api, "dev-1", key)).public_key() == key.public_key()


SERIAL_FORMS: dict[str, Callable[[str], str]] = {
    "canonical": lambda s: s,
    "upper": str.upper,
    "colons": lambda s: ":".join(s[i:i + 2] for i in range(0, len(s), 2)).upper(),
    "0x": lambda s: "0x" + s,
    "0X-upper": lambda s: "0X" + s.upper(),
    "padded-spaces": lambda s: f"  {s}  ",
}


@pytest.mark.parametrize("form", list(SERIAL_FORMS))
def test_serial_lookup_ok_forms(installation: Installation, form: str) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    serial = issue(api, "dev-1")["serial"]
    assert serial == format(int(serial, 16), "x").rjust(len(serial), "0")
    asked = SERIAL_FORMS[form](serial)
    shown = api.get(f"/v1/certificates/{asked}")
    assert shown.status_code == 200, (asked, shown.text)
    assert shown.json()["serial"] == serial
    revoked = api.post(f"/v1/certificates/{asked}/revoke", json={})
    assert revoked.json()["serial"] == serial


def test_serial_ok_canonical_form(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    for _ in range(4):
        issued = issue(api, "dev-1")
        serial = issued["serial"]
        assert serial == serial.lower()
        assert len(serial) % 2 == 0
        assert int(serial, 16) == certificate_of(issued).serial_number


def test_serial_lookup_fail_unknown(installation: Installation) -> None:
    assert_problem(installation.api().get("/v1/certificates/0A:0B"), 404,
                   "certificate 0a0b not found")


def test_list_certificates_ok_filters(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    add_device(api, "dev-2")
    first = issue(api, "dev-1")["serial"]
    second = issue(api, "dev-1")["serial"]
    other = issue(api, "dev-2")["serial"]
    revoke(api, first)

    def serials(**params: str) -> list[str]:
        return [c["serial"] for c in api.get("/v1/certificates", params=params).json()["items"]]

    assert serials() == [other, second, first]  # newest first
    assert serials(device="dev-1") == [second, first]
    assert serials(status="revoked") == [first]
    assert serials(device="dev-1", status="issued") == [second]
    assert serials(limit="1", offset="1") == [second]
    assert all("pem" not in c for c in api.get("/v1/certificates").json()["items"])


def test_show_device_lists_its_certificates(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    serial = issue(api, "dev-1")["serial"]
    shown = api.get("/v1/devices/dev-1").json()
    assert [(c["serial"], c["status"]) for c in shown["certificates"]] == [(serial, "issued")]
