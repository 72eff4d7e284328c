"""The broker_event_log setting: recorded by init, rendered into mosquitto.conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotiam.broker.layout import BrokerConfig, BrokerFiles, render_config
from iotiam.config import Settings, load_settings, save_settings
from iotiam.errors import SetupError


@pytest.mark.parametrize(("level", "debug"), [("connections", False), ("messages", True)],
                         ids=["ok/connections", "ok/messages"])
def test_event_log_ok_rendered(tmp_path: Path, level: str, debug: bool) -> None:
    text = render_config(BrokerConfig(event_log=level), BrokerFiles(tmp_path), tmp_path / "p.so")
    assert ("log_type debug" in text) is debug
    assert ("log_type subscribe" in text) is debug
    assert "log_type notice" in text and "connection_messages true" in text
    assert "log_timestamp_format %Y-%m-%dT%H:%M:%S%z" in text


def test_event_log_ok_recorded_and_overridden(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOTIAM_BROKER_EVENT_LOG", raising=False)
    assert load_settings(tmp_path).broker_event_log == "messages"  # detection sees ACLs
    save_settings(Settings(data_dir=tmp_path, broker_event_log="connections"))
    assert load_settings(tmp_path).broker_event_log == "connections"
    monkeypatch.setenv("IOTIAM_BROKER_EVENT_LOG", "messages")
    assert load_settings(tmp_path).broker_event_log == "messages"


def test_event_log_fail_unknown_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTIAM_BROKER_EVENT_LOG", "everything")
    with pytest.raises(SetupError, match="connections, messages"):
        load_settings(tmp_path)
