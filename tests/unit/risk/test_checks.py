"""Each check on values: what it flags, with which evidence, and what it leaves alone."""

from __future__ import annotations

from datetime import timedelta

import pytest

from iotiam.discovery.models import AssetStatus, IdentifierKind
from iotiam.inventory.models import DeviceState
from iotiam.pki.models import CertificateStatus
from iotiam.risk import credentials, fleet, posture, presence
from iotiam.risk.models import (
    CaFacts,
    FleetChannels,
    PolicyFacts,
    RiskFactor,
    RiskSettings,
    Severity,
    when,
)

from .facts import (
    DAY,
    NOW,
    asset,
    cert,
    device,
    psk,
    seen_cert,
    seen_device,
    seen_psk,
)

SETTINGS = RiskSettings()
MAX_AGE = 30 * DAY


def factors(hits: list) -> set[RiskFactor]:  # type: ignore[type-arg]
    return {h.factor for h in hits}


def cert_hits(record, seen=None, *, renewed=True, key_since=None, holders=()):  # type: ignore[no-untyped-def]
    return credentials.certificate_checks(
        record, now=NOW, settings=SETTINGS, max_key_age=MAX_AGE,
        key_since=key_since if key_since is not None else record.not_before.timestamp(),
        renewed=renewed, seen=seen, key_holders=holders)


def test_ok_fresh_certificate_has_no_factor() -> None:
    assert cert_hits(cert(issued_days=5)) == []


def test_fail_never_rotated_key_older_than_type_allows() -> None:
    record = cert(issued_days=10)
    (hit,) = cert_hits(record, key_since=NOW - 45 * DAY)
    assert hit.factor is RiskFactor.NEVER_ROTATED
    assert hit.evidence["max_age_days"] == 30 and hit.evidence["age_days"] == 45
    assert hit.evidence["public_key_sha256"] == "k1"


def test_fail_expired_in_use() -> None:
    record = cert(issued_days=20, lifetime_days=10)
    hits = cert_hits(record, seen_cert(record.fingerprint_sha256 or "", issuer=None))
    (hit,) = [h for h in hits if h.factor is RiskFactor.EXPIRED_IN_USE]
    # times in evidence are ISO 8601 in UTC with Z, as the rest of the API writes them
    assert (hit.evidence["not_after"], hit.evidence["last_seen"]) == (
        "2026-05-22T00:00:00Z", "2026-06-01T00:00:00Z")


def test_ok_expired_and_not_seen_is_no_risk() -> None:
    assert cert_hits(cert(issued_days=20, lifetime_days=10)) == []


def test_fail_expiring_no_renewal_past_renewal_point() -> None:
    record = cert(issued_days=25, lifetime_days=30)  # renewal point at day 20
    assert factors(cert_hits(record, renewed=False)) == {RiskFactor.EXPIRING_NO_RENEWAL}
    assert cert_hits(record, renewed=True) == []


def test_fail_revoked_in_use() -> None:
    record = cert(status=CertificateStatus.REVOKED, revoked_days=3)
    (hit,) = cert_hits(record, seen_cert(record.fingerprint_sha256 or "", last_days=1))
    assert hit.factor is RiskFactor.REVOKED_IN_USE and hit.severity is Severity.CRITICAL
    assert cert_hits(record, seen_cert(record.fingerprint_sha256 or "", last_days=5)) == []


@pytest.mark.parametrize(("key", "digest", "severity"), [
    ("rsa:1024", None, Severity.CRITICAL), ("rsa:1536", None, Severity.HIGH),
    ("ec:secp192r1", None, Severity.HIGH), ("ec:secp256r1", "sha1", Severity.HIGH)],
    ids=["fail/rsa-1024", "fail/rsa-1536", "fail/p-192", "fail/sha1"])
def test_fail_weak_key(key: str, digest: str | None, severity: Severity) -> None:
    hit = credentials.weak_key(key, digest)
    assert hit is not None and hit.severity is severity
    assert hit.evidence == {"key": key, "signature_hash": digest}


@pytest.mark.parametrize(("key", "digest"), [("rsa:2048", "sha256"), ("ec:secp256r1", None),
                                             ("ed25519", None)],
                         ids=["ok/rsa-2048", "ok/p-256", "ok/ed25519"])
def test_ok_strong_key(key: str, digest: str | None) -> None:
    assert credentials.weak_key(key, digest) is None


def test_fail_shared_certificate_key_on_two_devices() -> None:
    (hit,) = cert_hits(cert(), holders=("dev-1", "dev-2"))
    assert hit.factor is RiskFactor.SHARED_CREDENTIAL
    assert hit.evidence["devices"] == ["dev-1", "dev-2"]


