"""Who an API request is: the one FastAPI dependency every ``/api`` and ``/v1`` route gets from its router.

In team mode (at least one user in the database when Parley started) a request must carry an API token
(``Authorization: Bearer parley_…``) or the browser's login session cookie; ``chat.auth.http.connection_account``
decides. In personal mode (no users) every request is ``LOCAL`` and nothing is asked.

* ``authenticator(accounts, refuse)`` builds the dependency: it returns the request's ``Account`` or raises what
  ``refuse()`` makes, so ``/api`` answers 401 ``{"detail"}`` with ``WWW-Authenticate: Bearer`` (``not_authenticated``)
  and ``/v1`` answers 401 in OpenAI's shape (``openai_compat``).
* The dependency declares FastAPI's ``HTTPBearer`` scheme, so ``/openapi.json`` has a ``bearerAuth`` security scheme
  and ``/docs`` an "Authorize" button for the token.
* Routers add it with ``dependencies=[Depends(dependency)]``, so no route under them can leave it out; a route that
  needs the account asks for the same dependency again (FastAPI runs it once per request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..auth import Accounts
from ..auth.http import connection_account
from ..engine import LOCAL, Account

#: What a request without a valid token or login session is told.
NOT_AUTHENTICATED = (
    "Not logged in: send an API token (Authorization: Bearer parley_…, made on the Account page) or log in."
)

#: The OpenAPI security scheme: the "Authorize" button of ``/docs`` (``auto_error=False``: the dependency below
#: decides, also from the session cookie and in personal mode).
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="parley_…",
    description="An API token, `parley_…` (needed only when Parley has users). The browser's login session works too.",
    auto_error=False,
)


def not_authenticated() -> HTTPException:
    """The ``/api`` refusal of a request that is not authenticated: 401 ``{"detail"}``, ``WWW-Authenticate: Bearer``
    (RFC 6750 §3)."""
    return HTTPException(401, NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})


def authenticator(
    accounts: Accounts | None, refuse: Callable[[], Exception] = not_authenticated
) -> Callable[..., Awaitable[Account]]:
    """The FastAPI dependency that returns the request's ``Account``.

    Args:
        accounts: who is who; None: personal mode without accounts at all (every request is ``LOCAL``; for tests
            that mount the routes alone).
        refuse: makes the exception raised for a request that is not authenticated.

    Returns:
        An async dependency ``(request, credentials) -> Account``.

    Raises (the dependency):
        whatever ``refuse()`` returns, when ``accounts`` is in team mode and the request has no valid API token
        (unknown, revoked, or its user disabled) and no valid login session.
    """

    async def current_account(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    ) -> Account:
        if accounts is None:
            return LOCAL
        account = await connection_account(accounts, request)
        if account is None:
            raise refuse()
        return account

    return current_account
