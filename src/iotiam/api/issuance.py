"""Certificate requests from the API's coroutines, combined into shared batches.

``POST /v1/certificates`` and EST's enrollments hand their request to one
``iotiam.fast.batching.LoopCombiner`` per app (built by ``bootstrap.certificate_batches``;
only the composition root imports ``iotiam.fast``): requests that arrive while a batch
runs share the next ``Pki.issue_batch`` call, one reservation and one completion
transaction with one audit record per certificate (G1, G5), on the combiner's one worker
thread. No request waits on a pool thread of its own: under load those hand-offs cost
more CPU than the certificate (``benchmarks/README.md``).
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Request

from iotiam.bootstrap import Services, certificate_batches
from iotiam.errors import IamError
from iotiam.kernel import Principal
from iotiam.pki.models import CertificateRecord, IssueRequest

#: requests answered by one batch at most (bounds a batch's latency)
MAX_BATCH = 64


class CertificateQueue(Protocol):
    """What a route needs of the combiner: submit one request, await its outcome."""

    async def submit(self, request: tuple[Principal, IssueRequest]
                     ) -> CertificateRecord | IamError:
        """The certificate, or the error refusing this request alone."""
        ...


def install_certificate_batches(app: FastAPI, services: Services) -> None:
    """Give the app its combiner (one per app, built in the serving process; its worker
    thread starts with the first request, as the token endpoint's does)."""
    app.state.certificate_batches = certificate_batches(services, max_batch=MAX_BATCH)


async def _batches(request: Request) -> CertificateQueue:
    queue: CertificateQueue = request.app.state.certificate_batches
    return queue


async def issue_one(queue: CertificateQueue, actor: Principal, request: IssueRequest
                    ) -> CertificateRecord:
    """Certify one request in a shared batch; raises the error refusing it."""
    outcome = await queue.submit((actor, request))
    if isinstance(outcome, IamError):
        raise outcome
    return outcome


Batches = Annotated[CertificateQueue, Depends(_batches)]
