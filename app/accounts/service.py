"""Accounts, tokens and sessions: create, authenticate, look up; secrets are random and only their hashes stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.accounts.passwords import hash_password, needs_rehash, verify_password
from app.accounts.tables import MAX_NAME_LENGTH, Account, ApiToken, BrowserSession, utcnow

NAME_PATTERN = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_NAME_LENGTH}}}")
TOKEN_PREFIX = "lpt_"  # makes a leaked token recognisable to secret scanners and in logs
MAX_SECRET_LENGTH = 200
MAX_TOKENS_PER_ACCOUNT = 20


class AccountError(ValueError):
    """A request about accounts that cannot be done (a taken name, a weak password, too many tokens)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_account(session: Session, name: str, password: str, is_admin: bool = False) -> Account:
    """A new account; AccountError when the name is malformed or taken or the password too short."""
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(f"a name is 1 to {MAX_NAME_LENGTH} letters, digits, '.', '_' or '-'")
    try:
        account = Account(name=name, password_hash=hash_password(password), is_admin=is_admin)
    except ValueError as error:
        raise AccountError(str(error)) from error
    session.add(account)
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise AccountError(f"the name {name!r} is taken") from error
    session.refresh(account)
    return account


def find_account(session: Session, name: str) -> Account | None:
    """The account with this name, or None."""
    if not NAME_PATTERN.fullmatch(name):
        return None
    return session.exec(select(Account).where(Account.name == name)).first()


def authenticate(session: Session, name: str, password: str) -> Account | None:
    """The account when name and password match, else None (an unknown name takes as long as a wrong password)."""
    account = find_account(session, name)
    if not verify_password(account.password_hash if account else None, password):
        return None
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
        session.add(account)
        session.commit()
        session.refresh(account)
    return account


def create_token(session: Session, account: Account, label: str) -> tuple[ApiToken, str]:
    """A new API token for the account and its secret, which is shown once and never stored."""
    label = label.strip() or "token"
    if len(label) > MAX_NAME_LENGTH:
        raise AccountError(f"a token label is at most {MAX_NAME_LENGTH} characters")
    if len(list_tokens(session, account)) >= MAX_TOKENS_PER_ACCOUNT:
        raise AccountError(f"an account holds at most {MAX_TOKENS_PER_ACCOUNT} tokens; revoke one first")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(account_id=account.id, label=label, token_hash=_digest(secret))
    session.add(token)
    session.commit()
    session.refresh(token)
    return token, secret


def list_tokens(session: Session, account: Account) -> list[ApiToken]:
    """The account's tokens, oldest first."""
    return list(session.exec(select(ApiToken).where(ApiToken.account_id == account.id).order_by(ApiToken.id)).all())


def revoke_token(session: Session, account: Account, token_id: int) -> bool:
    """Delete one of the account's tokens; False when it has no such token."""
    deleted = session.execute(delete(ApiToken).where(ApiToken.id == token_id, ApiToken.account_id == account.id)).rowcount
    session.commit()
    return deleted == 1


def token_account(session: Session, secret: str) -> Account | None:
    """The account a bearer token belongs to, or None for an unknown token."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    row = session.exec(select(ApiToken, Account).join(Account, Account.id == ApiToken.account_id)
                       .where(ApiToken.token_hash == _digest(secret))).first()
    if row is None:
        return None
    token, account = row
    session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=utcnow()))
    session.commit()
    return account


def create_session(session: Session, account: Account, days: float) -> str:
    """A new browser session for the account; its secret goes in the cookie."""
    secret = secrets.token_urlsafe(32)
    session.add(BrowserSession(account_id=account.id, secret_hash=_digest(secret), expires_at=utcnow() + timedelta(days=days)))
    session.commit()
    return secret


def session_account(session: Session, secret: str) -> Account | None:
    """The account of an unexpired browser session, or None."""
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None
    row = session.exec(select(Account).join(BrowserSession, BrowserSession.account_id == Account.id)
                       .where(BrowserSession.secret_hash == _digest(secret), BrowserSession.expires_at > utcnow())).first()
    return row


def delete_session(session: Session, secret: str) -> None:
    """Sign a browser out (and drop every expired session while at it)."""
    session.execute(delete(BrowserSession).where((BrowserSession.secret_hash == _digest(secret)) | (BrowserSession.expires_at <= utcnow())))
    session.commit()
