"""Signing in and out, and API tokens: a page for people, JSON for scripts (accounts on only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from app.accounts import AccountError, AccountPublic, authenticate, create_session, create_token, delete_session, find_account
from app.accounts import list_tokens, revoke_token
from app.accounts.passwords import MAX_PASSWORD_LENGTH
from app.accounts.throttle import LoginThrottle
from app.accounts.tables import MAX_NAME_LENGTH
from app.web.auth import SESSION_COOKIE, CurrentUser, safe_next
from app.web.deps import SessionDep, SettingsDep
from app.web.templating import render

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["accounts"])
SIGN_IN_FAILED = "That name and password do not match an account."


def _accounts_on(settings) -> None:
    if not settings.accounts:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "accounts are off on this instance (LORAPEDIA_ACCOUNTS)")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, settings: SettingsDep, next: str = "/"):
    """The sign-in form."""
    _accounts_on(settings)
    return render(request, "account/login.html", {"next": safe_next(next), "name": "", "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, settings: SettingsDep, session: SessionDep,
          name: Annotated[str, Form(max_length=MAX_NAME_LENGTH)] = "",
          password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "", next: Annotated[str, Form()] = "/"):
    """Check the password (argon2, in a worker thread), start a session and go back where the person came from."""
    _accounts_on(settings)
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else ""
    wait = throttle.retry_after(session, address, name)
    if wait:
        error = (f"Too many failed sign-ins from this address or for this name ({settings.login_failures} in "
                 f"{settings.login_window_seconds:,.0f} s, login_failures): try again in {wait} s.")
        return render(request, "account/login.html", {"next": safe_next(next), "name": name, "error": error},
                      status_code=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(wait)})
    account = authenticate(session, name, password)
    if account is None:
        throttle.failed(session, address, name)
        return render(request, "account/login.html", {"next": safe_next(next), "name": name, "error": SIGN_IN_FAILED},
                      status_code=status.HTTP_401_UNAUTHORIZED)
    throttle.succeeded(session, name)
    secret = create_session(session, account, settings.session_days)
    response = RedirectResponse(safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(SESSION_COOKIE, secret, max_age=int(settings.session_days * 86400), httponly=True,
                        samesite="lax", secure=settings.secure_cookies, path="/")
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep):
    """End this browser's session."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        delete_session(session, secret)
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, user: CurrentUser, session: SessionDep):
    """The signed-in account and its API tokens."""
    return _tokens_page(request, user, session)


def _tokens_page(request: Request, user: AccountPublic, session, new_secret: str | None = None, error: str | None = None,
                 status_code: int = 200):
    account = find_account(session, user.name)
    return render(request, "account/account.html", {"account": user, "tokens": list_tokens(session, account),
                                                      "new_secret": new_secret, "error": error}, status_code=status_code)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token_page(request: Request, user: CurrentUser, session: SessionDep, label: Annotated[str, Form(max_length=200)] = ""):
    """A new token, shown once on the page."""
    try:
        _, secret = create_token(session, find_account(session, user.name), label)
    except AccountError as error:
        return _tokens_page(request, user, session, error=str(error), status_code=422)
    return _tokens_page(request, user, session, new_secret=secret)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token_page(token_id: int, user: CurrentUser, session: SessionDep):
    """Revoke one of this account's tokens; back to the account page."""
    revoke_token(session, find_account(session, user.name), token_id)
    return RedirectResponse("/account", status_code=status.HTTP_303_SEE_OTHER)


class TokenCreate(BaseModel):
    """What POST /api/tokens accepts."""

    label: str = Field("token", max_length=MAX_NAME_LENGTH, description="A name to tell tokens apart.")


class TokenCreated(BaseModel):
    """A new token; `token` is shown this once and never stored."""

    id: int
    label: str
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")


@api.get("/me", summary="The signed-in account", responses={401: {"description": "Nobody is signed in"},
                                                          404: {"description": "Accounts are off"}})
def me(user: CurrentUser) -> AccountPublic:
    return user


@api.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create an API token for the signed-in account",
          responses={401: {"description": "Nobody is signed in"}, 404: {"description": "Accounts are off"},
                     422: {"description": "Too many tokens, or a bad label"}})
def create_api_token(body: TokenCreate, user: CurrentUser, session: SessionDep) -> TokenCreated:
    try:
        token, secret = create_token(session, find_account(session, user.name), body.label)
    except AccountError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": ["body", "label"], "msg": str(error), "type": "value_error"}]) from error
    return TokenCreated(id=token.id, label=token.label, token=secret)


@api.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke one of the account's tokens",
            responses={401: {"description": "Nobody is signed in"}, 404: {"description": "No such token of this account"}})
def revoke_api_token(token_id: int, user: CurrentUser, session: SessionDep) -> None:
    if not revoke_token(session, find_account(session, user.name), token_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id} of this account")
