"""``iotiam-agent gateway``: bad arguments on one line, and the files its broker reads
(a child's id or identity can never write another line into them)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from agent.agent_failures import run_failing
from iotiam.broker.child_listener import (
    AGENT_USERNAME,
    ChildListener,
    ChildListenerConfig,
    LocalChild,
    password_entry,
    render_acl,
    render_psk_file,
)
from iotiam.errors import SetupError

KEY = bytes(range(32))




@pytest.mark.parametrize(("args", "message"), [
    (["--refresh", "0"], "--refresh must be between 1 and 3600 seconds"),
    (["--refresh", "7200"], "--refresh must be between 1 and 3600 seconds"),
    (["--port", "70000"], "--port 70000 is not a TCP port"),
    (["--port", "9000", "--local-port", "9000"], "--port and --local-port must differ"),
    (["--upstream", "nohost"], "--upstream 'nohost': use HOST:PORT"),
    (["--upstream", "host:99999"], "use HOST:PORT"),
    (["--reports", "mqtt"], "--reports mqtt needs --upstream HOST:PORT"),
    (["--reports", "carrier-pigeon"], "--reports 'carrier-pigeon': use mqtt or https"),
], ids=["fail/refresh-low", "fail/refresh-high", "fail/port", "fail/same-ports",
        "fail/upstream", "fail/upstream-port", "fail/reports-mqtt-alone",
        "fail/reports-unknown"])
def test_gateway_mode_fail_bad_args(tmp_path: Path, args: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, line = run_failing(["gateway", "--dir", str(tmp_path / "gw"), *args], capsys,
                      monkeypatch)
    assert code == 2 and message in line, line
    assert not (tmp_path / "gw").exists()  # refused before anything was made


def test_gateway_mode_fail_not_enrolled(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, line = run_failing(["gateway", "--dir", str(tmp_path)], capsys, monkeypatch)
    assert code == 1 and "--server and --device" in line, line


def test_broker_files_ok() -> None:
    children = [LocalChild("tag-2", "tag-2", KEY), LocalChild("tag-1", "tag-1", KEY[::-1])]
    assert render_psk_file(children) == f"tag-1:{KEY[::-1].hex()}\ntag-2:{KEY.hex()}\n"
    acl = render_acl(children)
    assert acl.splitlines() == [
        f"user {AGENT_USERNAME}", "topic read devices/#", "topic write devices/+/psk/next",
        "", "user tag-1", "topic readwrite devices/tag-1/#", "",
        "user tag-2", "topic readwrite devices/tag-2/#"]


def test_broker_files_ok_next_key() -> None:
    # a child's next key is a second identity with the same topics, during the overlap
    children = [LocalChild("tag-1", "tag-1", KEY),
                LocalChild("tag-1", "tag-1.9f2c0a1b2c3d4e5f", KEY[::-1], "9f2c0a1b2c3d4e5f",
                           next=True)]
    assert render_psk_file(children) == (f"tag-1:{KEY.hex()}\n"
                                         f"tag-1.9f2c0a1b2c3d4e5f:{KEY[::-1].hex()}\n")
    assert render_acl(children).splitlines()[4:] == [
        "user tag-1", "topic readwrite devices/tag-1/#", "",
        "user tag-1.9f2c0a1b2c3d4e5f", "topic readwrite devices/tag-1/#"]


@pytest.mark.parametrize("child", [
    LocalChild("tag-1\nuser x", "tag-1", KEY), LocalChild("tag-1", "tag:1", KEY),
    LocalChild("tag-1", "tag-1 ", KEY), LocalChild("tag-1", "iotiam-gateway-agent", KEY),
    LocalChild("tag-1", "tag-1", b"short"),
], ids=["fail/newline", "fail/colon", "fail/space", "fail/reserved", "fail/short-key"])
def test_broker_files_fail_not_a_child(child: LocalChild) -> None:
    with pytest.raises(SetupError):
        render_acl([child])
    with pytest.raises(SetupError):
        render_psk_file([child])


def test_broker_files_fail_identity_twice() -> None:
    with pytest.raises(SetupError, match="listed twice"):
        render_psk_file([LocalChild("tag-1", "tag-1", KEY), LocalChild("tag-2", "tag-1", KEY)])


def test_password_entry_is_mosquitto_pbkdf2_sha512() -> None:
    salt = bytes(12)
    user, _, hashed = password_entry("agent", "secret", salt).strip().partition(":")
    _, scheme, iterations, salt64, digest64 = hashed.split("$")
    assert (user, scheme) == ("agent", "7")
    assert base64.b64decode(salt64) == salt
    assert base64.b64decode(digest64) == hashlib.pbkdf2_hmac(
        "sha512", b"secret", salt, int(iterations))


def test_install_reports_removed_and_rekeyed(tmp_path: Path) -> None:
    listener = ChildListener(Path("/bin/false"), ChildListenerConfig(), tmp_path / "broker")
    first = listener.install([LocalChild("tag-1", "tag-1", KEY),
                              LocalChild("tag-2", "tag-2", KEY)])
    assert (first.removed, first.rekeyed, first.children) == ((), (), 2)
    psk_file = tmp_path / "broker" / "psk_file"
    assert psk_file.stat().st_mode & 0o777 == 0o600
    again = listener.install([LocalChild("tag-1", "tag-1", KEY[::-1])])
    assert (again.removed, again.rekeyed, again.to_kick) == (("tag-2",), ("tag-1",),
                                                              ("tag-2", "tag-1"))
    assert psk_file.read_text() == f"tag-1:{KEY[::-1].hex()}\n"
    assert "tag-2" not in (tmp_path / "broker" / "acl_file").read_text()
    unchanged = listener.install([LocalChild("tag-1", "tag-1", KEY[::-1])])
    assert unchanged.to_kick == ()


def test_install_next_key_promoted_is_no_rekey(tmp_path: Path) -> None:
    listener = ChildListener(Path("/bin/false"), ChildListenerConfig(), tmp_path / "broker")
    nxt = "tag-1.9f2c0a1b2c3d4e5f"
    listener.install([LocalChild("tag-1", "tag-1", KEY),
                      LocalChild("tag-1", nxt, KEY[::-1], "9f2c0a1b2c3d4e5f", next=True)])
    assert listener.children[nxt].next
    # promoted: the old identity leaves (kicked), the next one stays, no longer next
    promoted = listener.install([LocalChild("tag-1", nxt, KEY[::-1], "9f2c0a1b2c3d4e5f")])
    assert promoted.to_kick == ("tag-1",)
    assert not listener.children[nxt].next
    listener.install([LocalChild("tag-1", nxt, KEY[::-1], "9f2c0a1b2c3d4e5f", next=True)])
    assert listener.children[nxt].next  # metadata follows the listing without a reload
