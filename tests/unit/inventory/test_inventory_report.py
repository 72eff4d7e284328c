"""The inventory report: counts by type and state, and credential hygiene buckets as
time passes (the clock is frozen and moved by hand)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fleet import add_device, issue, revoke

from conftest import Installation
from iotiam.inventory.models import CredentialStatus
from iotiam.kernel import SYSTEM


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """The report is a use case: it runs on the memory stores."""
    return memory_installation

BUCKETS = ("none", "active", "expiring", "expired", "revoked", "older-than-rotation-age")
BACKDATE = timedelta(minutes=5)  # leaf notBefore is backdated this much
DAY = timedelta(days=1)


def report(installation: Installation, **params: Any) -> dict[str, Any]:
    answer = installation.api().get("/v1/inventory", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def buckets(installation: Installation, **params: Any) -> dict[str, int]:
    """Only the non-empty credential buckets."""
    counts = report(installation, **params)["by_credential_status"]
    assert tuple(counts) == BUCKETS
    return {name: n for name, n in counts.items() if n}


def test_report_ok_empty(installation: Installation) -> None:
    assert report(installation) == {
        "total": 0, "by_type": {}, "by_state": {}, "by_site": {}, "by_org": {},
        "by_credential_status": dict.fromkeys(BUCKETS, 0),
        "expiring_within_days": None, "rotation_age_days": 30, "never_rotated": 0,
        "expiring_rule": "past its renewal point (67% of its lifetime, +5% jitter) and "
                         "not renewed",
        # no risk register was built yet: nothing against the network to count
        "presence": {"managed": 0, "unmanaged": 0, "dormant": 0, "zombie": 0, "as_of": None},
    }


def test_report_ok_counts_by_type_and_state(installation: Installation) -> None:
    api = installation.api()
    for device_id, device_type, state in [
        ("s-1", "sensor", None), ("s-2", "sensor", "active"), ("s-3", "sensor", "active"),
        ("g-1", "gateway", "decommissioned"), ("c-1", "controller", "active"),
    ]:
        add_device(api, device_id, device_type)
        if state:
            api.post(f"/v1/devices/{device_id}/state", json={"state": state})
    api.post("/v1/devices/s-3/state", json={"state": "quarantined"})
    api.post("/v1/devices/c-1/state", json={"state": "suspended"})
    body = report(installation)
    assert body["total"] == 5
    assert body["by_type"] == {"sensor": 3, "gateway": 1, "controller": 1}
    assert body["by_state"] == {"pending": 1, "active": 1, "quarantined": 1, "suspended": 1,
                                "decommissioned": 1}
    assert buckets(installation) == {"none": 5}


def test_report_ok_parameters_echoed(installation: Installation) -> None:
    body = report(installation, expiring_days=3, rotation_age_days=90)
    assert (body["expiring_within_days"], body["rotation_age_days"]) == (3, 90)


def test_report_ok_none_and_active(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "bare")
    add_device(api, "s-1")
    add_device(api, "g-1", "gateway")
    issue(api, "s-1")
    issue(api, "g-1")
    assert buckets(installation, expiring_days=0) == {"none": 1, "active": 2}


def test_report_ok_expiring_window(installation: Installation) -> None:
    """A sensor certificate lives 24 h, a gateway's 7 days."""
    api = installation.api()
    add_device(api, "s-1")
    add_device(api, "g-1", "gateway")
    issue(api, "s-1")
    issue(api, "g-1")
    assert buckets(installation, expiring_days=0) == {"active": 2}
    assert buckets(installation, expiring_days=1) == {"expiring": 1, "active": 1}
    # a window of days is opt-in: by default fresh certificates are not "expiring"
    assert buckets(installation, expiring_days=7) == {"expiring": 2}
    assert buckets(installation) == {"active": 2}
    installation.clock.advance(timedelta(days=6))
    assert buckets(installation, expiring_days=1) == {"expiring": 1, "expired": 1}


