"""Saved prompts (the composer's ``/`` library) and presets (settings to start a conversation from).

Every function takes a ``Store`` and opens its own short session (``store._session()``, as ``sharing.py`` does), so
it may be called from any thread (the views call them through ``asyncio.to_thread``). ``account`` is the engine's
``Account``: its ``owner`` is a user id in team mode and None in personal mode, where it matches every row (as
``Store``'s ``owner=`` does).

Rules:

* a user lists their own rows and every ``published`` one (an admin's, shared with everyone);
* only the owner changes or deletes a row: another user's id is ``NotFound``, the same answer as a missing id, so ids
  cannot be probed (a published row too: others may use it, not change it);
* only an admin may set ``published`` (``NotAdmin``, 403);
* at most one of a user's own presets is their default (``is_default``): setting one clears the others.

Placeholders are ``{{name}}`` (letters, digits, ``_``, ``-``, spaces; ``placeholders`` lists them in order).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, or_, select

from ..refusals import InvalidRequest, Refusal
from .models import Preset, SavedPrompt, utcnow
from .store import NotFound, Store

if TYPE_CHECKING:  # the engine imports the store: only for types
    from ..engine.policy import Account

#: Longest name of a prompt or a preset (the tables' ``max_length``).
MAX_NAME = 100
#: Longest prompt text or system prompt, in characters.
MAX_TEXT = 20_000
#: A ``{{placeholder}}`` in a prompt's text: group 1 is its name (trimmed by ``placeholders``).
PLACEHOLDER = re.compile(r"\{\{\s*([\w][\w \-]{0,49}?)\s*\}\}")


class NotAdmin(Refusal):
    """Raised when someone who is not an admin tries to publish a prompt or a preset (HTTP 403)."""

    status = 403
    code = "not_admin"


def placeholders(text: str) -> list[str]:
    """The distinct placeholder names of ``text`` in order of first appearance: ``"Hi {{ name }}, {{name}}"`` gives
    ``["name"]``."""
    return list(dict.fromkeys(match.group(1).strip() for match in PLACEHOLDER.finditer(text)))


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``{{placeholder}}`` replaced by ``values[name]`` (a missing name is left as it is). The
    values are inserted as they are, once: a value holding ``{{x}}`` is not filled again."""
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1).strip(), match.group(0)), text)


def _session(store: Store) -> Session:
    return store._session()  # the store package's own short session (see ``Store``)


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidRequest("A name is needed", field="name")
    if len(cleaned) > MAX_NAME:
        raise InvalidRequest(f"A name has at most {MAX_NAME} characters", field="name")
    return cleaned


def _check_text(text: str, field: str) -> str:
    if len(text) > MAX_TEXT:
        raise InvalidRequest(f"At most {MAX_TEXT} characters", field=field)
    return text


def _check_publish(account: Account, fields: dict[str, Any]) -> None:
    if fields.get("published") and not account.is_admin:
        raise NotAdmin("Only an admin may publish to everyone")


def _visible(table: type[SavedPrompt] | type[Preset], account: Account) -> Any:
    if account.owner is None:
        return select(table)
    return select(table).where(or_(table.user_id == account.owner, col(table.published).is_(True)))


def _owned(session: Session, table: type[SavedPrompt] | type[Preset], key: int, account: Account) -> Any:
    row = session.get(table, key)
    if row is None or (account.owner is not None and row.user_id != account.owner):
        raise NotFound(f"{'prompt' if table is SavedPrompt else 'preset'} {key} not found")
    return row


# -- saved prompts --------------------------------------------------------------------------------------------------


def list_prompts(store: Store, account: Account) -> list[SavedPrompt]:
    """The prompts ``account`` may insert: their own and the published ones, by name (case-insensitive), then id."""
    with _session(store) as session:
        rows = list(session.exec(_visible(SavedPrompt, account)))
    return sorted(rows, key=lambda row: (row.name.casefold(), row.id or 0))


def create_prompt(store: Store, account: Account, *, name: str, text: str, published: bool = False) -> SavedPrompt:
    """Save a new prompt of ``account``'s.

    Args:
        store: the database.
        account: its owner.
        name: shown in the ``/`` menu (whitespace collapsed; 1-100 characters).
        text: what is inserted, with ``{{placeholders}}`` (at most ``MAX_TEXT`` characters).
        published: every user has it (admins only).

    Returns:
        The stored prompt.

    Raises:
        InvalidRequest: a blank or too long name, a too long text (``field`` says which).
        NotAdmin: ``published`` by someone who is not an admin.
    """
    _check_publish(account, {"published": published})
    prompt = SavedPrompt(
        user_id=account.owner, name=_clean_name(name), text=_check_text(text, "text"), published=published
    )
    with _session(store) as session:
        session.add(prompt)
        session.commit()
        session.refresh(prompt)
        return prompt


def update_prompt(store: Store, account: Account, prompt_id: int, **fields: Any) -> SavedPrompt:
    """Change some of a prompt's ``name``, ``text``, ``published`` (the others stay); ``updated_at`` becomes now.

    Returns:
        The changed prompt.

    Raises:
        NotFound: no such prompt, or another user's.
        InvalidRequest: as for ``create_prompt``.
        NotAdmin: setting ``published`` without being an admin.
    """
    _check_publish(account, fields)
    with _session(store) as session:
        prompt = _owned(session, SavedPrompt, prompt_id, account)
        if "name" in fields:
            prompt.name = _clean_name(fields["name"])
        if "text" in fields:
            prompt.text = _check_text(fields["text"], "text")
        if "published" in fields:
            prompt.published = bool(fields["published"])
        prompt.updated_at = utcnow()
        session.add(prompt)
        session.commit()
        session.refresh(prompt)
        return prompt


