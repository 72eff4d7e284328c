"""iotiam's end of the Mosquitto plugin's Unix socket (``broker/plugin/iotiam_auth.c``).

The plugin asks, for one client, whether it may publish, subscribe or receive on a
topic; this answers from the decision point and tells the plugin how long it may keep
the answer. iotiam pushes on the same connection what the plugin must forget: one
device (its rights changed), one device and its session (a credential revoked), or
everything (a policy changed). Frames and fields are in docs/broker-plugin.md.

An answer decided while a push went out is sent with no lifetime: it may rest on what
the push just made stale, so the plugin uses it once and asks again next time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from iotiam.errors import SetupError
from iotiam.policy.actions import PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.policy.models import Decision, Deny

log = logging.getLogger("iotiam.broker.plugin")

PROTOCOL = b"1"
#: a topic is at most 65,535 bytes; the rest of a question is short (the plugin's limit)
MAX_FRAME = 128 * 1024
#: how long the plugin may reuse an allow. Changes are pushed at once, so this only
#: bounds what no push reports: a time window that closes, a change the feed missed
ALLOW_TTL_MS = 30_000
#: and a deny: a device that just got its credential changes no record that is pushed
DENY_TTL_MS = 1_000
#: the longest Unix socket path (``sockaddr_un.sun_path``, NUL included)
_MAX_PATH = 108
#: the plugin's access names and the policy action each is decided as
ACCESS = {b"publish": PUBLISH, b"subscribe": SUBSCRIBE, b"receive": RECEIVE}

#: (username, action, source address or None, topic) -> the decision
Answer = Callable[[str, str, str | None, str], Decision]


class _Plugin:
    """One connected plugin: its socket, written by one thread at a time."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, payload: bytes) -> None:
        with self.lock:
            self.conn.sendall(struct.pack(">I", len(payload)) + payload)


class DecisionSocket:
    """Answers the plugin's questions and pushes what it must forget."""

    def __init__(self, path: Path, answer: Answer, *, allow_ttl_ms: int = ALLOW_TTL_MS,
                 deny_ttl_ms: int = DENY_TTL_MS) -> None:
        self.path = path
        self._answer = answer
        self._ttl = {True: allow_ttl_ms, False: deny_ttl_ms}
        self._listener: socket.socket | None = None
        self._plugins: set[_Plugin] = set()
        self._lock = threading.Lock()
        #: moves on every push: an answer decided across one is not to be kept
        self._generation = 0
        self.answered = 0

    @property
    def plugins(self) -> int:
        """Plugins connected now."""
        with self._lock:
            return len(self._plugins)

    def start(self) -> None:
        """Listen (0600, in the broker's 0700 directory) and serve in threads."""
        if len(os.fsencode(self.path)) >= _MAX_PATH:
            raise SetupError(f"the broker plugin's socket path {self.path} is longer than "
                             f"{_MAX_PATH - 1} bytes: use a shorter data directory")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a process that died
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, 0o600)
            listener.listen(8)
        except OSError as e:
            listener.close()
            raise SetupError(f"cannot listen on {self.path} for the broker plugin: {e}") from e
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name="broker-plugin-socket").start()

    def stop(self) -> None:
        """Close the listener and every plugin's connection (the plugin then denies)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            plugins, self._plugins = self._plugins, set()
        for plugin in plugins:
            with contextlib.suppress(OSError):
                plugin.conn.shutdown(socket.SHUT_RDWR)
            plugin.conn.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- pushes ---------------------------------------------------------------------------

    def forget(self, device_id: str) -> None:
        """The plugin drops what it holds for this device (its rights changed)."""
        self._push(b"F" + device_id.encode())

    def kick(self, device_id: str) -> None:
        """The plugin drops what it holds for this device and its live session."""
        self._push(b"K" + device_id.encode())

    def forget_all(self) -> None:
        """The plugin drops every answer it holds (the policy set changed)."""
        self._push(b"*")

    def _push(self, payload: bytes) -> None:
        with self._lock:
            self._generation += 1
            plugins = list(self._plugins)
        for plugin in plugins:
            try:
                plugin.send(payload)
            except OSError as e:
                # the plugin reconnects and then forgets everything: nothing is lost
                log.warning("broker plugin connection lost while pushing: %s", e)
                self._drop(plugin)

    # -- questions ------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            plugin = _Plugin(conn)
            with self._lock:
                self._plugins.add(plugin)
            threading.Thread(target=self._serve, args=(plugin,), daemon=True,
                             name="broker-plugin").start()

    def _serve(self, plugin: _Plugin) -> None:
        reader = plugin.conn.makefile("rb")
        try:
            while True:
                head = reader.read(4)
                if len(head) < 4:
                    return
                (length,) = struct.unpack(">I", head)
                if length > MAX_FRAME:
                    log.warning("broker plugin sent a %d-byte frame; dropping it", length)
                    return
                payload = reader.read(length)
                if len(payload) < length:
                    return
                self._frame(plugin, payload)
        except OSError as e:
            log.info("broker plugin connection ended: %s", e)
        finally:
            reader.close()
            self._drop(plugin)

    def _frame(self, plugin: _Plugin, payload: bytes) -> None:
        kind, body = payload[:1], payload[1:]
        if kind == b"H":
            log.info("broker plugin connected (protocol %s)", body.decode(errors="replace"))
            if body != PROTOCOL:
                log.warning("broker plugin speaks protocol %r, this is %r: rebuild it",
                            body, PROTOCOL)
            return
        if kind != b"Q":
            raise OSError(f"unknown frame {kind!r} from the broker plugin")
        fields = body.split(b"\0", 4)
        if len(fields) != 5:
            raise OSError("a question from the broker plugin lacks fields")
        ident, access, user, address, topic = fields
        generation = self._generation
        decision = self._decide(access, user, address, topic)
        verdict = b"1" if decision.allowed else b"0"
        reason = b"" if decision.allowed else decision.reason.encode(errors="replace")[:300]
        with plugin.lock:
            # a push went out while deciding: this answer may rest on what it made stale
            ttl = self._ttl[decision.allowed] if self._generation == generation else 0
            answer = b"\0".join([b"A" + ident, verdict, b"%d" % ttl, reason])
            plugin.conn.sendall(struct.pack(">I", len(answer)) + answer)
        self.answered += 1

    def _decide(self, access: bytes, user: bytes, address: bytes, topic: bytes) -> Decision:
        action = ACCESS.get(access)
        if action is None:
            return Deny(f"unknown access {access!r}")
        try:
            username, source, name = user.decode(), address.decode(), topic.decode()
        except UnicodeDecodeError:
            return Deny("the username or topic is not UTF-8")
        try:
            return self._answer(username, action, source or None, name)
        except Exception:  # fail closed, and the plugin keeps its connection
            log.exception("deciding a broker plugin question failed; denying")
            return Deny("internal error; the error was logged")

    def _drop(self, plugin: _Plugin) -> None:
        with self._lock:
            self._plugins.discard(plugin)
        with contextlib.suppress(OSError):
            plugin.conn.close()
