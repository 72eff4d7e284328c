"""Zeek logs: ``conn``, ``ssl``, ``x509``, ``mqtt_connect`` and ``dhcp``, TSV or JSON lines.

Both forms Zeek's ASCII writer produces are read, told apart by the first line: the
default TSV form starts with ``#separator \\x09`` and names its log in ``#path``, its
columns in ``#fields`` and their types in ``#types`` (``-`` is an unset field,
``(empty)`` an empty set, non-printable bytes are ``\\xNN``); the JSON form
(``LogAscii::use_json=T``) has one object per line with flattened keys (``id.orig_h``),
and which log a record is comes from ``_path`` when a shipper added it, else from its
fields. A file may hold one log or several concatenated (each with its own header).

Which side is the device:

- ``conn``: the originator (``id.orig_h``) is a device of this network, unless Zeek
  marked it remote (``local_orig`` F). The responder is a device too only when it is
  local (``local_resp`` T, or a private address when Zeek logs no ``local_*``) and it
  answered; the port it accepted a TCP connection or sent UDP back on is one of its
  open ports (option ``responders``: ``local``, ``none`` or ``all``).
- ``ssl``: the TLS client (the originator) is the device and the first certificate of
  ``client_cert_chain_fps`` is its identity. A server certificate (``cert_chain_fps``)
  is a device's identity only when that server is local by the rule above: an internet
  service's certificate says nothing about the devices here.
- ``x509``: client leaf certificates (``client_cert`` T, ``host_cert`` T), which carry
  no address; server leaf certificates only with option ``x509=host`` (without an
  address Zeek's x509.log cannot say whether the server is local). CA certificates of
  a chain are never devices and are skipped. Key type and size, curve and signature
  algorithm are kept, so weak keys and SHA-1 signatures show in the register.
- ``mqtt_connect``: the MQTT client (originator) and its ``client_id``.
- ``dhcp``: the client's ``mac``, ``host_name`` and its assigned (else client) address.

An address that is no device's (0.0.0.0 of a DHCP client without a lease, broadcast,
multicast, loopback) gives no sighting for its side. Times are ``ts``, epoch seconds
(or ISO 8601 when the JSON writer was told so).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    bounded_text,
    normalize_fingerprint,
    normalize_hostname,
    normalize_mac,
    normalize_serial,
)
from iotiam.discovery.sources._common import (
    Addresses,
    Reading,
    Record,
    certificate_facts,
    clip,
    count,
    epoch,
    json_object,
    key_label,
    responders,
    signature_hash,
    soft,
)
from iotiam.discovery.sources.lines import Lines, bounded_lines, opening, too_long
from iotiam.errors import InvalidInput

KINDS = ("conn", "ssl", "x509", "mqtt_connect", "dhcp")
#: the columns each log is read for (the others are ignored, so extra ones do no harm)
_COLUMNS: dict[str, tuple[str, ...]] = {
    "conn": ("ts", "id.orig_h", "id.resp_h", "id.resp_p", "proto", "service",
             "conn_state", "local_orig", "local_resp", "orig_l2_addr", "resp_l2_addr"),
    "ssl": ("ts", "id.orig_h", "id.resp_h", "id.resp_p", "version", "server_name",
            "established", "cert_chain_fps", "client_cert_chain_fps", "subject", "issuer",
            "client_subject", "client_issuer", "local_orig", "local_resp"),
    "x509": ("ts", "fingerprint", "certificate.serial", "certificate.subject",
             "certificate.issuer", "certificate.not_valid_after", "certificate.key_alg",
             "certificate.key_type", "certificate.key_length", "certificate.curve",
             "certificate.sig_alg", "host_cert", "client_cert", "cert"),
    "mqtt_connect": ("ts", "id.orig_h", "id.resp_h", "id.resp_p", "proto_version",
                     "client_id", "username", "connect_status"),
    "dhcp": ("ts", "client_addr", "assigned_addr", "mac", "host_name", "client_fqdn",
             "msg_types"),
}
#: set/vector columns, for a TSV log without ``#types``
_CONTAINERS = {"cert_chain_fps", "client_cert_chain_fps", "msg_types", "uids"}
#: conn_state values in which the responder sent something back (Zeek's conn/main.zeek)
_ANSWERED = {"SF", "S1", "S2", "S3", "RSTO", "RSTR", "RSTRH", "SHR", "REJ"}
#: ... and in which it accepted the connection: the port is open (REJ: closed)
_ACCEPTED = _ANSWERED - {"REJ"}
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_SOURCE = "zeek"


class ZeekSource:
    """Zeek's conn, ssl, x509, mqtt_connect and dhcp logs, TSV or JSON lines."""

    name = _SOURCE
    options: frozenset[str] = frozenset({"responders", "x509"})

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """The sightings in ``stream`` (``InvalidInput`` when it is no Zeek log we read)."""
        policy = responders(context)
        x509 = context.options.get("x509", "client").strip().lower()
        if x509 not in ("client", "host"):
            raise InvalidInput(f"option x509={x509[:20]!r}: choose client or host")
        reader = _Reader(context, policy, server_certs=x509 == "host")
        return Reading(lambda skipped: reader.run(stream, skipped))


