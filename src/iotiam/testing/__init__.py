"""Fakes, builders and test helpers that tests (and users' own tests) can import."""

from iotiam.testing.builders import make_csr, make_key
from iotiam.testing.environment import free_port, require, require_binary
from iotiam.testing.serials import SequenceSerials

__all__ = ["SequenceSerials", "free_port", "make_csr", "make_key", "require", "require_binary"]