def test_fail_shared_used_from_two_places_at_once() -> None:
    seen = seen_cert("f" * 64, devices=("dev-1",),
                     places=(("plant-1", "10.0.0.1"), ("plant-2", "10.9.0.1")))
    hit = credentials.shared(seen)
    assert hit is not None and len(hit.evidence["places"]) == 2


def test_fail_default_credential_well_known_identity() -> None:
    hit = credentials.default_psk("Client_identity", None, SETTINGS)
    assert hit is not None and hit.evidence["well_known"] is True


def test_fail_default_credential_on_many_holders() -> None:
    seen = seen_psk("factory-psk", devices=("a", "b"), assets=("x",))
    hit = credentials.default_psk("factory-psk", seen, SETTINGS)
    assert hit is not None and hit.evidence["holders"] == 3
    assert credentials.default_psk("own-psk", seen_psk("own-psk", devices=("a",)),
                                   SETTINGS) is None


def test_fail_psk_never_rotated_and_revoked_in_use() -> None:
    old = psk(created_days=60)
    assert factors(credentials.psk_checks(old, now=NOW, settings=SETTINGS, max_key_age=MAX_AGE,
                                          seen=None)) == {RiskFactor.NEVER_ROTATED}
    from iotiam.credentials.models import PskStatus
    revoked = psk(status=PskStatus.REVOKED, revoked_days=2)
    hits = credentials.psk_checks(revoked, now=NOW, settings=SETTINGS, max_key_age=MAX_AGE,
                                  seen=seen_psk(revoked.identity, devices=("dev-1",)))
    assert factors(hits) == {RiskFactor.REVOKED_IN_USE}


def test_fail_unknown_issuer_for_foreign_certificate() -> None:
    hits = credentials.seen_certificate_checks(seen_cert("a" * 64, issuer="CN=Vendor CA"),
                                               ca_subjects=frozenset({"CN=iotiam"}),
                                               revoked_cas={})
    (hit,) = hits
    assert hit.factor is RiskFactor.UNKNOWN_ISSUER and hit.evidence["issuer"] == "CN=Vendor CA"
    assert credentials.seen_certificate_checks(
        seen_cert("a" * 64, issuer="CN=iotiam"), ca_subjects=frozenset({"CN=iotiam"}),
        revoked_cas={}) == []


def test_fail_seen_certificate_under_revoked_ca() -> None:
    hits = credentials.seen_certificate_checks(
        seen_cert("a" * 64, issuer="CN=Old"), ca_subjects=frozenset({"CN=Old"}),
        revoked_cas={"CN=Old": NOW - 5 * DAY})
    assert factors(hits) == {RiskFactor.ACTIVE_UNDER_REVOKED_CA}


def test_fail_unregistered_psk_is_unmanaged() -> None:
    assert RiskFactor.UNMANAGED in factors(credentials.seen_psk_checks(
        seen_psk("stray", assets=("ast-1",)), SETTINGS))


# -- presence ------------------------------------------------------------------------------


def test_fail_unmanaged_asset_with_evidence() -> None:
    (hit,) = presence.asset_checks(asset(), frozenset())
    assert hit.factor is RiskFactor.UNMANAGED and hit.severity is Severity.MEDIUM
    assert hit.evidence["mac"] == "aa:bb:cc:dd:ee:ff" and hit.evidence["sources"] == ["nmap"]
    assert (hit.evidence["first_seen"], hit.evidence["last_seen"]) == (
        "2026-05-22T00:00:00Z", "2026-05-31T00:00:00Z")


def test_fail_unmanaged_controller_is_high() -> None:
    (hit,) = presence.asset_checks(asset(ports=(502,)), frozenset())
    assert hit.severity is Severity.HIGH and hit.evidence["guessed_class"] == "controller"


def test_ok_adopted_asset_is_no_risk() -> None:
    assert presence.asset_checks(asset(status=AssetStatus.ADOPTED), frozenset()) == []


def test_fail_conflicting_client_id() -> None:
    clash = asset(identifiers=((IdentifierKind.CLIENT_ID, "dev-1"),))
    hits = presence.asset_checks(clash, frozenset({"dev-1"}))
    (conflict,) = [h for h in hits if h.factor is RiskFactor.CONFLICTING_CLIENT_ID]
    assert conflict.evidence["client_ids"] == ["dev-1"]


def test_fail_zombie() -> None:
    retired = device(state=DeviceState.DECOMMISSIONED, updated_days=10)
    (hit,) = presence.device_presence_checks(retired, seen_device("dev-1", last_days=1),
                                             now=NOW, live_credentials=0, settings=SETTINGS)
    assert hit.factor is RiskFactor.ZOMBIE
    assert presence.device_presence_checks(retired, seen_device("dev-1", last_days=20),
                                           now=NOW, live_credentials=0,
                                           settings=SETTINGS) == []


