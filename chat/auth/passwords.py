"""Password hashing: argon2id through argon2-cffi, with its default parameters (RFC 9106's second recommended
option: 64 MiB of memory, 3 passes, 4 lanes; about 50-100 ms per hash on this class of machine)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

#: A hash of a random password, verified against when a user name does not exist, so that a login for an unknown
#: name takes as long as one with a wrong password (names cannot be probed by timing).
_DUMMY_HASH = _hasher.hash("not a password: only for timing")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` in the PHC string format (``$argon2id$v=19$m=65536,t=3,p=4$…``)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; ``None`` (no such user) takes as long and is False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when ``password_hash`` was made with older parameters than argon2-cffi's current defaults."""
    return _hasher.check_needs_rehash(password_hash)
