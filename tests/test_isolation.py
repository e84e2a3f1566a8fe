"""One user cannot read, change or follow another user's conversations through the HTTP API (team mode): the real
app.py in a subprocess on the fake upstream, reached over real HTTP and WebSockets.

ann makes a conversation with an answer and a second variant of it; bob then tries every ``/api`` route that takes an
id, with each of ann's ids (the conversation, her message, the answer), by API token and by login session. Each must
answer 404 exactly as for an id that does not exist (the answer's WebSocket: close code 4404), and ann's rows in the
database (every column) must be the same before and after."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from .browser import assert_no_errors
from .fake_upstream import FakeUpstream
from .helpers import Team, logged_in, read_answer, start_team, ws_close_code, ws_url

#: Words only ann's conversation holds.
SECRET_TITLE = "Ann's secret rivers"
SECRET_QUESTION = "Where does the hidden river of Ann go?"


@dataclass
class Ann:
    """ann's conversation: its ids, and her token."""

    conversation: int
    question: int
    answer: int
    variant: int
    token: str
    share: int = 0
    prompt: int = 0
    preset: int = 0
    attachment: int = 0  # sent with her question
    pending: int = 0  # uploaded, not sent yet


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream) -> Iterator[Team]:
    """app.py with users ann and bob; one process for the module."""
    fake_upstream_server.reset()
    with start_team(tmp_path_factory.mktemp("isolation"), fake_upstream_server, ("ann", "bob")) as (process, team):
        yield team
        assert_no_errors(process)


@pytest.fixture(scope="module")
def ann(team: Team) -> Ann:
    """ann's conversation, made over the API with her token: a question, its answer and a regenerated variant."""
    token = team.token("ann")
    with team.client(token) as client:
        created = client.post("/api/conversations", json={"title": SECRET_TITLE, "system_prompt": "Be secret."})
        assert created.status_code == 201, created.text
        conversation_id = created.json()["id"]
        uploaded = [client.post("/api/attachments", files={"file": ("secret.png", tiny_png(), "image/png")})
                    for _ in range(2)]  # fmt: skip
        assert all(u.status_code == 201 for u in uploaded), uploaded[0].text
        attachment, pending = (u.json()["id"] for u in uploaded)
        first = read_answer(
            client, "POST", f"/api/conversations/{conversation_id}/messages",
            {"content": SECRET_QUESTION, "attachments": [attachment]},
        )  # fmt: skip
        variant = read_answer(client, "POST", f"/api/messages/{first['assistant_message_id']}/regenerate", {})
        shared = client.post(f"/api/conversations/{conversation_id}/share", json={"audience": "users"})
        assert shared.status_code == 201, shared.text
        prompt = client.post("/api/prompts", json={"name": "Ann's prompt", "text": SECRET_QUESTION})
        assert prompt.status_code == 201, prompt.text
        preset = client.post("/api/presets", json={"name": "Ann's preset", "system_prompt": SECRET_QUESTION})
        assert preset.status_code == 201, preset.text
    return Ann(conversation_id, first["user_message_id"], first["assistant_message_id"],
               variant["assistant_message_id"], token, shared.json()["id"], prompt.json()["id"],
               preset.json()["id"], attachment, pending)  # fmt: skip


@pytest.fixture(scope="module", params=["token", "session"])
def bob(request: pytest.FixtureRequest, team: Team) -> Iterator[httpx.Client]:
    """bob's client: by API token, or by login session (the browser's cookie)."""
    client = team.client(team.token("bob")) if request.param == "token" else logged_in(team.url, "bob")
    try:
        yield client
    finally:
        client.close()


def tiny_png() -> bytes:
    """A 4×4 PNG."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


_bobs: dict[int, int] = {}


def bobs_conversation(bob: httpx.Client) -> int:
    """A conversation of bob's own (made once per client)."""
    if id(bob) not in _bobs:
        created = bob.post("/api/conversations", json={"title": "Bob's"})
        assert created.status_code == 201, created.text
        _bobs[id(bob)] = created.json()["id"]
    return _bobs[id(bob)]


def snapshot(team: Team, ann: Ann) -> dict[str, Any]:
    """ann's rows, every column: her conversation and its messages; and how many rows each table has."""
    with team.db() as db:
        return {
            "conversation": db.execute("SELECT * FROM conversation WHERE id = ?", (ann.conversation,)).fetchall(),
            "messages": db.execute(
                "SELECT * FROM message WHERE conversation_id = ? ORDER BY id", (ann.conversation,)
            ).fetchall(),
            "library": [
                db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # noqa: S608  # fixed names
                for table in ("saved_prompt", "preset")
            ],
            "counts": [
                db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]  # noqa: S608  # fixed names
                for table in ("conversation", "message", "attachment", "blob")
            ],
        }


