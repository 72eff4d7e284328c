"""Sighting sources: each input format (and iotiam's own traffic) in one module."""
