"""Where the agent keeps its key, certificate, chain and state on the device."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from iotiam.agent.paths import AgentError
from iotiam.pki.keys import PrivateKey


def write_atomically(path: Path, data: bytes, mode: int, *, durable: bool = True) -> None:
    """Write a file with ``mode`` from its first byte, replacing the old one atomically.

    ``durable`` flushes it to the disk before the rename, so that a power cut leaves the
    old file or the new one, never an empty one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass(frozen=True)
class AgentFiles:
    """The agent's directory: ``key.pem`` (0600), ``cert.pem``, ``chain.pem``, ``state.json``.

    ``durable=False`` skips the flush to disk of every write: only for directories thrown
    away soon after (a simulated fleet sharing one disk), never on a device, where a
    power cut could then leave an empty key or certificate.
    """

    root: Path
    durable: bool = True

    def _write(self, path: Path, data: bytes, mode: int) -> None:
        try:
            write_atomically(path, data, mode, durable=self.durable)
        except OSError as e:  # a read-only or full --dir: one line, not a traceback
            raise AgentError(f"cannot write {path}: {e.strerror or e}") from e

    @property
    def key(self) -> Path:
        """The device's private key (never leaves the device)."""
        return self.root / "key.pem"

    @property
    def cert(self) -> Path:
        """The current operational certificate."""
        return self.root / "cert.pem"

    @property
    def fullchain(self) -> Path:
        """Certificate then issuing CA: what the device presents in TLS."""
        return self.root / "fullchain.pem"

    @property
    def chain(self) -> Path:
        """Issuing CA then root."""
        return self.root / "chain.pem"

    @property
    def server_ca(self) -> Path:
        """The CA the agent trusts for the iotiam server's TLS certificate."""
        return self.root / "server-ca.pem"

    @property
    def pending_key(self) -> Path:
        """The key of an enrollment request the server holds (RFC 7030 §4.2.3)."""
        return self.root / "pending-key.pem"

    @property
    def pending_csr(self) -> Path:
        """The CSR (DER) of that held request: polling must send the same one."""
        return self.root / "pending.csr"

    @property
    def state(self) -> Path:
        """Device id, server URL and renewal bookkeeping."""
        return self.root / "state.json"

    def save_server_ca(self, pem: bytes) -> None:
        """Keep the CA the user gave with ``--ca`` for every later connection."""
        self._write(self.server_ca, pem, 0o644)

    def new_key(self) -> ec.EllipticCurvePrivateKey:
        """Generate a P-256 key here, on the device."""
        return ec.generate_private_key(ec.SECP256R1())

    def save_key(self, key: PrivateKey) -> None:
        """Store the key, readable by the owner only."""
        self._write(self.key, _key_pem(key), 0o600)

    def load_key(self) -> PrivateKey:
        """The current key."""
        return _load_key(self.key)

    def save_pending(self, key: PrivateKey | None, csr_der: bytes) -> None:
        """Keep a held request's key (0600; ``None`` for a key in a token, whose URI the
        state keeps) and CSR, so a restarted agent polls with them."""
        if key is not None:
            self._write(self.pending_key, _key_pem(key), 0o600)
        # the CSR last: its presence means both files are complete
        self._write(self.pending_csr, csr_der, 0o600)

    def load_pending(self) -> tuple[PrivateKey, bytes] | None:
        """The held request's key and CSR, if there is one."""
        if not (self.pending_csr.exists() and self.pending_key.exists()):
            return None
        return _load_key(self.pending_key), self.pending_csr.read_bytes()

    def load_pending_csr(self) -> bytes | None:
        """The held request's CSR, if there is one."""
        return self.pending_csr.read_bytes() if self.pending_csr.exists() else None

    def clear_pending(self) -> None:
        """Forget the held request (it was fulfilled or refused)."""
        self.pending_csr.unlink(missing_ok=True)
        self.pending_key.unlink(missing_ok=True)

    def save_certificate(self, cert: x509.Certificate, chain_pem: str | None) -> None:
        """Store the certificate (and chain) next to the key."""
        leaf = cert.public_bytes(serialization.Encoding.PEM)
        self._write(self.cert, leaf, 0o644)
        if chain_pem:
            self._write(self.chain, chain_pem.encode(), 0o644)
        if self.chain.exists():
            # the first certificate of the chain file is the issuing CA
            chain = self.chain.read_bytes()
            end = b"-----END CERTIFICATE-----\n"
            issuing = chain[: chain.index(end) + len(end)] if end in chain else b""
            self._write(self.fullchain, leaf + issuing, 0o644)

    def load_certificate(self) -> x509.Certificate | None:
        """The current certificate, if enrolled."""
        if not self.cert.exists():
            return None
        return x509.load_pem_x509_certificate(self.cert.read_bytes())

    def load_state(self) -> dict[str, Any]:
        """The saved state (empty before enrollment)."""
        if not self.state.exists():
            return {}
        loaded: dict[str, Any] = json.loads(self.state.read_text())
        return loaded

    def save_state(self, state: dict[str, Any]) -> None:
        """Persist the state."""
        self._write(self.state, (json.dumps(state, indent=2) + "\n").encode(), 0o600)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key
