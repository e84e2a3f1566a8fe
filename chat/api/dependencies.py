"""What every ``/api`` and ``/v1`` route depends on: the services that answer it, and who the request is.

``install(app, services)`` puts the ``ApiServices`` on the app (``app.state.parley``); the module-level routers read
them through the dependencies below, so the routes are plain functions of importable routers.

**Who a request is.** In team mode (at least one user in the database when Parley started) a request must carry an
API token (``Authorization: Bearer parley_…``) or the browser's login session cookie; ``chat.auth.http
.connection_account`` decides. In personal mode (no users) every request is ``LOCAL`` and nothing is asked. A request
that is not logged in is refused with ``NotAuthenticated`` (401), which ``/api`` answers as ``{"detail"}`` with
``WWW-Authenticate: Bearer`` (RFC 6750 §3) and ``/v1`` as OpenAI's ``invalid_api_key``. The dependency declares
FastAPI's ``HTTPBearer`` scheme, so ``/openapi.json`` has a ``bearerAuth`` security scheme and ``/docs`` an
"Authorize" button. Routers add it with ``dependencies=[Depends(current_account)]``, so no route under them can leave
it out; a route that needs the account asks for it again (FastAPI runs it once per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from ..auth import Accounts
from ..auth.http import connection_account
from ..engine import LOCAL, Account, Engine
from ..refusals import Refusal
from ..store import Store

#: Seconds between two heartbeat comments on an event stream.
HEARTBEAT_SECONDS = 15.0


@dataclass(frozen=True)
class ApiServices:
    """What the API routes are served by.

    Attributes:
        engine: answers, streams, cancels.
        store: read by the JSON views.
        accounts: who a request is; None: no accounts at all (every request is ``LOCAL``; for tests that mount the
            routes alone).
        heartbeat: seconds between two heartbeat comments on an event stream.
    """

    engine: Engine
    store: Store
    accounts: Accounts | None = None
    heartbeat: float = HEARTBEAT_SECONDS


def install(app: FastAPI, services: ApiServices) -> None:
    """Make ``services`` the ones the routers' dependencies give (``app.state.parley``)."""
    app.state.parley = services


def api_services(connection: HTTPConnection) -> ApiServices:
    """The services of the app this request (or WebSocket) came to."""
    return connection.app.state.parley


def engine_of(connection: HTTPConnection) -> Engine:
    """The engine that answers this request."""
    return api_services(connection).engine


def store_of(connection: HTTPConnection) -> Store:
    """The store this request reads."""
    return api_services(connection).store


class NotAuthenticated(Refusal):
    """Raised for a request without a valid API token or login session (team mode)."""

    status = 401
    code = "not_authenticated"

    def __init__(self) -> None:
        super().__init__(
            "Not logged in: send an API token (Authorization: Bearer parley_…, made on the Account page) or log in."
        )

    @property
    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate: Bearer`` (RFC 6750 §3)."""
        return {"WWW-Authenticate": "Bearer"}


#: The OpenAPI security scheme: the "Authorize" button of ``/docs`` (``auto_error=False``: ``current_account``
#: decides, also from the session cookie and in personal mode).
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="parley_…",
    description="An API token, `parley_…` (needed only when Parley has users). The browser's login session works too.",
    auto_error=False,
)


async def current_account(
    connection: HTTPConnection,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Account:
    """The account a request is made for (``LOCAL`` without accounts).

    Raises:
        NotAuthenticated: team mode, and the request has no valid API token (unknown, revoked, or its user disabled)
            and no valid login session.
    """
    accounts = api_services(connection).accounts
    if accounts is None:
        return LOCAL
    account = await connection_account(accounts, connection)
    if account is None:
        raise NotAuthenticated()
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]
EngineDep = Annotated[Engine, Depends(engine_of)]
StoreDep = Annotated[Store, Depends(store_of)]
