"""Issue 12 item 15: ``/docs`` and ``/redoc`` work without internet access."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from conftest import Installation

EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def referenced_urls(html: str) -> list[str]:
    """Every URL the page loads: src/href attributes and the JS-configured ones."""
    urls = re.findall(r'(?:src|href|spec-url)\s*=\s*["\']([^"\']+)["\']', html)
    urls += re.findall(r'(?:url|spec-url)\s*:\s*["\']([^"\']+)["\']', html)
    urls += re.findall(r'https?://[^\s"\'<>)]+', html)
    return urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_ok_offline(installation: Installation, page: str) -> None:
    api = installation.api()
    answer = api.get(page)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    urls = referenced_urls(answer.text)
    assert any(u.endswith(".js") for u in urls), urls
    foreign = [u for u in urls if urlsplit(u).netloc]
    assert foreign == [], "the page loads from another origin"
    for url in urls:
        asset = api.get(urljoin(page, url))
        assert asset.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        if suffix in EXPECTED_TYPES:
            assert EXPECTED_TYPES[suffix] in asset.headers["content-type"], url
            assert len(asset.content) > 500, url


def test_docs_ok_assets_carry_licences(installation: Installation) -> None:
    api = installation.api()
    for path in ["swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"]:
        assert api.get(f"/static/docs/{path}").status_code == 200, path
