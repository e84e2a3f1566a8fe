"""Registering Parley's routes leaves the app's lifespan as it was: FastAPI wraps it once per ``include_router``, and
NiceGUI's test simulation registers the routes again on the same app for every test (the nesting once grew past
Python's recursion limit in the middle of the suite)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from chat.api.routes import include_routers


def test_including_routers_does_not_nest_the_lifespan() -> None:
    app = FastAPI()
    before = app.router.lifespan_context
    for _ in range(3):
        include_routers(app, APIRouter(), APIRouter())
    assert app.router.lifespan_context is before
    plain = FastAPI()
    own = plain.router.lifespan_context
    plain.include_router(APIRouter())
    assert plain.router.lifespan_context is not own  # what include_router alone does (so this test can fail)
