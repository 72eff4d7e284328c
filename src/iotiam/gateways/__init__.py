"""Gateways that speak for constrained devices registered under them (docs/gateways.md)."""
