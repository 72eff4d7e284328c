"""Suricata's EVE JSON (``eve.json``): ``flow``, ``tls``, ``mqtt`` and ``dhcp`` events.

One JSON object per line, its kind in ``event_type``, its time in ``timestamp``
(``2026-12-06T10:00:00.123456+0000``). Other event types (``alert``, ``dns``, ``http``,
``stats`` ...) are skipped, counted in ``Reading.skipped``, not refused.

Which side is the device:

- ``flow``: Suricata writes a flow in the direction it started, so ``src_ip`` is the
  originator: a device of this network. The destination is a device too only when it
  is local (a private address; option ``responders``: ``local``, ``none``, ``all``) and
  it answered (``pkts_toclient`` > 0); its port is open when it accepted (TCP: a SYN+ACK
  among ``tcp.tcp_flags_tc``, or an established/closed state; UDP: any answer).
- ``tls``: the TLS client (``src_ip``) is the device. Its own certificate is in
  ``tls.client`` (Suricata 8 with ``custom: [client, client_certificate]``); the
  top-level ``tls.subject``/``issuerdn``/``serial``/``notafter`` are the *server's*
  certificate, the identity of a device only when that server is local by the rule
  above (a local broker or gateway); an internet service's certificate says nothing
  about the devices here. Suricata's ``fingerprint`` is SHA-1, which is not the SHA-256
  fingerprint iotiam matches on: with the base64 certificate logged
  (``certificate``/``client_certificate``) the SHA-256 fingerprint, RFC 4514 issuer,
  key and signature hash are read from it; without it, the issuer DN (which Suricata
  writes in the certificate's order, ``C=US, O=…, CN=…``) is turned into RFC 4514
  order and the serial normalised, so issuer+serial still match.
- ``mqtt``: the CONNECT's ``client_id``, ``username`` (never the password) and protocol
  version, from the client side (``src_ip`` of a to-server transaction).
- ``dhcp``: ``client_mac``, ``hostname`` and the ``assigned_ip`` (else ``client_ip``).

An address that is no device's (0.0.0.0, broadcast, multicast, loopback) gives no
sighting for its side.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    bounded_text,
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
    responders,
    soft,
)
from iotiam.discovery.sources.lines import bounded_lines, opening, too_long
from iotiam.errors import InvalidInput

_SOURCE = "suricata"
#: an attribute type as x509-parser writes it: a short name or a dotted OID
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)=")
_SYN_ACK = 0x12
_UNSET_IPS = {"0.0.0.0", "::"}  # noqa: S104 - an address a DHCP record leaves unset


class SuricataSource:
    """Suricata EVE JSON lines: flows, TLS client certificates, MQTT connects, DHCP."""

    name = _SOURCE
    options: frozenset[str] = frozenset({"responders"})

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """The sightings in ``stream`` (``InvalidInput`` when it is not EVE JSON)."""
        reader = _Eve(context, responders(context))
        return Reading(lambda skipped: reader.run(stream, skipped))


class _Eve:
    """One read of one eve.json."""

    def __init__(self, context: SourceContext, policy: str) -> None:
        self.site = context.site
        self.network = context.network
        self.policy = policy
        self.addresses = Addresses()
        self.handlers: dict[str, Callable[[dict[str, Any], float], list[Sighting]]] = {
            "flow": self._flow, "tls": self._tls, "mqtt": self._mqtt, "dhcp": self._dhcp}

    def run(self, stream: IO[bytes], skipped: Counter[str]) -> Iterator[Record]:
        """Check the first line is a JSON object, then read every event."""
        opened = opening(bounded_lines(stream, what="Suricata EVE JSON"), "Suricata EVE JSON")
        if opened is None:
            return
        first, lines = opened
        if not first.lstrip().startswith(b"{"):
            raise InvalidInput("not Suricata EVE JSON: the first line is not a JSON object")
        for number, text in lines:
            if text is None:
                yield too_long(number)
            elif text.strip():
                yield from self._event(number, text, skipped)

    def _event(self, number: int, line: bytes, skipped: Counter[str]) -> Iterator[Record]:
        try:
            event = json_object(line, f"line {number}")
            kind = event.get("event_type")
            if not isinstance(kind, str):
                raise InvalidInput("the event has no event_type")
            handler = self.handlers.get(kind)
            if handler is None:
                count(skipped, kind)
                return
            found = handler(event, epoch(event.get("timestamp"), "timestamp"))
        except InvalidInput as e:
            yield Refusal(number, e.detail)
            return
        yield from found

    # -- the events --------------------------------------------------------------------

    def _sighting(self, seen_at: float, **facts: Any) -> Sighting:
        return Sighting(source=_SOURCE, seen_at=seen_at, site=self.site,
                        network=self.network, **facts)

    def _ends(self, event: dict[str, Any]
              ) -> tuple[str | None, str | None, bool, int | None, str]:
        """``(client address, server address, server is local, server port, protocol)``;
        an address that can be no device's (0.0.0.0, broadcast, multicast) is None."""
        src, dest = event.get("src_ip"), event.get("dest_ip")
        if not isinstance(src, str) or not isinstance(dest, str):
            raise InvalidInput("the event has no src_ip and dest_ip")
        port = _port(event.get("dest_port"))
        if event.get("direction") == "to_client":  # a server's transaction: ends swapped
            src, dest, port = dest, src, _port(event.get("src_port"))
        client, _, client_device = self.addresses.look(src)
        server, server_local, server_device = self.addresses.look(dest)
        proto = event.get("proto")
        return (client if client_device else None, server if server_device else None,
                server_local, port, proto if isinstance(proto, str) else "?")

    def _wanted_server(self, server_local: bool) -> bool:
        return self.policy == "all" or (self.policy == "local" and server_local)

    def _flow(self, event: dict[str, Any], seen: float) -> list[Sighting]:
        client, server, server_local, port, proto = self._ends(event)
        flow = _object(event, "flow")
        app = event.get("app_proto")
        about = f"{proto} {server}:{port}" + (f" ({app})" if isinstance(app, str) else "")
        client_mac, server_mac = _macs(event)
        found = [self._sighting(seen, ip=client, mac=client_mac,
                                detail=clip(f"flow: to {about}"))] if client else []
        answered = _count(flow.get("pkts_toclient")) > 0
        if server and answered and self._wanted_server(server_local):
            found.append(self._sighting(
                seen, ip=server, mac=server_mac,
                open_ports=(port,) if port is not None and _accepted(event, flow, proto) else (),
                detail=clip(f"flow: answered {client} on {about}")))
        return found

    def _tls(self, event: dict[str, Any], seen: float) -> list[Sighting]:
        client, server, server_local, port, _ = self._ends(event)
        tls = _object(event, "tls")
        version = _short(tls.get("version")) or "tls"
        sni = _short(tls.get("sni")) or server
        ja3 = _object(tls, "ja3").get("hash")
        client_mac, server_mac = _macs(event)
        mine = _object(tls, "client")
        facts = _certificate(mine, "certificate") if mine else {}
        found = [self._sighting(
            seen, ip=client, mac=client_mac,
            detail=clip(f"tls: {version} client of {sni}:{port}"
                        + (f", ja3 {ja3}" if isinstance(ja3, str) else "")), **facts)
        ] if client or facts else []
        if server and self._wanted_server(server_local) and (
                tls.get("serial") or tls.get("certificate")):
            found.append(self._sighting(
                seen, ip=server, mac=server_mac, open_ports=(port,) if port else (),
                detail=clip(f"tls: {version} server for {client}"),
                **_certificate(tls, "certificate")))
        return found

    def _mqtt(self, event: dict[str, Any], seen: float) -> list[Sighting]:
        mqtt = _object(event, "mqtt")
        connect = mqtt.get("connect")
        if not isinstance(connect, dict):
            return []  # a PUBLISH, SUBSCRIBE ...: no identity in it
        client, server, _, port, _ = self._ends(event)
        if client is None:
            raise InvalidInput("the MQTT client's address is no device's")
        version = connect.get("protocol_version")
        answer = _object(mqtt, "connack").get("return_code")
        return [self._sighting(
            seen, ip=client,
            client_id=bounded_text(_string(connect.get("client_id")), "client_id"),
            username=bounded_text(_string(connect.get("username")), "username"),
            detail=clip(f"mqtt v{version} connect to {server}:{port}"
                        + (f", return code {answer}" if answer is not None else "")))]

    def _dhcp(self, event: dict[str, Any], seen: float) -> list[Sighting]:
        dhcp = _object(event, "dhcp")
        mac_text = _short(dhcp.get("client_mac"))
        address = next((a for a in (dhcp.get("assigned_ip"), dhcp.get("client_ip"))
                        if isinstance(a, str) and a not in _UNSET_IPS), None)
        name = _short(dhcp.get("hostname"))
        hostname = soft(normalize_hostname, name)
        if not (address or mac_text or hostname):
            raise InvalidInput("the dhcp event has no address, MAC or host name")
        kind = _short(dhcp.get("dhcp_type")) or _short(dhcp.get("type")) or "dhcp"
        named = f", calls itself {name!r}" if name and not hostname else ""
        return [self._sighting(
            seen, ip=_device_ip(self.addresses, address),
            mac=normalize_mac(mac_text) if mac_text else None, hostname=hostname,
            detail=clip(f"dhcp: {kind}{named}"))]


