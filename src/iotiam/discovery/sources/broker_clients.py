"""The clients of an external MQTT broker: Mosquitto's dynamic security, EMQX's clients API.

Every client (username) an external broker knows is a credential; one iotiam does not
manage is the register's "unmanaged" row. A listing carries no time of its own, so
its sightings take the import's (``SourceContext.default_time``); EMQX's carry the
time a client connected. ``option broker=<name>`` names the broker in each sighting's
detail (default: the source's name).

``mosquitto`` reads what the dynamic-security plugin (Mosquitto 2.0) answers on
``$CONTROL/dynamic-security/v1/response``: the ``{"responses": [...]}`` envelope, one
response, or its ``data``, for ``listClients`` (plain: usernames; ``verbose``:
objects with ``username``, ``clientid``, ``textname``, ``disabled``, ``roles``) and
``getClient``; and the text ``mosquitto_ctrl dynsec listClients`` prints (one username
a line) or ``getClient`` prints (``Username: …`` / ``Clientid: …``). ``$SYS/broker/…``
lines (client counts) are no identities and are skipped.

``emqx`` reads EMQX 5's ``GET /api/v5/clients`` page (``{"data": [...], "meta": {...}}``),
one client object (``GET /api/v5/clients/{clientid}``) or an array of them.

Either may be one document (pretty-printed is fine, up to ``MAX_DOCUMENT`` bytes, held
at once) or JSON lines, one page or response per line, which are read one at a time:
the form to use for a listing of millions of clients.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    bounded_text,
    normalize_ip,
)
from iotiam.discovery.sources._common import (
    MAX_DOCUMENT,
    Reading,
    Record,
    clip,
    count,
    epoch,
    import_time,
)
from iotiam.discovery.sources.lines import Lines, LineStream, bounded_lines, opening, too_long
from iotiam.errors import InvalidInput, PayloadTooLarge
from iotiam.untrusted import load_json

#: the longest line read: a one-line answer of the plugin or an EMQX page of its largest
#: size (limit=10000) is a few MB; past this, page the listing (``listClients`` count
#: and offset, EMQX's ``page``/``limit``) and give one page per line
MAX_LINE = 8 * 1024 * 1024
#: a username as mosquitto_ctrl prints it: printable, no white space, valid UTF-8
_WORD = re.compile(r"[^\s\x00-\x1f\x7f\ufffd]+")
#: ``mosquitto_ctrl dynsec getClient`` fields that are not the username or client id
_CTRL_FIELDS = ("Textname:", "Textdescription:", "Roles:", "Groups:", "Disabled:")


class MosquittoClientsSource:
    """The dynamic-security plugin's ``listClients``/``getClient``, JSON or mosquitto_ctrl."""

    name = "mosquitto"
    options: frozenset[str] = frozenset({"broker"})

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """A sighting per client the broker knows."""
        return Reading(lambda skipped: _Mosquitto(context, skipped).run(stream))


class EmqxClientsSource:
    """EMQX 5's ``GET /api/v5/clients`` pages (or single clients)."""

    name = "emqx"
    options: frozenset[str] = frozenset({"broker"})

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """A sighting per client on the page(s)."""
        return Reading(lambda skipped: _Emqx(context, skipped).run(stream))


def documents(stream: LineStream, what: str) -> Iterator[tuple[int | None, Any]]:
    """``(line number | None, JSON value | Refusal)``: each line of JSON lines, or the
    one document (line None).

    The first line decides: when it is a whole JSON value the input is JSON lines, else
    it is one document, read up to ``MAX_DOCUMENT`` bytes.
    """
    opened = opening(bounded_lines(stream, what=what, limit=MAX_LINE), what)
    if opened is None:
        return
    first, lines = opened
    try:
        load_json(first, what=what, max_bytes=MAX_DOCUMENT)
        whole = True
    except InvalidInput:
        whole = False
    if not whole:
        yield None, load_json(_gather(lines, what), what=what, max_bytes=MAX_DOCUMENT)
        return
    for number, line in lines:
        if line is None:
            yield number, Refusal(number, f"line is longer than {MAX_LINE} bytes: give one "
                                          "page of the listing per line")
        elif line.strip():
            try:
                yield number, load_json(line, what=f"line {number}", max_bytes=MAX_DOCUMENT)
            except InvalidInput as e:
                yield number, Refusal(number, e.detail)


