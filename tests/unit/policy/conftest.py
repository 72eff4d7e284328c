"""Fixtures of the policy tests: a frozen clock and the policy use cases on memory stores."""

from __future__ import annotations

import pytest

from iotiam.changes import PolicyChanged
from iotiam.clock import FrozenClock
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.testing.fakes.audit import AuditRecorder
from iotiam.testing.fakes.changes import MemoryChangeFeed
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
def feed() -> MemoryChangeFeed:
    return MemoryChangeFeed()


@pytest.fixture
def admin(memory: MemoryPolicies, clock: FrozenClock, audit: AuditRecorder,
          feed: MemoryChangeFeed) -> PolicyAdministration:
    return PolicyAdministration(MemoryPolicyTransactions(memory, directory(), feed), clock,
                                audit)


@pytest.fixture
def pdp(admin: PolicyAdministration, clock: FrozenClock, feed: MemoryChangeFeed
        ) -> DecisionPoint:
    point = DecisionPoint(admin, clock)
    feed.subscribe((PolicyChanged,), point.policies_changed)
    return point
