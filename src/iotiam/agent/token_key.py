"""The device key in a PKCS#11 token (a secure element, a TPM through tpm2-pkcs11,
SoftHSM2 in tests): generated there, used there, never in a file.

The agent's state keeps only the key's URI, pinned to the key pair by its ``id``
(``pkcs11:token=dev;object=device;id=%3a%b1...``). Each renewal generates a new key pair
with the same label and a new id, and deletes the previous one once the new certificate
is stored. Python's ``ssl`` cannot present a token key in a TLS handshake, so the agent
proves the key by signatures instead (renewal, OAuth ``private_key_jwt``) and the
device's MQTT client reaches it through OpenSSL's pkcs11 engine (docs/hsm.md).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from pathlib import Path

from iotiam.agent.files import write_atomically
from iotiam.agent.paths import AgentError
from iotiam.config import Pkcs11Config, pkcs11_config
from iotiam.errors import InvalidInput, SetupError
from iotiam.hsm.pkcs11_signer import Pkcs11Signer, destroy_key, key_ids, open_signer
from iotiam.hsm.uri import Pkcs11Uri, parse_pkcs11_uri

#: the label new key pairs get when the URI the user gave names the key by id only
DEFAULT_LABEL = "iotiam-device"
#: where the engine files live inside the agent's directory
ENGINE_DIR = "pkcs11"


def parse_key_uri(text: str) -> Pkcs11Uri:
    """``--key``: a PKCS#11 URI naming a token and a key (``AgentError`` otherwise)."""
    try:
        uri = parse_pkcs11_uri(text)
    except InvalidInput as e:
        raise AgentError(f"--key: {e.detail}") from e
    if uri.pin_value is not None:
        raise AgentError("--key: no pin-value in the URI (it would be on the command line); "
                         "set IOTIAM_PKCS11_PIN_FILE or IOTIAM_PKCS11_PIN")
    return uri


class TokenKeys:
    """The device keys on one token, with the module and PIN from the environment."""

    def __init__(self, config: Pkcs11Config | None = None) -> None:
        self._config = config or pkcs11_config()

    @property
    def module_path(self) -> str:
        """The PKCS#11 module the keys are reached through."""
        return self._config.module_path

    def first(self, wanted: Pkcs11Uri) -> Pkcs11Signer:
        """The key ``wanted`` names if the token holds exactly one such key, else a new
        key pair generated there under that label (and id, if given)."""
        found = self._ids(wanted)
        if len(found) > 1:
            raise AgentError(f"more than one key matches {wanted} on the token; name one "
                             "with id=...")
        key_id = found[0] if found else (wanted.id or os.urandom(8))
        return self._open(replace(wanted, id=key_id), create=not found)

    def successor(self, current: Pkcs11Uri) -> Pkcs11Signer:
        """A new key pair on the same token, under the same label, with a new id."""
        uri = replace(current, object=current.object or DEFAULT_LABEL, id=os.urandom(8))
        return self._open(uri, create=True)

    def open(self, reference: str) -> Pkcs11Signer:
        """The key the agent's state names (it must be on the token)."""
        return self._open(parse_key_uri(reference), create=False)

    def retire(self, reference: str) -> None:
        """Delete a key pair the agent no longer uses (its certificate was replaced)."""
        try:
            destroy_key(parse_key_uri(reference), self._config)
        except SetupError as e:
            raise AgentError(e.detail) from e

    def _ids(self, uri: Pkcs11Uri) -> list[bytes]:
        try:
            return key_ids(uri, self._config)
        except SetupError as e:
            raise AgentError(e.detail) from e

    def _open(self, uri: Pkcs11Uri, *, create: bool) -> Pkcs11Signer:
        try:
            return open_signer(uri, self._config, create=create)
        except SetupError as e:
            raise AgentError(e.detail) from e


def engine_key_id(uri: str) -> str:
    """The key id OpenSSL's pkcs11 engine (libp11) takes: the URI for the private key,
    without the query (libp11 reads neither module-path nor pin-source from it)."""
    path = uri.partition("?")[0]
    return path if ";type=" in path else f"{path};type=private"


def write_engine_files(root: Path, uri: str, module_path: str, *, durable: bool) -> Path:
    """``pkcs11/openssl.cnf`` for OpenSSL's pkcs11 engine (the module; the PIN read from
    ``IOTIAM_PKCS11_PIN`` when the engine loads, never written here), and an empty file
    named like the engine key id: Mosquitto 2.0's clients open ``--key`` as a file before
    they honour ``--keyform engine`` (eclipse-mosquitto/mosquitto pull request 1820)."""
    where = root / ENGINE_DIR
    try:
        for old in where.glob("pkcs11:*"):
            old.unlink()
        write_atomically(where / "openssl.cnf", _engine_config(module_path).encode(), 0o600,
                         durable=durable)
        write_atomically(where / engine_key_id(uri), b"", 0o600, durable=durable)
    except OSError as e:
        raise AgentError(f"cannot write {where}: {e.strerror or e}") from e
    return where


def _engine_config(module_path: str) -> str:
    return ("# written by iotiam-agent: OpenSSL's pkcs11 engine for the device key\n"
            "openssl_conf = openssl_init\n\n[openssl_init]\nengines = engine_section\n\n"
            "[engine_section]\npkcs11 = pkcs11_section\n\n[pkcs11_section]\n"
            "engine_id = pkcs11\n"
            f"MODULE_PATH = {module_path}\n"
            "PIN = $ENV::IOTIAM_PKCS11_PIN\n"
            "init = 0\n")


def engine_status(root: Path, uri: str, device_id: str) -> dict[str, str]:
    """How an MQTT client reaches the token key through OpenSSL's pkcs11 engine."""
    return {"engine": "pkcs11", "engine_key": engine_key_id(uri),
            "openssl_conf": str(root / ENGINE_DIR / "openssl.cnf"),
            "command": mqtt_command(root, uri, device_id)}


def mqtt_command(root: Path, uri: str, device_id: str) -> str:
    """The ``mosquitto_pub`` command that connects with the token key (the broker's host
    and port, and the topic, to fill in)."""
    where = root / ENGINE_DIR
    key = engine_key_id(uri)
    return (f"cd {shlex.quote(str(where))} && OPENSSL_CONF=openssl.cnf mosquitto_pub "
            f"-h BROKER -p 8883 --cafile ../chain.pem --cert ../fullchain.pem "
            f"--tls-engine pkcs11 --keyform engine --key {shlex.quote(key)} "
            f"-i {shlex.quote(device_id)} -t {shlex.quote(f'devices/{device_id}/telemetry')} "
            "-m hello")
