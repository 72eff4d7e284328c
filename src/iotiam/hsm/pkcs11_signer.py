"""CA keys in a PKCS#11 module (an HSM, a smart card, SoftHSM2): generated there, used
there, never read out (python-pkcs11 over the module's C API).

A process keeps one logged-in session per token, shared by every key on it and guarded
by a lock: a PKCS#11 session runs one operation at a time, and logging in again per
signature would cost more than the signature. After a fork (``serve --workers``) the
child opens the module and its session anew on first use.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from iotiam.config import Pkcs11Config
from iotiam.errors import SetupError
from iotiam.hsm.uri import Pkcs11Uri
from iotiam.pki.external_signer import ExternalKeySigner
from iotiam.pki.keys import PublicKey


class Pkcs11Signer(ExternalKeySigner):
    """A :class:`~iotiam.pki.signer.Signer` whose EC P-256 key is on a PKCS#11 token."""

    def __init__(self, token: Pkcs11Token, uri: Pkcs11Uri,
                 public_key: ec.EllipticCurvePublicKey) -> None:
        super().__init__()
        self._token = token
        self._uri = uri
        self._public_key = public_key

    @property
    def uri(self) -> Pkcs11Uri:
        """Where the key is (no PIN)."""
        return self._uri

    def public_key(self) -> PublicKey:
        """The public half of the key in the token."""
        return self._public_key

    def sign_bytes(self, data: bytes) -> bytes:
        """ECDSA over SHA-256 of ``data`` in the token, as a DER Ecdsa-Sig-Value."""
        # CKM_ECDSA signs a digest: hashed here, as not every module has CKM_ECDSA_SHA256
        # (SoftHSM2 does not); the token returns r || s (PKCS#11 §2.3.1), X.509 wants DER
        raw = self._token.sign(self._uri, hashlib.sha256(data).digest())
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                    int.from_bytes(raw[half:], "big"))


#: what says the session is gone rather than the signature refused
_LOST_SESSION = (p11.SessionHandleInvalid, p11.SessionClosed, p11.DeviceRemoved,
                 p11.TokenNotPresent, p11.UserNotLoggedIn)


