"""Deterministic serial sources for tests."""

from __future__ import annotations


class SequenceSerials:
    """Hands out the given serials in order, then fails: lets a test force a collision."""

    def __init__(self, *serials: int) -> None:
        self._serials = list(serials)

    def __call__(self) -> int:
        """The next serial."""
        if not self._serials:
            raise AssertionError("SequenceSerials ran out of serials")
        return self._serials.pop(0)
