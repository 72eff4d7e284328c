"""The one place iotiam touches JOSE: strict header reading, signing and verification.

joserfc does the cryptography; this module decides what is acceptable before it is
asked. The header is read first and refused early for anything iotiam never accepts:
``alg`` outside an explicit allow-list (so ``none`` in any capitalisation and HMAC
with a public key are gone before a key is chosen), a ``kid`` that is not a plain
identifier, a ``crit`` parameter. Keys come only from iotiam's own records: ``jwk``,
``jku``, ``x5u`` and ``x5c`` headers are ignored and never fetched.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, KeySetSerialization, OKPKey, RSAKey

from iotiam.errors import InvalidInput
from iotiam.untrusted import check_depth, load_json

#: longest compact JWS we look at (a client assertion or access token is < 2 KiB)
MAX_TOKEN_BYTES = 8192
#: a JWK set nests at most four levels: {"keys": [{..., "x5c": [...]}]}
JWKS_MAX_DEPTH = 4
_KID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_ES256 = ec.ECDSA(hashes.SHA256())


class JoseRejected(InvalidInput):
    """A JWS that is malformed, uses a refused algorithm or does not verify."""

    kind = "invalid-jws"
    title = "Invalid JWS"


def _b64decode(segment: str) -> bytes:
    if not _SEGMENT.fullmatch(segment):
        raise JoseRejected("a JWS segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as e:
        raise JoseRejected("a JWS segment is not base64url") from e


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    # RFC 7515 §4 and RFC 7519 §4: parsers must refuse duplicate header parameter and
    # claim names or keep the last; refusing leaves no room for two readers to disagree.
    # Bounded depth: no header or claim set nests deeply, and recursion must not decide
    try:
        value = load_json(data, what=f"the JWS {what}", max_bytes=MAX_TOKEN_BYTES)
    except InvalidInput as e:
        raise JoseRejected(e.detail) from None
    if not isinstance(value, dict):
        raise JoseRejected(f"the JWS {what} is not a JSON object")
    return value


def split(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (to choose keys, never to trust)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        raise JoseRejected(f"a JWT must be a compact JWS of at most {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseRejected("a JWT must have three dot-separated parts (compact JWS)")
    header = _json_object(_b64decode(parts[0]), "header")
    claims = _json_object(_b64decode(parts[1]), "payload")
    return header, claims


def check_header(header: dict[str, Any], algorithms: Sequence[str]) -> str:
    """Refuse a header iotiam never accepts; return its ``alg``."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JoseRejected("the JWS header has no 'alg'")
    # exact, case-sensitive match against an allow-list: "none", "None", "NONE" and
    # every HMAC algorithm are simply not on it
    if alg not in algorithms:
        raise JoseRejected(f"JWS algorithm {alg[:20]!r} is not accepted; use "
                           f"{', '.join(algorithms)}")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not _KID.fullmatch(kid)
                            or ".." in kid):
        raise JoseRejected("the JWS 'kid' must be 1-128 letters, digits, '_', '-', '.' or ':'")
    if "crit" in header:
        raise JoseRejected("JWS 'crit' extensions are not supported")
    return alg


def typ_of(header: dict[str, Any]) -> str | None:
    """The ``typ`` header, lower-cased, without an ``application/`` prefix (RFC 7515 §4.1.9)."""
    typ = header.get("typ")
    if typ is None:
        return None
    if not isinstance(typ, str):
        raise JoseRejected("the JWS 'typ' must be a string")
    typ = typ.lower()
    return typ.removeprefix("application/")


