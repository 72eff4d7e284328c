"""Context, no target: what gateways cost (docs/gateways.md).

On the in-memory installation (``iotiam.testing.fakes``): CPU to seal one child's PSK
to its gateway (ECIES over P-256), to register a child under a gateway, to answer a
gateway's children listing, and to compile a gateway's broker ACL with its children's
topics next to a plain device's.
"""

from __future__ import annotations

import time
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.harness import Result, RunConfig
from iotiam.broker.fleet import LiveFleet
from iotiam.gateways.sealed_keys import seal_to
from iotiam.inventory.models import DeviceDraft
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, Principal, Role
from iotiam.pki.models import IssueRequest
from iotiam.testing import make_csr, make_key
from iotiam.testing.fakes.changes import MemoryFleetReads
from iotiam.testing.fakes.services import MemoryServices, memory_services

NAME = "gateways"
TITLE = "gateways: sealing child keys, children listings, a gateway's broker ACL"
ADMIN = Principal(name="bench", role=Role.ADMIN, org_unit_id=ROOT_ORG_ID, org_path=ROOT_PATH)


def _cpu_per(work: int, started: float) -> float:
    return (time.process_time() - started) / max(work, 1)


def _gateway(children: int) -> tuple[MemoryServices, x509.Certificate, float]:
    services = memory_services()
    services.inventory.add_device(ADMIN, DeviceDraft(id="gw-1", type_name="gateway"))
    record = services.pki.issue(ADMIN, IssueRequest(device_id="gw-1",
                                                    csr_data=make_csr("gw-1", make_key())))
    assert record.pem is not None
    started = time.process_time()
    for n in range(children):
        services.inventory.add_device(ADMIN, DeviceDraft(id=f"tag-{n}", type_name="sensor",
                                                         via="gw-1"))
    return services, x509.load_pem_x509_certificate(record.pem.encode()), \
        _cpu_per(children, started)


def run(config: RunConfig) -> list[Result]:
    """The rows."""
    key = ec.generate_private_key(ec.SECP256R1())
    seals = config.size(2000, 200)
    started = time.process_time()
    for _ in range(seals):
        seal_to(key.public_key(), bytes(32), "gw-1/tag-1/0123456789abcdef")
    seal = _cpu_per(seals, started)
    children = config.size(200, 50)
    services, certificate, register = _gateway(children)
    started = time.process_time()
    for _ in range(5):
        listed = services.gateways.children(certificate)
    listing = _cpu_per(5, started)
    reads = MemoryFleetReads(services.database, services.clock)
    fleet = LiveFleet(services.database, services.clock, reads, services.pki, services.psks,
                      services.decisions, posture=reads)
    started = time.process_time()
    for _ in range(5):
        acl = fleet.broker_acl("gw-1")
    gateway_acl = _cpu_per(5, started)
    started = time.process_time()
    for _ in range(50):
        fleet.broker_acl("tag-0")
    plain_acl = _cpu_per(50, started)
    assert acl is not None and len(acl.speaks_for) == children == len(listed.children)
    started = time.process_time()
    assert services.gateways.rotate_child_keys(timedelta(days=90)).rotated == ()
    idle_pass = time.process_time() - started
    services.clock.advance(timedelta(seconds=1))
    services.pki.revoke_certificate(ADMIN, f"{certificate.serial_number:x}", "keyCompromise")
    services.clock.advance(timedelta(seconds=1))
    started = time.process_time()
    report = services.gateways.rotate_child_keys(timedelta(days=90))
    rekey = _cpu_per(len(report.rotated), started)
    assert len(report.rotated) == children
    return [
        Result("seal a child PSK to its gateway (ECIES P-256)", seal * 1e6, "us CPU/key"),
        Result("register a device under a gateway (memory stores)", register * 1e3,
               "ms CPU/device", notes="with its PSK issued and audited"),
        Result(f"children listing, {children} children, sealed", listing * 1e3,
               "ms CPU/request", notes=f"{listing / children * 1e6:.0f} us per child"),
        Result(f"gateway broker ACL, {children} children", gateway_acl * 1e3,
               "ms CPU/gateway", notes=f"{len(acl.entries)} entries; a plain device "
                                       f"{plain_acl * 1e3:.2f} ms"),
        Result(f"rotation pass, {children} children, none due", idle_pass * 1e3,
               "ms CPU/pass", notes="the child-key-rotation job's look"),
        Result(f"re-key a revoked gateway's {children} children", rekey * 1e3,
               "ms CPU/child", notes="one transaction each, audited"),
    ]
