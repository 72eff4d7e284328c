"""The device agent: keeps its key on the device, enrolls over EST, renews itself."""

from iotiam.agent.agent import Agent, AgentError, EnrollmentPending

__all__ = ["Agent", "AgentError", "EnrollmentPending"]
