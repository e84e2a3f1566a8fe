"""Authentication of the HTTP API in team mode (users in the database): the real app.py in a subprocess on the fake
upstream, reached over real HTTP with httpx, the unmodified openai SDK and a WebSocket client.

Without a valid API token or login session, ``/api`` answers 401 ``{"detail"}`` with ``WWW-Authenticate: Bearer``,
``/v1`` answers OpenAI's 401 ``invalid_api_key`` (the SDK raises ``AuthenticationError``) and an answer's WebSocket
closes with code 4401. Personal mode (no users) still asks for nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from .browser import assert_no_errors, free_port, serve
from .fake_upstream import FakeUpstream
from .helpers import Team, logged_in, next_answer_url, read_answer, start_team, ws_close_code, ws_url


def cookie_header(client: httpx.Client) -> dict[str, str]:
    """The ``Cookie`` header of a logged-in httpx client, for a WebSocket."""
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in client.cookies.items())}


def assert_api_401(response: httpx.Response) -> None:
    """The ``/api`` refusal of a request that is not authenticated."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Not logged in" in response.json()["detail"]


def assert_v1_401(response: httpx.Response) -> None:
    """OpenAI's refusal of a wrong or missing API key."""
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key" and error["param"] is None
    assert error["message"]


# -- team mode ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream) -> Iterator[Team]:
    """app.py with users ann (admin), bob and carol; one process for the module."""
    fake_upstream_server.reset()
    with start_team(tmp_path_factory.mktemp("auth"), fake_upstream_server, ("ann", "bob", "carol")) as (process, team):
        yield team
        assert_no_errors(process)


def bad_credentials(team: Team) -> dict[str, dict[str, str]]:
    """Headers that must not authenticate, by case name (the revoked and disabled tokens are made here)."""
    with team.accounts() as accounts:
        revoked = accounts.create_token(team.users["bob"], "revoked")
        assert revoked.token.id is not None
        accounts.revoke_token(team.users["bob"], revoked.token.id)
        disabled = team.token("carol")
        carol = team.users["carol"]
        assert carol.user_id is not None
        accounts.set_disabled(carol.user_id, True)
    return {
        "no token": {},
        "wrong token": {"Authorization": "Bearer parley_not-a-token"},
        "token without the prefix": {"Authorization": "Bearer sk-whatever"},
        "bearer without a token": {"Authorization": "Bearer"},
        "basic auth": {"Authorization": "Basic YW5uOmNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU="},
        "revoked token": {"Authorization": f"Bearer {revoked.secret}"},
        "disabled user's token": {"Authorization": f"Bearer {disabled}"},
    }


API_ROUTES = [
    ("GET", "/api/conversations", None),
    ("POST", "/api/conversations", {"title": "x"}),
    ("GET", "/api/conversations/1", None),
    ("PATCH", "/api/conversations/1", {"title": "x"}),
    ("DELETE", "/api/conversations/1", None),
    ("POST", "/api/conversations/1/messages", {"content": "hello"}),
    ("GET", "/api/messages/2", None),
    ("GET", "/api/messages/2/stream", None),
    ("POST", "/api/messages/2/cancel", None),
    ("POST", "/api/messages/2/regenerate", {}),
    ("GET", "/api/metrics", None),
]
V1_ROUTES = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "", "messages": [{"role": "user", "content": "hello"}]}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True, "store": False}),
    ("GET", "/v1/no-such-thing", None),
]


def test_every_route_refuses_a_request_without_valid_credentials(team: Team) -> None:
    with team.db() as db:
        before = db.execute("SELECT count(*) AS n FROM conversation").fetchone()["n"]
    for case, headers in bad_credentials(team).items():
        with team.client(**headers) as client:
            for method, path, body in API_ROUTES:
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (case, method, path, response.text)
                assert_api_401(response)
            for method, path, body in V1_ROUTES:
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (case, method, path, response.text)
                assert_v1_401(response)
        assert ws_close_code(ws_url(team.url, 2), headers) == 4401, case
        assert ws_close_code(next_answer_url(team.url), headers) == 4401, case
    with team.db() as db:
        assert db.execute("SELECT count(*) AS n FROM conversation").fetchone()["n"] == before