def verify(token: str, keys: Sequence[Key], algorithms: Sequence[str]
           ) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Verify ``token`` with the first of ``keys`` that fits: header, claims and the index
    of the key that verified, or raise."""
    header, _ = split(token)
    alg = check_header(header, algorithms)
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    for index, key in enumerate(keys):
        if not _fits(key, alg):
            continue
        try:
            decoded = jwt.decode(token, key, algorithms=[alg], registry=registry)
        except JoseError:
            continue
        return dict(decoded.header), dict(decoded.claims), index
    raise JoseRejected("the JWS signature does not verify with any key registered for it")


def _fits(key: Key, alg: str) -> bool:
    """Whether ``key`` can verify ``alg`` at all (an RSA key never checks ES256, ...)."""
    raw = key.public_key
    if alg.startswith("ES"):
        size = {"ES256": 256, "ES384": 384}.get(alg)
        return isinstance(raw, ec.EllipticCurvePublicKey) and raw.curve.key_size == size
    if alg.startswith(("RS", "PS")):
        return isinstance(raw, rsa.RSAPublicKey)
    if alg in ("EdDSA", "Ed25519"):
        return isinstance(raw, ed25519.Ed25519PublicKey)
    return False


def sign(claims: dict[str, Any], key: ECKey, kid: str, typ: str) -> str:
    """A compact ES256 JWS of ``claims`` (RFC 7515 §7.1, signature as RFC 7518 §3.4).

    Written out rather than left to joserfc: the token endpoint signs thousands a second
    and the library's generic path costs twice the signature itself.
    """
    return sign_with(claims, es256_signer(key), kid, typ)


def es256_signer(key: ECKey) -> Callable[[bytes], bytes]:
    """DER ECDSA P-256 / SHA-256 signatures with ``key``'s private half."""
    private = key.private_key
    if not isinstance(private, ec.EllipticCurvePrivateKey) or \
            private.curve.name != "secp256r1":
        raise ValueError("ES256 signs with a P-256 private key")

    def sign_der(data: bytes) -> bytes:
        return private.sign(data, _ES256)

    return sign_der


def sign_with(claims: dict[str, Any], sign_der: Callable[[bytes], bytes], kid: str,
              typ: str) -> str:
    """:func:`sign` with ``sign_der`` (DER ECDSA P-256 over SHA-256 of its input: a key
    here, or one held in a hardware module) making the signature."""
    signing_input = f"{_header_segment(kid, typ)}.{_b64(_compact_json(claims))}"
    r, s = decode_dss_signature(sign_der(signing_input.encode("ascii")))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@functools.lru_cache(maxsize=16)
def _header_segment(kid: str, typ: str) -> str:
    return _b64(_compact_json({"alg": "ES256", "kid": kid, "typ": typ}))


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _compact_json(value: dict[str, Any]) -> bytes:
    return _COMPACT.encode(value).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_from_public(public_key: PublicKeyTypes) -> Key | None:
    """A JOSE key for a certificate's public key (None for a type JOSE cannot verify)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ECKey.import_key(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSAKey.import_key(public_key)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return OKPKey.import_key(public_key)
    return None


def public_key_set(value: Any, *, max_keys: int = 10) -> list[Key]:
    """Parse a client's registered JWKS (or a provider's): public asymmetric keys only."""
    check_depth(value, what="jwks", max_depth=JWKS_MAX_DEPTH)
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise InvalidInput("jwks must be a JSON object with a 'keys' list")
    if not value["keys"] or len(value["keys"]) > max_keys:
        raise InvalidInput(f"jwks must hold 1-{max_keys} keys")
    for item in value["keys"]:
        if not isinstance(item, dict):
            raise InvalidInput("every jwks entry must be a JSON object")
        if item.get("kty") not in ("EC", "RSA", "OKP"):
            raise InvalidInput("jwks keys must be EC, RSA or OKP public keys (no 'oct')")
        if any(name in item for name in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise InvalidInput("jwks must hold public keys only: a private member was sent")
        kid = item.get("kid")
        if kid is not None and (not isinstance(kid, str) or not _KID.fullmatch(kid)
                                or ".." in kid):
            raise InvalidInput("a jwks 'kid' must be 1-128 letters, digits, '_', '-', '.', ':'")
    try:
        keys = list(KeySet.import_key_set(cast(KeySetSerialization, value)).keys)
    except (JoseError, ValueError, TypeError, KeyError) as e:
        raise InvalidInput(f"jwks holds a key that cannot be read: {e}") from e
    if len(keys) != len(value["keys"]):
        raise InvalidInput("jwks holds a key of a type iotiam does not read")
    for key in keys:
        raw = key.public_key
        if isinstance(raw, rsa.RSAPublicKey) and raw.key_size < 2048:
            raise InvalidInput("RSA keys in jwks must have at least 2048 bits")
        if isinstance(raw, ec.EllipticCurvePublicKey) and raw.curve.name not in (
                "secp256r1", "secp384r1"):
            raise InvalidInput("EC keys in jwks must be P-256 or P-384")
        if not isinstance(raw, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
                          | ed25519.Ed25519PublicKey):
            raise InvalidInput("jwks OKP keys must be Ed25519")
    return keys
