"""Fixtures of the API tests."""

from __future__ import annotations

import pytest

from api.tenants import Tenants, build_tenants
from conftest import Installation


@pytest.fixture
def tenants(installation: Installation) -> Tenants:
    """root → acme (→ acme-berlin), globex, acme2, each with a device and a certificate."""
    return build_tenants(installation)