def test_the_openai_sdk_raises_authentication_error_for_a_wrong_key(team: Team) -> None:
    client = team.sdk("parley_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="", messages=[{"role": "user", "content": "hello"}])


def test_a_valid_token_works_with_the_openai_sdk_and_plain_http(team: Team) -> None:
    token = team.token("ann")
    sdk = team.sdk(token)
    assert [m.id for m in sdk.models.list().data] == ["fake-model", "other-model"]
    raw = sdk.chat.completions.with_raw_response.create(model="", messages=[{"role": "user", "content": "Ann asks"}])
    assert raw.parse().choices[0].message.content
    conversation_id = int(raw.headers["x-parley-conversation-id"])
    with team.db() as db:
        row = db.execute("SELECT user_id, title FROM conversation WHERE id = ?", (conversation_id,)).fetchone()
    assert row == {"user_id": team.users["ann"].user_id, "title": "Ann asks"}

    def used() -> int:
        with team.db() as db:
            row = db.execute("SELECT sum(completion_tokens) AS n FROM daily_usage WHERE user_id = ?",
                             (team.users["ann"].user_id,)).fetchone()  # fmt: skip
        return row["n"] or 0

    before = used()
    stream = sdk.chat.completions.create(
        model="", messages=[{"role": "user", "content": "Not stored"}], stream=True, extra_body={"store": False}
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert used() == before + 20  # the fake's 20 tokens, counted for ann although nothing is stored

    with team.client(token) as client:  # what curl -H 'Authorization: Bearer …' does
        listed = client.get("/api/conversations")
        assert listed.status_code == 200 and [c["id"] for c in listed.json()] == [conversation_id]
        answer = read_answer(client, "POST", f"/api/conversations/{conversation_id}/messages", {"content": "More"})
        assert answer["text"] and answer["conversation_id"] == conversation_id
        assert client.get("/api/metrics").status_code == 200
        # the page's own stream, with the token
        headers = {"Authorization": f"Bearer {token}"}
        assert ws_close_code(ws_url(team.url, answer["assistant_message_id"]), headers) == 1000


def test_a_login_session_works_on_the_api_and_the_answer_websocket(team: Team) -> None:
    client = logged_in(team.url, "bob")
    try:
        created = client.post("/api/conversations", json={"title": "Bob's"})
        assert created.status_code == 201, created.text
        conversation_id = created.json()["id"]
        answer = read_answer(client, "POST", f"/api/conversations/{conversation_id}/messages", {"content": "Hi"})
        assert answer["text"]
        assert [c["id"] for c in client.get("/api/conversations").json()] == [conversation_id]
        assert client.get("/v1/models").status_code == 200  # the session works on /v1 too
        assert ws_close_code(ws_url(team.url, answer["assistant_message_id"]), cookie_header(client)) == 1000
        # a wrong token is refused even with a valid session (the token wins)
        wrong = client.get("/api/conversations", headers={"Authorization": "Bearer parley_wrong"})
        assert_api_401(wrong)
        # logged out: the cookie no longer works
        client.post("/logout")
        assert_api_401(client.get("/api/conversations"))
    finally:
        client.close()


def test_the_openapi_document_offers_bearer_authorization(team: Team) -> None:
    with team.client(team.token("ann")) as client:
        document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        if not path.startswith(("/api/", "/v1/")):
            continue  # not ours (test_api_schema.py fails on those)
        for method, operation in operations.items():
            assert {"bearerAuth": []} in operation.get("security", []), (method, path)
            assert "401" in operation["responses"], (method, path)
    send = document["paths"]["/api/conversations/{conversation_id}/messages"]["post"]["responses"]
    assert {"403", "404", "409", "429"} <= set(send)
    assert "429" in document["paths"]["/v1/chat/completions"]["post"]["responses"]


# -- personal mode --------------------------------------------------------------------------------------------------


def test_personal_mode_asks_for_nothing(tmp_path: Path, upstream: FakeUpstream) -> None:
    port = free_port()
    with serve(tmp_path, upstream, port) as process:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as client:
            created = client.post("/api/conversations", json={"title": "mine"})
            assert created.status_code == 201
            answer = read_answer(
                client, "POST", f"/api/conversations/{created.json()['id']}/messages", {"content": "a"}
            )
            assert client.get("/api/metrics").status_code == 200
            # any Authorization header is ignored, as before
            assert client.get("/api/conversations", headers={"Authorization": "Bearer nonsense"}).status_code == 200
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30)
        assert sdk.models.list().data
        assert ws_close_code(ws_url(url, answer["assistant_message_id"])) == 1000
        assert ws_close_code(next_answer_url(url, "short")) == 4404  # a page's token is 16-64 URL-safe characters
        with sqlite3.connect(tmp_path / "data" / "parley.db") as db:
            assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0
            assert db.execute("SELECT DISTINCT user_id FROM conversation").fetchall() == [(None,)]
        assert_no_errors(process)