def delete_prompt(store: Store, account: Account, prompt_id: int) -> None:
    """Delete one of ``account``'s prompts. Raises NotFound (missing, or another user's)."""
    with _session(store) as session:
        session.delete(_owned(session, SavedPrompt, prompt_id, account))
        session.commit()


# -- presets --------------------------------------------------------------------------------------------------------


def list_presets(store: Store, account: Account) -> list[Preset]:
    """The presets ``account`` may start from: their own and the published ones; their default first, then by name
    (case-insensitive), then id."""
    with _session(store) as session:
        rows = list(session.exec(_visible(Preset, account)))
    return sorted(rows, key=lambda row: (not _is_default_of(row, account), row.name.casefold(), row.id or 0))


def _is_default_of(preset: Preset, account: Account) -> bool:
    return preset.is_default and (account.owner is None or preset.user_id == account.owner)


def default_preset(store: Store, account: Account) -> Preset | None:
    """``account``'s default preset (one of their own), or None."""
    return next((row for row in list_presets(store, account) if _is_default_of(row, account)), None)


def _apply_preset_fields(preset: Preset, fields: dict[str, Any]) -> None:
    if "name" in fields:
        preset.name = _clean_name(fields["name"])
    if "system_prompt" in fields:
        preset.system_prompt = _check_text(fields["system_prompt"] or "", "system_prompt")
    if "model" in fields:
        preset.model = (fields["model"] or "").strip() or None
    if "temperature" in fields:
        temperature = fields["temperature"]
        if temperature is not None and not 0 <= float(temperature) <= 2:
            raise InvalidRequest("A temperature is 0 to 2", field="temperature")
        preset.temperature = None if temperature is None else float(temperature)
    if "tools" in fields:
        tools = fields["tools"]
        preset.tools = None if tools is None else list(dict.fromkeys(str(name) for name in tools))
    if "published" in fields:
        preset.published = bool(fields["published"])
    if "is_default" in fields:
        preset.is_default = bool(fields["is_default"])


def _clear_other_defaults(session: Session, preset: Preset) -> None:
    if not preset.is_default:
        return
    query = select(Preset).where(col(Preset.is_default).is_(True), Preset.id != preset.id)
    query = query.where(col(Preset.user_id).is_(None) if preset.user_id is None else Preset.user_id == preset.user_id)
    for other in session.exec(query):
        other.is_default = False
        session.add(other)


def create_preset(store: Store, account: Account, **fields: Any) -> Preset:
    """Save a new preset of ``account``'s.

    Args:
        store: the database.
        account: its owner.
        **fields: ``name`` (required, 1-100 characters), ``system_prompt`` (str), ``model`` (str; None or blank:
            the default model), ``temperature`` (0-2; None: the default), ``tools`` (names; None: every tool),
            ``is_default`` (bool: becomes the owner's one default), ``published`` (bool, admins only).

    Returns:
        The stored preset.

    Raises:
        InvalidRequest: a blank or too long name, a temperature out of 0..2, a too long system prompt.
        NotAdmin: ``published`` by someone who is not an admin.
    """
    _check_publish(account, fields)
    if "name" not in fields:
        raise InvalidRequest("A name is needed", field="name")
    preset = Preset(user_id=account.owner, name="")
    _apply_preset_fields(preset, fields)
    with _session(store) as session:
        session.add(preset)
        session.flush()
        _clear_other_defaults(session, preset)
        session.commit()
        session.refresh(preset)
        return preset


def update_preset(store: Store, account: Account, preset_id: int, **fields: Any) -> Preset:
    """Change some fields of one of ``account``'s presets (those of ``create_preset``; the others stay).

    Returns:
        The changed preset.

    Raises:
        NotFound: no such preset, or another user's.
        InvalidRequest, NotAdmin: as for ``create_preset``.
    """
    _check_publish(account, fields)
    with _session(store) as session:
        preset = _owned(session, Preset, preset_id, account)
        _apply_preset_fields(preset, fields)
        session.add(preset)
        _clear_other_defaults(session, preset)
        session.commit()
        session.refresh(preset)
        return preset


def set_default_preset(store: Store, account: Account, preset_id: int | None) -> Preset | None:
    """Make one of ``account``'s presets their default (clearing any other), or with None have no default.

    Returns:
        The default preset, or None.

    Raises:
        NotFound: no such preset, or another user's.
    """
    if preset_id is not None:
        return update_preset(store, account, preset_id, is_default=True)
    with _session(store) as session:
        query = select(Preset).where(col(Preset.is_default).is_(True))
        if account.owner is not None:
            query = query.where(Preset.user_id == account.owner)
        for preset in session.exec(query):
            preset.is_default = False
            session.add(preset)
        session.commit()
    return None


def delete_preset(store: Store, account: Account, preset_id: int) -> None:
    """Delete one of ``account``'s presets. Raises NotFound (missing, or another user's)."""
    with _session(store) as session:
        session.delete(_owned(session, Preset, preset_id, account))
        session.commit()
