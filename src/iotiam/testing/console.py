"""A browser-like client of the web console for tests and benchmarks: signs in with an
admin token and posts forms with the CSRF token the last page gave."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.testclient import TestClient

from iotiam.api.app import create_api_app
from iotiam.bootstrap import Services

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_BINDING = re.compile(r'name="binding" value="([^"]+)"')


class Console:
    """One browser session against the in-process app, over "https" so that the Secure
    cookies travel; redirects are not followed, so tests see them."""

    def __init__(self, services: Services, token: str) -> None:
        self.token = token
        self.http = TestClient(create_api_app(services), base_url="https://testserver",
                               raise_server_exceptions=False, follow_redirects=False)
        self.csrf = ""

    def sign_in(self, token: str | None = None) -> httpx.Response:
        """Fetch the form and post the token (this client's own unless another is given);
        on success, load the overview (and its CSRF token)."""
        form = self.http.get("/console/sign-in")
        binding = _BINDING.search(form.text)
        if binding is None:
            raise AssertionError(f"no sign-in form: {form.status_code} {form.text[:300]}")
        answer: httpx.Response = self.http.post("/console/sign-in", data={
            "token": token or self.token, "binding": binding.group(1), "next": "/console/"})
        if answer.status_code == 303:
            self.page("/console/")
        return answer

    def page(self, path: str, **params: Any) -> httpx.Response:
        """GET a page and keep its CSRF token."""
        answer: httpx.Response = self.http.get(path, params=params or None)
        found = _CSRF.search(answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True
             ) -> httpx.Response:
        """POST a form as the page would (with its CSRF token unless told not to)."""
        body = dict(data or {})
        if csrf:
            body["csrf"] = self.csrf
        posted: httpx.Response = self.http.post(path, data=body)
        return posted

    def close(self) -> None:
        """Release the client."""
        self.http.close()