#: Every /api route that names a conversation or message: (method, path, JSON body). ``{conversation}``,
#: ``{question}``, ``{answer}`` and ``{variant}`` are ann's ids.
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "get conversation": ("GET", "/api/conversations/{conversation}", None),
    "rename conversation": ("PATCH", "/api/conversations/{conversation}", {"title": "Bob was here"}),
    "change model": ("PATCH", "/api/conversations/{conversation}", {"model": "other-model"}),
    "patch with a bad body": ("PATCH", "/api/conversations/{conversation}", {"temperature": 9}),
    "delete conversation": ("DELETE", "/api/conversations/{conversation}", None),
    "send message": ("POST", "/api/conversations/{conversation}/messages", {"content": "Bob's message"}),
    "get question": ("GET", "/api/messages/{question}", None),
    "get answer": ("GET", "/api/messages/{answer}", None),
    "get variant": ("GET", "/api/messages/{variant}", None),
    "stream answer": ("GET", "/api/messages/{answer}/stream", None),
    "resume answer": ("GET", "/api/messages/{variant}/stream?offset=3", None),
    "stream question": ("GET", "/api/messages/{question}/stream", None),
    "cancel answer": ("POST", "/api/messages/{variant}/cancel", None),
    "cancel question": ("POST", "/api/messages/{question}/cancel", None),
    "regenerate answer": ("POST", "/api/messages/{answer}/regenerate", {"temperature": 1.5}),
    "regenerate question": ("POST", "/api/messages/{question}/regenerate", None),
    "edit question": ("POST", "/api/messages/{question}/edit", {"content": "Bob's edit"}),
    "select a branch": ("POST", "/api/messages/{variant}/select", None),
    "delete a message": ("DELETE", "/api/messages/{answer}", None),
    "fork at a message": ("POST", "/api/messages/{question}/fork", None),
    "share conversation": ("POST", "/api/conversations/{conversation}/share", {"audience": "anyone"}),
    "revoke a share": ("DELETE", "/api/shares/{share}", None),
    "export conversation": ("GET", "/api/conversations/{conversation}/export?format=json", None),
    "export as markdown": ("GET", "/api/conversations/{conversation}/export?format=markdown", None),
    "approve a tool call": ("POST", "/api/tool-calls/{call}/approve", {"always": True}),
    "deny a tool call": ("POST", "/api/tool-calls/{call}/deny", None),
    "change a prompt": ("PATCH", "/api/prompts/{prompt}", {"text": "Bob's text"}),
    "delete a prompt": ("DELETE", "/api/prompts/{prompt}", None),
    "change a preset": ("PATCH", "/api/presets/{preset}", {"is_default": True}),
    "delete a preset": ("DELETE", "/api/presets/{preset}", None),
    "describe an attachment": ("GET", "/api/attachments/{attachment}", None),
    "an attachment's bytes": ("GET", "/api/attachments/{attachment}/content", None),
    "an attachment's thumbnail": ("GET", "/api/attachments/{attachment}/thumbnail", None),
    "a document's text": ("GET", "/api/attachments/{attachment}/text", None),
    "delete an unsent attachment": ("DELETE", "/api/attachments/{pending}", None),
    "send her attachment": ("POST", "/api/conversations/{bobs}/messages", {"content": "mine?", "attachments": [0]}),
    "compare in her conversation": (
        "POST",
        "/api/conversations/{conversation}/compare",
        {"content": "Bob's", "models": ["fake-model", "fake-model"]},
    ),
    "pick her answer": ("POST", "/api/messages/{variant}/pick", None),
}


def test_every_route_with_an_id_is_checked_here(team: Team, ann: Ann) -> None:
    """A new route that takes an id must get a case in ROUTES (and so be checked for ownership)."""
    with team.client(ann.token) as client:
        document = client.get("/openapi.json").json()
    documented = {
        (method.upper(), path) for path, operations in document["paths"].items() if "{" in path for method in operations
    }
    placeholders = {"{conversation}": "{conversation_id}", "{question}": "{message_id}", "{answer}": "{message_id}",
                    "{variant}": "{message_id}", "{call}": "{call_id}", "{share}": "{share_id}",
                    "{prompt}": "{prompt_id}", "{preset}": "{preset_id}", "{attachment}": "{attachment_id}",
                    "{pending}": "{attachment_id}", "{bobs}": "{conversation_id}"}  # fmt: skip
    covered = set()
    for method, path, _body in ROUTES.values():
        path = path.partition("?")[0]
        for mine, theirs in placeholders.items():
            path = path.replace(mine, theirs)
        covered.add((method, path))
    assert documented <= covered, documented - covered


