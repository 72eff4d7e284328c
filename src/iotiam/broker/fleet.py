"""The live fleet as the broker sync sees it: inventory + policy + PKI + PSKs.

The broker names what it needs of the PKI, the PSKs and the decision point as the
protocols below; the composition root (``serving.broker_fleet``) hands it the services
(``pki.service.Pki``, ``credentials.service.Psks``, ``policy.service.DecisionPoint``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.broker.sync_ports import Updates
from iotiam.clock import Clock
from iotiam.inventory.models import Device, DeviceState
from iotiam.inventory.ports import DeviceUnitOfWork
from iotiam.kernel import Transactions
from iotiam.pki.ports import StoredCrl
from iotiam.pki.signer import SigningCa
from iotiam.policy.broker_acl import (
    BrokerAcl,
    compile_broker_acl,
    with_children,
    with_reports,
)
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import DevicePosture, RequestContext, Subject
from iotiam.policy.ports import PostureLookup

#: rows committed late (a transaction that began before the last poll) are still seen
OVERLAP = timedelta(seconds=5)
PAGE = 2000


class FleetReads(Protocol):
    """Cheap, indexed questions about what changed (storage answers them)."""

    def device_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """(device, updated_at) of devices whose record (state, attributes, org, groups)
        changed after ``since``."""
        ...

    def psk_version(self) -> tuple[int, datetime | None]:
        """Changes whenever a PSK is issued, rotated or revoked."""
        ...

    def device_page(self, after_id: str | None, limit: int) -> list[Device]:
        """Devices that may hold a broker identity (not decommissioned), by id."""
        ...

    def groups_of(self, device_ids: Sequence[str]) -> dict[str, set[str]]:
        """Group ids of each device."""
        ...

    def children_of(self, gateway_ids: Sequence[str]) -> dict[str, list[str]]:
        """The children registered under each of these gateways (none: absent)."""
        ...

    def gateways_of(self, device_ids: Sequence[str]) -> dict[str, str]:
        """The gateway each of these devices is registered under (none: absent)."""
        ...

    def gateway_types(self) -> set[str]:
        """The device types whose devices are gateways."""
        ...


class FleetCas(Protocol):
    """The CAs the broker is certified by and trusts (``pki.service.CaSet``)."""

    @property
    def issuing_id(self) -> str:
        """The id of the CA that certifies devices (and the broker)."""
        ...

    @property
    def issuing(self) -> SigningCa:
        """The issuing CA: it signs the broker's certificate, its CRL is the broker's."""
        ...

    @property
    def root(self) -> SigningCa:
        """The root CA."""
        ...

    def trusted_issuers(self) -> Iterator[tuple[str, SigningCa]]:
        """The issuing CAs whose certificates the broker accepts (id, CA)."""
        ...

    def trusted_certificates(self) -> list[x509.Certificate]:
        """Their certificates, the active one first."""
        ...


class FleetPki(Protocol):
    """What the broker needs of the PKI (``pki.service.Pki``): its CAs and their CRLs."""

    @property
    def cas(self) -> FleetCas:
        """The loaded CAs."""
        ...

    def crl_version(self, issuer_id: str) -> tuple[int, int]:
        """Cheap: changes when the issuer's CRL does."""
        ...

    def current_crl(self, issuer_id: str) -> StoredCrl:
        """The issuer's newest CRL, rebuilt first if a revocation is missing from it."""
        ...


class FleetPsks(Protocol):
    """What the broker needs of the PSKs (``credentials.service.Psks``)."""

    def broker_psk_file(self) -> str:
        """Every live PSK in Mosquitto's ``psk_file`` format."""
        ...


class FleetDecisions(Protocol):
    """What the broker needs of the decision point (``policy.service.DecisionPoint``)."""

    def refresh(self) -> PolicyEngine:
        """The engine over the current policies (its ``generation`` changes with them)."""
        ...


