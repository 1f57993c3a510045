"""Accounts: users with argon2-hashed passwords, API bearer tokens and browser sessions (no web, no jobs)."""

from app.accounts.service import (
    AccountError,
    authenticate,
    create_account,
    create_session,
    create_token,
    delete_session,
    find_account,
    list_tokens,
    revoke_token,
    session_account,
    token_account,
)
from app.accounts.tables import Account, AccountPublic, ApiToken, BrowserSession

__all__ = [
    "Account", "AccountError", "AccountPublic", "ApiToken", "BrowserSession", "authenticate", "create_account",
    "create_session", "create_token", "delete_session", "find_account", "list_tokens", "revoke_token",
    "session_account", "token_account",
]
