"""The one hook every state-changing form of the accounts pages calls: a hidden anti-forgery input."""

from __future__ import annotations

from fastapi import Request
from markupsafe import Markup


def form_token_field(request: Request) -> Markup:
    """The hidden input carrying this browser's CSRF token, which app.web.security checks on every form post."""
    from app.web.security import csrf_token  # security renders templates, whose globals include this hook

    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf_token(request))
