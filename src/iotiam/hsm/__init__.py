"""Adapters for keys held in hardware: PKCS#11 modules (docs/hsm.md)."""
