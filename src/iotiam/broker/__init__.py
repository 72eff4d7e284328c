"""The data plane: a managed Mosquitto, its configuration and its dynamic-security sync."""
