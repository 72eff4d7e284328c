"""The device agent: keeps its key on the device, enrolls over EST, renews itself."""

from iotiam.agent.agent import Agent, EnrollmentPending
from iotiam.agent.paths import AgentError

__all__ = ["Agent", "AgentError", "EnrollmentPending"]
