"""iotiam's end of the broker plugin's socket, spoken to as the C plugin speaks."""

from __future__ import annotations

import socket
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iotiam.broker.decision_socket import ALLOW_TTL_MS, DENY_TTL_MS, DecisionSocket
from iotiam.errors import SetupError
from iotiam.policy.actions import PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.policy.models import Decision, Deny, Permit

Asked = list[tuple[str, str, str | None, str]]


class Plugin:
    """A client of the socket framing as ``iotiam_auth.c`` does."""

    def __init__(self, path: Path) -> None:
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.settimeout(5)
        self.conn.connect(str(path))
        self.reader = self.conn.makefile("rb")
        self.send(b"H1")

    def send(self, payload: bytes) -> None:
        self.conn.sendall(struct.pack(">I", len(payload)) + payload)

    def frame(self) -> bytes:
        (length,) = struct.unpack(">I", self.reader.read(4))
        return bytes(self.reader.read(length))

    def ask(self, ident: int, access: bytes, user: bytes, topic: bytes,
            address: bytes = b"127.0.0.1") -> list[bytes]:
        self.send(b"\0".join([b"Q%d" % ident, access, user, address, topic]))
        return self.frame().split(b"\0")

    def close(self) -> None:
        self.reader.close()
        self.conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[Callable[..., Decision]], tuple[
        DecisionSocket, Plugin]]]:
    made: list[tuple[DecisionSocket, Plugin]] = []

    def serve(answer: Callable[..., Decision]) -> tuple[DecisionSocket, Plugin]:
        server = DecisionSocket(tmp_path / "auth.sock", answer)
        server.start()
        plugin = Plugin(server.path)
        made.append((server, plugin))
        return server, plugin

    yield serve
    for server, plugin in made:
        plugin.close()
        server.stop()


def own_namespace(asked: Asked) -> Callable[[str, str, str | None, str], Decision]:
    def answer(user: str, action: str, source: str | None, topic: str) -> Decision:
        asked.append((user, action, source, topic))
        if topic.startswith(f"devices/{user}/"):
            return Permit(())
        return Deny(f"no policy allows {action} on {topic!r}")
    return answer


def test_socket_ok_permit_and_deny_with_their_lifetimes(served: Callable[..., tuple[
        DecisionSocket, Plugin]]) -> None:
    asked: Asked = []
    _, plugin = served(own_namespace(asked))
    assert plugin.ask(1, b"publish", b"dev-1", b"devices/dev-1/t") == [
        b"A1", b"1", b"%d" % ALLOW_TTL_MS, b""]
    verdict = plugin.ask(2, b"subscribe", b"dev-1", b"devices/dev-2/#")
    assert verdict[:3] == [b"A2", b"0", b"%d" % DENY_TTL_MS]
    assert b"devices/dev-2/#" in verdict[3]
    plugin.ask(3, b"receive", b"dev-1", b"devices/dev-1/x", address=b"")
    assert asked == [("dev-1", PUBLISH, "127.0.0.1", "devices/dev-1/t"),
                     ("dev-1", SUBSCRIBE, "127.0.0.1", "devices/dev-2/#"),
                     ("dev-1", RECEIVE, None, "devices/dev-1/x")]


def test_socket_ok_topic_may_hold_any_byte_but_nul(served: Callable[..., tuple[
        DecisionSocket, Plugin]]) -> None:
    asked: Asked = []
    _, plugin = served(own_namespace(asked))
    assert plugin.ask(1, b"publish", b"dev-1", b"devices/dev-1/a b\tc")[1] == b"1"
    assert asked[0][3] == "devices/dev-1/a b\tc"


def test_socket_fail_unknown_access_is_denied_unasked(served: Callable[..., tuple[
        DecisionSocket, Plugin]]) -> None:
    asked: Asked = []
    _, plugin = served(own_namespace(asked))
    assert plugin.ask(1, b"unsubscribe", b"dev-1", b"devices/dev-1/t")[1] == b"0"
    assert asked == []


def test_socket_fail_a_failing_decision_denies_and_keeps_the_link(served: Callable[..., tuple[
        DecisionSocket, Plugin]]) -> None:
    def broken(*_: object) -> Decision:
        raise RuntimeError("store down")

    _, plugin = served(broken)
    verdict = plugin.ask(1, b"publish", b"dev-1", b"devices/dev-1/t")
    assert verdict[1] == b"0" and b"internal error" in verdict[3]
    assert plugin.ask(2, b"publish", b"dev-1", b"devices/dev-1/t")[0] == b"A2"


def test_socket_ok_pushes_reach_the_plugin(served: Callable[..., tuple[
        DecisionSocket, Plugin]]) -> None:
    server, plugin = served(own_namespace([]))
    plugin.ask(1, b"publish", b"dev-1", b"devices/dev-1/t")  # connected and served
    server.forget("dev-1")
    server.kick("dev-2")
    server.forget_all()
    assert [plugin.frame(), plugin.frame(), plugin.frame()] == [b"Fdev-1", b"Kdev-2", b"*"]


def test_socket_ok_answer_decided_across_a_push_is_not_to_be_kept(
        served: Callable[..., tuple[DecisionSocket, Plugin]]) -> None:
    holder: list[DecisionSocket] = []

    def answer_while_policy_changes(*_: object) -> Decision:
        holder[0].forget_all()  # a change lands while this question is decided
        return Permit(())

    server, plugin = served(answer_while_policy_changes)
    holder.append(server)
    plugin.send(b"\0".join([b"Q7", b"publish", b"dev-1", b"", b"devices/dev-1/t"]))
    frames = [plugin.frame(), plugin.frame()]
    assert frames[0] == b"*"
    assert frames[1].split(b"\0")[:3] == [b"A7", b"1", b"0"]


def test_socket_ok_only_its_owner_may_connect(tmp_path: Path) -> None:
    server = DecisionSocket(tmp_path / "auth.sock", own_namespace([]))
    server.start()
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        assert server.plugins == 0
    finally:
        server.stop()
    assert not server.path.exists()


def test_socket_fail_path_too_long_for_a_unix_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120) / "auth.sock"
    with pytest.raises(SetupError, match="longer than"):
        DecisionSocket(deep, own_namespace([])).start()
