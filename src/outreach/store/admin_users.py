"""Admin accounts: who may open the admin pages, with argon2-hashed passwords.

Accounts are created with ``outreach admin create-user``; the web app only verifies them.
Verification costs the same whether or not the user exists, so the login form does not tell
which usernames are taken.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from outreach.errors import OutreachError
from outreach.store.tables import admin_users

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist (computed once, on first use)."""
    return _hasher.hash("outreach: no such user, the same work is done anyway")


class AdminUserError(OutreachError):
    """An admin account cannot be created as asked (bad username or password)."""


class AdminUserExistsError(AdminUserError):
    """An admin account with this username exists already."""


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AdminUserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AdminUserError(f"the password is too long: at most {MAX_PASSWORD} characters")


def create_user(engine: Engine, username: str, password: str, *, now: datetime) -> None:
    """Create an admin account; ``AdminUserError`` explains what is wrong with the input."""
    if not USERNAME.match(username):
        raise AdminUserError(
            f"the username {username!r} cannot be used: 1 to 100 letters, digits or . _ @ -,"
            " starting with a letter or digit"
        )
    _check_password(password)
    row = {"username": username, "password_hash": _hasher.hash(password), "created_at": now}
    try:
        with engine.begin() as connection:
            if connection.scalar(
                select(admin_users.c.id).where(admin_users.c.username == username)
            ):
                raise AdminUserExistsError(f"an admin called {username!r} exists already")
            connection.execute(insert(admin_users).values(**row))
    except IntegrityError as err:  # created by another process in between
        raise AdminUserExistsError(f"an admin called {username!r} exists already") from err


def set_password(engine: Engine, username: str, password: str) -> None:
    """Give an existing admin a new password; ``AdminUserError`` when there is no such admin."""
    _check_password(password)
    with engine.begin() as connection:
        changed = connection.execute(
            update(admin_users)
            .where(admin_users.c.username == username)
            .values(password_hash=_hasher.hash(password))
        ).rowcount
    if not changed:
        raise AdminUserError(f"there is no admin called {username!r}")


def verify_user(engine: Engine, username: str, password: str) -> bool:
    """True when ``username`` exists and ``password`` is its password."""
    if len(password) > MAX_PASSWORD:
        return False
    with engine.connect() as connection:
        stored = connection.scalar(
            select(admin_users.c.password_hash).where(admin_users.c.username == username)
        )
    try:
        _hasher.verify(stored or _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if stored is None:
        return False
    if _hasher.check_needs_rehash(stored):
        with engine.begin() as connection:
            connection.execute(
                update(admin_users)
                .where(admin_users.c.username == username)
                .values(password_hash=_hasher.hash(password))
            )
    return True


def list_usernames(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(admin_users.c.username).order_by("username")))
