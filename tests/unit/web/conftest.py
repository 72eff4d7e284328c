"""Fixtures of the console tests: an in-memory fleet with tenants, and signed-in browsers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from api.tenants import Tenants, build_tenants

from conftest import Installation
from iotiam.testing.console import Console


@pytest.fixture
def tenants(memory_installation: Installation) -> Tenants:
    """root → acme (→ acme-berlin), globex, acme2, each with a device and a certificate."""
    return build_tenants(memory_installation)


@pytest.fixture
def browsers(tenants: Tenants) -> Iterator[Callable[[str | None], Console]]:
    """Opens a console signed in with a token (None: the root admin's)."""
    opened: list[Console] = []

    def open_one(token: str | None = None) -> Console:
        console = Console(tenants.installation.services, tenants.installation.admin_token)
        opened.append(console)
        answer = console.sign_in(token)
        assert answer.status_code == 303, answer.text
        return console

    yield open_one
    for console in opened:
        console.close()


@pytest.fixture
def console(browsers: Callable[[str | None], Console]) -> Console:
    """A console signed in as the root admin."""
    return browsers(None)