class LiveFleet:
    """``FleetSource`` over the real services."""

    def __init__(self, uow: Transactions[DeviceUnitOfWork], clock: Clock, log: FleetReads,
                 pki: FleetPki, psks: FleetPsks, decisions: FleetDecisions,
                 posture: PostureLookup | None = None, *, children_direct: bool = False
                 ) -> None:
        """``children_direct``: a gateway's children's PSKs open the broker's own PSK
        listener too (default: they do not; a child reaches iotiam through its gateway)."""
        self._uow = uow
        self._children_direct = children_direct
        #: trust scores and firmware verdicts, settled into the ACLs like other conditions
        self._posture = posture
        self._clock = clock
        self._log = log
        self._pki = pki
        self._psks = psks
        self._decisions = decisions
        self._policy_generation: int | None = None
        #: the (device, updated_at) pairs the last window reported, and the watermark it
        #: returned: windows overlap by ``OVERLAP`` (5 s, polled every second), so without
        #: them every change was reported about six times (a set revocation's 10,000
        #: touched devices decided six times over)
        self._reported: dict[str, datetime] = {}
        self._reported_until: datetime | None = None

    @property
    def clock(self) -> Clock:
        """The clock decisions are made with."""
        return self._clock

    def now(self) -> datetime:
        """The current time."""
        return self._clock.now()

    @property
    def issuing(self) -> SigningCa:
        """The issuing CA (signs the broker's certificate too)."""
        return self._pki.cas.issuing

    @property
    def root(self) -> x509.Certificate:
        """The root CA."""
        return self._pki.cas.root.certificate

    def _postures(self, device_ids: Sequence[str]) -> dict[str, DevicePosture]:
        return self._posture.posture_of(device_ids) if self._posture is not None else {}

    def _acl(self, device: Device, groups: set[str],
             posture: DevicePosture | None) -> BrokerAcl:
        engine = self._decisions.refresh()
        subject = Subject.from_device(device, groups, posture)
        return compile_broker_acl(engine, subject, RequestContext.now(self._clock))

    def _acls(self, devices: Sequence[Device]) -> list[BrokerAcl]:
        """The ACLs of these devices, a gateway's with its children's topics."""
        ids = [d.id for d in devices]
        groups, postures = self._log.groups_of(ids), self._postures(ids)
        acls = [self._acl(d, groups.get(d.id, set()), postures.get(d.id)) for d in devices]
        children = self._log.children_of([a.device_id for a in acls if a.can_connect])
        if children:
            with self._uow.reading() as uow:
                kids = uow.devices.get_many(sorted({c for cs in children.values()
                                                    for c in cs}))
            kid_acls = {acl.device_id: acl
                        for acl in self._acls_of_children(list(kids.values()))}
            acls = [with_children(a, [kid_acls[c] for c in children[a.device_id]
                                      if c in kid_acls])
                    if a.device_id in children else a for a in acls]
        # the namespace of gateways' reports: theirs alone, whatever the policies grant
        gateway_types = self._log.gateway_types()
        return [with_reports(a, gateway=d.type_name in gateway_types)
                for a, d in zip(acls, devices, strict=True)]

    def _acls_of_children(self, children: Sequence[Device]) -> list[BrokerAcl]:
        ids = [d.id for d in children]
        groups, postures = self._log.groups_of(ids), self._postures(ids)
        return [self._acl(d, groups.get(d.id, set()), postures.get(d.id)) for d in children
                if d.state is not DeviceState.DECOMMISSIONED]

    def broker_acl(self, device_id: str) -> BrokerAcl | None:
        """The device's ACLs now; None if it is unknown or retired."""
        with self._uow.reading() as uow:
            device = uow.devices.get(device_id)
        if device is None or device.state is DeviceState.DECOMMISSIONED:
            return None
        return self._acls([device])[0]

    def all_acls(self) -> Iterator[BrokerAcl]:
        """Every device's ACLs, a page at a time."""
        after: str | None = None
        while page := self._log.device_page(after, PAGE):
            yield from self._acls(page)
            after = page[-1].id

    def gateways_for(self, device_ids: Iterable[str]) -> set[str]:
        """The gateways these devices are registered under."""
        return set(self._log.gateways_of(sorted(device_ids)).values())

    def updates_since(self, since: datetime) -> Updates:
        """What changed after ``since`` (read with an overlap). Revocations are not
        asked here: they reach the sync through the change feed (``BrokerSync.follow``)."""
        now = self._clock.now()
        start = since - OVERLAP
        generation = self._decisions.refresh().generation
        policies_changed = (self._policy_generation is not None
                            and generation != self._policy_generation)
        self._policy_generation = generation
        rows = self._log.device_changes(start)
        # asked from the last watermark: the caller acted on what that window reported
        # (one that failed asks from its old ``since`` again, and is told everything)
        reported = self._reported if since == self._reported_until else {}
        changed = {device for device, at in rows if reported.get(device) != at}
        self._reported, self._reported_until = dict(rows), now
        changed |= self.gateways_for(changed)
        return Updates(changed=changed, policies_changed=policies_changed, until=now)

    def files_version(self) -> tuple[object, ...]:
        """Changes when the cafile, the CRLs or the PSK file must be reinstalled."""
        ids = self._trusted_ids()
        return (ids, tuple(self._pki.crl_version(i) for i in ids), self._log.psk_version())

    def crl_pem(self) -> bytes:
        """The trusted issuing CAs' CRLs, each rebuilt first if a revocation is not on it."""
        return b"".join(
            x509.load_der_x509_crl(self._pki.current_crl(i).der).public_bytes(
                serialization.Encoding.PEM) for i in self._trusted_ids())

    def crl_issuers(self) -> list[x509.Certificate]:
        """The trusted issuing CAs, in ``crl_pem``'s order."""
        return self._pki.cas.trusted_certificates()

    def cafile_pem(self) -> bytes | None:
        """The trusted issuing CAs and the root: a revoked issuing CA is left out, so a
        certificate it signed no longer chains at the broker's TLS handshake."""
        certificates = [*self._pki.cas.trusted_certificates(), self._pki.cas.root.certificate]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)

    def _trusted_ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self._pki.cas.trusted_issuers())

    def psk_file(self) -> str:
        """Every live PSK in ``psk_file`` format, but for gateways' children (unless
        they may go around their gateway: ``children_direct``)."""
        text = self._psks.broker_psk_file()
        if self._children_direct or not text:
            return text
        lines = text.splitlines()
        # a PSK's identity is its device's id (credentials.service.Psks)
        behind = self._log.gateways_of([line.partition(":")[0] for line in lines])
        return "".join(line + "\n" for line in lines
                       if line.partition(":")[0] not in behind)