def test_fail_dormant_with_valid_credentials() -> None:
    idle = device(updated_days=40)
    (hit,) = presence.device_presence_checks(idle, seen_device("dev-1", last_days=35),
                                             now=NOW, live_credentials=1, settings=SETTINGS)
    assert hit.factor is RiskFactor.DORMANT_VALID_CREDENTIALS
    assert hit.evidence["dormancy_days"] == 30
    assert hit.evidence["last_seen"] == "2026-04-27T00:00:00Z"
    assert presence.device_presence_checks(idle, None, now=NOW, live_credentials=0,
                                           settings=SETTINGS) == []
    short = RiskSettings(dormancy_seconds=50 * DAY)
    assert presence.device_presence_checks(idle, None, now=NOW, live_credentials=1,
                                           settings=short) == []


# -- posture -------------------------------------------------------------------------------


def test_fail_low_trust_and_ok_above_threshold() -> None:
    from iotiam.response.models import TrustScore
    assert posture.trust_check(TrustScore("d", 20), SETTINGS) is not None
    assert posture.trust_check(TrustScore("d", 80), SETTINGS) is None


def test_fail_over_permissive_policy() -> None:
    hit = posture.policy_check([PolicyFacts("open", (("critical", "mqtt-all-on-all", "1"),),
                                            True)])
    assert hit is not None and hit.severity is Severity.HIGH
    assert hit.evidence["problems"][0]["code"] == "mqtt-all-on-all"
    assert posture.policy_check([PolicyFacts("tight", (), True)]) is None


# -- fleet ---------------------------------------------------------------------------------


def ca(**kw: object) -> CaFacts:
    base: dict[str, object] = dict(id="issuing-1", role="issuing", subject="CN=iotiam",
                                   not_after=NOW + 400 * DAY, key="ec:secp256r1",
                                   signature_hash="sha256")
    base.update(kw)
    return CaFacts(**base)  # type: ignore[arg-type]


def test_ok_healthy_ca() -> None:
    assert fleet.ca_checks(ca(), now=NOW, settings=SETTINGS) == []


@pytest.mark.parametrize(("kw", "factor"), [
    ({"not_after": NOW + 20 * DAY}, RiskFactor.CA_EXPIRING),
    ({"key": "rsa:1024"}, RiskFactor.CA_WEAK),
    ({"revoked_at": NOW - DAY}, RiskFactor.REVOKED_CA_TRUSTED)],
    ids=["fail/expiring", "fail/weak", "fail/revoked"])
def test_fail_ca(kw: dict[str, object], factor: RiskFactor) -> None:
    assert factors(fleet.ca_checks(ca(**kw), now=NOW, settings=SETTINGS)) == {factor}


def test_fail_active_under_revoked_ca() -> None:
    hit = fleet.under_revoked_ca(cert(issuer="old"), {"old": NOW - DAY}, NOW)
    assert hit is not None and hit.evidence["issuer"] == "old"
    assert fleet.under_revoked_ca(cert(issuer="new"), {"old": NOW - DAY}, NOW) is None


def test_fail_channels_disabled() -> None:
    assert factors(fleet.channel_checks(FleetChannels(False, ()))) == {
        RiskFactor.AUDIT_EXPORT_DISABLED, RiskFactor.ALERT_CHANNELS_DISABLED}
    assert fleet.channel_checks(FleetChannels(True, ("webhook",))) == []


def test_ok_factor_names_are_the_contract() -> None:
    assert [f.value for f in RiskFactor] == [
        "unmanaged", "unknown-issuer", "shared-credential", "never-rotated", "expired-in-use",
        "expiring-no-renewal", "weak-key", "default-credential", "revoked-in-use", "zombie",
        "dormant-valid-credentials", "firmware-noncompliant", "open-findings", "low-trust",
        "over-permissive-policy", "ca-expiring", "ca-weak", "revoked-ca-trusted",
        "active-under-revoked-ca", "conflicting-client-id", "audit-export-disabled",
        "alert-channels-disabled"]
    assert timedelta(seconds=SETTINGS.dormancy_seconds).days == 30


def test_ok_evidence_time_is_iso_8601_utc() -> None:
    """The same text as a discovered asset's times in the API (fractions kept)."""
    assert when(1772359200.615989) == "2026-03-01T10:00:00.615989Z"
    assert when(1772359200.0) == "2026-03-01T10:00:00Z"
    assert when(None) is None
