"""Fixtures of the policy tests: a frozen clock and the policy use cases on memory stores."""

from __future__ import annotations

import pytest

from iotiam.clock import FrozenClock
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.testing.fakes.audit import AuditRecorder
from iotiam.testing.fakes.policy import MemoryPolicies, MemoryPolicyTransactions
from policy.fakes import T0, directory


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
    return PolicyAdministration(MemoryPolicyTransactions(memory, directory()), clock, audit)


@pytest.fixture
def pdp(admin: PolicyAdministration, clock: FrozenClock) -> DecisionPoint:
    point = DecisionPoint(admin, clock)
    admin.on_change(point.invalidate)
    return point
