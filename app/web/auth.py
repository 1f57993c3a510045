"""Who is asking: the signed-in account from a session cookie or a bearer token, and the dependencies that need one.

`AccountResolver` (ASGI middleware) resolves the account once per request into request.state.account, so
pages (the nav bar) and dependencies (OptionalUser, CurrentUser, JobCreator, ViewerDep) read the same answer.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from app.accounts import AccountPublic, session_account, token_account
from app.jobs.access import Viewer
from app.settings import Settings
from app.web.deps import SettingsDep
from app.web.templating import templates

logger = logging.getLogger(__name__)

SESSION_COOKIE = "lorapedia_session"
INVALID_TOKEN = "invalid"  # request.state.account when a bearer token was sent but is unknown or revoked
OPEN_INSTANCE_REFUSAL = (
    "this instance listens on {host}, beyond this machine, without accounts: anyone who reaches it could run jobs. "
    "Turn accounts on (LORAPEDIA_ACCOUNTS=on, then `lorapedia user add NAME`), or set LORAPEDIA_OPEN_INSTANCE=true "
    "to let everyone create jobs")


class SignInRequired(Exception):
    """The action needs a signed-in account: 401 for the API, a redirect to the sign-in form for pages."""


class AccountResolver:
    """Resolve the request's account (bearer token first, then the session cookie) into request.state.account."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            state["account"] = None
            settings: Settings = scope["app"].state.settings
            if settings.accounts and not scope["path"].startswith("/static/"):
                headers = dict(scope.get("headers") or [])
                bearer = _bearer(headers.get(b"authorization", b"").decode("latin-1"))
                cookie = _cookie(headers.get(b"cookie", b"").decode("latin-1"))
                if bearer is not None or cookie:
                    state["account"] = await run_in_threadpool(_lookup, scope["app"].state.engine, bearer, cookie)
        await self.app(scope, receive, send)


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE:
            return value
    return None


def _lookup(engine, bearer: str | None, cookie: str | None) -> AccountPublic | str | None:
    with Session(engine) as session:
        if bearer is not None:
            account = token_account(session, bearer)
            return AccountPublic.model_validate(account) if account else INVALID_TOKEN
        account = session_account(session, cookie or "")
        return AccountPublic.model_validate(account) if account else None


def optional_user(request: Request) -> AccountPublic | None:
    """The signed-in account, or None; an unknown bearer token is a 401 rather than anonymous access."""
    account = getattr(request.state, "account", None)
    if account == INVALID_TOKEN:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the bearer token is unknown or revoked",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return account


OptionalUser = Annotated[AccountPublic | None, Depends(optional_user)]


def current_user(user: OptionalUser, settings: SettingsDep) -> AccountPublic:
    """The signed-in account; 404 when accounts are off, sign-in required when nobody is signed in."""
    if not settings.accounts:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "accounts are off on this instance (LORAPEDIA_ACCOUNTS)")
    if user is None:
        raise SignInRequired("sign in first")
    return user


CurrentUser = Annotated[AccountPublic, Depends(current_user)]


def job_creator(user: OptionalUser, settings: SettingsDep) -> AccountPublic | None:
    """Who may create a job: a signed-in account when accounts are on; anyone on loopback or an open instance otherwise."""
    if settings.accounts:
        if user is None:
            raise SignInRequired("sign in to create jobs: a session for pages, `Authorization: Bearer <token>` for the API")
        return user
    if not settings.is_loopback and not settings.open_instance:
        raise HTTPException(status.HTTP_403_FORBIDDEN, OPEN_INSTANCE_REFUSAL.format(host=settings.host))
    return None


JobCreator = Annotated[AccountPublic | None, Depends(job_creator)]


def viewer(user: OptionalUser, settings: SettingsDep) -> Viewer:
    """The requester as job access sees them."""
    return Viewer(accounts_on=settings.accounts, account_id=user.id if user else None, is_admin=bool(user and user.is_admin))


ViewerDep = Annotated[Viewer, Depends(viewer)]


def creation_notice(request: Request) -> str | None:
    """Why this request could not create a job, for the job form to say before anyone fills it in (a template global)."""
    settings: Settings = request.app.state.settings
    if settings.accounts:
        return None if getattr(request.state, "account", None) not in (None, INVALID_TOKEN) else "sign_in"
    if not settings.is_loopback and not settings.open_instance:
        return OPEN_INSTANCE_REFUSAL.format(host=settings.host)
    return None


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in; anything else (another site, //host) is the home page."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and len(target) <= 2000:
        return target
    return "/"


async def _sign_in_required(request: Request, exc: SignInRequired) -> Response:
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    back = request.url.path if request.method == "GET" else request.headers.get("referer", "").removeprefix(str(request.base_url).rstrip("/"))
    location = "/login?" + urlencode({"next": safe_next(back or request.url.path)})
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)


def install(app: FastAPI) -> None:
    """The account middleware and the sign-in-required handler."""
    app.add_middleware(AccountResolver)
    app.add_exception_handler(SignInRequired, _sign_in_required)
    templates.env.globals["job_creation_notice"] = creation_notice
