"""(being built)"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .dependencies import current_account
from .errors import ApiRoute
from .rest import UNAUTHORIZED

router = APIRouter(
    prefix="/api",
    tags=["prompts and presets"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)