class _Header:
    """The state a TSV header sets: separators, markers, the log and its columns."""

    def __init__(self) -> None:
        self.separator = "\t"
        self.set_separator = ","
        self.unset = "-"
        self.empty = "(empty)"
        self.path: str | None = None
        self.fields: list[str] = []
        self.types: list[str] = []
        #: (column index, name, is a set/vector) of the columns the log is read for
        self.wanted: list[tuple[int, str, bool]] = []

    def plan(self) -> None:
        """Which columns to read, once ``#path``, ``#fields`` (and ``#types``) are known."""
        columns = set(_COLUMNS.get(self.path or "", ()))
        self.wanted = []
        for index, name in enumerate(self.fields):
            if name in columns:
                kind = self.types[index] if index < len(self.types) else ""
                container = kind.startswith(("set[", "vector[")) or (
                    not kind and name in _CONTAINERS)
                self.wanted.append((index, name, container))

    def row(self, values: list[str]) -> dict[str, Any]:
        """The record's wanted columns: unset ones left out, sets split, escapes undone."""
        row: dict[str, Any] = {}
        for index, name, container in self.wanted:
            raw = values[index]
            if raw == self.unset:
                continue
            if raw == self.empty:
                row[name] = [] if container else ""
            elif container:
                row[name] = [_unescape(v) for v in raw.split(self.set_separator)]
            else:
                row[name] = _unescape(raw)
        return row


def _unescape(text: str) -> str:
    if "\\x" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return raw.decode("utf-8", "replace")


