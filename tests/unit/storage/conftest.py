"""A second ``Services`` on the same database: a restarted (or another) replica."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from conftest import Installation
from iotiam.bootstrap import Services, build_services
from iotiam.pki.ports import SerialSource


@pytest.fixture
def replica(installation: Installation) -> Iterator[Callable[..., Services]]:
    """Build services on the installation's database and clock, optionally with a fixed
    serial source; every one built is closed after the test."""
    built: list[Services] = []

    def build(serials: SerialSource | None = None) -> Services:
        services = build_services(installation.settings, clock=installation.clock,
                                  serials=serials)
        built.append(services)
        return services

    yield build
    for services in built:
        services.close()
