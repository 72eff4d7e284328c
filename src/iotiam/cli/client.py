"""The CLI's HTTP client: a profile (URL + token + CA file) and problem+json errors."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from iotiam.cli.entry import UsageError
from iotiam.config import PROFILE_FILE, cli_profile_overrides
from iotiam.errors import IamError, InvalidInput, SetupError
from iotiam.untrusted import load_json


class ApiError(IamError):
    """The server answered with a problem."""

    kind = "api"
    title = "API error"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def api_path(route: str, *segments: str) -> str:
    """``route`` (a literal such as ``/v1/devices``) then each segment, percent-encoded.

    Every id a user types goes into a URL path through here and nowhere else: with
    ``safe=""`` a ``/``, ``?`` or ``#`` in an id stays inside its segment (RFC 3986 §3.3)
    instead of reaching another route. ``.`` and ``..`` are refused because clients
    remove such dot segments (RFC 3986 §5.2.4) even when they arrive alone.
    """
    encoded = [route.rstrip("/")]
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidInput(f"{segment!r} is not a usable id")
        if any(unicodedata.category(char) == "Cc" for char in segment):
            raise InvalidInput(f"{segment!r} contains a control character")
        encoded.append(quote(segment, safe=""))
    return "/".join(encoded)


@dataclass(frozen=True)
class Profile:
    """Where the API is and how to authenticate to it."""

    url: str
    token: str
    ca_file: str | None


def load_profile(data_dir: Path, url: str | None = None, token: str | None = None) -> Profile:
    """Flags beat ``IOTIAM_URL``/``IOTIAM_TOKEN`` beat the profile ``init`` left.

    A flag or variable given empty is refused, never skipped: ``--token "$T"`` with
    ``T`` unset would otherwise run with the profile's (bootstrap admin) token.
    """
    stored = _stored_profile(data_dir / PROFILE_FILE)
    environment = cli_profile_overrides()
    final_url = _first_given(("--url", url), ("IOTIAM_URL", environment["url"]),
                             ("the profile's url", stored.get("url")))
    final_token = _first_given(("--token", token), ("IOTIAM_TOKEN", environment["token"]),
                               ("the profile's token", stored.get("token")))
    if final_url is None or final_token is None:
        raise SetupError(
            f"no profile in {data_dir}: run `iotiam init` there, or pass --url and --token "
            "(or set IOTIAM_URL and IOTIAM_TOKEN)"
        )
    ca_file = environment["ca_file"] or stored.get("ca_file")
    return Profile(url=base_url(*final_url), token=final_token[1], ca_file=ca_file)


def _first_given(*sources: tuple[str, str | None]) -> tuple[str, str] | None:
    """The first source that is set, as (its name, its value); an empty one is refused."""
    for name, value in sources:
        if value is None:
            continue
        if not value.strip():
            raise UsageError(f"{name} is empty")
        return name, value
    return None


def base_url(source: str, url: str) -> str:
    """The API's base URL from ``source``: scheme and authority only, no query or fragment.

    Every request path is appended to it, so a query (``?x=``), a fragment or a path
    would change which route each command reaches (RFC 3986 §5.3); refused, not mended.
    """
    # a flag or variable is a usage error (exit 2); a stored profile is a setup problem
    refused = SetupError if source.startswith("the profile") else UsageError
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - parsing the port is what raises on a bad one
    except ValueError as e:
        raise refused(f"{source} {url!r} is not a URL: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refused(f"{source} {url!r} must be http(s)://HOST[:PORT]")
    if "?" in url or "#" in url or parts.path not in ("", "/"):
        raise refused(f"{source} {url!r} must be the API's base URL, "
                      "http(s)://HOST[:PORT], without a path, query or fragment")
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _stored_profile(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        stored = load_json(path.read_bytes(), what=f"the profile {path}")
    except OSError as e:
        raise SetupError(f"cannot read the profile {path}: {e.strerror or e}") from e
    except InvalidInput as e:
        raise SetupError(f"{e}; run `iotiam init` again to rewrite it") from e
    fields = ("url", "token", "ca_file")
    if not isinstance(stored, dict) or any(
            not isinstance(stored.get(name, ""), str) for name in fields):
        raise SetupError(f"the profile {path} is not an object of strings {fields}; run "
                         "`iotiam init` again to rewrite it")
    return stored


class ApiClient:
    """Thin wrapper over httpx that turns problems into ``ApiError``."""

    def __init__(self, profile: Profile, timeout: float = 30.0) -> None:
        verify: Any = True
        if profile.ca_file and Path(profile.ca_file).exists():
            verify = profile.ca_file
        self._url = profile.url
        self.base_url = profile.url
        self.ca_file = profile.ca_file
        try:
            self._http = httpx.Client(
                base_url=profile.url,
                headers={"Authorization": f"Bearer {profile.token}"},
                verify=verify,
                timeout=timeout,
            )
        except (httpx.InvalidURL, ValueError) as e:
            raise SetupError(f"cannot use the API URL {profile.url!r} or its token: {e}"
                             ) from e

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ``ApiError`` for any 4xx/5xx."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as e:
            raise ApiError(0, f"cannot reach iotiam at {self._url} (is `iotiam serve` "
                              f"running?): {e}") from e
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise ApiError(0, f"request to {self._url} failed: {e}") from e
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem_detail(response))
        return response

    def get(self, path: str, **params: Any) -> Any:
        """GET returning JSON."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON returning JSON (or None for 204)."""
        response = self.request("POST", path, json=body)
        return response.json() if response.content else None

    def download(self, path: str, write: Callable[[bytes], object], **params: Any) -> int:
        """GET a streamed body, handing each chunk to ``write``; the bytes received."""
        clean = {k: v for k, v in params.items() if v is not None}
        received = 0
        try:
            with self._http.stream("GET", path, params=clean) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _problem_detail(response))
                for chunk in response.iter_bytes():
                    write(chunk)
                    received += len(chunk)
        except httpx.ConnectError as e:
            raise ApiError(0, f"cannot reach iotiam at {self._url} (is `iotiam serve` "
                              f"running?): {e}") from e
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise ApiError(0, f"request to {self._url} failed: {e}") from e
        return received

    def delete(self, path: str) -> None:
        """DELETE."""
        self.request("DELETE", path)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict):
        # problem+json, or an RFC 6749 §5.2 error from the OAuth2 endpoints
        detail = body.get("detail") or body.get("title") or body.get("error_description")
        if detail:
            return f"{detail} (HTTP {response.status_code})"
    return f"HTTP {response.status_code}"
