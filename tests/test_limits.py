"""Per-user limits and allowed models in team mode, over real HTTP against the real app.py on the fake upstream:
messages per minute and answers at once (429 with ``Retry-After``, nothing stored for the refused message), failed
logins per name and per address (429 even with the right password), and models an admin has not allowed (``/api``
403, ``/v1`` 404 ``model_not_found``, left out of ``/v1/models``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .browser import assert_no_errors
from .fake_upstream import FakeUpstream, Script
from .helpers import PASSWORD, Team, read_answer, start_team

#: ann: messages per minute; bob: answers at once; carol: models; dave: the last to log in.
USERS = ("ann", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream) -> Iterator[Team]:
    """app.py with low limits: 2 messages per minute, 1 answer at once, 3 failed logins per name, 5 per address;
    carol may use ``other-model`` only. One process for the module."""
    fake_upstream_server.reset()
    with start_team(
        tmp_path_factory.mktemp("limits"), fake_upstream_server, USERS, models={"carol": ["other-model"]},
        PARLEY_MESSAGES_PER_MINUTE="2", PARLEY_CONCURRENT_ANSWERS="1",
        PARLEY_LOGIN_ATTEMPTS_PER_NAME="3", PARLEY_LOGIN_ATTEMPTS_PER_IP="5",
    ) as (process, team):  # fmt: skip
        yield team
        assert_no_errors(process)


def counts(team: Team) -> tuple[int, int]:
    """How many conversations and messages the database holds."""
    with team.db() as db:
        return (
            db.execute("SELECT count(*) AS n FROM conversation").fetchone()["n"],
            db.execute("SELECT count(*) AS n FROM message").fetchone()["n"],
        )


def assert_api_429(response: httpx.Response) -> int:
    """A ``/api`` 429: ``{"detail"}`` and a ``Retry-After`` of 1 to 60 s, returned."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.json()["detail"]
    return retry_after


def assert_v1_429(response: httpx.Response) -> None:
    """A ``/v1`` 429 in OpenAI's shape, with ``Retry-After``."""
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    error = response.json()["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded" and error["message"]


def v1_request(**fields: Any) -> dict[str, Any]:
    return {"model": "", "messages": [{"role": "user", "content": "Hello"}], **fields}


def test_messages_per_minute(team: Team, upstream: FakeUpstream) -> None:
    with team.client(team.token("ann")) as client:
        conversation_id = client.post("/api/conversations", json={}).json()["id"]
        send = f"/api/conversations/{conversation_id}/messages"
        first = read_answer(client, "POST", send, {"content": "one"})
        read_answer(client, "POST", send, {"content": "two"})
        stored = counts(team)

        refused = client.post(send, json={"content": "three"})
        assert_api_429(refused)
        assert "Try again in" in refused.json()["detail"]
        regenerate = client.post(f"/api/messages/{first['assistant_message_id']}/regenerate", json={})
        assert_api_429(regenerate)  # a regeneration counts as a message
        assert_v1_429(client.post("/v1/chat/completions", json=v1_request()))  # stored: the conversation is removed
        assert_v1_429(client.post("/v1/chat/completions", json=v1_request(store=False, stream=True)))
        with pytest.raises(openai.RateLimitError):
            team.sdk(client.headers["authorization"].removeprefix("Bearer "), max_retries=0).chat.completions.create(
                **v1_request()
            )
        assert counts(team) == stored  # nothing of the refused messages is kept
        assert len(client.get(f"/api/conversations/{conversation_id}").json()["messages"]) == 4

    with team.client(team.token("bob")) as other:  # the limit is per user
        bobs = other.post("/api/conversations", json={}).json()["id"]
        read_answer(other, "POST", f"/api/conversations/{bobs}/messages", {"content": "mine"})


def test_answers_at_once(team: Team, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=200, rate=20.0)  # 10 s: still running while we try a second one
    with team.client(team.token("bob")) as client:
        first = client.post("/api/conversations", json={}).json()["id"]
        second = client.post("/api/conversations", json={}).json()["id"]
        with client.stream("POST", f"/api/conversations/{first}/messages", json={"content": "slow"}) as streaming:
            assert streaming.status_code == 200
            lines = streaming.iter_lines()
            start = next(line for line in lines if line.startswith("data:"))
            assert "assistant_message_id" in start
            answer_id = int(start.split('"assistant_message_id":')[1].split(",")[0])
            stored = counts(team)

            refused = client.post(f"/api/conversations/{second}/messages", json={"content": "meanwhile"})
            assert assert_api_429(refused) == 5
            assert "answers running" in refused.json()["detail"]
            assert_v1_429(client.post("/v1/chat/completions", json=v1_request()))
            assert counts(team) == stored

            cancelled = client.post(f"/api/messages/{answer_id}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    upstream.reset()
    with team.client(team.token("bob")) as client:  # the limit is per minute too: bob sent 2 already
        assert_api_429(client.post(f"/api/conversations/{second}/messages", json={"content": "again"}))


def test_models_an_admin_has_not_allowed(team: Team, upstream: FakeUpstream) -> None:
    token = team.token("carol")
    sdk = team.sdk(token, max_retries=0)
    assert [m.id for m in sdk.models.list().data] == ["other-model"]
    with team.client(token) as client:
        stored = counts(team)
        created = client.post("/api/conversations", json={"model": "fake-model"})
        assert created.status_code == 403 and "fake-model" in created.json()["detail"]
        default = client.post("/api/conversations", json={})  # the default model (fake-model) is not carol's
        assert default.status_code == 201
        conversation_id = default.json()["id"]
        stored = counts(team)
        refused = client.post(f"/api/conversations/{conversation_id}/messages", json={"content": "hi"})
        assert refused.status_code == 403, refused.text
        override = client.post(
            f"/api/conversations/{conversation_id}/messages", json={"content": "hi", "model": "fake-model"}
        )
        assert override.status_code == 403
        patched = client.patch(f"/api/conversations/{conversation_id}", json={"model": "fake-model"})
        assert patched.status_code == 403
        for request in (v1_request(), v1_request(model="fake-model"), v1_request(model="fake-model", store=False)):
            response = client.post("/v1/chat/completions", json=request)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(**v1_request(model="fake-model"))
        assert counts(team) == stored

        # the allowed one works
        assert client.patch(f"/api/conversations/{conversation_id}", json={"model": "other-model"}).status_code == 200
        answer = read_answer(client, "POST", f"/api/conversations/{conversation_id}/messages", {"content": "hi"})
        assert answer["model"] == "other-model" and answer["text"]
        completion = sdk.chat.completions.create(**v1_request(model="other-model"))
        assert completion.choices[0].message.content


def test_failed_logins_per_name_then_per_address(team: Team) -> None:
    """Last in the module: afterwards, logins from 127.0.0.1 are refused for a minute."""
    with httpx.Client(base_url=team.url, timeout=30) as client:
        for _ in range(3):
            assert client.post("/login", json={"name": "ann", "password": "wrong password"}).status_code == 401
        limited = client.post("/login", json={"name": "ann", "password": PASSWORD})  # the right one, too late
        assert_api_429(limited)
        assert "Try again in" in limited.json()["detail"]
        assert client.post("/login", json={"name": "dave", "password": PASSWORD}).status_code == 200  # other name

        for name in ("nobody", "bob"):  # failures 4 and 5 from this address
            assert client.post("/login", json={"name": name, "password": "wrong password"}).status_code == 401
        assert_api_429(client.post("/login", json={"name": "dave", "password": PASSWORD}))
        # the session dave got before the address was limited still works
        assert client.get("/api/conversations").status_code == 200
