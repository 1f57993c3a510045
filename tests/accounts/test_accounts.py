"""Accounts: argon2id passwords, tokens and sessions kept only as hashes, expiry, names and limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from app.accounts import AccountError, authenticate, create_account, create_session, create_token, delete_session
from app.accounts import revoke_token, session_account, token_account
from app.accounts.tables import ApiToken, BrowserSession, utcnow
from app.jobs.db import init_db, make_engine


@pytest.fixture
def session(settings):
    engine = make_engine(settings)
    init_db(engine)
    with Session(engine) as db:
        yield db
    engine.dispose()


def test_a_password_is_stored_as_argon2id_and_only_the_right_one_signs_in(session):
    account = create_account(session, "ada", "correct horse battery")
    assert account.password_hash.startswith("$argon2id$") and "correct horse" not in account.password_hash
    assert authenticate(session, "ada", "correct horse battery").id == account.id
    assert authenticate(session, "ada", "correct horse batterY") is None
    assert authenticate(session, "nobody", "correct horse battery") is None


@pytest.mark.parametrize(("name", "password", "reason"), [
    ("ada", "short", "at least 10 characters"),
    ("ada lovelace", "long enough password", "letters, digits"),
    ("x" * 65, "long enough password", "1 to 64"),
])
def test_bad_names_and_weak_passwords_are_refused_saying_why(session, name, password, reason):
    with pytest.raises(AccountError, match=reason):
        create_account(session, name, password)


def test_a_taken_name_is_refused(session):
    create_account(session, "ada", "long enough password")
    with pytest.raises(AccountError, match="taken"):
        create_account(session, "ada", "another long password")


def test_a_token_is_shown_once_stored_hashed_and_stops_working_when_revoked(session):
    account = create_account(session, "ada", "long enough password")
    token, secret = create_token(session, account, "ci")
    stored = session.exec(select(ApiToken)).one()
    assert secret.startswith("lpt_") and secret not in stored.token_hash and len(stored.token_hash) == 64
    assert token_account(session, secret).name == "ada"
    assert token_account(session, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert session.exec(select(ApiToken)).one().last_used_at is not None
    assert revoke_token(session, account, token.id)
    assert token_account(session, secret) is None


def test_a_session_ends_when_it_expires_or_signs_out(session):
    account = create_account(session, "ada", "long enough password")
    first, second = create_session(session, account, days=1), create_session(session, account, days=1)
    assert session_account(session, first).name == "ada"
    delete_session(session, first)
    assert session_account(session, first) is None and session_account(session, second) is not None
    session.execute(update(BrowserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert session_account(session, second) is None
