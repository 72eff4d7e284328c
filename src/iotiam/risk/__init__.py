"""The identity risk register: every identity, what is wrong with it, and what to fix first."""
