"""What every console page shares: the signed-in person, forms checked for CSRF, pages
rendered with the refreshed session cookie, and errors shown as pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from iotiam import __version__
from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.bootstrap import Services
from iotiam.errors import Forbidden, InvalidInput, Unauthenticated
from iotiam.web.sessions import COOKIE, IDLE, Session, Sessions, csrf_matches

TEMPLATES = Path(__file__).with_name("templates")
PREFIX = "/console"
#: a page's rows: the choices offered, the default first
PAGE_SIZES = (25, 50, 100)
#: bound on a form field the console reads itself (the services bound the rest)
MAX_FIELD = 2000

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
environment.globals["version"] = __version__
environment.globals["prefix"] = PREFIX


class SignInNeeded(Exception):
    """No valid session: the browser is sent to the sign-in page (then back)."""

    def __init__(self, reason: str, back_to: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.back_to = back_to


def services_of(request: Request) -> Services:
    """The wired services (the console app holds the same ones as the API)."""
    wired: Services = request.app.state.services
    return wired


def sessions_of(request: Request) -> Sessions:
    """The session codec of this app."""
    codec: Sessions = request.app.state.sessions
    return codec


def signed_in(request: Request) -> Session:
    """The session of this request, refreshed (idle expiry slides)."""
    back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        return sessions_of(request).resume(request.cookies.get(COOKIE))
    except Unauthenticated as e:
        raise SignInNeeded(e.detail, back_to) from e


Signed = Annotated[Session, Depends(signed_in)]
Wired = Annotated[Services, Depends(services_of)]


async def checked_form(request: Request, session: Session) -> FormData:
    """The posted form, refused (and audited) unless it carries the session's CSRF token."""
    form = await request.form(max_files=0, max_fields=200)
    presented = form.get("csrf")
    if not csrf_matches(session, presented if isinstance(presented, str) else None):
        services_of(request).audit.record(AuditDraft(
            tag=AuditTag.ACCESS_DENIED, actor=session.actor,
            org_path=session.principal.org_path, subject=f"POST {request.url.path}"[:300],
            outcome=Outcome.DENIED, reason="console form without its CSRF token"))
        raise Forbidden("the form did not carry this session's CSRF token; reload the page")
    return form


def field(form: FormData, name: str, *, required: bool = True) -> str:
    """One text field of a form, bounded."""
    value = form.get(name)
    if not isinstance(value, str) or (required and not value.strip()):
        if required:
            raise InvalidInput(f"the form needs {name!r}")
        return ""
    if len(value) > MAX_FIELD:
        raise InvalidInput(f"{name!r} is longer than {MAX_FIELD} characters")
    return value.strip()


def page_size(raw: str | None) -> int:
    """The rows per page asked for, one of ``PAGE_SIZES``."""
    if raw in (None, ""):
        return PAGE_SIZES[0]
    if raw.isdigit() and int(raw) in PAGE_SIZES:
        return int(raw)
    raise InvalidInput(f"rows per page is one of {', '.join(map(str, PAGE_SIZES))}")


def keep_cookie(response: Response, request: Request, session: Session) -> Response:
    """Set the refreshed session cookie on a response."""
    response.set_cookie(COOKIE, sessions_of(request).seal(session),
                        max_age=int(IDLE.total_seconds()), path="/", secure=True,
                        httponly=True, samesite="strict")
    return response


def render(request: Request, session: Session | None, template: str, *,
           status: int = 200, **context: Any) -> HTMLResponse:
    """A page from its template, with the layout's context."""
    notice = request.query_params.get("notice")
    body = environment.get_template(template).render(
        session=session, notice=NOTICES.get(notice or ""), path=request.url.path,
        **context)
    response = HTMLResponse(body, status_code=status)
    if session is not None:
        keep_cookie(response, request, session)
    return response


def back(request: Request, session: Session, path: str, notice: str) -> Response:
    """Post/redirect/get: back to ``path`` with one of the fixed notices."""
    assert notice in NOTICES
    target = f"{PREFIX}{path}?{urlencode({'notice': notice})}"
    return keep_cookie(RedirectResponse(target, status_code=303), request, session)


def link(path: str, **query: Any) -> str:
    """A console URL with a query (empty values left out)."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{PREFIX}{path}" + (f"?{urlencode(kept)}" if kept else "")


def quoted(part: str) -> str:
    """One path segment, escaped."""
    return quote(part, safe="")


def epoch(seconds: float) -> str:
    """Epoch seconds as a UTC time a person reads."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


environment.filters["epoch"] = epoch
environment.globals["link"] = link
environment.globals["quoted"] = quoted

#: the notices a redirect may show (a key, never text from the query)
NOTICES = {
    "revoked": "Certificate revoked. OCSP and the CRL answer 'revoked' from now on.",
    "psk_revoked": "PSK revoked; revocation is final.",
    "client_revoked": "OAuth client revoked: its tokens are inactive from now on.",
    "quarantined": "Device quarantined.",
    "lifted": "Quarantine lifted: the device is back in its previous state.",
    "decommissioned": "Device decommissioned; its credentials were revoked.",
    "acknowledged": "Finding acknowledged.",
    "mode_set": "Detection mode set; it applies to the next events of that type.",
    "resolved": "Finding resolved.",
    "false_positive": "Finding marked as a false positive; its mitigations were lifted.",
    "accepted": "Risk accepted until the date shown.",
    "adopted": "Assets brought under management as pending devices.",
    "attached": "Policy attached.",
    "detached": "Attachment removed.",
    "approved": "Enrollment approved: the device collects its certificate on its next poll.",
    "rejected": "Enrollment rejected: the device's next poll is refused.",
    "signed_out": "Signed out.",
}
