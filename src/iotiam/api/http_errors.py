"""Requests refused by the HTTP parser itself answered as problem+json, like every other.

uvicorn answers a request its parser cannot take (a malformed request line, a URL longer
than httptools can split) with a ``text/plain`` "Invalid HTTP request received." before
any application code runs. ``ProblemHttpToolsProtocol`` answers the RFC 9457 problem the
API documents instead, and refuses an over-long URL while it is still arriving rather
than buffering it whole.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from iotiam.api.problems import PROBLEM_JSON, TYPE_PREFIX

#: httptools' ``parse_url`` keeps offsets in 16 bits: a longer URL cannot be routed at all
MAX_URL_BYTES = 65535


class UrlTooLong(Exception):
    """Raised from the parser callback to stop reading a URL past ``MAX_URL_BYTES``."""


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` answering parser-level refusals as problem+json."""

    def on_url(self, url: bytes) -> None:
        """Collect the URL as uvicorn does, but not past ``MAX_URL_BYTES``."""
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            raise UrlTooLong  # httptools turns it into the HttpParserError uvicorn handles

    def shutdown(self) -> None:
        """The server is stopping: an idle keep-alive connection is cut at once; one
        with a request in flight closes after its response (uvicorn's way).

        uvicorn closes an idle one, which on TLS sends close_notify and waits for the
        client's: an idle client never answers, and the stop waited the whole drain."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """Answer 414 for an over-long URL, else 400, as problem+json; then close."""
        if len(getattr(self, "url", b"")) > MAX_URL_BYTES:
            status, reason, kind, title = 414, b"URI Too Long", "uri-too-long", "URI too long"
            detail = f"the request URL is longer than {MAX_URL_BYTES} bytes"
        else:
            status, reason, kind, title = 400, b"Bad Request", "malformed-request", \
                "Malformed request"
            detail = "the request is not well-formed HTTP/1.1"
        body = json.dumps({"type": TYPE_PREFIX + kind, "title": title, "status": status,
                           "detail": detail}).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        head += [name + b": " + value + b"\r\n" for name, value
                 in self.server_state.default_headers]
        head += [b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
