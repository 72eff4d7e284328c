"""The files Mosquitto re-reads on SIGHUP: the CRL and the PSK file, verified first, the
cafile, and the broker's own certificate.

Mosquitto 2.0 fails open on a garbage, empty or missing ``crlfile`` at SIGHUP and locks
everyone out with an expired one (docs/broker-sync.md), so a CRL is verified against
its issuer before it is written; both files are replaced atomically, then one HUP.
Whoever authorizes the broker's devices (the dynsec sync or iotiam's plugin) installs
them through this. One installer, one HUP after all of them: Mosquitto 2.0 clears its
reload flag after reloading, so a second HUP that lands during a reload is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from iotiam.broker.dynsec import BrokerUnavailable
from iotiam.broker.layout import BrokerFiles
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.sync_ports import BrokerFileSource
from iotiam.clock import Clock
from iotiam.config import write_private_file
from iotiam.errors import InvalidInput
from iotiam.pki.crl import verify_crl


class BrokerFileInstaller:
    """Installs a changed CRL or PSK file and reloads the broker."""

    def __init__(self, source: BrokerFileSource, clock: Clock, files: BrokerFiles,
                 broker: ManagedMosquitto | None, *,
                 own_certificate: Callable[[], bool] | None = None) -> None:
        """``own_certificate``: writes a new broker certificate when the active issuing
        CA did not sign the current one; True if it did (``provision``)."""
        self._source = source
        self._own_certificate = own_certificate
        self._clock = clock
        self._files = files
        self._broker = broker
        self._crl_installed: bytes | None = None
        self._cafile_installed: bytes | None = None
        self._psk_installed: str | None = None
        self._version: tuple[object, ...] | None = None

    def forget(self) -> None:
        """Install both files at the next call whatever was installed before (a restart)."""
        self._crl_installed = self._psk_installed = self._version = None
        self._cafile_installed = None

    def install(self) -> bool:
        """Verify and install a changed CRL or PSK file, then SIGHUP; True if reloaded."""
        version = self._source.files_version()
        if version == self._version:
            return False
        crl = self._source.crl_pem()
        psks = self._source.psk_file()
        cafile = self._source.cafile_pem()
        changed = False
        # the trusted CAs changed (a rotation or a revocation): the broker's own
        # certificate moves to the active CA in the same reload
        if self._own_certificate is not None and self._own_certificate():
            changed = True
        if cafile is not None and cafile != self._cafile_installed:
            # before the CRLs: Mosquitto reads both at the HUP, and a CRL whose CA is not
            # in the cafile yet would be of no use
            write_private_file(self._files.ca, cafile)
            self._cafile_installed = cafile
            changed = True
        if crl != self._crl_installed:
            checked_crl(crl, self._source.crl_issuers(), self._clock.now())
            write_private_file(self._files.crl, crl)
            self._crl_installed = crl
            changed = True
        if psks != self._psk_installed:
            write_private_file(self._files.psk_file, psks)
            self._psk_installed = psks
            changed = True
        if changed and self._broker is not None:
            self._broker.reload()
        self._version = version
        return changed


def checked_crl(pem: bytes, issuers: list[x509.Certificate], now: datetime) -> None:
    """Refuse CRLs Mosquitto would fail open on (garbage) or lock everyone out with:
    one for each of ``issuers``, each signed by its issuer and current."""
    marker = b"-----END X509 CRL-----"
    blocks = [b + marker for b in pem.split(marker) if b.strip()]
    try:
        if len(blocks) != len(issuers):
            raise InvalidInput(f"{len(blocks)} CRLs for {len(issuers)} CAs")
        for block, issuer in zip(blocks, issuers, strict=True):
            verify_crl(x509.load_pem_x509_crl(block), issuer, now)
    except (ValueError, InvalidInput) as e:
        raise BrokerUnavailable(f"refusing to install this CRL on the broker: {e}") from e
