"""Saved prompts and presets under ``/api``: thin views over ``chat/store/prompts.py``.

``GET/POST /api/prompts``, ``PATCH/DELETE /api/prompts/{prompt_id}``; ``GET/POST /api/presets``, ``PATCH/DELETE
/api/presets/{preset_id}``. A list holds the caller's own rows and every published one (``mine`` says which are
theirs); only the owner changes or deletes a row: another user's id answers 404 like a missing one. Only an admin may
set ``published`` (403 otherwise). Errors are ``{"detail": …}`` (``api/errors.py``); 422 for what the schema or the
store rejects (a blank name, a temperature out of 0..2).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from ..engine import Account
from ..store import Preset, SavedPrompt
from ..store import prompts as library
from .dependencies import CurrentAccount, StoreDep, current_account
from .errors import ApiRoute, ErrorOut
from .rest import UNAUTHORIZED, Temperature

router = APIRouter(
    prefix="/api",
    tags=["prompts and presets"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)

PromptId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A saved prompt's id.")]
PresetId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A preset's id.")]
Name = Annotated[str, Field(min_length=1, max_length=library.MAX_NAME, description="Shown in lists, 1-100 characters.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such row (or not yours)."}}
NOT_ADMIN: dict[int | str, dict[str, Any]] = {403: {"model": ErrorOut, "description": "Only admins may publish."}}
PUBLISHED = "Every user has it (admins only)."


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# -- bodies and responses ----------------------------------------------------------------------------


class PromptCreate(BaseModel):
    """A new saved prompt."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    text: str = Field(max_length=library.MAX_TEXT, description="What is inserted; may hold `{{placeholders}}`.")
    published: bool = Field(False, description=PUBLISHED)


