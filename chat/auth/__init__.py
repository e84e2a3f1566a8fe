"""Accounts: users and passwords, login sessions, API tokens, and who a request is (team mode).

Sits between the engine and the views: the pages and the HTTP API ask ``Accounts`` who a request is, and pass the
resulting ``Account`` to the engine, which applies ownership, allowed models and limits (``engine.policy``).
"""

from .accounts import Accounts, LoginFailed, WeakPassword, session_secret
from .passwords import hash_password, verify_password

__all__ = ["Accounts", "LoginFailed", "WeakPassword", "hash_password", "session_secret", "verify_password"]
