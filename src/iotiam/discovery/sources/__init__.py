"""Discovery sources: one module per kind of input, each behind ``ports.SightingSource``."""
