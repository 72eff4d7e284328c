"""Speed machinery, beside the domains and plugged into their ports by ``bootstrap.py``.

Every module here has a plain counterpart in its domain that does the same with no
tricks; the domains never import this package, nor does anything but ``bootstrap.py``.

- ``batching``: group commit. One combiner (on threads, or on an event loop with a
  worker thread) decides when to call a domain's plain batch use case:
  ``CertificateIssuance.issue_many`` (through ``Pki``'s ``batching``, and for the API's
  coroutines through ``Pki.issue_batch``, built by ``bootstrap.certificate_batches``
  for ``api/issuance.py``) and ``AuthorizationServer.issue_tokens`` (for
  ``api/oauth_token_path.py``, built by ``bootstrap.token_batches``).
- ``leaf_encoding``: ``DirectLeafSigner``, a ``pki.ports.LeafSigner`` joining the leaf
  certificate's DER itself, checked at start-up against ``pki.leaf_builder.LeafBuilder``.
- ``signature_helper``: ``HelperProofChecks``, a ``pki.ports.ProofChecks`` checking part
  of a batch's CSR signatures in a helper process on the other core.
- ``token_reads``: ``ReadAhead``, a ``tokens.reads.ReadsAhead`` reading a batch of token
  requests' rows in one query per kind.

The HTTP side of the fast paths (answered in front of the framework) lives in
``api/``: ``oauth_token_path.py``, ``ocsp_fast_path.py`` and ``one_send.py``.
"""
