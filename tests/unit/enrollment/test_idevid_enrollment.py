"""IEEE 802.1AR IDevID first contact on EST simpleenroll, on every backend.

The tests reach the API as a TLS-terminating proxy would (the client certificate in
``X-SSL-Client-Cert``), the path on which an unknown manufacturer's IDevID gets to
the application at all; ``tests/integration/test_zero_touch.py`` does it over real mTLS.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from expect import assert_problem, row_counts
from fleet import add_device, add_org_unit, certificate_of, issue

from conftest import Installation
from enrollment.zerotouch import (
    common_name,
    csr_for,
    device_client,
    idevid,
    import_manifest,
    issued,
    manufacturer_ca,
    records,
    register_manufacturer,
    simpleenroll,
)
from iotiam.testing import Issuer, make_key


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """First contact is a use case: it runs on the memory stores."""
    return memory_installation


@pytest.fixture
def factory(installation: Installation) -> Issuer:
    """A manufacturer in tenant ``acme`` (devices land there as gateways), SN-1..SN-3."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    ca = manufacturer_ca(installation)
    register_manufacturer(installation, ca, org="acme", device_type="gateway")
    answer = import_manifest(installation, "acme-devices",
                             [{"serial": s} for s in ("SN-1", "SN-2", "SN-3")])
    assert answer.json()["failed"] == 0
    return ca


def test_idevid_enroll_ok_device_created(installation: Installation, factory: Issuer) -> None:
    client = device_client(installation)
    identity = idevid(installation, factory, "SN-1")
    cert = issued(simpleenroll(client, csr_for("SN-1"), identity))
    assert common_name(cert) == "SN-1"
    assert cert.issuer == installation.services.pki.cas.issuing.certificate.subject
    device = installation.api().get("/v1/devices/SN-1").json()
    assert (device["org"], device["type"], device["state"]) == ("acme", "gateway", "active")
    assert device["attributes"] == {"manufacturer": "acme-devices"}
    registered = records(installation, "admin:device:registered")[-1]
    assert (registered["actor"], registered["details"]["manufacturer"]) == (
        "idevid:acme-devices", "acme-devices")
    (success,) = records(installation, "device:enrollment:succeeded")
    assert success["details"]["method"] == "idevid"
    assert success["org_path"] == "/root/acme/"
    # the acme admin sees its new device; globex does not
    acme = installation.token("admin", "acme")
    assert installation.api(acme).get("/v1/devices/SN-1").status_code == 200
    assert installation.api(installation.token("admin", "globex")).get(
        "/v1/devices/SN-1").status_code == 404


def test_idevid_enroll_ok_empty_subject_and_preregistered(installation: Installation,
                                                          factory: Issuer) -> None:
    add_device(installation.api(), "SN-2", "sensor", org="acme")
    client = device_client(installation)
    cert = issued(simpleenroll(client, csr_for(None), idevid(installation, factory, "SN-2")))
    assert common_name(cert) == "SN-2"
    assert installation.api().get("/v1/devices/SN-2").json()["type"] == "sensor"


def test_idevid_enroll_fail_replay_then_ok_new_key(installation: Installation,
                                                   factory: Issuer) -> None:
    client = device_client(installation)
    identity = idevid(installation, factory, "SN-1")
    csr = csr_for("SN-1")
    issued(simpleenroll(client, csr, identity))
    before = row_counts(installation)
    replay = simpleenroll(client, csr, identity)
    assert_problem(replay, 409, "already certified")
    assert row_counts(installation) == before
    # the same IDevID may bootstrap the device again (e.g. after a factory reset), new key
    issued(simpleenroll(client, csr_for("SN-1"), identity))


def test_idevid_pins_first_key_seen(installation: Installation, factory: Issuer) -> None:
    client = device_client(installation)
    issued(simpleenroll(client, csr_for("SN-1"), idevid(installation, factory, "SN-1")))
    # a second IDevID for the same serial with another key: a clone
    clone = simpleenroll(client, csr_for("SN-1"), idevid(installation, factory, "SN-1"))
    assert_problem(clone, 401, "differs from the one the manifest")
    refused = records(installation, "device:enrollment:refused")[-1]
    assert refused["subject"] == "device:SN-1"
    assert "finding" in refused["reason"]


def test_idevid_fail_key_mismatch_with_manifest(installation: Installation,
                                                factory: Issuer) -> None:
    listed = make_key()
    spki = listed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    import_manifest(installation, "acme-devices", [{"serial": "SN-K", "public_key": spki}])
    client = device_client(installation)
    before = row_counts(installation)
    wrong = simpleenroll(client, csr_for("SN-K"), idevid(installation, factory, "SN-K"))
    assert_problem(wrong, 401, "IDevID's key differs")
    assert row_counts(installation) == before
    right = simpleenroll(client, csr_for("SN-K"),
                         idevid(installation, factory, "SN-K", key=listed))
    assert common_name(issued(right)) == "SN-K"


