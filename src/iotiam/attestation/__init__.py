"""Firmware attestation and compliance: signed firmware, device evidence, minimum rules."""