class _Reader:
    """One read of one input."""

    def __init__(self, context: SourceContext, policy: str, *, server_certs: bool) -> None:
        self.site = context.site
        self.network = context.network
        self.policy = policy
        self.server_certs = server_certs
        self.addresses = Addresses()
        self.skipped: Counter[str] = Counter()
        self.handlers: dict[str, Callable[[dict[str, Any]], list[Sighting]]] = {
            "conn": self._conn, "ssl": self._ssl, "x509": self._x509,
            "mqtt_connect": self._mqtt, "dhcp": self._dhcp}

    def run(self, stream: IO[bytes], skipped: Counter[str]) -> Iterator[Record]:
        """Tell the form from the first line, then read every record."""
        self.skipped = skipped
        opened = opening(bounded_lines(stream, what="a Zeek log"), "a Zeek log")
        if opened is None:
            return
        line, rest = opened
        if line.startswith(b"#separator"):
            yield from self._tsv(rest)
        elif line.lstrip().startswith(b"{"):
            yield from self._json(rest)
        else:
            raise InvalidInput("not a Zeek log: it starts neither with Zeek's '#separator' "
                               "header line nor with a JSON record")

    # -- the two forms -----------------------------------------------------------------

    def _tsv(self, lines: Lines) -> Iterator[Record]:
        header = _Header()
        known = False
        for number, line in lines:
            if line is None:
                yield too_long(number)
                continue
            if not line:
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield Refusal(number, "line is not UTF-8")
                continue
            if text.startswith("#"):
                self._header_line(header, text, known=known)
                known = known or header.path in KINDS
                continue
            if header.path not in KINDS:
                count(self.skipped, f"{header.path or 'unnamed'} log")
                continue
            values = text.split(header.separator)
            if len(values) != len(header.fields):
                yield Refusal(number, f"{len(values)} fields where #fields names "
                                      f"{len(header.fields)}")
                continue
            yield from self._emit(number, header.path, header.row(values))

    def _header_line(self, header: _Header, text: str, *, known: bool) -> None:
        if text.startswith("#separator"):
            value = text[len("#separator"):].strip()
            header.separator = _unescape(value) if value else "\t"
            return
        name, _, value = text.partition(header.separator)
        if name == "#set_separator":
            header.set_separator = value
        elif name == "#unset_field":
            header.unset = value
        elif name == "#empty_field":
            header.empty = value
        elif name == "#path":
            if value not in KINDS and not known:
                raise InvalidInput(f"this is Zeek's {value[:40]!r} log; the zeek source "
                                   f"reads the {', '.join(KINDS)} logs")
            header.path = value
            header.plan()
        elif name == "#fields":
            header.fields = value.split(header.separator)
            header.types = []
            header.plan()
        elif name == "#types":
            header.types = value.split(header.separator)
            header.plan()

    def _json(self, lines: Lines) -> Iterator[Record]:
        for number, line in lines:
            if line is None:
                yield too_long(number)
                continue
            if not line.strip():
                continue
            try:
                row = _flatten(json_object(line, f"line {number}"))
                kind = _kind(row)
            except InvalidInput as e:
                yield Refusal(number, e.detail)
                continue
            if kind not in KINDS:
                count(self.skipped, f"{kind} log")
                continue
            yield from self._emit(number, kind, row)

    def _emit(self, number: int, kind: str, row: dict[str, Any]) -> Iterator[Record]:
        try:
            found = self.handlers[kind](row)
        except InvalidInput as e:
            yield Refusal(number, f"{kind}: {e.detail}")
            return
        yield from found

    # -- the logs ----------------------------------------------------------------------

    def _sighting(self, seen_at: float, **facts: Any) -> Sighting:
        return Sighting(source=_SOURCE, seen_at=seen_at, site=self.site,
                        network=self.network, **facts)

    def _address(self, row: dict[str, Any], key: str) -> tuple[str, bool, bool]:
        value = _text(row, key)
        if value is None:
            raise InvalidInput(f"{key} is missing")
        return self.addresses.look(value)

    def _wanted_responder(self, row: dict[str, Any], is_private: bool) -> bool:
        if self.policy == "none":
            return False
        if self.policy == "all":
            return True
        marked = _flag(row, "local_resp")
        return is_private if marked is None else marked

    def _conn(self, row: dict[str, Any]) -> list[Sighting]:
        # the hot path of a large import: Sighting built directly, each column read once
        seen = epoch(row.get("ts"), "ts")
        orig, _, orig_device = self._address(row, "id.orig_h")
        resp, resp_private, resp_device = self._address(row, "id.resp_h")
        port = _port(row, "id.resp_p")
        proto = _text(row, "proto") or "?"
        service = _text(row, "service")
        state = _text(row, "conn_state") or ""
        about = f"{proto} {resp}:{port} ({service})" if service else f"{proto} {resp}:{port}"
        found = []
        if orig_device and _flag(row, "local_orig") is not False:
            mac = row.get("orig_l2_addr")
            found.append(Sighting(
                _SOURCE, seen, self.site, self.network, orig,
                soft(normalize_mac, mac) if mac else None,
                detail=clip(f"conn: to {about}, {state or 'no state'}")))
        if resp_device and state in _ANSWERED and self._wanted_responder(row, resp_private):
            open_ports = (port,) if (state in _ACCEPTED and port is not None
                                     and proto in ("tcp", "udp")) else ()
            mac = row.get("resp_l2_addr")
            found.append(Sighting(
                _SOURCE, seen, self.site, self.network, resp,
                soft(normalize_mac, mac) if mac else None, open_ports=open_ports,
                detail=clip(f"conn: answered {orig} on {about}")))
        return found

    def _ssl(self, row: dict[str, Any]) -> list[Sighting]:
        seen = epoch(row.get("ts"), "ts")
        orig, _, orig_device = self._address(row, "id.orig_h")
        resp, resp_private, resp_device = self._address(row, "id.resp_h")
        port = _port(row, "id.resp_p")
        version = _text(row, "version") or "tls"
        server = _text(row, "server_name") or resp
        found = []
        if orig_device and _flag(row, "local_orig") is not False:
            chain_fps = _list(row, "client_cert_chain_fps")
            found.append(self._sighting(
                seen, ip=orig,
                certificate=normalize_fingerprint(chain_fps[0]) if chain_fps else None,
                subject=_display(row, "client_subject"),
                issuer=bounded_text(_text(row, "client_issuer"), "client_issuer"),
                detail=clip(f"ssl: {version} client of {server}:{port}")))
        server_fps = _list(row, "cert_chain_fps")
        if server_fps and resp_device and self._wanted_responder(row, resp_private):
            found.append(self._sighting(
                seen, ip=resp, certificate=normalize_fingerprint(server_fps[0]),
                subject=_display(row, "subject"),
                issuer=bounded_text(_text(row, "issuer"), "issuer"),
                open_ports=(port,) if port is not None else (),
                detail=clip(f"ssl: {version} server for {orig}")))
        return found

    def _x509(self, row: dict[str, Any]) -> list[Sighting]:
        host, client = _flag(row, "host_cert"), _flag(row, "client_cert")
        if host is False:
            count(self.skipped, "x509 ca certificate")
            return []
        if client is not True and not self.server_certs:
            # older x509.logs have no host_cert/client_cert columns: the side is unknown
            count(self.skipped, "x509 server certificate" if client is False
                  else "x509 certificate of unknown side")
            return []
        seen = epoch(row.get("ts"), "ts")
        encoded = _text(row, "cert")  # policy/protocols/ssl/log-certs-base64.zeek
        if encoded:
            facts = certificate_facts(encoded)
        else:
            fingerprint, serial = _text(row, "fingerprint"), _text(row, "certificate.serial")
            after = row.get("certificate.not_valid_after")
            facts = {
                "certificate": normalize_fingerprint(fingerprint) if fingerprint else None,
                "serial": normalize_serial(serial) if serial else None,
                "issuer": bounded_text(_text(row, "certificate.issuer"), "issuer"),
                "subject": _display(row, "certificate.subject"),
                "not_after": epoch(after, "not_valid_after") if after not in (None, "") else None,
                "key": key_label(_text(row, "certificate.key_type")
                                 or _text(row, "certificate.key_alg"),
                                 _number(row, "certificate.key_length"),
                                 _text(row, "certificate.curve")),
                "signature_hash": signature_hash(_text(row, "certificate.sig_alg"))}
        if not facts["certificate"] and not (facts["issuer"] and facts["serial"]):
            raise InvalidInput("the certificate has neither a fingerprint nor issuer+serial")
        side = "client" if client else "server"
        return [self._sighting(seen, detail=f"x509: {side} certificate", **facts)]

    def _mqtt(self, row: dict[str, Any]) -> list[Sighting]:
        seen = epoch(row.get("ts"), "ts")
        orig, _, device = self._address(row, "id.orig_h")
        if not device:
            raise InvalidInput(f"the MQTT client's address {orig} is no device's")
        resp = _text(row, "id.resp_h") or "?"
        status = _text(row, "connect_status") or "no answer"
        version = _text(row, "proto_version") or "?"
        return [self._sighting(
            seen, ip=orig, client_id=bounded_text(_text(row, "client_id"), "client_id"),
            username=bounded_text(_text(row, "username"), "username"),
            detail=clip(f"mqtt {version} connect to {resp}:{_port(row, 'id.resp_p')}: "
                        f"{status}"))]

    def _dhcp(self, row: dict[str, Any]) -> list[Sighting]:
        seen = epoch(row.get("ts"), "ts")
        address = _text(row, "assigned_addr") or _text(row, "client_addr")
        ip = None
        if address:
            canonical, _, device = self.addresses.look(address)
            ip = canonical if device else None
        mac_text = _text(row, "mac")
        name = _text(row, "host_name")
        hostname = soft(normalize_hostname, name) or soft(normalize_hostname,
                                                          _text(row, "client_fqdn"))
        if not (ip or mac_text or hostname):
            raise InvalidInput("the record has no address, MAC or host name")
        messages = ",".join(_list(row, "msg_types")) or "dhcp"
        named = f", calls itself {name!r}" if name and not hostname else ""
        return [self._sighting(seen, ip=ip,
                               mac=normalize_mac(mac_text) if mac_text else None,
                               hostname=hostname, detail=clip(f"dhcp: {messages}{named}"))]


