"""iotiam: identity and access control plane for IoT fleets."""

__version__ = "0.1.0"
