"""A batch of token requests reads its rows first, one query per kind.

The ``tokens.reads.ReadsAhead`` the token endpoint uses: the clients, presented
certificates, devices, and their groups and posture of a whole batch are read before
any request is judged, then each request is served from them. On PostgreSQL every
statement is a round trip through the driver, and a batch of eight requests took
some forty. A row the batch did not foresee (a client named only inside an assertion
that could not be parsed ahead) is read on its own, as ``ClientReads`` reads it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from iotiam.inventory.models import Device, is_identifier
from iotiam.pki.models import CertificateRecord
from iotiam.tokens.models import OAuthClient
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.reads import ClientReads, Standing

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ReadAhead(ClientReads):
    """The rows of a batch of requests, read together before any request is judged."""

    def __init__(self, uow: TokensUnitOfWork, *, client_ids: Iterable[str], issuer_id: str,
                 serials: Iterable[int]) -> None:
        super().__init__(uow)
        self._issuer_id = issuer_id
        clients = [c for c in dict.fromkeys(client_ids) if is_identifier(c)]
        self._clients = _Asked(clients, uow.oauth_clients.get_many(clients))
        wanted = list(dict.fromkeys(serials))
        self._certificates = _Asked(
            wanted, uow.oauth_clients.presented_certificates(issuer_id, wanted))
        devices = list(dict.fromkeys(c.device_id for c in self._clients.found.values()
                                     if c.device_id is not None))
        self._devices = _Asked(devices, uow.devices.get_many(devices))
        # every registered device has a standing: what is not here is read on its own
        self._standings = uow.oauth_clients.device_standings(list(self._devices.found))

    def client(self, client_id: str) -> OAuthClient | None:
        """A client read ahead (None: read, not found), else read now."""
        if client_id in self._clients.asked:
            return self._clients.found.get(client_id)
        return super().client(client_id)

    def certificate(self, issuer_id: str, serial: int) -> CertificateRecord | None:
        """A certificate read ahead, else read now."""
        if issuer_id == self._issuer_id and serial in self._certificates.asked:
            return self._certificates.found.get(serial)
        return super().certificate(issuer_id, serial)

    def device(self, device_id: str) -> Device | None:
        """A device read ahead, else read now."""
        if device_id in self._devices.asked:
            return self._devices.found.get(device_id)
        return super().device(device_id)

    def standing(self, device_id: str) -> Standing:
        """A standing read ahead, else read now."""
        found = self._standings.get(device_id)
        return found if found is not None else super().standing(device_id)


class _Asked(Generic[K, V]):
    """What was asked for, and what of it was found."""

    __slots__ = ("asked", "found")

    def __init__(self, asked: Iterable[K], found: dict[K, V]) -> None:
        self.asked = frozenset(asked)
        self.found = found