def _gather(lines: Lines, what: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    for _, line in lines:
        if line is None:
            raise InvalidInput(f"{what} has a line longer than {MAX_LINE} bytes and is not "
                               "JSON lines")
        size += len(line) + 1
        if size > MAX_DOCUMENT:
            raise PayloadTooLarge(f"{what} is one JSON document larger than {MAX_DOCUMENT} "
                                  "bytes: give it as JSON lines, one page per line")
        parts.append(line)
    return b"\n".join(parts)


class _Listing:
    """What both brokers' readings share."""

    source = ""

    def __init__(self, context: SourceContext, skipped: Counter[str]) -> None:
        self.context = context
        self.skipped = skipped
        self.now = import_time(context)
        self.broker = (context.options.get("broker") or self.source).strip()[:100]
        #: the line being read (JSON lines, text), or None in one document, where a
        #: refusal names the client's record number instead
        self.line: int | None = None
        self.record = 0

    def where(self) -> int:
        """The position a refusal names: the line, else the record just read."""
        return self.line if self.line is not None else max(self.record, 1)

    def _sighting(self, seen_at: float, detail: str, **facts: Any) -> Sighting:
        return Sighting(source=self.source, seen_at=seen_at, site=self.context.site,
                        network=self.context.network, detail=clip(detail), **facts)

    def _client(self, username: Any, client_id: Any, seen_at: float, detail: str,
                **facts: Any) -> Record:
        self.record += 1
        try:
            user = bounded_text(_string(username, "username"), "username")
            cid = bounded_text(_string(client_id, "clientid"), "clientid")
            if not (user or cid):
                raise InvalidInput("a client with neither username nor client id")
            return self._sighting(seen_at, detail, username=user, client_id=cid, **facts)
        except InvalidInput as e:
            return Refusal(self.where(), e.detail)


class _Mosquitto(_Listing):
    source = "mosquitto"

    def run(self, stream: IO[bytes]) -> Iterator[Record]:
        """JSON answers of the plugin, or mosquitto_ctrl's text."""
        peeked = _Peeked(stream)
        if peeked.first_visible() not in (None, ord("{"), ord("[")):
            yield from self._text(peeked)
            return
        for line, value in documents(peeked, "the dynamic-security answer"):
            self.line = line
            if isinstance(value, Refusal):
                yield value
            else:
                yield from self._answer(value)

    def _answer(self, value: Any) -> Iterator[Record]:
        if isinstance(value, list):
            yield from self._clients(value)
        elif not isinstance(value, dict):
            yield Refusal(self.where(), "not a dynamic-security answer")
        elif isinstance(value.get("responses"), list):
            for response in value["responses"]:
                yield from self._answer(response)
        elif "command" in value:
            command = str(value.get("command"))[:40]
            if value.get("error"):
                yield Refusal(self.where(), f"{command}: {str(value['error'])[:200]}")
            elif command in ("listClients", "getClient"):
                yield from self._answer(value.get("data"))
            else:
                count(self.skipped, command)
        elif isinstance(value.get("clients"), list):
            yield from self._clients(value["clients"])
        elif isinstance(value.get("client"), dict):
            yield from self._clients([value["client"]])
        elif "username" in value:
            yield from self._clients([value])
        else:
            yield Refusal(self.where(), "not a dynamic-security answer")

    def _clients(self, clients: list[Any]) -> Iterator[Record]:
        for entry in clients:
            if isinstance(entry, dict):
                yield self._client(entry.get("username"), entry.get("clientid"), self.now,
                                   self._detail(entry))
            else:
                yield self._client(entry, None, self.now, self._detail({}))

    def _detail(self, entry: dict[str, Any]) -> str:
        detail = f"dynsec client on {self.broker}"
        if entry.get("disabled") is True:
            detail += " (disabled)"
        roles = entry.get("roles")
        if isinstance(roles, list) and roles:
            names = [str(r.get("rolename")) for r in roles if isinstance(r, dict)]
            detail += ", roles " + ",".join(names)
        name = entry.get("textname")
        return detail + (f", {name[:60]!r}" if isinstance(name, str) and name else "")

    def _text(self, stream: LineStream) -> Iterator[Record]:
        """``mosquitto_ctrl dynsec listClients`` (a username a line) or ``getClient``.

        A line of this text can be anything, so a username is taken only when it has no
        white space or control character: another file given by mistake (a Zeek log, a
        CSV with spaces) is refused from its first line instead of read as usernames.
        A username with a space in it must come in the plugin's JSON.
        """
        pending: dict[str, str] = {}
        first = True
        for number, line in bounded_lines(stream, what="the mosquitto_ctrl listing"):
            self.line = number
            if line is None:
                yield too_long(number)
                continue
            text = line.decode("utf-8", "replace")
            if not text.strip() or text[0].isspace() or text.startswith(_CTRL_FIELDS):
                continue  # blank, a continued Roles: list, or a field we do not read
            if text.startswith("$SYS/"):
                count(self.skipped, "$SYS")
            elif text.startswith("Username:"):
                if pending:
                    yield self._pending(pending)
                pending = {"username": text[len("Username:"):].strip()}
            elif text.startswith("Clientid:") and pending:
                pending["clientid"] = text[len("Clientid:"):].strip()
            elif _WORD.fullmatch(text.rstrip()):
                yield self._client(text.rstrip(), None, self.now, self._detail({}))
            elif first:
                raise InvalidInput("not a dynamic-security client listing: its first line "
                                   "is not a username (mosquitto_ctrl prints one a line)")
            else:
                yield Refusal(number, "not a username: white space, control characters or "
                                      "bytes that are not UTF-8")
            first = False
        if pending:
            yield self._pending(pending)

    def _pending(self, fields: dict[str, str]) -> Record:
        return self._client(fields.get("username"), fields.get("clientid"), self.now,
                            self._detail({}))


class _Emqx(_Listing):
    source = "emqx"

    def run(self, stream: IO[bytes]) -> Iterator[Record]:
        """Pages, client objects or arrays of them."""
        more = False
        for line, value in documents(stream, "the EMQX clients listing"):
            self.line = line
            if isinstance(value, Refusal):
                yield value
                continue
            if isinstance(value, dict) and isinstance(value.get("data"), list):
                meta = value.get("meta")
                more = isinstance(meta, dict) and meta.get("hasnext") is True
                clients: list[Any] = value["data"]
            elif isinstance(value, dict) and "clientid" in value:
                clients = [value]
            elif isinstance(value, list):
                clients = value
            else:
                yield Refusal(self.where(), "not an EMQX clients page or client")
                continue
            for client in clients:
                yield self._one(client)
        if more:  # the listing stopped where the broker had more pages
            count(self.skipped, "emqx pages not in this input (meta.hasnext)")

    def _one(self, client: Any) -> Record:
        if not isinstance(client, dict):
            self.record += 1
            return Refusal(self.where(), "not an EMQX client object")
        try:
            seen = self._time(client)
            address = client.get("ip_address")
            ip = normalize_ip(address) if isinstance(address, str) else None
        except InvalidInput as e:
            self.record += 1
            return Refusal(self.where(), e.detail)
        state = "connected" if client.get("connected") is True else "disconnected"
        node = client.get("node")
        version = client.get("proto_ver")
        detail = (f"emqx client on {self.broker}"
                  + (f" node {node[:60]}" if isinstance(node, str) else "")
                  + f", {state}" + (f", MQTT v{version}" if version is not None else ""))
        return self._client(client.get("username"), client.get("clientid"), seen, detail,
                            ip=ip)

    def _time(self, client: dict[str, Any]) -> float:
        keys = (("connected_at", "disconnected_at", "created_at")
                if client.get("connected") is True
                else ("disconnected_at", "connected_at", "created_at"))
        for key in keys:
            value = client.get(key)
            if value not in (None, ""):
                return epoch(value, key)
        return self.now


def _string(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"{what} is not a string")


class _Peeked:
    """A binary stream whose first bytes were looked at, and are read again."""

    _LOOK = 4096

    def __init__(self, stream: IO[bytes]) -> None:
        self._head = stream.read(self._LOOK)
        self._rest = stream

    def first_visible(self) -> int | None:
        """The first byte that is not white space, when there is one in the first 4 KiB."""
        stripped = self._head.lstrip()
        return stripped[0] if stripped else None

    def readline(self, size: int = -1, /) -> bytes:
        """One line, at most ``size`` bytes, the looked-at bytes first."""
        if not self._head:
            return self._rest.readline(size)
        end = self._head.find(b"\n") + 1 or len(self._head)
        if 0 <= size < end:
            end = size
        line, self._head = self._head[:end], self._head[end:]
        if line.endswith(b"\n") or self._head or (0 <= size <= len(line)):
            return line
        return line + self._rest.readline(-1 if size < 0 else size - len(line))
