"""The one hook every state-changing form of the accounts pages calls: a hidden anti-forgery input.

The CSRF middleware (a separate change) replaces `form_token_field`; until then the forms rely on the
session cookie's SameSite=Lax, which keeps it off cross-site POSTs.
"""

from __future__ import annotations

from fastapi import Request
from markupsafe import Markup


def form_token_field(request: Request) -> Markup:
    """The hidden input carrying this request's anti-forgery token (none yet: see the module docstring)."""
    return Markup("")