def test_report_ok_expired_at_not_after(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s-1")
    issue(api, "s-1")
    installation.clock.advance(DAY - BACKDATE - timedelta(seconds=1))
    assert buckets(installation, expiring_days=0) == {"expiring": 1}  # past renewal
    installation.clock.advance(timedelta(seconds=1))
    assert buckets(installation, expiring_days=0) == {"expired": 1}


def test_report_ok_revoked(installation: Installation) -> None:
    api = installation.api()
    for device_id in ("s-1", "s-2"):
        add_device(api, device_id)
        revoke(api, issue(api, device_id)["serial"])
    # a new certificate after a revocation: the device is active again
    issue(api, "s-2")
    assert buckets(installation, expiring_days=0) == {"revoked": 1, "active": 1}


def test_report_ok_expired_beats_revoked(installation: Installation) -> None:
    """Without a live certificate, an unrevoked expired one is the finding that matters."""
    api = installation.api()
    add_device(api, "s-1")
    lapsed = issue(api, "s-1")
    revoke(api, issue(api, "s-1")["serial"])
    installation.clock.advance(2 * DAY)
    assert buckets(installation) == {"expired": 1}
    assert api.get(f"/v1/certificates/{lapsed['serial']}").json()["status"] == "issued"


def test_report_ok_rotation_age(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "g-1", "gateway")
    issue(api, "g-1")
    # the age counts from notBefore, which is backdated
    installation.clock.advance(DAY - BACKDATE - timedelta(seconds=1))
    assert buckets(installation, expiring_days=0, rotation_age_days=1) == {"active": 1}
    installation.clock.advance(timedelta(seconds=1))
    assert buckets(installation, expiring_days=0, rotation_age_days=1) == {
        "older-than-rotation-age": 1}
    assert buckets(installation, expiring_days=0, rotation_age_days=2) == {"active": 1}
    # expiring wins over overdue: it is the more urgent finding
    assert buckets(installation, expiring_days=7, rotation_age_days=1) == {"expiring": 1}


def test_report_ok_rotation_age_default_from_settings(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "g-1", "gateway")
    issue(api, "g-1")
    installation.clock.advance(timedelta(days=4))  # of 7: before its renewal point
    # the 30-day default: four days old is not overdue
    assert buckets(installation, expiring_days=0) == {"active": 1}


def test_report_ok_newest_live_certificate_decides(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "g-1", "gateway")
    issue(api, "g-1")
    installation.clock.advance(3 * DAY)
    issue(api, "g-1")
    assert buckets(installation, expiring_days=0, rotation_age_days=2) == {"active": 1}
    assert buckets(installation, expiring_days=5, rotation_age_days=2) == {"active": 1}


def test_report_ok_ignores_failed_issuance(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s-1")
    api.post("/v1/certificates", json={"device": "s-1", "csr": "garbage"})
    assert buckets(installation) == {"none": 1}


def test_report_ok_expiry_judged_by_lifetime_and_renewal_point(
        installation: Installation) -> None:
    """24 h certificates are not all "expiring": only one past its renewal point (2/3 of
    the lifetime, plus the agent's 5 % jitter) that has not been renewed is."""
    api = installation.api()
    add_device(api, "s-1")
    add_device(api, "s-2")
    issue(api, "s-1")
    issue(api, "s-2")
    assert buckets(installation) == {"active": 2}
    lifetime = DAY  # from the backdated notBefore
    # just before the latest moment a healthy agent renews: still fine
    installation.clock.advance(lifetime * (2 / 3 + 0.05) - BACKDATE - timedelta(minutes=1))
    assert buckets(installation) == {"active": 2}
    installation.clock.advance(timedelta(minutes=2))
    assert buckets(installation) == {"expiring": 2}
    issue(api, "s-2")  # renewed: its newest certificate decides
    assert buckets(installation) == {"expiring": 1, "active": 1}
    body = report(installation)
    assert body["expiring_within_days"] is None and "renewal point" in body["expiring_rule"]


def test_report_ok_psk_only_device_judged_as_a_certificate(installation: Installation) -> None:
    """A PSK-only device is active, then past its renewal point, then expired; without a
    lifetime it grows older than the rotation age; a revoked one is revoked."""
    api = installation.api()
    for device_id in ("p-life", "p-open", "p-gone"):
        add_device(api, device_id)
    assert api.post("/v1/devices/p-life/psk",
                    json={"lifetime_seconds": 30 * 86400}).status_code == 201
    assert api.post("/v1/devices/p-open/psk", json={}).status_code == 201
    assert api.post("/v1/devices/p-gone/psk", json={}).status_code == 201
    assert api.post("/v1/devices/p-gone/psk/revoke", json={"reason": "keyCompromise"}
                    ).status_code == 200
    assert buckets(installation) == {"active": 2, "revoked": 1}
    installation.clock.advance(22 * DAY)  # past 72% of 30 days: due for its rotation
    assert buckets(installation) == {"active": 1, "expiring": 1, "revoked": 1}
    installation.clock.advance(9 * DAY)
    assert buckets(installation) == {"older-than-rotation-age": 1, "expired": 1,
                                     "revoked": 1}
    devices, following, total = installation.services.inventory.devices_by_credential(
        SYSTEM, CredentialStatus.EXPIRED, rotation_age=30 * DAY)
    assert ([d.id for d in devices], following, total) == (["p-life"], None, 1)


def test_report_ok_oauth_client_decides_only_without_a_live_key(
        installation: Installation) -> None:
    """A device with only an OAuth client is judged by it (active, then revoked); beside
    a certificate past its renewal point, the certificate decides."""
    api = installation.api()
    add_device(api, "c-only")
    add_device(api, "c-cert", "gateway")
    issue(api, "c-cert")
    installation.clock.advance(5 * DAY + DAY / 2)  # its 7-day certificate is due
    for device_id in ("c-only", "c-cert"):
        assert api.post("/v1/oauth/clients", json={"device": device_id}).status_code == 201
    assert buckets(installation, rotation_age_days=365) == {"active": 1, "expiring": 1}
    assert api.post("/v1/oauth/clients/c-only/revoke").status_code == 200
    assert buckets(installation, rotation_age_days=365) == {"revoked": 1, "expiring": 1}
