"""Group commit: one combiner for every batch use case (certificates, tokens).

A domain offers a plain batch use case, ``run(requests) -> outcomes`` in one
transaction (``CertificateIssuance.issue_many``, ``AuthorizationServer.issue_tokens``),
answering each request with its own result or its own error (``errors.contained``):
one request's failure never fails another. The combiner decides when to call it.
Requests that arrive while a batch runs wait, and the next batch answers all of
them in one call, so under load one commit serves many requests; alone, a request
is its own batch and waits for no one. An exception out of the call itself (the
transaction failed as a whole, or a bug outside any one request) reaches the callers
of that batch and no one else.

Two ways to wait for an answer, one queue:

- :class:`ThreadCombiner` for callers on threads: the first caller to find no batch
  running leads, running batches until none waits; the others sleep until theirs is in.
- :class:`LoopCombiner` for coroutines on an event loop: a batch runs on the loop
  itself when ``run_here_if`` says so without waiting (SQLite's writer is free: no
  thread hand-off, no contention for the GIL, about a fifth of the token endpoint's
  CPU, measured), else on one worker thread, so the loop never waits on a lock or a
  socket.
- :class:`StreamCombiner`, a :class:`LoopCombiner` for a use case that runs batch after
  batch (``CertificateIssuance.issue_stream``): it asks for the next batch when it is
  ready for it and answers each batch as soon as it is done, so that one transaction can
  end one batch and begin the next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

log = logging.getLogger("iotiam.fast.batching")

RequestT = TypeVar("RequestT")
OutcomeT = TypeVar("OutcomeT")
WaiterT = TypeVar("WaiterT", bound="_Waiter[Any]")

#: a batch's answer to one waiter: its outcomes in order, or what the call raised
Answer = list[OutcomeT] | Exception


class _Waiter(Generic[RequestT]):
    """One caller's requests, waiting in the queue."""

    __slots__ = ("requests",)

    def __init__(self, requests: Sequence[RequestT]) -> None:
        self.requests = requests


class _Queue(Generic[RequestT, OutcomeT, WaiterT]):
    """The waiters, the batch use case, and whether a batch is running."""

    def __init__(self, run: Callable[[Sequence[RequestT]], list[OutcomeT]],
                 max_batch: int | None) -> None:
        self._run = run
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[WaiterT] = []
        self._running = False

    def _join(self, waiter: WaiterT) -> bool:
        """Queue ``waiter``; True if no batch runs, so this caller must start one."""
        with self._lock:
            self._waiting.append(waiter)
            start = not self._running
            self._running = True
        return start

    def _more(self) -> bool:
        """Whether anyone waits; if not, no batch runs any more."""
        with self._lock:
            if self._waiting:
                return True
            self._running = False
            return False

    def _next_batch(self) -> list[WaiterT]:
        """The waiters of the next batch: everyone queued, up to ``max_batch`` requests."""
        with self._lock:
            if self._max_batch is None:
                batch, self._waiting = self._waiting, []
                return batch
            size = taken = 0
            for waiter in self._waiting:
                if taken and size + len(waiter.requests) > self._max_batch:
                    break
                size += len(waiter.requests)
                taken += 1
            batch = self._waiting[:taken]
            del self._waiting[:taken]
            return batch

    def _answer(self, batch: list[WaiterT]) -> list[tuple[WaiterT, Answer[OutcomeT]]]:
        """Run one batch: each waiter's share of the outcomes, or the call's exception."""
        requests = _requests(batch)
        try:
            outcomes = self._run(requests)
        except Exception as e:  # the whole call failed: every caller of this batch hears
            log.exception("a batch of %d requests failed", len(requests))
            return [(waiter, e) for waiter in batch]
        return _split(batch, outcomes)


def _requests(batch: Sequence[_Waiter[RequestT]]) -> Sequence[RequestT]:
    """The requests of a batch's waiters, in order."""
    if len(batch) == 1:
        return batch[0].requests
    return [request for waiter in batch for request in waiter.requests]


def _split(batch: list[WaiterT], outcomes: Answer[OutcomeT]
           ) -> list[tuple[WaiterT, Answer[OutcomeT]]]:
    """Each waiter's share of a batch's outcomes (or the exception that failed it)."""
    if isinstance(outcomes, Exception) or len(batch) == 1:
        return [(waiter, outcomes) for waiter in batch]
    answers: list[tuple[WaiterT, Answer[OutcomeT]]] = []
    start = 0
    for waiter in batch:
        end = start + len(waiter.requests)
        answers.append((waiter, outcomes[start:end]))
        start = end
    return answers


class _Sleeper(_Waiter[RequestT], Generic[RequestT, OutcomeT]):
    """A caller on a thread, asleep until its answer is in."""

    __slots__ = ("answer", "done")

    def __init__(self, requests: Sequence[RequestT]) -> None:
        super().__init__(requests)
        self.answer: Answer[OutcomeT] = []
        self.done = threading.Event()


class ThreadCombiner(_Queue[RequestT, OutcomeT, _Sleeper[RequestT, OutcomeT]]):
    """``run`` for callers on many threads, concurrent calls combined into one batch."""

    def __init__(self, run: Callable[[Sequence[RequestT]], list[OutcomeT]]) -> None:
        super().__init__(run, max_batch=None)

    def __call__(self, requests: Sequence[RequestT]) -> list[OutcomeT]:
        """The outcome of each request, in order (raises what the batch's call raised)."""
        waiter: _Sleeper[RequestT, OutcomeT] = _Sleeper(requests)
        if self._join(waiter):
            self._lead()
        waiter.done.wait()
        if isinstance(waiter.answer, Exception):
            raise waiter.answer
        return waiter.answer

    def _lead(self) -> None:
        while self._more():
            for waiter, answer in self._answer(self._next_batch()):
                waiter.answer = answer
                waiter.done.set()


