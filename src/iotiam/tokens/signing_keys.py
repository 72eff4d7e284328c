"""Access-token signing keys: ES256, encrypted at rest, rotated with overlap.

A key signs until it is retired; then it stays in the JWKS until the last token it
signed has expired (``TokenConfig.key_overlap``), so resource servers that cache the
JWKS never see a valid token whose key has gone. The private key is stored as
passphrase-encrypted PKCS#8, with the CA passphrase, exactly like the CA keys; or, with
a ``KeyVault`` (the CA keys in a PKCS#11 token: docs/hsm.md), made and kept there, the
database holding only its reference.
Several processes share one database: each reloads the key set when it meets a
``kid`` it does not know and at most every few seconds otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.errors import Forbidden, SetupError
from iotiam.kernel import SYSTEM, Principal, Role, Transactions
from iotiam.pki.keys import encrypt_private_key, load_private_key
from iotiam.tokens import jws
from iotiam.tokens.models import SIGNING_ALGORITHM, StoredSigningKey, TokenConfig
from iotiam.tokens.ports import KeyVault, TokensUnitOfWork

_PEM = "-----BEGIN"
#: seconds between two looks at the key table when nothing prompts one
RELOAD_EVERY = 5.0
#: an unknown kid triggers a reload at most this often (a flood of junk kids is cheap)
UNKNOWN_KID_RELOAD_EVERY = 1.0


@dataclass(frozen=True)
class KeyRing:
    """The keys of this moment: the one that signs, and every published public key."""

    signing_kid: str
    #: the signing key as JOSE holds it (None: held in a ``KeyVault``)
    signing_key: ECKey | None
    #: DER ECDSA P-256 / SHA-256 with the signing key, wherever it is
    sign: Callable[[bytes], bytes]
    published: dict[str, ECKey]
    jwks: dict[str, list[dict[str, str]]]


class SigningKeys:
    """Loads, creates and rotates the access-token signing keys."""

    def __init__(self, uow: Transactions[TokensUnitOfWork], clock: Clock, audit: Auditor,
                 passphrase: bytes, config: TokenConfig, vault: KeyVault | None = None) -> None:
        self._uow = uow
        self._vault = vault
        self._clock = clock
        self._audit = audit
        self._passphrase = passphrase
        self._config = config
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._unknown_reload_at = 0.0
        self._private: dict[str, tuple[ECKey | None, Callable[[bytes], bytes]]] = {}
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------

    def ring(self) -> KeyRing:
        """The current key ring (reloaded from the database every few seconds)."""
        ring = self._ring
        if ring is None or time.monotonic() - self._loaded_at >= RELOAD_EVERY:
            return self.reload()
        return ring

    def reload(self) -> KeyRing:
        """Read the key table again; create or rotate the signing key when due."""
        with self._lock:
            stored = self._load()
            now = self._clock.now()
            current = _current(stored)
            if current is None or now - current.created_at >= self._config.signing_key_max_age:
                self._rotate(SYSTEM, reason="scheduled" if current else "first key")
                stored = self._load()
                current = _current(stored)
            assert current is not None
            published = {k.kid: ECKey.import_key(k.public_jwk) for k in stored
                         if k.published(now)}
            signing_key, sign = self._private_key(current)
            ring = KeyRing(
                signing_kid=current.kid,
                signing_key=signing_key,
                sign=sign,
                published=published,
                jwks={"keys": [_public_jwk(k) for k in stored if k.published(now)]},
            )
            self._ring = ring
            self._loaded_at = time.monotonic()
            return ring

    def key_for(self, kid: str) -> ECKey | None:
        """The published public key ``kid``; an unknown kid reloads once in a while."""
        found = self.ring().published.get(kid)
        if found is not None:
            return found
        if time.monotonic() - self._unknown_reload_at < UNKNOWN_KID_RELOAD_EVERY:
            return None
        self._unknown_reload_at = time.monotonic()
        return self.reload().published.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """RFC 7517 JWK set of every published key."""
        return self.ring().jwks

    def stored(self, actor: Principal) -> list[StoredSigningKey]:
        """Every stored key (root-scoped admins: the keys serve every tenant)."""
        _require_global_admin(actor, "listing signing keys")
        with self._uow.reading() as uow:
            return uow.oauth_signing_keys.list_all()

    # -- rotation ------------------------------------------------------------------------

    def rotate(self, actor: Principal) -> StoredSigningKey:
        """Sign with a new key from now on; the old one stays published for the overlap."""
        _require_global_admin(actor, "rotating the signing key")
        with self._lock:
            created = self._rotate(actor, reason="requested")
        self.reload()
        return created

    def _rotate(self, actor: Principal, *, reason: str) -> StoredSigningKey:
        now = self._clock.now()
        if self._vault is not None:
            public, key_field = self._vault.create()
            jose_key = ECKey.import_key(public)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
            jose_key = ECKey.import_key(private)
            key_field = encrypt_private_key(private, self._passphrase).decode()
        kid = jose_key.thumbprint()
        created = StoredSigningKey(
            kid=kid, algorithm=SIGNING_ALGORITHM,
            public_jwk={k: str(v) for k, v in jose_key.as_dict(private=False).items()},
            encrypted_key_pem=key_field,
            created_at=now,
        )
        with self._uow() as uow:
            retired = [k for k in uow.oauth_signing_keys.list_all() if k.retired_at is None]
            for old in retired:
                uow.oauth_signing_keys.retire(old.kid, now, now + self._config.key_overlap)
            uow.oauth_signing_keys.add(created)
            self._record(uow, actor, created, [k.kid for k in retired], reason)
        return created

    def _record(self, uow: TokensUnitOfWork, actor: Principal, key: StoredSigningKey,
                retired: list[str], reason: str) -> None:
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.OAUTH_SIGNING_KEY_ROTATED, actor=actor.name, org_path=SYSTEM.org_path,
            subject=f"oauth-signing-key:{key.kid}",
            details={"algorithm": key.algorithm, "retired": retired, "reason": reason,
                     "overlap_seconds": int(self._config.key_overlap.total_seconds())},
        ))

    # -- helpers -------------------------------------------------------------------------

    def _load(self) -> list[StoredSigningKey]:
        with self._uow.reading() as uow:
            return uow.oauth_signing_keys.list_all()

    def _private_key(self, stored: StoredSigningKey
                     ) -> tuple[ECKey | None, Callable[[bytes], bytes]]:
        # decrypting a PKCS#8 key runs a KDF (opening a vault's, a look-up): once per
        # key and process
        found = self._private.get(stored.kid)
        if found is not None:
            return found
        if stored.encrypted_key_pem.startswith(_PEM):
            private = load_private_key(stored.encrypted_key_pem.encode(), self._passphrase)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            key = ECKey.import_key(private)
            found = (key, jws.es256_signer(key))
        elif self._vault is None:
            raise SetupError(f"the access-token signing key {stored.kid} is held in a key "
                             "module, and none is configured")
        else:
            found = (None, self._vault.signer(stored.encrypted_key_pem))
        self._private[stored.kid] = found
        return found


def _current(keys: list[StoredSigningKey]) -> StoredSigningKey | None:
    live = [k for k in keys if k.retired_at is None]
    return max(live, key=lambda k: k.created_at) if live else None


def _public_jwk(key: StoredSigningKey) -> dict[str, str]:
    return {**key.public_jwk, "kid": key.kid, "use": "sig", "alg": key.algorithm}


def _require_global_admin(actor: Principal, doing: str) -> None:
    actor.require(Role.ADMIN, doing)
    if not actor.is_global:
        raise Forbidden(f"{doing} needs an admin token scoped to the root")
