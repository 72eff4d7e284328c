"""Fakes, builders and test helpers that tests (and users' own tests) can import."""

from iotiam.testing.builders import make_csr, make_key
from iotiam.testing.environment import (
    free_port,
    free_ports,
    join_replica,
    require,
    require_binary,
)
from iotiam.testing.idevid import Issuer, make_idevid, make_manufacturer_ca
from iotiam.testing.serials import SequenceSerials

__all__ = ["Issuer", "SequenceSerials", "free_port", "free_ports", "join_replica", "make_csr",
           "make_idevid", "make_key", "make_manufacturer_ca", "require", "require_binary"]