@pytest.mark.parametrize("route", list(ROUTES))
def test_another_users_ids_are_not_found_and_nothing_changes(
    team: Team, ann: Ann, bob: httpx.Client, route: str
) -> None:
    method, template, body = ROUTES[route]
    ids = {"conversation": ann.conversation, "question": ann.question, "answer": ann.answer, "variant": ann.variant,
           "call": "call_ann", "share": ann.share, "prompt": ann.prompt, "preset": ann.preset,
           "attachment": ann.attachment, "pending": ann.pending, "bobs": bobs_conversation(bob)}  # fmt: skip
    before = snapshot(team, ann)
    if body is not None and body.get("attachments") == [0]:  # her attachment's id in bob's own message
        body = {**body, "attachments": [ann.pending]}
        missing_body = {**body, "attachments": [999_999]}
    else:
        missing_body = body

    response = bob.request(method, template.format(**ids), json=body)
    missing = bob.request(method, template.format(**{**dict.fromkeys(ids, 999_999), "bobs": ids["bobs"]}),
                          json=missing_body)  # fmt: skip

    assert response.status_code == 404, response.text
    assert missing.status_code == 404, missing.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert "not found" in detail and SECRET_TITLE not in detail and SECRET_QUESTION not in detail
    assert SECRET_QUESTION not in response.text
    assert snapshot(team, ann) == before


def test_another_users_answer_websocket_closes_as_unknown(team: Team, ann: Ann, bob: httpx.Client) -> None:
    before = snapshot(team, ann)
    if "authorization" in bob.headers:
        headers = {"Authorization": bob.headers["authorization"]}
    else:
        headers = {"Cookie": "; ".join(f"{name}={value}" for name, value in bob.cookies.items())}
    for message_id in (ann.answer, ann.variant, ann.question, 999_999):
        assert ws_close_code(ws_url(team.url, message_id), headers) == 4404, message_id
    assert snapshot(team, ann) == before
    # ann herself follows it to the end
    assert ws_close_code(ws_url(team.url, ann.answer), {"Authorization": f"Bearer {ann.token}"}) == 1000


def test_lists_and_new_conversations_are_each_users_own(team: Team, ann: Ann, bob: httpx.Client) -> None:
    before = snapshot(team, ann)
    listed = bob.get("/api/conversations")
    assert listed.status_code == 200
    assert ann.conversation not in [c["id"] for c in listed.json()] and SECRET_TITLE not in listed.text

    # bob's own conversations, by /api and by /v1, are bob's: ann does not see them, bob does
    created = bob.post("/api/conversations", json={"title": "Bob's own"})
    assert created.status_code == 201
    completion = bob.post("/v1/chat/completions", json={"model": "", "messages": [{"role": "user", "content": "B?"}]})
    assert completion.status_code == 200, completion.text
    bobs = {created.json()["id"], int(completion.headers["x-parley-conversation-id"])}
    with team.db() as db:
        owners = {row["user_id"] for row in db.execute(
            f"SELECT user_id FROM conversation WHERE id IN ({','.join('?' * len(bobs))})", tuple(bobs)  # noqa: S608
        )}  # fmt: skip
    assert owners == {team.users["bob"].user_id}
    assert bobs <= {c["id"] for c in bob.get("/api/conversations").json()}
    with team.client(ann.token) as client:
        anns = {c["id"] for c in client.get("/api/conversations").json()}
        assert ann.conversation in anns and not anns & bobs
        # ...and ann gets 404 for bob's, too
        assert client.get(f"/api/conversations/{created.json()['id']}").status_code == 404
    after = snapshot(team, ann)
    assert (after["conversation"], after["messages"]) == (before["conversation"], before["messages"])


def test_another_users_conversation_page_shows_none_of_it(team: Team, ann: Ann) -> None:
    """The page ``/c/{id}`` as bob answers 404 and holds neither ann's title nor her words (NiceGUI puts a page's
    first elements in its HTML: ann's own page does show them, so the check can see a leak)."""
    for name, present in (("ann", True), ("bob", False)):
        client = logged_in(team.url, name)
        try:
            page = client.get(f"/c/{ann.conversation}", follow_redirects=True)
        finally:
            client.close()
        assert page.status_code == (200 if present else 404), (name, page.status_code)  # 404 as for a missing id
        assert (SECRET_TITLE in page.text or SECRET_QUESTION in page.text) is present, name
