"""Register a synthetic network's fleet through iotiam's REST API.

The caller hands a ``RestCall`` (method, path, JSON body -> the answer's JSON, raising
on an error status) so that the same code drives an in-process ``TestClient``, a live
server over httpx, or a benchmark's client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography import x509

from iotiam.testing.builders import make_csr, make_key
from iotiam.testing.synthetic_evidence import Issued
from iotiam.testing.synthetic_network import SHORT_LIVED_TYPE, TYPES, CertInfo, Network

#: ``(method, path, json body or None) -> the answer's JSON``; raises on a 4xx/5xx
RestCall = Callable[[str, str, Any], Any]

#: the lifetime of the fleet's certificates: longer than the evidence window
LIFETIME_SECONDS = 400 * 86400
IMPORT_CHUNK = 1000


def register_fleet(network: Network, call: RestCall) -> dict[str, Issued]:
    """Create the device types, register every device, issue its credential, then
    revoke and decommission what the plan says; what was issued, by device id."""
    _device_types(call)
    devices = network.registered
    for start in range(0, len(devices), IMPORT_CHUNK):
        rows = [{"row": start + n, "data": {"id": d.label, "type": d.type, "site": d.site,
                                            "attributes": dict(d.attributes)}}
                for n, d in enumerate(devices[start:start + IMPORT_CHUNK])]
        answer = call("POST", "/v1/devices/import", {"rows": rows})
        if answer.get("failed"):
            raise RuntimeError(f"device import refused rows: {answer['results'][:3]}")
    issued: dict[str, Issued] = {}
    for device in devices:
        if device.credential == "cert":
            record = call("POST", "/v1/certificates",
                          {"device": device.label,
                           "csr": make_csr(device.label, make_key()).decode()})
            cert = CertInfo.of(x509.load_pem_x509_certificate(record["pem"].encode()))
            if cert.sha256 != str(record["sha256"]).replace(":", "").lower():
                raise RuntimeError("the API's sha256 is not the certificate's fingerprint")
            issued[device.label] = Issued(cert=cert)
            if device.revoke:
                call("POST", f"/v1/certificates/{record['serial']}/revoke",
                     {"reason": "keyCompromise"})
        elif device.credential == "psk":
            psk = call("POST", f"/v1/devices/{device.label}/psk",
                       {"lifetime_seconds": LIFETIME_SECONDS})
            issued[device.label] = Issued(psk_identity=psk["identity"])
        if device.fate in ("zombie", "retired"):
            call("POST", f"/v1/devices/{device.label}/state",
                 {"state": "decommissioned", "reason": "replaced (synthetic network)"})
    return issued


def _device_types(call: RestCall) -> None:
    kinds = [(name, cls, crit) for name, cls, crit, _ in TYPES]
    kinds.append((SHORT_LIVED_TYPE, "sensor", "low"))
    for name, device_class, criticality in kinds:
        call("POST", "/v1/device-types", {"name": name, "device_class": device_class,
                                          "criticality": criticality})
        lifetime = 3600 if name == SHORT_LIVED_TYPE else LIFETIME_SECONDS
        call("PUT", f"/v1/device-types/{name}/rotation",
             {"certificate_lifetime_seconds": lifetime, "grace_seconds": 0,
              "max_credential_age_seconds": 3650 * 86400})


__all__ = ["LIFETIME_SECONDS", "RestCall", "register_fleet"]