def _device_ip(addresses: Addresses, value: str | None) -> str | None:
    if not value:
        return None
    ip, _, device = addresses.look(value)
    return ip if device else None


def _certificate(fields: dict[str, Any], der_key: str) -> dict[str, Any]:
    """A logged certificate's facts: from its DER when logged, else from its fields."""
    encoded = fields.get(der_key)
    if not isinstance(encoded, str):
        chain_ = fields.get("chain")
        encoded = chain_[0] if isinstance(chain_, list) and chain_ else None
    if isinstance(encoded, str):
        return certificate_facts(encoded)
    serial, issuer = _short(fields.get("serial")), _string(fields.get("issuerdn"))
    after = fields.get("notafter")
    subject = _string(fields.get("subject"))
    return {"serial": normalize_serial(serial) if serial else None,
            "issuer": bounded_text(rfc4514(issuer), "issuerdn") if issuer else None,
            "subject": rfc4514(subject)[:256] if subject else None,
            "not_after": epoch(after, "notafter") if after else None}


@functools.lru_cache(maxsize=1024)  # a network has few issuers, logged a million times
def rfc4514(dn: str) -> str:
    """Suricata's ``C=US, O=Them, CN=Their CA`` as RFC 4514 text, ``CN=Their CA,O=Them,C=US``.

    Suricata (x509-parser) writes the RDNs in the certificate's order joined by ", ",
    the attributes of a multi-valued RDN by " + ", and escapes nothing; RFC 4514 §2.1
    writes them last first, joined by ",", with ``,+"\\<>;`` escaped (§2.4), as
    ``cryptography``'s ``rfc4514_string`` does for the certificates iotiam issues.
    """
    rdns = []
    for rdn in reversed(_pieces(dn, ", ")):
        parts = []
        for attribute in _pieces(rdn, " + "):
            name, eq, value = attribute.partition("=")
            parts.append(f"{name.strip()}={_escape(value)}" if eq else _escape(attribute))
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _pieces(text: str, separator: str) -> list[str]:
    """``text`` split on ``separator``, except where what follows is no ``type=``: then
    the separator was inside a value (``O=Acme, Inc.``)."""
    pieces: list[str] = []
    for piece in text.split(separator):
        if pieces and not _ATTRIBUTE.match(piece):
            pieces[-1] += separator + piece
        else:
            pieces.append(piece)
    return pieces