class PromptUpdate(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(None, json_schema_extra=_no_default)
    text: str = Field(None, max_length=library.MAX_TEXT, json_schema_extra=_no_default)
    published: bool = Field(None, description=PUBLISHED, json_schema_extra=_no_default)


class PromptOut(BaseModel):
    """A saved prompt."""

    id: int
    name: str
    text: str
    placeholders: list[str] = Field(description="Its `{{placeholder}}` names, in order.")
    published: bool
    mine: bool = Field(description="Yours (you may change it); false for another user's published prompt.")
    created_at: datetime
    updated_at: datetime


class PresetCreate(BaseModel):
    """A new preset; only ``name`` is needed (the others: the server's defaults)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    system_prompt: str = Field("", max_length=library.MAX_TEXT)
    model: str | None = Field(None, description="null: the server's default model")
    temperature: Temperature | None = Field(None, description="null: the default temperature")
    tools: list[str] | None = Field(None, description="The tools on, by name (GET /api/tools); null: every tool.")
    is_default: bool = Field(False, description="Your default (clears your other default).")
    published: bool = Field(False, description=PUBLISHED)


class PresetUpdate(BaseModel):
    """The fields to change; those left out stay as they are (``"model": null`` goes back to the default)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(None, json_schema_extra=_no_default)
    system_prompt: str = Field(None, max_length=library.MAX_TEXT, json_schema_extra=_no_default)
    model: str | None = None
    temperature: Temperature | None = None
    tools: list[str] | None = None
    is_default: bool = Field(None, json_schema_extra=_no_default)
    published: bool = Field(None, description=PUBLISHED, json_schema_extra=_no_default)


class PresetOut(BaseModel):
    """A preset."""

    id: int
    name: str
    system_prompt: str
    model: str | None
    temperature: float | None
    tools: list[str] | None
    is_default: bool = Field(description="Your default (only ever one of yours).")
    published: bool
    mine: bool = Field(description="Yours (you may change it); false for another user's published preset.")
    created_at: datetime


def _mine(row: SavedPrompt | Preset, account: Account) -> bool:
    return account.owner is None or row.user_id == account.owner


def prompt_out(prompt: SavedPrompt, account: Account) -> PromptOut:
    """The response shape of ``prompt`` as ``account`` sees it."""
    assert prompt.id is not None
    return PromptOut(
        id=prompt.id, name=prompt.name, text=prompt.text, placeholders=library.placeholders(prompt.text),
        published=prompt.published, mine=_mine(prompt, account), created_at=prompt.created_at,
        updated_at=prompt.updated_at,
    )  # fmt: skip


def preset_out(preset: Preset, account: Account) -> PresetOut:
    """The response shape of ``preset`` as ``account`` sees it (``is_default`` only for their own)."""
    assert preset.id is not None
    mine = _mine(preset, account)
    return PresetOut(
        id=preset.id, name=preset.name, system_prompt=preset.system_prompt, model=preset.model,
        temperature=preset.temperature, tools=preset.tools, is_default=preset.is_default and mine,
        published=preset.published, mine=mine, created_at=preset.created_at,
    )  # fmt: skip


# -- prompts -----------------------------------------------------------------------------------------


@router.get("/prompts", response_model=list[PromptOut])
async def list_prompts(account: CurrentAccount, store: StoreDep) -> Any:
    """Your saved prompts and the published ones, by name."""
    rows = await asyncio.to_thread(library.list_prompts, store, account)
    return [prompt_out(row, account) for row in rows]


@router.post("/prompts", response_model=PromptOut, status_code=201, responses=NOT_ADMIN)
async def create_prompt(body: PromptCreate, account: CurrentAccount, store: StoreDep) -> Any:
    """Save a prompt."""
    prompt = await asyncio.to_thread(lambda: library.create_prompt(store, account, **body.model_dump()))
    return prompt_out(prompt, account)


@router.patch("/prompts/{prompt_id}", response_model=PromptOut, responses={**NOT_FOUND, **NOT_ADMIN})
async def update_prompt(prompt_id: PromptId, body: PromptUpdate, account: CurrentAccount, store: StoreDep) -> Any:
    """Change one of your prompts."""
    fields = body.model_dump(exclude_unset=True)
    prompt = await asyncio.to_thread(lambda: library.update_prompt(store, account, prompt_id, **fields))
    return prompt_out(prompt, account)


@router.delete("/prompts/{prompt_id}", status_code=204, responses=NOT_FOUND)
async def delete_prompt(prompt_id: PromptId, account: CurrentAccount, store: StoreDep) -> Response:
    """Delete one of your prompts."""
    await asyncio.to_thread(library.delete_prompt, store, account, prompt_id)
    return Response(status_code=204)


# -- presets -----------------------------------------------------------------------------------------


@router.get("/presets", response_model=list[PresetOut])
async def list_presets(account: CurrentAccount, store: StoreDep) -> Any:
    """Your presets and the published ones: your default first, then by name."""
    rows = await asyncio.to_thread(library.list_presets, store, account)
    return [preset_out(row, account) for row in rows]


@router.post("/presets", response_model=PresetOut, status_code=201, responses=NOT_ADMIN)
async def create_preset(body: PresetCreate, account: CurrentAccount, store: StoreDep) -> Any:
    """Save a preset."""
    preset = await asyncio.to_thread(lambda: library.create_preset(store, account, **body.model_dump()))
    return preset_out(preset, account)


@router.patch("/presets/{preset_id}", response_model=PresetOut, responses={**NOT_FOUND, **NOT_ADMIN})
async def update_preset(preset_id: PresetId, body: PresetUpdate, account: CurrentAccount, store: StoreDep) -> Any:
    """Change one of your presets (``"is_default": true`` makes it your one default)."""
    fields = body.model_dump(exclude_unset=True)
    preset = await asyncio.to_thread(lambda: library.update_preset(store, account, preset_id, **fields))
    return preset_out(preset, account)


@router.delete("/presets/{preset_id}", status_code=204, responses=NOT_FOUND)
async def delete_preset(preset_id: PresetId, account: CurrentAccount, store: StoreDep) -> Response:
    """Delete one of your presets."""
    await asyncio.to_thread(library.delete_preset, store, account, preset_id)
    return Response(status_code=204)
