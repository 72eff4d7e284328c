"""Fixtures of the policy tests: a frozen clock and the policy use cases on memory stores."""

from __future__ import annotations

import pytest

from iotiam.clock import FrozenClock
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from policy.fakes import T0, AuditRecorder, Directory, MemoryPolicies, MemoryUnitsOfWork


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def memory() -> MemoryPolicies:
    return MemoryPolicies()


@pytest.fixture
def audit() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
def admin(memory: MemoryPolicies, clock: FrozenClock, audit: AuditRecorder
          ) -> PolicyAdministration:
    return PolicyAdministration(MemoryUnitsOfWork(memory, Directory()), clock, audit)


@pytest.fixture
def pdp(admin: PolicyAdministration, clock: FrozenClock) -> DecisionPoint:
    point = DecisionPoint(admin, clock)
    admin.on_change(point.invalidate)
    return point