@pytest.mark.parametrize(
    ("case", "status", "detail"),
    [
        pytest.param("expired", 401, "IDevID expired", id="fail/expired"),
        pytest.param("not-yet", 401, "IDevID is not valid before", id="fail/not-yet-valid"),
        pytest.param("ca", 401, "CA certificate cannot be", id="fail/ca-as-idevid"),
        pytest.param("nameless", 401, "names no device", id="fail/no-serial-no-cn"),
        pytest.param("bad-serial", 400, "is not valid", id="fail/bad-serial"),
        pytest.param("reserved", 400, "is reserved", id="fail/reserved-serial"),
        pytest.param("csr-other-name", 400, "CSR asks for name 'SN-2'", id="fail/csr-name"),
    ],
)
def test_idevid_fail_refused(installation: Installation, factory: Issuer, case: str,
                             status: int, detail: str) -> None:
    now = installation.clock.now()
    serial, csr_name, extra = "SN-1", "SN-1", {}
    if case == "expired":
        extra = {"not_before": now - timedelta(days=400), "not_after": now - timedelta(days=1)}
    elif case == "not-yet":
        extra = {"not_before": now + timedelta(days=1)}
    elif case == "ca":
        extra = {"is_ca": True}
    elif case == "nameless":
        serial, extra = None, {"common_name": None}
    elif case == "bad-serial":
        serial = csr_name = "SN 1"
    elif case == "reserved":
        serial = csr_name = "admin"
    else:
        csr_name = "SN-2"
    identity = idevid(installation, factory, serial, **extra)
    before = row_counts(installation)
    answer = simpleenroll(device_client(installation), csr_for(csr_name), identity)
    assert_problem(answer, status, detail)
    assert row_counts(installation) == before
    assert installation.api().get("/v1/enrollment-requests").json()["items"] == []
    assert records(installation, "device:enrollment:refused")[-1]["details"]["method"] == \
        "idevid"


def test_idevid_fail_iotiam_certificate_on_simpleenroll(installation: Installation) -> None:
    add_device(installation.api(), "dev-1")
    key = make_key()
    own = Issuer(certificate_of(issue(installation.api(), "dev-1", key)), key)
    answer = simpleenroll(device_client(installation), csr_for("dev-1"), own)
    assert_problem(answer, 401, "renew it with simplereenroll")


def test_idevid_fail_device_outside_manufacturer_org(installation: Installation,
                                                     factory: Issuer) -> None:
    add_device(installation.api(), "SN-3", org="globex")
    answer = simpleenroll(device_client(installation), csr_for("SN-3"),
                          idevid(installation, factory, "SN-3"))
    assert_problem(answer, 409, "belongs to another org unit")


def test_idevid_fail_manufacturer_ca_expired(installation: Installation) -> None:
    ca = manufacturer_ca(installation)
    register_manufacturer(installation, ca)
    import_manifest(installation, "acme-devices", [{"serial": "SN-1"}])
    identity = idevid(installation, ca, "SN-1")
    installation.clock.advance(timedelta(days=3651))
    answer = simpleenroll(device_client(installation), csr_for("SN-1"), identity)
    assert_problem(answer, 401, "CA of manufacturer 'acme-devices' expired")


def test_unknown_manufacturer_held_as_finding(installation: Installation,
                                              factory: Issuer) -> None:
    foreign = manufacturer_ca(installation, "Counterfeit Co CA")
    client = device_client(installation)
    csr = csr_for("SN-1")
    identity = idevid(installation, foreign, "SN-1")
    before = row_counts(installation)
    answer = simpleenroll(client, csr, identity, forwarded_for="198.51.100.7")
    # RFC 7030 §4.2.3: accepted for later, retry after the given delay
    assert answer.status_code == 202, answer.text
    assert int(answer.headers["retry-after"]) > 0
    assert row_counts(installation) == before  # no device, no certificate
    (held,) = installation.api().get("/v1/enrollment-requests").json()["items"]
    assert (held["device"], held["reason"], held["source"], held["org"], held["status"]) == (
        "SN-1", "unknown-manufacturer", "198.51.100.7", None, "pending")
    assert held["id"] == answer.json()["request"]
    assert "Counterfeit Co CA" in held["presented"]
    (finding,) = records(installation, "device:enrollment:held")
    assert (finding["outcome"], finding["details"]["finding"]) == ("denied",
                                                                   "unknown-manufacturer")
    # a request tied to no org unit is the root's: a tenant admin does not see it
    acme = installation.token("admin", "acme")
    assert installation.api(acme).get("/v1/enrollment-requests").json()["items"] == []
    # polling with the same CSR: the same request, still pending
    again = simpleenroll(client, csr, identity, forwarded_for="198.51.100.7")
    assert again.status_code == 202
    (still,) = installation.api().get("/v1/enrollment-requests").json()["items"]
    assert (still["id"], still["polls"]) == (held["id"], 1)
    assert len(records(installation, "device:enrollment:held")) == 1


def test_serial_not_in_manifest_held_then_enrolls_after_import(
        installation: Installation, factory: Issuer) -> None:
    client = device_client(installation)
    identity = idevid(installation, factory, "SN-99")
    csr = csr_for("SN-99")
    answer = simpleenroll(client, csr, identity)
    assert answer.status_code == 202, answer.text
    acme = installation.token("admin", "acme")
    (held,) = installation.api(acme).get("/v1/enrollment-requests").json()["items"]
    assert (held["reason"], held["org"], held["manufacturer"]) == (
        "serial-not-in-manifest", "acme", "acme-devices")
    (finding,) = records(installation, "device:enrollment:held", acme)
    assert finding["org_path"] == "/root/acme/"
    assert installation.api(installation.token("admin", "globex")).get(
        "/v1/enrollment-requests").json()["items"] == []
    # the missing manifest row arrives; the device's next poll enrolls it
    import_manifest(installation, "acme-devices", [{"serial": "SN-99"}], acme)
    cert = issued(simpleenroll(client, csr, identity))
    assert common_name(cert) == "SN-99"
    shown = installation.api().get(f"/v1/enrollment-requests/{held['id']}").json()
    assert (shown["status"], shown["decided_by"]) == ("enrolled", "idevid")
    assert installation.api().get("/v1/enrollment-requests").json()["items"] == []
