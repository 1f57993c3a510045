"""SQLModel tables of accounts: the user, their API tokens, their browser sessions (secrets stored hashed), failed sign-ins."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

MAX_NAME_LENGTH = 64


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class Account(SQLModel, table=True):
    """A person who can sign in; an admin may cancel and download anyone's jobs."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=MAX_NAME_LENGTH, unique=True, index=True)
    password_hash: str = Field(max_length=200, description="argon2id, with its parameters and salt.")
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class AccountPublic(SQLModel):
    """An account as pages and the API show it."""

    id: int
    name: str
    is_admin: bool


class ApiToken(SQLModel, table=True):
    """A bearer token for the API; only its SHA-256 is kept, so a database leak yields no usable token."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    label: str = Field(max_length=MAX_NAME_LENGTH)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class BrowserSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds a random secret, the table its SHA-256 and expiry."""

    __tablename__ = "browser_session"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    secret_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class LoginFailure(SQLModel, table=True):
    """One failed sign-in counted against a client address or an account name, kept as a SHA-256 of the key."""

    __tablename__ = "login_failure"

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, index=True)
    failed_at: float = Field(index=True, description="Unix time in seconds: every web process reads the same clock.")
