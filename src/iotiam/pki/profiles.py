"""The leaf certificate profiles iotiam issues: short-lived by design (revocation is a backstop)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

from iotiam.errors import InvalidInput
from iotiam.pki.models import CertificateProfile

#: A device renews at ~2/3 of its lifetime, so a day keeps a stolen key useful for
#: hours, not months, and keeps CRLs short: a revoked certificate leaves the CRL a week
#: after it expires (G6), and the broker reads the whole CRL again on every change
#: (docs/measured-facts.md, "CRL reload").
DEVICE = CertificateProfile(
    name="device", lifetime=timedelta(hours=24), client_auth=True, server_auth=False
)
#: Gateways also terminate TLS for the devices behind them, and act for them: a device
#: type with this profile may have children (docs/gateways.md).
GATEWAY = CertificateProfile(
    name="gateway", lifetime=timedelta(days=7), client_auth=True, server_auth=True,
    acts_for_children=True,
)
#: An MQTT broker's server certificate; 90 days matches the ACME norm.
BROKER_SERVER = CertificateProfile(
    name="broker-server", lifetime=timedelta(days=90), client_auth=False, server_auth=True
)

PROFILES: Mapping[str, CertificateProfile] = MappingProxyType(
    {p.name: p for p in (DEVICE, GATEWAY, BROKER_SERVER)}
)


def get_profile(name: str) -> CertificateProfile:
    """Look a profile up by name; an unknown name is InvalidInput listing the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        valid = ", ".join(sorted(PROFILES))
        raise InvalidInput(f"unknown certificate profile {name!r}; use one of: {valid}") from None