class _Awaiting(_Waiter[RequestT], Generic[RequestT, OutcomeT]):
    """A coroutine's request, answered through its future."""

    __slots__ = ("future",)

    def __init__(self, request: RequestT, future: asyncio.Future[OutcomeT]) -> None:
        super().__init__((request,))
        self.future = future


#: a coroutine's request and its answer, on the way back to its event loop
_Answered = tuple[_Awaiting[RequestT, OutcomeT], Answer[OutcomeT]]


class LoopCombiner(_Queue[RequestT, OutcomeT, _Awaiting[RequestT, OutcomeT]]):
    """``run`` for coroutines, one request each, concurrent requests combined.

    A batch runs on the event loop when ``run_here_if()`` holds True without waiting
    (it stays held while the batch runs), else on one worker thread named
    ``thread_name``; without ``run_here_if`` always on the thread.
    """

    def __init__(self, run: Callable[[Sequence[RequestT]], list[OutcomeT]], *,
                 max_batch: int, thread_name: str,
                 run_here_if: Callable[[], AbstractContextManager[bool]] | None = None,
                 ) -> None:
        super().__init__(run, max_batch)
        self._run_here_if = run_here_if
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    async def submit(self, request: RequestT) -> OutcomeT:
        """The outcome of ``request`` (raises what the batch's call raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OutcomeT] = loop.create_future()
        if self._join(_Awaiting(request, future)):
            if self._run_here_if is None:
                self._thread.submit(self._drain)
            else:
                # after the requests this loop iteration reads: they join the batch
                loop.call_soon(self._drain_here)
        return await future

    def _drain_here(self) -> None:
        """One batch on the event loop if it may run here, else hand over to the thread."""
        assert self._run_here_if is not None
        answered = None
        try:
            with self._run_here_if() as here:
                if here:
                    answered = self._answer(self._next_batch())
        except Exception:  # taking the lock itself failed: the thread's way waits for it
            log.exception("asking where to run a batch failed; it runs on the thread")
        if answered is None:
            self._thread.submit(self._drain)
            return
        _settle(answered)
        if self._more():
            asyncio.get_running_loop().call_soon(self._drain_here)

    def _drain(self) -> None:
        """On the worker thread: batches until no request waits."""
        while self._more():
            _deliver(self._answer(self._next_batch()))

    def close(self) -> None:
        """Stop the worker thread once the queued batches are answered."""
        self._thread.shutdown(wait=True)


#: a batch use case run batch after batch: ``stream(first, following, answer)`` works
#: through ``first``, then each batch ``following()`` gives until it gives none, and
#: calls ``answer`` once per batch, in order, with its outcomes or what failed it whole
BatchStream = Callable[[Sequence[RequestT], Callable[[], Sequence[RequestT]],
                        Callable[[Answer[OutcomeT]], None]], None]


class StreamCombiner(LoopCombiner[RequestT, OutcomeT]):
    """A :class:`LoopCombiner` (always on its worker thread) whose use case takes the
    next batch when it is ready for it, so that it may join one batch's last step to the
    next one's first (certificates: one transaction stores a batch and reserves the
    next); each batch's callers are answered as soon as the use case answers it."""

    def __init__(self, stream: BatchStream[RequestT, OutcomeT], *, max_batch: int,
                 thread_name: str) -> None:
        super().__init__(self._one_batch, max_batch=max_batch, thread_name=thread_name)
        self._stream = stream

    def _one_batch(self, requests: Sequence[RequestT]) -> list[OutcomeT]:
        answers: list[Answer[OutcomeT]] = []
        self._stream(requests, tuple, answers.append)
        (answer,) = answers
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _drain(self) -> None:
        """On the worker thread: streams of batches until no request waits."""
        while self._more():
            handed = collections.deque([self._next_batch()])

            def following(handed: collections.deque[list[_Awaiting[RequestT, OutcomeT]]]
                          = handed) -> Sequence[RequestT]:
                batch = self._next_batch()
                if not batch:
                    return ()
                handed.append(batch)
                return _requests(batch)

            def answer(outcomes: Answer[OutcomeT],
                       handed: collections.deque[list[_Awaiting[RequestT, OutcomeT]]]
                       = handed) -> None:
                _deliver(_split(handed.popleft(), outcomes))

            try:
                self._stream(_requests(handed[0]), following, answer)
                if handed:
                    raise RuntimeError(f"{len(handed)} batch(es) left unanswered")
            except Exception as e:  # the callers of the batches not answered yet hear it
                log.exception("a stream of batches failed")
                while handed:
                    _deliver([(waiter, e) for waiter in handed.popleft()])


def _deliver(answered: Sequence[_Answered[RequestT, OutcomeT]]) -> None:
    """From the worker thread: each answer to its waiter, on the waiter's event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Answered[RequestT, OutcomeT]]] = {}
    for waiter, outcome in answered:
        by_loop.setdefault(waiter.future.get_loop(), []).append((waiter, outcome))
    for loop, answers in by_loop.items():
        # a closed loop (RuntimeError) has no one waiting any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, answers)


def _settle(answered: Sequence[_Answered[RequestT, OutcomeT]]) -> None:
    for waiter, answer in answered:
        if waiter.future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(answer, Exception):
            waiter.future.set_exception(answer)
        else:
            waiter.future.set_result(answer[0])
