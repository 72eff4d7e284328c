"""Installing iotiam: what ``iotiam init`` creates and what running it again completes.

The CAs and their keys, the seeded root org unit and device types, the default device
policy, the server's TLS certificate (re-issued when the configured names change or it
nears its end), the local keys and the CLI profile with a root admin token. Running it
again never destroys keys. The services themselves are wired in ``bootstrap``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.admin.service import AdminTokens
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor, AuditUnitOfWork
from iotiam.audit.service import AuditTrail
from iotiam.bootstrap import checkpoint_writer, open_database
from iotiam.ca_keyring import load_ca_set
from iotiam.clock import Clock, SystemClock
from iotiam.config import (
    PROFILE_FILE,
    Settings,
    ca_passphrase,
    pkcs11_config,
    save_settings,
    write_private_file,
)
from iotiam.errors import NotFound, SetupError, Unauthenticated
from iotiam.hsm.pkcs11_signer import Pkcs11Signer, check_token, open_signer
from iotiam.hsm.uri import CaKeyUris
from iotiam.inventory.models import Criticality, DeviceClass, DeviceType, OrgUnit, OrgUnitKind
from iotiam.inventory.ports import DeviceTypeStore, OrgUnitStore
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, SYSTEM, Principal, Role
from iotiam.local_keys import audit_head_key, data_key
from iotiam.pki.authority import (
    CaMaterial,
    HeldCa,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
    issuing_certificate,
    responder_certificate,
    root_certificate,
)
from iotiam.pki.ca_set import ca_id_of
from iotiam.pki.keys import encrypt_private_key
from iotiam.pki.models import CaRole, KeyAlgorithm
from iotiam.pki.ports import CaUnitOfWork, StoredCa
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY, DEFAULT_DEVICE_POLICY_YAML
from iotiam.policy.models import AttachmentTarget, TargetKind
from iotiam.policy.service import PolicyAdministration
from iotiam.server_certificate import ensure_server_certificate, write_server_files
from iotiam.storage.database import Database

SEED_DEVICE_TYPES = (
    ("sensor", DeviceClass.SENSOR, Criticality.MEDIUM, "Battery or mains powered sensor"),
    ("gateway", DeviceClass.GATEWAY, Criticality.HIGH, "Edge gateway relaying other devices"),
    ("controller", DeviceClass.CONTROLLER, Criticality.HIGH, "PLC or controller driving plant"),
)


class SeedUnitOfWork(CaUnitOfWork, AuditUnitOfWork, Protocol):
    """What seeding an installation writes: the org tree's root, device types, CAs."""

    @property
    def org_units(self) -> OrgUnitStore:
        """The org-unit tree."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """Device types."""
        ...



@dataclass(frozen=True)
class InitResult:
    """What ``iotiam init`` did."""

    created_ca: bool
    created_token: bool
    profile_path: Path
    api_url: str
    http_url: str


def initialize(
    settings: Settings,
    *,
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    organization: str = "iotiam",
    clock: Clock | None = None,
    ca_keys: CaKeyUris | None = None,
) -> InitResult:
    """Create or complete an installation. Running it again never destroys keys.

    ``ca_keys``: the CA keys are made in (or taken from) PKCS#11 tokens (docs/hsm.md).
    """
    clock = clock or SystemClock()
    if ca_keys is not None:  # a wrong PIN or token stops init before it writes anything
        for uri in (ca_keys.root, ca_keys.issuing, ca_keys.responder):
            check_token(uri, pkcs11_config())
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_settings(settings)
    passphrase = ca_passphrase(settings, create=True)
    key = audit_head_key(settings, create=True)
    data_key(settings, create=True)
    database = open_database(settings)
    audit = AuditTrail(database, clock, key)
    try:
        with database() as uow:
            seed_inventory(uow, clock)
            created_ca = ensure_cas(uow, audit, key_algorithm, organization,
                                     passphrase, clock, ca_keys)
        _write_tls_files(database, settings, passphrase, clock, key_algorithm)
        ensure_default_policy(PolicyAdministration(database, clock, audit))
        created_token = _ensure_profile(database, audit, settings, clock)
        if created_ca or created_token:
            audit.record(
                AuditDraft(
                    tag=AuditTag.INSTALLATION_INITIALIZED,
                    actor=SYSTEM.name,
                    org_path=ROOT_PATH,
                    subject="installation",
                    details={"created_ca": created_ca, "created_token": created_token,
                             "api": settings.api_url},
                )
            )
        # anchor what init wrote: from here on a wiped database is told from a new one
        checkpoint_writer(settings, database, clock, passphrase)[0].write()
    finally:
        database.dispose()
    return InitResult(
        created_ca=created_ca,
        created_token=created_token,
        profile_path=settings.data_dir / PROFILE_FILE,
        api_url=settings.api_url,
        http_url=f"http://{settings.host}:{settings.http_port}",
    )


def ensure_default_policy(policies: PolicyAdministration) -> None:
    """Devices may connect and use ``devices/<their id>/#``, nothing else, unless told."""
    name = DEFAULT_DEVICE_POLICY.name
    try:
        policies.get(SYSTEM, name)
    except NotFound:
        policies.write(SYSTEM, DEFAULT_DEVICE_POLICY_YAML, owner_path=ROOT_PATH)
        policies.attach(SYSTEM, name, AttachmentTarget(TargetKind.ORG_UNIT, ROOT_ORG_ID))


