"""Fixtures of the OAuth2 tests: a kit on each backend and one device with a client."""

from __future__ import annotations

import pytest

from conftest import Installation
from tokens.oauthkit import DeviceIdentity, OAuthKit


@pytest.fixture
def kit(installation: Installation) -> OAuthKit:
    """The OAuth2 endpoints of a fresh installation."""
    return OAuthKit(installation)


@pytest.fixture
def d1(kit: OAuthKit) -> DeviceIdentity:
    """Device ``d1`` with a certificate and an OAuth client (scopes from the default policy)."""
    return kit.device("d1")
