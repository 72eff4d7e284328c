"""Settings: recorded by ``init``, overridden by the environment, refused in one line.

Every environment variable iotiam reads is read in ``iotiam.config``; these tests set
the ones that came there from other modules (broker ports and password, CRL and OCSP
validity, the OAuth issuer and token lifetime, the key files, the worker count) and
check that each reaches what it configures and that a bad value is one line.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from iotiam.bootstrap import token_config
from iotiam.broker.layout import BrokerFiles, render_config
from iotiam.broker.runtime import broker_config
from iotiam.config import Settings, firmware_key_passphrase, load_settings, save_settings
from iotiam.env_secrets import env_or_file
from iotiam.errors import SetupError


def test_broker_ports_ok_recorded_then_overridden(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    save_settings(Settings(data_dir=tmp_path, broker_port=9883, broker_psk_port=9884))
    settings = load_settings(tmp_path)
    assert (settings.broker_port, settings.broker_psk_port) == (9883, 9884)
    monkeypatch.setenv("IOTIAM_BROKER_PORT", "19883")
    monkeypatch.setenv("IOTIAM_BROKER_PSK_PORT", "19884")
    monkeypatch.setenv("IOTIAM_BROKER_ADMIN_PORT", "19885")
    config = broker_config(load_settings(tmp_path))
    assert (config.mtls_port, config.psk_port, config.admin_port) == (19883, 19884, 19885)
    text = render_config(config, BrokerFiles(tmp_path / "broker"), tmp_path / "plugin.so")
    assert "listener 19883 127.0.0.1" in text
    assert "listener 19884 127.0.0.1" in text
    assert "listener 19885 127.0.0.1" in text


def test_broker_auth_ok_recorded_then_overridden(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(tmp_path).broker_auth == "dynsec"  # the default
    save_settings(Settings(data_dir=tmp_path, broker_auth="plugin"))
    assert broker_config(load_settings(tmp_path)).auth == "plugin"
    monkeypatch.setenv("IOTIAM_BROKER_AUTH", "dynsec")
    assert load_settings(tmp_path).broker_auth == "dynsec"


def test_broker_auth_fail_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTIAM_BROKER_AUTH", "acl-file")
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == (
        "the broker authorization must be one of dynsec, plugin, not 'acl-file'")


@pytest.mark.parametrize("name", ["IOTIAM_BROKER_PORT", "IOTIAM_BROKER_PSK_PORT",
                                  "IOTIAM_BROKER_ADMIN_PORT", "IOTIAM_PORT",
                                  "IOTIAM_HTTP_PORT"])
@pytest.mark.parametrize("value", ["0", "65536", "88a3", "-1"])
def test_ports_fail_out_of_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == f"{name} must be a port between 1 and 65535"


def test_ports_fail_two_listeners_on_one_port(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTIAM_BROKER_PSK_PORT", "8883")
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == (
        "the API, HTTP and broker ports must all differ (API 8443, HTTP 8080, broker mTLS "
        "8883, broker PSK 8883, broker admin 18883)")


def test_ports_ok_broker_off_leaves_its_ports_out(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTIAM_BROKER", "off")
    monkeypatch.setenv("IOTIAM_BROKER_PORT", "8443")
    assert load_settings(tmp_path).broker_port == 8443


def test_validity_ok_defaults_recorded_and_overridden(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pki = load_settings(tmp_path).pki
    assert (pki.crl_validity, pki.crl_refresh_margin, pki.ocsp_validity) == (
        timedelta(hours=24), timedelta(hours=12), timedelta(hours=1))
    save_settings(Settings(data_dir=tmp_path, crl_validity=timedelta(days=3),
                           ocsp_validity=timedelta(hours=4)))
    settings = load_settings(tmp_path)
    assert (settings.crl_validity, settings.ocsp_validity) == (timedelta(days=3),
                                                               timedelta(hours=4))
    monkeypatch.setenv("IOTIAM_CRL_VALIDITY", "7200")
    monkeypatch.setenv("IOTIAM_OCSP_VALIDITY", "600")
    pki = load_settings(tmp_path).pki
    # the CRL is rebuilt once half of its validity is gone
    assert (pki.crl_validity, pki.crl_refresh_margin, pki.ocsp_validity) == (
        timedelta(hours=2), timedelta(hours=1), timedelta(minutes=10))


@pytest.mark.parametrize(("variables", "message"), [
    ({"IOTIAM_CRL_VALIDITY": "60"},
     "IOTIAM_CRL_VALIDITY must be a number of seconds between 600 and 604800"),
    ({"IOTIAM_CRL_VALIDITY": "a day"},
     "IOTIAM_CRL_VALIDITY must be a number of seconds between 600 and 604800"),
    ({"IOTIAM_CRL_VALIDITY": "604801"},
     "IOTIAM_CRL_VALIDITY must be a number of seconds between 600 and 604800"),
    ({"IOTIAM_OCSP_VALIDITY": "59"},
     "IOTIAM_OCSP_VALIDITY must be a number of seconds between 60 and 604800"),
    ({"IOTIAM_CRL_VALIDITY": "3600", "IOTIAM_OCSP_VALIDITY": "7200"},
     "IOTIAM_OCSP_VALIDITY (7200 s) must not exceed IOTIAM_CRL_VALIDITY (3600 s)"),
    ({"IOTIAM_OCSP_VALIDITY": "90000"},
     "IOTIAM_OCSP_VALIDITY (90000 s) must not exceed IOTIAM_CRL_VALIDITY (86400 s)"),
], ids=["fail/crl-too-short", "fail/crl-not-a-number", "fail/crl-too-long",
        "fail/ocsp-too-short", "fail/ocsp-beyond-crl", "fail/ocsp-beyond-default-crl"])
def test_validity_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       variables: dict[str, str], message: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == message


def test_tokens_ok_issuer_and_lifetime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = token_config(load_settings(tmp_path).with_overrides(port=9443))
    assert default.issuer == "https://127.0.0.1:9443"  # the API URL
    assert default.access_token_lifetime == timedelta(minutes=10)
    monkeypatch.setenv("IOTIAM_OAUTH_ISSUER", "https://iam.example/")
    monkeypatch.setenv("IOTIAM_TOKEN_LIFETIME", "120")
    config = token_config(load_settings(tmp_path))
    assert config.issuer == "https://iam.example"
    assert config.access_token_lifetime == timedelta(seconds=120)


@pytest.mark.parametrize("value", ["29", "86401", "ten"])
def test_tokens_fail_lifetime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              value: str) -> None:
    monkeypatch.setenv("IOTIAM_TOKEN_LIFETIME", value)
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == (
        "IOTIAM_TOKEN_LIFETIME must be a number of seconds between 30 and 86400")


def test_key_files_ok_in_secrets_unless_named(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(tmp_path)
    assert settings.audit_key_path == tmp_path / "secrets" / "audit.key"
    assert settings.data_key_path == tmp_path / "secrets" / "data.key"
    assert settings.alert_webhook_key_path == tmp_path / "secrets" / "alert-webhook.key"
    monkeypatch.setenv("IOTIAM_AUDIT_KEY_FILE", "/run/secrets/audit")
    monkeypatch.setenv("IOTIAM_DATA_KEY_FILE", "/run/secrets/data")
    monkeypatch.setenv("IOTIAM_ALERT_WEBHOOK_KEY_FILE", "/run/secrets/webhook")
    settings = load_settings(tmp_path)
    assert (settings.audit_key_path, settings.data_key_path,
            settings.alert_webhook_key_path) == (Path("/run/secrets/audit"),
                                                 Path("/run/secrets/data"),
                                                 Path("/run/secrets/webhook"))


def test_broker_password_ok_read_never_shown_nor_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(tmp_path).broker_password is None
    monkeypatch.setenv("IOTIAM_BROKER_PASSWORD", "s3cret-admin")
    settings = load_settings(tmp_path)
    assert settings.broker_password == "s3cret-admin"
    assert "s3cret-admin" not in repr(settings)
    save_settings(settings)
    assert "s3cret-admin" not in (tmp_path / "config.json").read_text()


def test_workers_ok_and_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(tmp_path).workers == 1
    monkeypatch.setenv("IOTIAM_WORKERS", "4")
    assert load_settings(tmp_path).workers == 4
    monkeypatch.setenv("IOTIAM_WORKERS", "65")
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == (
        "IOTIAM_WORKERS must be a number of processes between 1 and 64")


def test_firmware_key_passphrase_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    assert firmware_key_passphrase() is None
    monkeypatch.setenv("IOTIAM_FIRMWARE_KEY_PASSPHRASE", "open sesame")
    assert firmware_key_passphrase() == "open sesame"


def test_event_stream_ok_none_by_default_recorded_then_overridden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(tmp_path).event_stream is None  # the embedded, in-process path
    save_settings(Settings(data_dir=tmp_path, events_url="nats://10.0.0.5:4222",
                           event_partitions=32))
    stream = load_settings(tmp_path).event_stream
    assert stream is not None and (stream.url, stream.partitions) == (
        "nats://10.0.0.5:4222", 32)
    monkeypatch.setenv("IOTIAM_EVENTS_URL", "tls://nats.example:4222")
    monkeypatch.setenv("IOTIAM_EVENT_PARTITIONS", "8")
    stream = load_settings(tmp_path).event_stream
    assert stream is not None and (stream.url, stream.partitions) == (
        "tls://nats.example:4222", 8)


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("604800", 604800.0),
                                                ("2592000", 2592000.0)],
                         ids=["ok/none", "ok/a-week", "ok/thirty-days"])
def test_learning_period_ok_up_to_thirty_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              value: str, seconds: float) -> None:
    monkeypatch.setenv("IOTIAM_DETECTION_LEARNING_SECONDS", value)
    settings = load_settings(tmp_path)
    assert settings.detection_learning_seconds == seconds
    save_settings(settings)
    monkeypatch.delenv("IOTIAM_DETECTION_LEARNING_SECONDS")
    assert load_settings(tmp_path).detection_learning_seconds == seconds


def test_learning_period_fail_beyond_thirty_days(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTIAM_DETECTION_LEARNING_SECONDS", "2592001")
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert refused.value.diagnostics() == ("IOTIAM_DETECTION_LEARNING_SECONDS must be a "
                                           "number of seconds between 0 and 2592000")


@pytest.mark.parametrize(("env", "expected"), [
    pytest.param({"S": "direct"}, "direct", id="ok/value"),
    pytest.param({"S": "direct", "S_FILE": "/nonexistent"}, "direct", id="ok/value-wins"),
    pytest.param({}, None, id="ok/unset"),
    pytest.param({"S": ""}, None, id="ok/empty"),
])
def test_env_or_file_value(env: dict[str, str], expected: str | None) -> None:
    assert env_or_file(env, "S") == expected


def test_env_or_file_reads_the_file_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("  from-file\n")
    assert env_or_file({"S_FILE": str(secret)}, "S") == "from-file"


def test_env_or_file_unreadable_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="cannot read S_FILE"):
        env_or_file({"S_FILE": str(tmp_path / "missing")}, "S")


def test_child_psk_settings_ok_defaults_and_overridden(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(tmp_path)
    assert (settings.child_psk_rotation_days, settings.child_psk_check_seconds,
            settings.child_psk_direct) == (90, 300, False)
    assert settings.child_psk_overlap_hours == 72
    monkeypatch.setenv("IOTIAM_CHILD_PSK_OVERLAP", "0")
    assert load_settings(tmp_path).child_psk_overlap_hours == 0
    monkeypatch.setenv("IOTIAM_CHILD_PSK_ROTATION", "0")
    monkeypatch.setenv("IOTIAM_CHILD_PSK_CHECK_SECONDS", "30")
    monkeypatch.setenv("IOTIAM_CHILD_PSK_DIRECT", "on")
    settings = load_settings(tmp_path)
    assert (settings.child_psk_rotation_days, settings.child_psk_check_seconds,
            settings.child_psk_direct) == (0, 30, True)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("IOTIAM_CHILD_PSK_ROTATION", "826", "days between 0 (off) and 825"),
    ("IOTIAM_CHILD_PSK_ROTATION", "-1", "days between 0 (off) and 825"),
    ("IOTIAM_CHILD_PSK_OVERLAP", "2161", "hours between 0 (off) and 2160"),
    ("IOTIAM_CHILD_PSK_OVERLAP", "3h", "IOTIAM_CHILD_PSK_OVERLAP"),
    ("IOTIAM_CHILD_PSK_DIRECT", "yes", "must be one of on, off"),
    ("IOTIAM_CHILD_PSK_CHECK_SECONDS", "0", "IOTIAM_CHILD_PSK_CHECK_SECONDS"),
], ids=["fail/rotation-high", "fail/rotation-negative", "fail/overlap-high",
        "fail/overlap-unit", "fail/direct", "fail/check"])
def test_child_psk_settings_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SetupError) as refused:
        load_settings(tmp_path)
    assert message in refused.value.diagnostics()
