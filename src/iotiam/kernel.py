"""What every domain shares: who is calling, where things live in the org tree, and
how a use case opens its transaction.

Nothing here knows a domain. Each domain declares the stores it works with as its own
narrow unit of work in its ``ports.py``; :class:`Transactions` opens one of them.
"""

from __future__ import annotations

import enum
import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from iotiam.errors import Forbidden

#: the id and path of the org unit every other one lives under
ROOT_ORG_ID = "root"
ROOT_PATH = "/root/"


def child_path(parent_path: str, unit_id: str) -> str:
    """The path of org unit ``unit_id`` directly under the unit at ``parent_path``."""
    return f"{parent_path}{unit_id}/"


def ancestor_paths(org_path: str) -> list[str]:
    """``/root/a/b/`` -> ``/root/``, ``/root/a/``, ``/root/a/b/`` (the path itself last)."""
    parts = [p for p in org_path.split("/") if p]
    return ["/" + "/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1)]


def within(org_path: str, scope: str) -> bool:
    """Whether an object living at ``org_path`` is inside the subtree at ``scope``."""
    return org_path.startswith(scope)


class Role(enum.StrEnum):
    """Admin roles, each including the rights of the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the viewer < operator < admin order."""
        return _RANKS[self]


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``org_path`` is the subtree it may see (G9)."""

    name: str
    role: Role
    org_unit_id: str
    org_path: str
    token_id: str | None = None

    def sees(self, org_path: str) -> bool:
        """Whether an object living at ``org_path`` is inside this caller's subtree."""
        return within(org_path, self.org_path)

    def has_role(self, needed: Role) -> bool:
        """Whether the caller's role is at least ``needed``."""
        return self.role.rank >= needed.rank

    def require(self, needed: Role, doing: str) -> None:
        """Refuse (Forbidden) unless the caller's role is at least ``needed``."""
        if not self.has_role(needed):
            raise Forbidden(f"{doing} needs the {needed} role; this token is {self.role}")

    @property
    def is_global(self) -> bool:
        """Scoped to the root org unit: sees every tenant."""
        return self.org_path == ROOT_PATH


#: iotiam itself, acting on its own behalf (start-up, background jobs)
SYSTEM = Principal(name="system", role=Role.ADMIN, org_unit_id=ROOT_ORG_ID, org_path=ROOT_PATH)

UnitOfWorkT_co = TypeVar("UnitOfWorkT_co", covariant=True)
ItemT = TypeVar("ItemT")


class Transactions(Protocol[UnitOfWorkT_co]):
    """Opens transactions, each seen through a domain's own unit of work.

    A use case declares ``Transactions[InventoryUnitOfWork]`` (say) and sees only the
    stores that unit of work names; the SQL unit of work satisfies every domain's.
    """

    def __call__(self) -> AbstractContextManager[UnitOfWorkT_co]:
        """Begin a write transaction; commit on normal exit, roll back on an exception."""
        ...

    def reading(self) -> AbstractContextManager[UnitOfWorkT_co]:
        """Begin a read-only transaction that never waits for writers."""
        ...


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a bulk step (as it was before, after).

    A bulk step (a risk rebuild, an import batch) allocates hundreds of thousands of
    small acyclic objects (rows, tuples, entries) that outlive a young collection while
    they wait in a batch: every collection traversed them, about a tenth of the step's
    CPU, and more as the batch grows. Reference counting frees all of it; nothing it
    makes is a cycle. Whatever runs between two steps runs with the collector on.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def pipelined(items: Iterable[ItemT], consume: Callable[[ItemT], None]) -> None:
    """``consume`` each of ``items`` in order, on a second thread, while this thread
    produces the next one: a bulk step's reading overlaps its writing.

    The overlap is the time the consumer spends outside the interpreter (a database
    call, a commit, the server's share on PostgreSQL): the producer runs then. At most
    one item waits between the two, so memory holds three (one being produced, one
    waiting, one being consumed). The items are produced on the calling thread, which
    a request body read through the event loop needs. Whatever the consumer raises
    stops the production and is raised here once the consumer is done; whatever the
    producer raises is raised after every item produced before it was consumed (so a
    bulk step keeps what it had read, as when it ran on one thread).
    """
    waiting: queue.Queue[tuple[ItemT] | None] = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def drain() -> None:
        while (item := waiting.get()) is not None:
            if failed:
                continue  # the producer stops at its next item: do not block it meanwhile
            try:
                consume(item[0])
            except BaseException as e:  # raised again on the caller's thread
                failed.append(e)

    consumer = threading.Thread(target=drain, name="pipelined-consumer", daemon=True)
    consumer.start()
    try:
        for item in items:
            if failed:
                break
            waiting.put((item,))
    finally:
        waiting.put(None)
        consumer.join()
    if failed:
        raise failed[0]
