"""A bad setting stops ``init`` and ``serve`` with one line (exit 1) before they do
anything: an environment variable out of its bounds, or ports that collide."""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands import CLIS, assert_one_line_error, invoke

CASES = {
    "fail/init-crl-validity": (["init"], {"IOTIAM_CRL_VALIDITY": "30"},
                               "IOTIAM_CRL_VALIDITY must be a number of seconds between 600 "
                               "and 604800"),
    "fail/init-ocsp-beyond-crl": (["init"], {"IOTIAM_CRL_VALIDITY": "3600",
                                             "IOTIAM_OCSP_VALIDITY": "3601"},
                                  "IOTIAM_OCSP_VALIDITY (3601 s) must not exceed "
                                  "IOTIAM_CRL_VALIDITY (3600 s)"),
    "fail/init-broker-port-env": (["init"], {"IOTIAM_BROKER_PORT": "70000"},
                                  "IOTIAM_BROKER_PORT must be a port between 1 and 65535"),
    "fail/init-ports-collide": (["init", "--broker-psk-port", "8443"], {},
                                "the API, HTTP and broker ports must all differ (API 8443, "
                                "HTTP 8080, broker mTLS 8883, broker PSK 8443, broker admin "
                                "18883)"),
    "fail/serve-broker-psk-port-env": (["serve"], {"IOTIAM_BROKER_PSK_PORT": "0"},
                                       "IOTIAM_BROKER_PSK_PORT must be a port between 1 and "
                                       "65535"),
    "fail/init-events-url": (["init", "--events-url", "http://127.0.0.1:4222"], {},
                             "IOTIAM_EVENTS_URL must be a nats:// or tls:// URL, not "
                             "'http://127.0.0.1:4222'"),
    "fail/serve-events-url-env": (["serve"], {"IOTIAM_EVENTS_URL": "127.0.0.1:4222"},
                                  "IOTIAM_EVENTS_URL must be a nats:// or tls:// URL, not "
                                  "'127.0.0.1:4222'"),
    "fail/serve-event-partitions-env": (["serve"], {"IOTIAM_EVENT_PARTITIONS": "0"},
                                        "IOTIAM_EVENT_PARTITIONS must be a number of "
                                        "partitions between 1 and 1024"),
    "fail/init-learning-period-env": (["init"], {"IOTIAM_DETECTION_LEARNING_SECONDS":
                                                 "2592001"},
                                      "IOTIAM_DETECTION_LEARNING_SECONDS must be a number of "
                                      "seconds between 0 and 2592000"),
    "fail/serve-log-format-env": (["serve"], {"IOTIAM_LOG_FORMAT": "xml"},
                                  "the log format (IOTIAM_LOG_FORMAT, --log-format) must be "
                                  "one of text, json, not 'xml'"),
    "fail/serve-log-format": (["serve", "--log-format", "logfmt"], {},
                              "the log format (IOTIAM_LOG_FORMAT, --log-format) must be one "
                              "of text, json, not 'logfmt'"),
    "fail/serve-not-initialised": (["serve"], {}, "{data} is not a data directory: run "
                                   "`iotiam init` first"),
    "fail/serve-workers-env": (["serve"], {"IOTIAM_WORKERS": "0"},
                               "IOTIAM_WORKERS must be a number of processes between 1 and 64"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_setting_error(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    words, variables, expected = CASES[case]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    argv = ["--data-dir", str(tmp_path / "data"), *words]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    expected = expected.replace("{data}", str(tmp_path / "data"))
    assert (result.rc, line) == (1, f"error: {expected}")
    assert not (tmp_path / "data").exists()  # refused before anything was done
