"""A browser-like client of the console: signs in with a token, posts forms with the CSRF
token the page gave."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from conftest import Installation
from iotiam.api.app import create_api_app

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_BINDING = re.compile(r'name="binding" value="([^"]+)"')


class Console:
    """One browser session against the in-process app (HTTPS, so Secure cookies travel)."""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.http = TestClient(create_api_app(installation.services),
                               base_url="https://testserver", raise_server_exceptions=False,
                               follow_redirects=False)
        self.csrf = ""

    def sign_in(self, token: str | None = None) -> Any:
        """Fetch the form, post the token; remember the CSRF token of the next page."""
        form = self.http.get("/console/sign-in")
        binding = _BINDING.search(form.text)
        assert binding is not None, form.text
        answer = self.http.post("/console/sign-in", data={
            "token": token or self.installation.admin_token, "binding": binding.group(1),
            "next": "/console/"})
        if answer.status_code == 303:
            self.page("/console/")
        return answer

    def page(self, path: str, **params: Any) -> Any:
        """GET a page and keep its CSRF token."""
        answer = self.http.get(path, params=params or None)
        found = _CSRF.search(answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True
             ) -> Any:
        """POST a form as the page would (with its CSRF token unless told not to)."""
        body = dict(data or {})
        if csrf:
            body["csrf"] = self.csrf
        return self.http.post(path, data=body)

    def close(self) -> None:
        """Release the client."""
        self.http.close()
