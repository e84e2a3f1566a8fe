"""Users, logins, sessions and API tokens: the one place that decides who a request is.

Team mode is on when the database holds at least one user (``python app.py user add NAME``) when Parley starts;
then every page and API route needs a login session or an API token. Without users (personal mode) every request
is ``LOCAL``.

* **Login sessions.** A successful login creates a random token (32 bytes, URL-safe base64). The browser keeps it in
  Parley's session cookie, which Starlette's ``SessionMiddleware`` signs (HMAC-SHA1 through itsdangerous) with the
  session secret (``--storage-secret``, else generated once into ``<data-dir>/session-secret``); the database
  keeps only the token's SHA-256. Logout, a password change and disabling a user delete sessions, which logs the
  browsers out at their next request.
* **API tokens** (``Authorization: Bearer parley_…``): random, shown once, stored as their SHA-256 (a 256-bit random
  token needs no slow hash: there is nothing to guess), revocable.
* **Login attempts** are limited per client address and per user name with the ``limits`` library (a moving
  window of one minute); only failed attempts count, and a limited attempt is refused before the password is
  checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ..engine import LOCAL, Account, RateLimited
from ..refusals import Refusal
from ..store import ApiToken, NotFound, Store, User
from .passwords import hash_password, needs_rehash, verify_password

log = logging.getLogger(__name__)

#: Where the browser's signed session cookie keeps the login token.
SESSION_KEY = "login"
#: What every API token starts with (so a leaked one is recognisable, e.g. by secret scanners).
TOKEN_PREFIX = "parley_"
#: Shortest password accepted, in characters (NIST SP 800-63B §3.1.1.2 asks for at least 8).
MIN_PASSWORD_LENGTH = 8
#: A user name: 1 to 64 letters, digits, and . _ @ -
NAME_PATTERN = re.compile(r"[\w.@-]{1,64}")


class LoginFailed(Refusal, ValueError):
    """Raised when a name and password do not match an enabled user (one message for every cause)."""

    status = 401
    code = "login_failed"


class WeakPassword(Refusal, ValueError):
    """Raised when a new password is too short, or a user name is not valid."""

    status = 422
    code = "weak_password"


def token_hash(token: str) -> str:
    """The hex SHA-256 of a session or API token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_secret(data_dir: Path, configured: str | None = None) -> str:
    """The secret that signs the session cookie: ``configured`` when given, else the one in
    ``<data_dir>/session-secret``, generated (32 random bytes, URL-safe base64) and written there, readable by its
    owner only, when absent."""
    if configured:
        return configured
    path = data_dir / "session-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    return secret


def account_of(user: User) -> Account:
    """The engine's ``Account`` for a user."""
    return Account(
        user_id=user.id, name=user.name, is_admin=user.is_admin, models=user.allowed_models, tools=user.allowed_tools
    )


def check_name(name: str) -> str:
    """``name`` stripped, or WeakPassword when it is not 1-64 letters, digits, ``.``, ``_``, ``@`` or ``-``."""
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise WeakPassword("A user name is 1 to 64 letters, digits, dots, underscores, @ or hyphens.")
    return name


