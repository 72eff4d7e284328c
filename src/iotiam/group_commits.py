"""The API's group commits: concurrent requests of one kind share one call of their use
case's batch method (``iotiam.fast.batching.LoopCombiner``), built here for the app that
owns them (``api/oauth_token_path.py``, ``api/issuance.py``)."""

from __future__ import annotations

from iotiam.bootstrap import Services
from iotiam.errors import IamError
from iotiam.fast.batching import LoopCombiner, StreamCombiner
from iotiam.kernel import Principal
from iotiam.pki.models import CertificateRecord, IssueRequest
from iotiam.tokens.models import IssuedToken, TokenRequest


def token_batches(services: Services, *, max_batch: int
                  ) -> LoopCombiner[TokenRequest, IssuedToken | IamError]:
    """The token endpoint's group commit (``api/oauth_token_path.py``): concurrent
    requests share one ``issue_tokens`` call, on the event loop while SQLite's writer is
    free, else on one worker thread."""
    return LoopCombiner(services.oauth.issue_tokens, max_batch=max_batch,
                        thread_name="oauth-tokens", run_here_if=services.database.writer_if_free)


def certificate_batches(services: Services, *, max_batch: int
                        ) -> StreamCombiner[tuple[Principal, IssueRequest],
                                            CertificateRecord | IamError]:
    """The API's group commit for certificates (``POST /v1/certificates``, EST): concurrent
    requests share one batch of ``Pki.issue_batches``, always on the combiner's worker
    thread, and while requests keep coming one transaction stores a batch and reserves
    the next (one commit per batch instead of two). A certificate batch takes
    milliseconds (proofs, signatures, the commit); meanwhile the event loop reads the
    requests that make the next batch. Run on the loop, as tokens' batches are, those
    requests waited unread and most batches held one request (measured:
    ``benchmarks/README.md``). Callers on threads (other use cases) combine through
    ``Pki``'s own ``ThreadCombiner``; both reach ``CertificateIssuance``."""
    return StreamCombiner(services.pki.issue_batches, max_batch=max_batch,
                          thread_name="certificates")