def seed_inventory(uow: SeedUnitOfWork, clock: Clock) -> None:
    """The root org unit and the seeded device types, where missing."""
    now = clock.now()
    if uow.org_units.get(ROOT_ORG_ID) is None:
        uow.org_units.add(OrgUnit(id=ROOT_ORG_ID, name="Root", kind=OrgUnitKind.ROOT,
                                  parent_id=None, path=ROOT_PATH, created_at=now))
    for name, device_class, criticality, description in SEED_DEVICE_TYPES:
        if uow.device_types.get(name) is None:
            profile = "gateway" if device_class is DeviceClass.GATEWAY else "device"
            uow.device_types.add(DeviceType(name=name, device_class=device_class,
                                            criticality=criticality, description=description,
                                            certificate_profile=profile, created_at=now))


def ensure_cas(
    uow: SeedUnitOfWork, audit: Auditor, alg: KeyAlgorithm, organization: str,
    passphrase: bytes, clock: Clock, held: CaKeyUris | None = None,
) -> bool:
    """Create and store the root, issuing and OCSP responder CAs unless there are some
    (their keys made in a PKCS#11 token where ``held`` says, else here, encrypted)."""
    if uow.cas.active(CaRole.ISSUING) is not None:
        return False
    if held is not None and alg is not KeyAlgorithm.EC_P256:
        raise SetupError("CA keys in a PKCS#11 token are EC P-256 (--key-algorithm ec-p256)")
    cas = (_cas_in_token(held, organization, clock) if held is not None
           else _cas_here(alg, organization, clock))
    for role, material in cas:
        key_uri = _held_uri(material)
        _store_material(uow, role, material, passphrase, clock)
        details = {"algorithm": str(alg),
                   "subject": material.certificate.subject.rfc4514_string()}
        if key_uri is not None:
            details["key"] = key_uri
        audit.append(uow, AuditDraft(tag=AuditTag.CA_CREATED, actor=SYSTEM.name,
                                     org_path=ROOT_PATH, subject=f"ca:{role}",
                                     details=details))
    return True


def _cas_here(alg: KeyAlgorithm, organization: str,
              clock: Clock) -> list[tuple[CaRole, CaMaterial | HeldCa]]:
    now = clock.now()
    root = create_root_ca(alg=alg, common_name=f"{organization} Root CA",
                          organization=organization, now=now,
                          serial=x509.random_serial_number())
    issuing = create_issuing_ca(root=root, alg=alg, common_name=f"{organization} Issuing CA 1",
                                organization=organization, now=now,
                                serial=x509.random_serial_number())
    responder = create_ocsp_responder(issuer=issuing, alg=alg,
                                      common_name=f"{organization} OCSP Responder 1", now=now,
                                      serial=x509.random_serial_number())
    return [(CaRole.ROOT, root), (CaRole.ISSUING, issuing), (CaRole.OCSP_RESPONDER, responder)]


