"""What the token endpoint reads to authenticate a client and judge its scopes.

``ClientReads`` reads one row at a time inside a unit of work. A batch of token
requests may have its rows read ahead (:class:`ReadsAhead`, the port;
``iotiam.fast.token_reads.ReadAhead`` reads them in one query per kind), always
inside the batch's own write transaction, so the requests are judged as of that
moment, exactly as if each had read its rows itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from iotiam.inventory.models import Device, is_identifier
from iotiam.pki.models import CertificateRecord
from iotiam.policy.models import DevicePosture
from iotiam.tokens.models import OAuthClient
from iotiam.tokens.ports import TokensUnitOfWork

Standing = tuple[list[str], DevicePosture | None]


class ClientReads:
    """The rows of one request, read when asked for."""

    def __init__(self, uow: TokensUnitOfWork) -> None:
        self.uow = uow

    def client(self, client_id: str) -> OAuthClient | None:
        """A registered client; None for an id that no client could have, unread."""
        if not is_identifier(client_id):
            # never sent to the database: PostgreSQL refuses a NUL byte, and its error
            # would abort the transaction the other requests of the batch share
            return None
        return self.uow.oauth_clients.get(client_id)

    def certificate(self, issuer_id: str, serial: int) -> CertificateRecord | None:
        """A certificate presented for ``tls_client_auth`` (without its PEM)."""
        return self.uow.oauth_clients.presented_certificate(issuer_id, serial)

    def device(self, device_id: str) -> Device | None:
        """The device of a device client."""
        return self.uow.devices.get(device_id)

    def standing(self, device_id: str) -> Standing:
        """A device's groups and stored posture."""
        return self.uow.oauth_clients.device_standing(device_id)


class ReadsAhead(Protocol):
    """Gives the reads of a batch of token requests, told the rows they will ask for:
    the clients, and the certificates of ``issuer_id`` presented by serial."""

    def __call__(self, uow: TokensUnitOfWork, *, client_ids: Sequence[str], issuer_id: str,
                 serials: Sequence[int]) -> ClientReads:
        """Reads for the batch, inside its transaction ``uow``."""
        ...


def read_when_asked(uow: TokensUnitOfWork, *, client_ids: Sequence[str], issuer_id: str,
                    serials: Sequence[int]) -> ClientReads:
    """The plain :class:`ReadsAhead`: nothing ahead, each row read when asked for."""
    return ClientReads(uow)