def _escape(value: str) -> str:
    text = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if text.startswith(("#", " ")):
        text = "\\" + text
    if text.endswith(" ") and not text.endswith("\\ "):
        text = text[:-1] + "\\ "
    return text


def _accepted(event: dict[str, Any], flow: dict[str, Any], proto: str) -> bool:
    """Whether the server accepted the flow (its port is open)."""
    if proto == "UDP":
        return True
    if proto != "TCP":
        return False  # ICMP and others have no ports
    flags = _object(event, "tcp").get("tcp_flags_tc")
    if isinstance(flags, str):
        try:
            return int(flags, 16) & _SYN_ACK == _SYN_ACK
        except ValueError:
            return False
    return flow.get("state") in ("established", "closed")


def _macs(event: dict[str, Any]) -> tuple[str | None, str | None]:
    """The ``ether`` section's source and destination MACs, where Suricata logs them."""
    ether = _object(event, "ether")
    found = []
    for one, many in (("src_mac", "src_macs"), ("dest_mac", "dest_macs")):
        value = ether.get(one)
        if value is None and isinstance(ether.get(many), list) and ether[many]:
            value = ether[many][0]
        found.append(soft(normalize_mac, value if isinstance(value, str) else None))
    if _object(event, "ether") and event.get("direction") == "to_client":
        found.reverse()
    return found[0], found[1]


def _object(holder: dict[str, Any], key: str) -> dict[str, Any]:
    value = holder.get(key)
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(value: Any) -> str | None:
    text = _string(value)
    return text[:100] if text else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _port(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidInput(f"{str(value)[:20]!r} is not a port")
    return value
