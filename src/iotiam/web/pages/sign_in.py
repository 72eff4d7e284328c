"""Signing in with an admin token (break-glass) and signing out.

An admin token is exchanged once for a session; the token itself is never stored in
the cookie, only its id, which is re-checked on every request (a revoked or expired
token ends its sessions at once). A later sign-in method (OpenID Connect) registers
itself with ``Sessions.register_method`` and calls ``Sessions.open`` the same way.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.bootstrap import Services
from iotiam.errors import Unauthenticated
from iotiam.kernel import ROOT_PATH, Principal
from iotiam.web.console import (
    PREFIX,
    Signed,
    Wired,
    checked_form,
    keep_cookie,
    render,
    services_of,
    sessions_of,
)
from iotiam.web.sessions import COOKIE, SIGN_IN_COOKIE, Session, Sessions

router = APIRouter(prefix="", include_in_schema=False)

ADMIN_TOKEN = "admin-token"  # noqa: S105 - a method's name, not a secret


def register(sessions: Sessions, services: Services) -> None:
    """Accept admin-token sessions for as long as their token lives."""
    def still_valid(session: Session) -> Principal:
        if session.principal.token_id is None:
            raise Unauthenticated("this session has no token")
        return services.admin_tokens.reauthenticate(session.principal.token_id)

    sessions.register_method(ADMIN_TOKEN, still_valid)


def safe_next(target: str | None) -> str:
    """Only a path inside the console (no other host, no scheme-relative URL)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target:
        return target
    return PREFIX + "/"


def _sso_name(request: Request) -> str | None:
    """The single sign-on provider's name, when one is configured."""
    sso = services_of(request).sso
    return sso.display_name if sso is not None else None


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None, why: str | None = None
                 ) -> Response:
    """The sign-in form, bound to this browser by a one-time value."""
    binding = secrets.token_urlsafe(24)
    response = render(request, None, "sign_in.html", binding=binding,
                      next=safe_next(next), why=why if why != "not signed in" else None,
                      error=None, sso=_sso_name(request))
    response.set_cookie(SIGN_IN_COOKIE, binding, max_age=600, path="/", secure=True,
                        httponly=True, samesite="strict")
    return response


@router.post("/sign-in")
async def sign_in(request: Request, svc: Wired) -> Response:
    """Exchange an admin token for a session (audited either way)."""
    form = await request.form(max_files=0, max_fields=10)
    token, binding, target = (form.get("token"), form.get("binding"), form.get("next"))
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    draft = AuditDraft(tag=AuditTag.CONSOLE_SIGN_IN_REFUSED, actor="anonymous",
                       org_path=ROOT_PATH, subject="console", details={"via": ADMIN_TOKEN})
    try:
        with svc.audit.refusals(draft):
            if not (isinstance(binding, str) and expected
                    and hmac.compare_digest(binding.encode(), expected.encode())):
                raise Unauthenticated("the sign-in form expired; load it again")
            if not isinstance(token, str) or not token.strip() or len(token) > 200:
                raise Unauthenticated("enter an admin token")
            principal = svc.admin_tokens.authenticate(token)
            svc.admin_tokens.spend_sign_in_binding(binding)
    except Unauthenticated as e:
        return render(request, None, "sign_in.html", status=401, binding=expected or "",
                      next=safe_next(target if isinstance(target, str) else None),
                      why=None, error=e.detail, sso=_sso_name(request))
    session = sessions_of(request).open(principal, ADMIN_TOKEN)
    svc.audit.record(AuditDraft(
        tag=AuditTag.CONSOLE_SIGNED_IN, actor=principal.name, org_path=principal.org_path,
        subject="console", details={"via": ADMIN_TOKEN, "role": str(principal.role),
                                    "org": principal.org_unit_id}))
    answer = RedirectResponse(safe_next(target if isinstance(target, str) else None),
                              status_code=303)
    answer.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True,
                         samesite="strict")
    return keep_cookie(answer, request, session)


@router.post("/sign-out")
async def sign_out(request: Request, session: Signed, svc: Wired) -> Response:
    """End the session in this browser (audited)."""
    await checked_form(request, session)
    svc.audit.record(AuditDraft(
        tag=AuditTag.CONSOLE_SIGNED_OUT, actor=session.actor,
        org_path=session.principal.org_path, subject="console",
        details={"via": session.via, **session.detail}))
    answer = RedirectResponse(f"{PREFIX}/sign-in?notice=signed_out", status_code=303)
    answer.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return answer
