"""Signing in through an OpenID Connect provider (authorization code + PKCE).

``/console/sign-in/oidc`` starts a sign-in: the state, nonce and PKCE verifier are sealed
into a short-lived cookie of this browser and the browser goes to the provider. The
provider sends it back to ``/console/oidc/callback``, where ``SingleSignOn.complete``
checks the answer against that cookie and maps the person to a role and org unit.

The sign-in cookie is ``SameSite=Lax``: it must come back on the provider's top-level
redirect, which is a cross-site navigation. The session cookie is ``Strict``, so a
browser would not send it on the rest of that cross-site redirect chain: the callback
answers with a page of ours that moves on to the console (a same-site navigation).
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from iotiam.errors import Forbidden, Unauthenticated
from iotiam.kernel import Principal
from iotiam.sso.models import CALLBACK_PATH, SIGN_IN_SECONDS, VIA, PendingSignIn
from iotiam.sso.service import ProviderAnswer, SingleSignOn
from iotiam.web.console import PREFIX, Wired, keep_cookie, render, sessions_of
from iotiam.web.pages.sign_in import safe_next
from iotiam.web.sessions import CookieSealer, Session, Sessions

router = APIRouter(prefix="", include_in_schema=False)

#: the sign-in under way in this browser (state, nonce, PKCE verifier), sealed
FLOW_COOKIE = "__Host-iotiam-oidc"
FLOW_PURPOSE = b"iotiam console oidc sign-in v1"


def register(sessions: Sessions, sso: SingleSignOn) -> None:
    """Accept OIDC sessions while the group that granted them still does."""
    def still_valid(session: Session) -> Principal:
        return sso.revalidate(session.principal, session.detail)

    sessions.register_method(VIA, still_valid)


def _sso(svc: Wired) -> SingleSignOn:
    if svc.sso is None:
        raise HTTPException(404, "single sign-on is not configured on this server")
    return svc.sso


def _sealer(request: Request) -> CookieSealer:
    sealer: CookieSealer = request.app.state.oidc_flow
    return sealer


@router.get("/sign-in/oidc")
def start(request: Request, svc: Wired, next: str | None = None) -> Response:
    """Send the browser to the provider with a new state, nonce and PKCE challenge."""
    url, pending = _sso(svc).begin(safe_next(next))
    answer = RedirectResponse(url, status_code=303)
    answer.set_cookie(FLOW_COOKIE, _sealer(request).seal(asdict(pending)),
                      max_age=SIGN_IN_SECONDS, path="/", secure=True, httponly=True,
                      samesite="lax")
    return answer


@router.get(CALLBACK_PATH.removeprefix(PREFIX))
def callback(request: Request, svc: Wired) -> Response:
    """The provider's answer: checked, mapped, a session opened (or a refusal shown)."""
    sso = _sso(svc)
    query = request.query_params
    answer = ProviderAnswer(state=query.get("state"), code=query.get("code"),
                            error=query.get("error"),
                            error_description=query.get("error_description"),
                            iss=query.get("iss"))
    pending = _pending(request)
    try:
        done = sso.complete(pending, answer)
    except (Unauthenticated, Forbidden) as e:
        status = 403 if isinstance(e, Forbidden) else 401
        refusal = render(request, None, "sign_in_refused.html", status=status,
                         detail=e.detail)
        return _forget_flow(refusal)
    assert pending is not None  # complete() refuses a callback without one
    session = sessions_of(request).open(done.principal, VIA, done.detail)
    landing = render(request, session, "signed_in.html", target=pending.next)
    return _forget_flow(keep_cookie(landing, request, session))


def _pending(request: Request) -> PendingSignIn | None:
    cookie = request.cookies.get(FLOW_COOKIE)
    data = _sealer(request).unseal(cookie) if cookie else None
    if data is None:
        return None
    try:
        return PendingSignIn(state=str(data["state"]), nonce=str(data["nonce"]),
                             verifier=str(data["verifier"]), next=safe_next(str(data["next"])),
                             started_at=float(data["started_at"]))
    except (KeyError, TypeError, ValueError):
        return None


def _forget_flow(response: Response) -> Response:
    response.delete_cookie(FLOW_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response