def _cas_in_token(uris: CaKeyUris, organization: str,
                  clock: Clock) -> list[tuple[CaRole, CaMaterial | HeldCa]]:
    """The three keys generated in (or found on) their tokens, each certificate signed
    there by its issuer's key: nothing private passes through this process."""
    now, config = clock.now(), pkcs11_config()
    root_key = open_signer(uris.root, config, create=True)
    root = HeldCa(root_certificate(root_key, common_name=f"{organization} Root CA",
                                   organization=organization, now=now,
                                   serial=x509.random_serial_number()), root_key)
    issuing_key = open_signer(uris.issuing, config, create=True)
    issuing = HeldCa(issuing_certificate(
        issuing_key.public_key(), root=root, common_name=f"{organization} Issuing CA 1",
        organization=organization, now=now, serial=x509.random_serial_number()), issuing_key)
    responder_key = open_signer(uris.responder, config, create=True)
    responder = HeldCa(responder_certificate(
        responder_key.public_key(), issuer=issuing,
        common_name=f"{organization} OCSP Responder 1", now=now,
        serial=x509.random_serial_number()), responder_key)
    return [(CaRole.ROOT, root), (CaRole.ISSUING, issuing), (CaRole.OCSP_RESPONDER, responder)]


def _store_material(
    uow: SeedUnitOfWork, role: CaRole, material: CaMaterial | HeldCa, passphrase: bytes,
    clock: Clock,
) -> str:
    identifier = ca_id_of(role, material.certificate)
    # a token keeps its key; the database then only where to find it (no PIN)
    key_field = _held_uri(material)
    if key_field is None:
        assert isinstance(material, CaMaterial)
        key_field = encrypt_private_key(material.key, passphrase).decode()
    uow.cas.add(StoredCa(
        id=identifier,
        role=role,
        certificate_pem=material.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        encrypted_key_pem=key_field,
        created_at=clock.now(),
    ))
    return identifier


def _held_uri(material: CaMaterial | HeldCa) -> str | None:
    if isinstance(material, HeldCa):
        assert isinstance(material.signer, Pkcs11Signer)
        return str(material.signer.uri)
    return None


def _write_tls_files(
    database: Database, settings: Settings, passphrase: bytes, clock: Clock,
    alg: KeyAlgorithm,
) -> None:
    """The server's own TLS certificate; re-issued when the configured names change, it
    ages, or its issuing CA is no longer the active one (``server_certificate``)."""
    cas = load_ca_set(database, passphrase)
    material, _ = ensure_server_certificate(database, cas, list(dict.fromkeys(
        settings.server_names)), passphrase, clock, alg=alg)
    write_server_files(settings, material, cas, passphrase)


def _ensure_profile(
    database: Database, audit: AuditTrail, settings: Settings, clock: Clock
) -> bool:
    """Leave a local profile (API URL + a root admin token) unless a working one exists."""
    path = settings.data_dir / PROFILE_FILE
    tokens = AdminTokens(database, clock, audit)
    if path.exists():
        try:
            profile = json.loads(path.read_text())
            tokens.authenticate(str(profile.get("token", "")))
            profile["url"] = settings.api_url
            profile["ca_file"] = str(settings.tls_dir / "ca.pem")
            write_private_file(path, json.dumps(profile, indent=2) + "\n")
            return False
        except (ValueError, OSError, Unauthenticated):
            pass
    with database() as uow:
        token, plaintext = tokens.mint(
            uow, created_by=SYSTEM.name, name="bootstrap-admin", role=Role.ADMIN,
            org_unit_id=ROOT_ORG_ID, org_path=ROOT_PATH, ttl=None,
        )
        audit.append(uow, AuditDraft(tag=AuditTag.TOKEN_CREATED, actor=SYSTEM.name,
                                     org_path=ROOT_PATH, subject=f"token:{token.id}",
                                     details={"name": token.name, "role": "admin"}))
    profile = {"url": settings.api_url, "token": plaintext,
               "ca_file": str(settings.tls_dir / "ca.pem")}
    write_private_file(path, json.dumps(profile, indent=2) + "\n")
    return True


def root_principal() -> Principal:
    """The built-in system principal (for in-process callers such as benchmarks)."""
    return SYSTEM
