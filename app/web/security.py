"""Browser-facing protections: cross-site request refusal, CSRF tokens for forms, security headers, HEAD like GET.

The CSRF rule (README, "Security"):
- Every POST/PUT/PATCH/DELETE is refused with 403 when the browser says it comes from another site:
  `Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` that is not this site's (nor LORAPEDIA_PUBLIC_URL's).
- A form-encoded one (application/x-www-form-urlencoded, multipart/form-data, text/plain: what a page on
  another site can send without a CORS preflight) must also carry the CSRF token: a `csrf_token` form field
  or `X-CSRF-Token` header equal to the `lorapedia_csrf` cookie (double submit). Every form rendered here
  holds the token; htmx sends it as the header.
- JSON API calls need no token: a browser cannot send JSON to another origin without a preflight, which
  this server never grants; clients such as curl carry no ambient cookies to abuse.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.templating import render, templates

CSRF_COOKIE = "lorapedia_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
CROSS_SITE = frozenset({"cross-site", "same-site"})  # same-site: a sibling subdomain is another party too
TOKEN_BYTES = 32

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",  # no inline script: the templates load every script from /static
    "style-src 'self' 'unsafe-inline'",  # KaTeX and the memory bars position with style attributes
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (the template global `csrf_token()`); sets the cookie on the response if new."""
    state = request.scope.setdefault("state", {})
    token = state.get("csrf_token")
    if token is None:
        token = _cookie_token(request.scope) or secrets.token_urlsafe(TOKEN_BYTES)
        state["csrf_token"] = token
    state["csrf_used"] = True
    return token


def _cookie_token(scope: Scope) -> str | None:
    raw = dict(scope.get("headers") or []).get(b"cookie")
    if not raw:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header is the client's problem: treat it as absent
        return None
    morsel = cookie.get(CSRF_COOKIE)
    value = morsel.value if morsel else ""
    return value if 20 <= len(value) <= 100 and value.replace("-", "").replace("_", "").isalnum() else None


def _own_origins(scope: Scope, public_url: str | None) -> set[str]:
    request = Request(scope)
    origins = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if public_url:
        parts = urlsplit(public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origins


def _refused(scope: Scope, reason: str) -> Response:
    request = Request(scope)
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"detail": reason}, 403)
    return render(request, "pages/bad_request.html", {"errors": [{"field": "", "msg": reason}]}, status_code=403)


def cross_site_reason(scope: Scope, public_url: str | None) -> str | None:
    """Why a state-changing request looks cross-site, or None."""
    headers = Request(scope).headers
    fetch_site = headers.get("sec-fetch-site", "").lower()
    if fetch_site in CROSS_SITE:
        return f"this request came from another site (Sec-Fetch-Site: {fetch_site}); Lorapedia accepts changes only from its own pages"
    origin = headers.get("origin")
    if origin is not None and origin.lower().rstrip("/") not in _own_origins(scope, public_url):
        return f"this request came from another origin ({origin[:100]}); Lorapedia accepts changes only from its own pages"
    return None


async def _form_token(scope: Scope, body: bytes) -> str | None:
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, replay)
    try:
        form = await request.form(max_part_size=len(body) + 1)
    except Exception:  # an unparseable form has no token; the app reports the form itself
        return None
    try:
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    finally:
        await form.close()


class CrossSiteGuard:
    """Refuse state-changing requests from other sites, and form posts without the CSRF token (inside RequestGuard)."""

    def __init__(self, app: ASGIApp, public_url: str | None):
        self.app, self.public_url = app, public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            reason, receive = await self._check(scope, receive)
            if reason is not None:
                await _refused(scope, reason)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
        reason = cross_site_reason(scope, self.public_url)
        if reason is not None:
            return reason, receive
        content_type = Request(scope).headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in FORM_TYPES:
            return None, receive
        message = await receive()  # RequestGuard has read the whole (bounded) body: it comes as one message
        body = message.get("body", b"") if message["type"] == "http.request" else b""
        cookie = _cookie_token(scope)
        sent = Request(scope).headers.get(CSRF_HEADER) or await _form_token(scope, body)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return message
            return await receive()

        if cookie is None or sent is None or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return ("the form's security token is missing or out of date (it protects you from forms on other "
                    "sites posting here): reload the page and send the form again"), replay
        return None, replay


class SecurityHeaders:
    """Add the security headers and a new CSRF cookie to every response; answer HEAD as GET without the body."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}  # the state dict stays shared with the caller's scope
        await self.app(scope, receive, self._sending(scope, send, head))

    @staticmethod
    def _sending(scope: Scope, send: Send, head: bool) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    if name.decode() not in headers:
                        headers.raw.append((name, value))
                state = scope["state"]
                if state.get("csrf_used") and _cookie_token(scope) != state.get("csrf_token"):
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    headers.append("set-cookie", f"{CSRF_COOKIE}={state['csrf_token']}; Path=/; HttpOnly; SameSite=Lax{secure}")
                await send(message)
                if head:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if not head:
                await send(message)  # HEAD: the headers GET would send, and no body

        return wrapped


def install_templates() -> None:
    """`csrf_token()` for templates."""
    templates.env.globals["csrf_token"] = csrf_token