def check_password(password: str) -> str:
    """``password``, or WeakPassword when it is shorter than ``MIN_PASSWORD_LENGTH`` characters."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"A password has at least {MIN_PASSWORD_LENGTH} characters.")
    return password


@dataclass(frozen=True, slots=True)
class NewToken:
    """An API token just created: ``secret`` is shown once and never stored."""

    token: ApiToken
    secret: str


class Accounts:
    """Who a request is, and the operations on users, sessions and tokens.

    Args:
        store: where users, sessions and tokens are kept.
        login_attempts_per_ip: failed logins allowed per client address per minute.
        login_attempts_per_name: failed logins allowed per user name per minute.
        enabled: team mode; default: whether the database has a user now.
        storage: the ``limits`` storage URI of the failed-login counts (``redis://…``: shared by the replicas);
            None: this process's memory.
    """

    def __init__(
        self,
        store: Store,
        *,
        login_attempts_per_ip: int = 20,
        login_attempts_per_name: int = 5,
        enabled: bool | None = None,
        storage: str | None = None,
    ) -> None:
        self.store = store
        self.enabled = store.count_users() > 0 if enabled is None else enabled
        self._per_ip = RateLimitItemPerMinute(login_attempts_per_ip)
        self._per_name = RateLimitItemPerMinute(login_attempts_per_name)
        # shared by the replicas with ``storage`` (Redis); while it cannot be reached, logins are refused (fail closed)
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage) if storage else MemoryStorage())

    # -- users --------------------------------------------------------------------------------------

    def add_user(self, name: str, password: str, *, is_admin: bool = False) -> User:
        """Create a user (blocking; the password is hashed with argon2id). The first user created also owns every
        conversation made before accounts existed.

        Raises:
            WeakPassword: a name or password that is not accepted (see ``check_name``, ``check_password``).
            NameTaken: the name is in use.
        """
        return self.store.create_user(check_name(name), hash_password(check_password(password)), is_admin=is_admin)

    def set_password(self, user_id: int, password: str, *, keep_session: str | None = None) -> None:
        """Give a user a new password and log out their other browsers (every session but the one whose token is
        ``keep_session``). Blocking. Raises WeakPassword, NotFound."""
        self.store.update_user(user_id, password_hash=hash_password(check_password(password)))
        self.store.delete_login_sessions(user_id=user_id, keep=token_hash(keep_session) if keep_session else None)

    def change_password(self, account: Account, current: str, new: str, *, keep_session: str | None = None) -> None:
        """Change ``account``'s password after checking the current one (see ``set_password``). Blocking.

        Raises:
            RateLimited: too many wrong passwords for this name in the last minute (logins and changes count alike,
                so a stolen session cannot guess the password faster than a login could).
            LoginFailed: ``current`` is wrong.
            WeakPassword: ``new`` is too short.
        """
        assert account.user_id is not None, "personal mode has no password"
        self._check_attempts(None, account.name)
        if not verify_password(self.store.get_user(account.user_id).password_hash, current):
            self._failed(None, account.name)
            raise LoginFailed("The current password is wrong.")
        self.set_password(account.user_id, new, keep_session=keep_session)

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        """Disable a user (they are logged out and their API tokens stop working) or enable them again."""
        self.store.update_user(user_id, disabled=disabled)
        if disabled:
            self.store.delete_login_sessions(user_id=user_id)

    def set_models(self, user_id: int, models: Iterable[str] | None) -> None:
        """Which models a user may use; None for every model."""
        self.store.update_user(user_id, models=None if models is None else "\n".join(sorted(set(models))))

    # -- logging in -----------------------------------------------------------------------------------

    def _limits(self, address: str | None, name: str) -> list[tuple[RateLimitItemPerMinute, str]]:
        """The failed-login counters an attempt from ``address`` (None: not a login form) for ``name`` counts in."""
        counters = [(self._per_name, f"name:{name}")]
        return counters if address is None else [(self._per_ip, f"ip:{address}"), *counters]

    def _failed(self, address: str | None, name: str) -> None:
        """Count one failed attempt."""
        for item, key in self._limits(address, name):
            try:
                self._limiter.hit(item, "login", key)
            except Exception:  # the shared storage is down: the check before the next attempt refuses it
                log.warning("cannot count a failed login (the rate-limit storage is down)")

    def _check_attempts(self, address: str | None, name: str) -> None:
        for item, key in self._limits(address, name):
            try:
                allowed = self._limiter.test(item, "login", key)
            except Exception as error:  # fail closed: without the counts, password guessing would be unlimited
                log.warning("cannot check failed logins (%s); refusing logins until the storage is back", error)
                raise RateLimited("Logins are paused for a moment (the rate-limit store cannot be reached). "
                                  "Try again in a few seconds.", 5) from error  # fmt: skip
            if not allowed:
                reset = self._limiter.get_window_stats(item, "login", key).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                raise RateLimited(f"Too many failed logins. Try again in {wait} s.", wait)

    async def login(self, name: str, password: str, address: str) -> str:
        """Check a name and password; return a new session token to keep in the signed session cookie.

        Args:
            name: the user name (surrounding spaces ignored).
            password: as typed.
            address: the client's IP address (for the per-address limit).

        Raises:
            RateLimited: too many failed attempts from this address or for this name in the last minute.
            LoginFailed: no enabled user with this name and password (one message for every cause).
        """
        name = name.strip()
        self._check_attempts(address, name)
        user = await asyncio.to_thread(self.store.user_by_name, name)
        matches = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
        if user is None or not matches or user.disabled:
            self._failed(address, name)
            raise LoginFailed("Wrong user name or password.")
        assert user.id is not None
        if needs_rehash(user.password_hash):
            await asyncio.to_thread(self.store.update_user, user.id, password_hash=hash_password(password))
        token = secrets.token_urlsafe(32)
        await asyncio.to_thread(self.store.add_login_session, user.id, token_hash(token))
        return token

    def logout(self, session_token: str) -> None:
        """End a login session. Blocking."""
        self.store.delete_login_sessions(token_hash=token_hash(session_token))

    # -- who is asking --------------------------------------------------------------------------------

    def session_account(self, session_token: str | None) -> Account | None:
        """The account of a login session's token, or None (no token, logged out, user disabled or deleted).
        ``LOCAL`` in personal mode. Blocking (one indexed read)."""
        if not self.enabled:
            return LOCAL
        if not session_token:
            return None
        user = self.store.session_user(token_hash(session_token))
        return account_of(user) if user is not None and not user.disabled else None

    def token_account(self, bearer: str | None) -> Account | None:
        """The account of an API token (``Authorization: Bearer`` value), or None (unknown, revoked, user
        disabled). ``LOCAL`` in personal mode. Blocking (one indexed read)."""
        if not self.enabled:
            return LOCAL
        if not bearer or not bearer.startswith(TOKEN_PREFIX):
            return None
        user = self.store.token_user(token_hash(bearer))
        return account_of(user) if user is not None and not user.disabled else None

    # -- API tokens ----------------------------------------------------------------------------------

    def create_token(self, account: Account, name: str) -> NewToken:
        """Create an API token for ``account``; its ``secret`` is returned only here. Blocking."""
        assert account.user_id is not None, "personal mode needs no API tokens"
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        name = " ".join(name.split())[:100] or "API token"
        token = self.store.add_api_token(account.user_id, name, secret[: len(TOKEN_PREFIX) + 4], token_hash(secret))
        return NewToken(token, secret)

    def revoke_token(self, account: Account, token_id: int) -> None:
        """Revoke one of ``account``'s API tokens. Blocking. Raises NotFound (not one of theirs)."""
        if account.user_id is None:
            raise NotFound(f"API token {token_id} not found")
        self.store.delete_api_token(token_id, owner=account.user_id)
