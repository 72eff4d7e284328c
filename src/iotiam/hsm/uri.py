"""PKCS#11 URIs (RFC 7512): which token, which key, and optionally which module and PIN.

``pkcs11:token=iotiam;object=issuing-ca`` names the key labelled ``issuing-ca`` on the
token labelled ``iotiam``. Only what a signer needs is taken; an attribute this parser
does not know is refused rather than ignored, so a URI never matches more than meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote_to_bytes

from iotiam.errors import InvalidInput

SCHEME = "pkcs11:"
#: RFC 7512 §2.3 path attributes we match on
_PATH = frozenset({"token", "object", "id", "serial", "manufacturer", "model", "type",
                   "slot-id"})
#: RFC 7512 §2.3 query attributes we act on
_QUERY = frozenset({"module-path", "pin-source", "pin-value"})
# RFC 7512 §2.3: pk11-pchar is unreserved / pct-encoded / ":" "[" "]" "@" "!" "$" "'"
# "(" ")" "*" "+" "," "=" "&" (the query also allows "/" and "?")
_VALUE = re.compile(r"^(?:[A-Za-z0-9\-._~:\[\]@!$'()*+,=&/?|]|%[0-9A-Fa-f]{2})*$")


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a PKCS#11 URI a signer uses."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    object_type: str | None = None
    slot_id: int | None = None
    module_path: str | None = None
    pin_source: str | None = None
    pin_value: str | None = None

    def for_object(self, label: str) -> Pkcs11Uri:
        """The same token (and module, PIN source) with another object label."""
        return replace(self, object=label, id=None)

    def __str__(self) -> str:
        """The URI without a PIN value (safe to log and to record)."""
        path = [f"{name}={_quoted(value)}" for name, value in (
            ("token", self.token), ("serial", self.serial),
            ("manufacturer", self.manufacturer), ("model", self.model),
            ("object", self.object), ("type", self.object_type)) if value is not None]
        if self.slot_id is not None:
            path.append(f"slot-id={self.slot_id}")
        if self.id is not None:
            path.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        query = [f"{name}={_quoted(value)}" for name, value in (
            ("module-path", self.module_path), ("pin-source", self.pin_source))
            if value is not None]
        return SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")


def is_pkcs11_uri(text: str) -> bool:
    """Whether ``text`` is meant as a PKCS#11 URI (rather than, say, a file name)."""
    return text.strip().lower().startswith(SCHEME)


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse ``pkcs11:path?query`` (RFC 7512 §2.3); ``InvalidInput`` on anything else."""
    raw = text.strip()
    if not raw.lower().startswith(SCHEME):
        raise InvalidInput(f"not a PKCS#11 URI (it starts with {SCHEME!r}): {_shown(raw)}")
    body = raw[len(SCHEME):]
    path, _, query = body.partition("?")
    fields: dict[str, str] = {}
    for part, separator, known in ((path, ";", _PATH), (query, "&", _QUERY)):
        for item in filter(None, part.split(separator)):
            name, equals, value = item.partition("=")
            name = name.lower()
            if not equals or name not in known:
                raise InvalidInput(f"PKCS#11 URI attribute {name!r} is not one iotiam "
                                   f"takes here ({', '.join(sorted(known))})")
            if name in fields:  # RFC 7512 §2.3: an attribute appears at most once
                raise InvalidInput(f"PKCS#11 URI attribute {name!r} is given twice")
            if not _VALUE.match(value):
                raise InvalidInput(f"PKCS#11 URI attribute {name!r} has a character that "
                                   "must be percent-encoded")
            fields[name] = value
    return _from_fields(fields)


def _from_fields(fields: dict[str, str]) -> Pkcs11Uri:
    def text(name: str) -> str | None:
        value = fields.get(name)
        if value is None:
            return None
        try:
            return unquote_to_bytes(value).decode()
        except UnicodeDecodeError as e:
            raise InvalidInput(f"PKCS#11 URI attribute {name!r} is not UTF-8") from e

    object_type = text("type")
    if object_type not in (None, "private"):
        raise InvalidInput("a signing key's PKCS#11 URI names type=private (or no type)")
    slot = text("slot-id")
    if slot is not None and not slot.isdigit():
        raise InvalidInput("PKCS#11 URI slot-id must be a decimal number")
    if "pin-source" in fields and "pin-value" in fields:
        raise InvalidInput("a PKCS#11 URI gives pin-source or pin-value, not both")
    uri = Pkcs11Uri(
        token=text("token"), object=text("object"),
        id=unquote_to_bytes(fields["id"]) if "id" in fields else None,
        serial=text("serial"), manufacturer=text("manufacturer"), model=text("model"),
        object_type=object_type, slot_id=int(slot) if slot is not None else None,
        module_path=text("module-path"), pin_source=text("pin-source"),
        pin_value=text("pin-value"),
    )
    if uri.token is None and uri.serial is None and uri.slot_id is None:
        raise InvalidInput("a signing key's PKCS#11 URI names its token (token=...)")
    if uri.object is None and uri.id is None:
        raise InvalidInput("a signing key's PKCS#11 URI names its key (object=... or id=...)")
    return uri


def _quoted(value: str) -> str:
    return "".join(c if re.match(r"[A-Za-z0-9\-._~:@!$'()*+,/]", c) else
                   "".join(f"%{b:02x}" for b in c.encode()) for c in value)


def _shown(text: str) -> str:
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


#: the objects the root and OCSP responder keys get on the issuing CA key's token
#: when ``init`` is given ``--ca-key`` alone (docs/hsm.md)
ROOT_OBJECT = "root-ca"
RESPONDER_OBJECT = "ocsp-responder"


@dataclass(frozen=True)
class CaKeyUris:
    """Where ``iotiam init`` keeps each CA key in a token."""

    root: Pkcs11Uri
    issuing: Pkcs11Uri
    responder: Pkcs11Uri

    @classmethod
    def parse(cls, issuing: str, root: str | None = None,
              responder: str | None = None) -> CaKeyUris:
        """The issuing CA key's URI, with the root's and the responder's beside it on the
        same token unless given."""
        issuing_uri = parse_pkcs11_uri(issuing)
        uris = cls(
            root=parse_pkcs11_uri(root) if root else issuing_uri.for_object(ROOT_OBJECT),
            issuing=issuing_uri,
            responder=(parse_pkcs11_uri(responder) if responder
                       else issuing_uri.for_object(RESPONDER_OBJECT)),
        )
        keys = [(u.token, u.serial, u.slot_id, u.object, u.id)
                for u in (uris.root, uris.issuing, uris.responder)]
        if len(set(keys)) != len(keys):
            raise InvalidInput("the root, issuing CA and OCSP responder need three "
                               "different keys (give each its own object=...)")
        return uris