def _kind(row: dict[str, Any]) -> str:
    """Which log a JSON record belongs to: its ``_path``, else told by its fields."""
    path = row.get("_path")
    if isinstance(path, str):
        return path
    if "certificate.serial" in row or "certificate.subject" in row:
        return "x509"
    if "proto_name" in row or "connect_status" in row:
        return "mqtt_connect"
    if "msg_types" in row or "assigned_addr" in row:
        return "dhcp"
    if any(k in row for k in ("established", "cipher", "cert_chain_fps", "resumed")):
        return "ssl"
    if "proto" in row and "id.orig_h" in row:
        return "conn"
    raise InvalidInput("not a conn, ssl, x509, mqtt_connect or dhcp record")


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """Nested ``{"id": {"orig_h": ...}}`` (some shippers) as Zeek's own ``id.orig_h``."""
    if not any(isinstance(v, dict) for v in row.values()):
        return row
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value.__class__ is str:  # the common case first: this runs ~8 times a record
        return value or None
    if value is None or value == "" or isinstance(value, list | dict):
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    return value if isinstance(value, str) else str(value)


def _display(row: dict[str, Any], key: str) -> str | None:
    """A subject DN, for people: cut rather than refused when long."""
    value = _text(row, key)
    return value[:256].replace("\x00", "") if value else None


def _flag(row: dict[str, Any], key: str) -> bool | None:
    value = row.get(key)
    if value in (True, "T", "true"):
        return True
    if value in (False, "F", "false"):
        return False
    return None


def _number(row: dict[str, Any], key: str) -> int | None:
    value = _text(row, key)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 6:
        raise InvalidInput(f"{key} {value[:20]!r} is not a count")
    return int(value)


def _port(row: dict[str, Any], key: str) -> int | None:
    number = _number(row, key)
    if number is not None and number > 65535:
        raise InvalidInput(f"{key} {number} is not a port")
    return number


def _list(row: dict[str, Any], key: str) -> list[str]:
    value = row.get(key)
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    if isinstance(value, str) and value:
        return value.split(",")
    return []