class Pkcs11Token:
    """One logged-in session on one token for this process, with the keys found on it."""

    def __init__(self, module_path: str, uri: Pkcs11Uri, pin: str) -> None:
        self._module_path = module_path
        self._match = uri
        self._pin = pin
        self._lock = threading.Lock()
        self._pid = -1
        self._session: Any = None
        self._keys: dict[tuple[str | None, bytes | None], Any] = {}
        with self._lock:
            self._open()

    @property
    def name(self) -> str:
        """How error messages name the token."""
        return repr(self._match.token or self._match.serial or self._match.slot_id)

    def sign(self, uri: Pkcs11Uri, digest: bytes) -> bytes:
        """Raw ECDSA (r || s) over ``digest`` with the private key ``uri`` names."""
        with self._usable():
            try:
                return self._sign(uri, digest)
            except _LOST_SESSION:
                # the module dropped the session (restarted, re-plugged): log in once more
                self._open()
                try:
                    return self._sign(uri, digest)
                except p11.PKCS11Error as e:
                    raise self._refused(uri, e) from e
            except p11.PKCS11Error as e:
                raise self._refused(uri, e) from e

    def _sign(self, uri: Pkcs11Uri, digest: bytes) -> bytes:
        key = self._keys.get((uri.object, uri.id))
        if key is None:
            key = self._keys[(uri.object, uri.id)] = self._private_key(uri)
        return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))

    def _refused(self, uri: Pkcs11Uri, error: p11.PKCS11Error) -> SetupError:
        return SetupError(f"the PKCS#11 token {self.name} refused to sign with {uri}: "
                          f"{type(error).__name__}")

    def public_key(self, uri: Pkcs11Uri, *, create: bool) -> ec.EllipticCurvePublicKey:
        """The public key of the key pair ``uri`` names; generated in the token (EC P-256,
        private part sensitive and never extractable) if absent and ``create``."""
        with self._usable():
            attrs = _object_attributes(uri)
            found = list(self._session.get_objects(
                {**attrs, Attribute.CLASS: ObjectClass.PUBLIC_KEY}))
            if not found and create:
                try:
                    found = [self._generate(uri)]
                except p11.PKCS11Error as e:
                    raise SetupError(f"the PKCS#11 token {self.name} could not generate the "
                                     f"EC P-256 key {_named(uri)}: {type(e).__name__}") from e
            if len(found) != 1:
                what = "no" if not found else "more than one"
                raise SetupError(f"{what} EC key {_named(uri)} on the PKCS#11 token "
                                 f"{self.name}")
            self._private_key(uri)  # the private half must be there too
            key = load_der_public_key(encode_ec_public_key(found[0]))
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SetupError(f"the key {_named(uri)} is not an EC key")
            return key

    def _generate(self, uri: Pkcs11Uri) -> Any:
        params = self._session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        key_id = uri.id if uri.id is not None else os.urandom(8)
        label = uri.object
        public, _ = params.generate_keypair(
            store=True, label=label, id=key_id,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                              Attribute.PRIVATE: True, Attribute.SIGN: True},
            public_template={Attribute.VERIFY: True})
        return public

    def _private_key(self, uri: Pkcs11Uri) -> Any:
        attrs = {**_object_attributes(uri), Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        found = list(self._session.get_objects(attrs))
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise SetupError(f"{what} private key {_named(uri)} on the PKCS#11 token "
                             f"{self.name}")
        return found[0]

    def key_ids(self, uri: Pkcs11Uri) -> list[bytes]:
        """The ``CKA_ID`` of every EC private key ``uri`` matches (label and/or id)."""
        with self._usable():
            attrs = {**_object_attributes(uri), Attribute.CLASS: ObjectClass.PRIVATE_KEY}
            return [bytes(key[Attribute.ID]) for key in self._session.get_objects(attrs)]

    def destroy(self, uri: Pkcs11Uri) -> int:
        """Delete the key pair ``uri`` names (both halves); how many objects went."""
        with self._usable():
            self._keys.pop((uri.object, uri.id), None)
            gone = 0
            for kind in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for key in list(self._session.get_objects(
                        {**_object_attributes(uri), Attribute.CLASS: kind})):
                    try:
                        key.destroy()
                    except p11.PKCS11Error as e:
                        raise SetupError(f"the PKCS#11 token {self.name} could not delete "
                                         f"the key {_named(uri)}: {type(e).__name__}") from e
                    gone += 1
            return gone

    def close(self) -> None:
        """Close this process's session (the keys found on it go with it)."""
        with self._lock:
            if self._session is not None and self._pid == os.getpid():
                # the module may be gone already: then there is nothing to release
                with suppress(p11.PKCS11Error):
                    self._session.close()
            self._session = None
            self._keys.clear()

    @contextmanager
    def _usable(self) -> Iterator[None]:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: its parent's session is not its
                self._open()
            yield

    def _open(self) -> None:
        library = _library(self._module_path, reinitialize=self._pid not in (-1, os.getpid()))
        token = _find_token(library, self._match, self._module_path)
        try:
            self._session = token.open(user_pin=self._pin, rw=True)
        except p11.PinIncorrect as e:
            raise SetupError(f"the PIN for the PKCS#11 token {self.name} is wrong") from e
        except p11.PinLocked as e:
            raise SetupError(f"the PIN of the PKCS#11 token {self.name} is locked") from e
        except p11.PKCS11Error as e:
            raise SetupError(f"cannot log in to the PKCS#11 token {self.name}: "
                             f"{type(e).__name__}") from e
        self._pid = os.getpid()
        self._keys.clear()


def open_signer(uri: Pkcs11Uri, config: Pkcs11Config, *, create: bool = False,
                expected: object | None = None) -> Pkcs11Signer:
    """A signer over the key ``uri`` names (generated if absent and ``create``).

    ``expected`` is the public key of the certificate the key must match (a CA's, when
    ``serve`` starts): a different key there is a setup error, not wrong signatures.
    """
    token = _token(uri, config)
    public_key = token.public_key(uri, create=create)
    if expected is not None and public_key != expected:
        raise SetupError(f"the key {_named(uri)} on the PKCS#11 token {token.name} is not "
                         "the one its CA certificate names")
    signer = Pkcs11Signer(token, uri, public_key)
    # one signature at start proves the private object is the public one's other half
    probe = b"iotiam: the key in the token signs"
    try:
        public_key.verify(signer.sign_bytes(probe), probe, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise SetupError(f"the private key {_named(uri)} on the PKCS#11 token {token.name} "
                         "does not match its public key") from e
    return signer


def key_ids(uri: Pkcs11Uri, config: Pkcs11Config) -> list[bytes]:
    """The ids of the EC private keys on the token that ``uri`` matches."""
    return _token(uri, config).key_ids(uri)


def destroy_key(uri: Pkcs11Uri, config: Pkcs11Config) -> int:
    """Delete the key pair ``uri`` names from its token (a retired device key)."""
    return _token(uri, config).destroy(uri)


def check_token(uri: Pkcs11Uri, config: Pkcs11Config) -> None:
    """Log in to the token ``uri`` names (a wrong PIN or a missing token is a
    ``SetupError`` here, before anything else is made)."""
    _token(uri, config)


_tokens: dict[tuple[str, str | None, str | None, int | None], Pkcs11Token] = {}
_libraries: dict[str, Any] = {}
_registry_lock = threading.Lock()
_library_lock = threading.Lock()


def _token(uri: Pkcs11Uri, config: Pkcs11Config) -> Pkcs11Token:
    """The process's one session on the token ``uri`` names (logged in on first use)."""
    module = uri.module_path or config.module_path
    where = (module, uri.token, uri.serial, uri.slot_id)
    with _registry_lock:
        token = _tokens.get(where)
        if token is None:
            token = _tokens[where] = Pkcs11Token(module, uri, _pin(uri, config))
        return token


def _pin(uri: Pkcs11Uri, config: Pkcs11Config) -> str:
    if uri.pin_source:  # RFC 7512 §2.3: pin-source names a file (a file: URI or a path)
        path = Path(uri.pin_source.removeprefix("file://").removeprefix("file:"))
        try:
            return path.read_text().strip()
        except OSError as e:
            raise SetupError(f"cannot read the PKCS#11 PIN from {path}: {e.strerror}") from e
    pin = uri.pin_value or config.pin
    if not pin:
        raise SetupError("no PKCS#11 PIN: set IOTIAM_PKCS11_PIN_FILE (or IOTIAM_PKCS11_PIN)")
    return pin


def _library(path: str, *, reinitialize: bool) -> Any:
    with _library_lock:
        library = _libraries.get(path)
        if library is None:
            if not Path(path).is_file():
                raise SetupError(f"no PKCS#11 module at {path} (IOTIAM_PKCS11_MODULE)")
            try:
                library = _libraries[path] = pkcs11.lib(path)
            except p11.PKCS11Error as e:
                raise SetupError(f"cannot load the PKCS#11 module {path}: {e}") from e
        elif reinitialize:
            library.reinitialize()
        return library


def _find_token(library: Any, uri: Pkcs11Uri, module: str) -> Any:
    try:
        slots = library.get_slots(token_present=True)
    except p11.PKCS11Error as e:
        raise SetupError(f"the PKCS#11 module {module} lists no slots: {e}") from e
    matching = []
    for slot in slots:
        token = slot.get_token()
        if (uri.token is not None and token.label != uri.token) or (
                uri.serial is not None and _text(token.serial) != uri.serial) or (
                uri.slot_id is not None and slot.slot_id != uri.slot_id) or (
                uri.manufacturer is not None and token.manufacturer_id != uri.manufacturer) or (
                uri.model is not None and token.model != uri.model):
            continue
        matching.append(token)
    if len(matching) != 1:
        what = "no" if not matching else "more than one"
        named = uri.token or uri.serial or uri.slot_id
        raise SetupError(f"{what} PKCS#11 token {named!r} in {module}")
    return matching[0]


def _object_attributes(uri: Pkcs11Uri) -> dict[Attribute, Any]:
    attrs: dict[Attribute, Any] = {Attribute.KEY_TYPE: KeyType.EC}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[Attribute.ID] = uri.id
    return attrs


def _named(uri: Pkcs11Uri) -> str:
    return repr(uri.object) if uri.object is not None else f"id={uri.id!r}"


def _text(value: str | bytes) -> str:
    return (value.decode(errors="replace") if isinstance(value, bytes) else value).strip()


def close_sessions() -> None:
    """Log out, close every session and finalize every module this process opened
    (the next key opened starts afresh: tests give each case its own SoftHSM2 store)."""
    with _registry_lock, _library_lock:
        for token in _tokens.values():
            token.close()
        _tokens.clear()
        for library in _libraries.values():
            with suppress(p11.PKCS11Error):  # already finalized: nothing to release
                library.finalize()
        _libraries.clear()
