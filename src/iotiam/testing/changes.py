"""The change feed in memory, for unit tests of publishers and consumers."""

from __future__ import annotations

from dataclasses import dataclass, field

from iotiam.changes import Change, Consumer, Published


@dataclass
class MemoryChangeFeed:
    """A ``ChangeFeed`` that delivers what ``publish`` is given, at once, in order (and a
    ``ChangeRecorder`` for memory units of work, which have no transaction to wait for)."""

    subscribers: list[tuple[tuple[type[Change], ...], Consumer]] = field(default_factory=list)
    delivered: int = 0
    published: list[Published] = field(default_factory=list)

    def subscribe(self, kinds: tuple[type[Change], ...], consumer: Consumer, *,
                  after: int | None = None) -> None:
        """Call ``consumer`` with every published change of these kinds (and, with
        ``after``, those published since that position)."""
        if after is not None:
            for published in self.published:
                if published.position > after and isinstance(published.change, kinds):
                    consumer(published)
        self.subscribers.append((kinds, consumer))

    @property
    def position(self) -> int:
        """How many changes were published."""
        return self.delivered

    def publish(self, *changes: Change) -> None:
        """Deliver changes as if their transactions had just committed."""
        for change in changes:
            self.delivered += 1
            published = Published(self.delivered, change)
            self.published.append(published)
            for kinds, consumer in self.subscribers:
                if isinstance(change, kinds):
                    consumer(published)

    def record(self, change: Change) -> None:
        """As a memory unit of work's ``changes``: published at once (nothing rolls back)."""
        self.publish(change)

    def deliver_pending(self) -> int:
        """Nothing waits: ``publish`` delivers at once."""
        return 0
