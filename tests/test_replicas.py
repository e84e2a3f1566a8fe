"""Several replicas: two (or three) real app.py processes on one throwaway PostgreSQL database and one real
``redis-server``, answering from the fake upstream; an answer started on one is followed, resumed and stopped from
another; a replica killed mid-answer, a Redis restarted mid-answer and a rolling restart lose nothing and leave
nothing ``streaming``; limits count across replicas; tabs see each other's conversations; HAProxy in front."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from playwright.sync_api import expect

from chat.auth import Accounts
from chat.engine import Account
from chat.store import Status, Store

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import PASSWORD, wait_until
from .postgres import PostgresServer
from .redis_server import RedisServer

LEASE = "1.5"  # seconds: a dead replica's answers are marked within a few seconds


@dataclass
class Cluster:
    """Replicas on one database and one Redis."""

    database_url: str
    redis: RedisServer
    urls: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def client(self, index: int, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.urls[index], timeout=30, headers=headers)

    def message(self, message_id: int) -> Any:
        store = Store(self.database_url)
        try:
            return store.get_message(message_id)
        finally:
            store.close()

    def streaming(self) -> int:
        store = Store(self.database_url)
        try:
            return len(store.streaming_answers())
        finally:
            store.close()


@contextlib.contextmanager
def cluster(tmp_path: Path, upstream: FakeUpstream, postgres: PostgresServer, redis: RedisServer, count: int = 2,
            **env: str) -> Iterator[Cluster]:  # fmt: skip
    """``count`` replicas of app.py on a new database, the same Redis and the same storage secret."""
    database_url = postgres.create_database()
    redis.restart()  # empty: nothing of another test's cluster
    made = Cluster(database_url, redis)
    secret = secrets.token_urlsafe(24)
    with contextlib.ExitStack() as stack:
        for index in range(count):
            port = free_port()
            process = stack.enter_context(serve(
                tmp_path / f"replica-{index}", upstream, port, DATABASE_URL=database_url, PARLEY_REDIS_URL=redis.url,
                PARLEY_STORAGE_SECRET=secret, PARLEY_REPLICA_LEASE=LEASE, PARLEY_CHECKPOINT_INTERVAL="0.2", **env,
            ))  # fmt: skip
            made.urls.append(f"http://127.0.0.1:{port}")
            made.processes.append(process)
        yield made


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


class Reader(threading.Thread):
    """Reads an answer's SSE to the end in the background: its text, its events, how it ended."""

    def __init__(self, url: str, path: str, method: str = "GET", body: dict | None = None,
                 headers: dict | None = None) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.url, self.path, self.method, self.body, self.headers = url, path, method, body, headers or {}
        self.text = ""
        self.deltas = 0
        self.start_event: dict[str, Any] = {}
        self.done: dict[str, Any] | None = None
        self.error: str | None = None
        self.started_answer = threading.Event()

    def run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as error:  # the replica serving it was killed: what it said before is kept
            self.error = f"{type(error).__name__}: {error}"

    def _read(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60, headers=self.headers) as client:
            with connect_sse(client, self.method, self.path, json=self.body) as source:
                for sse in source.iter_sse():
                    data = json.loads(sse.data)
                    if sse.event == "message_start":
                        self.start_event = data
                        self.started_answer.set()
                    elif sse.event == "text_delta":
                        self.text += data["delta"]
                        self.deltas += 1
                    elif sse.event == "error":
                        self.error = data["reason"]
                    elif sse.event == "done":
                        self.done = data
                        return

    def finish(self, timeout: float = 30) -> Reader:
        self.join(timeout)
        assert not self.is_alive(), "the answer's stream did not end"
        return self


def start_answer(made: Cluster, index: int, text: str = "Tell me about rivers", token: str | None = None) -> Reader:
    """Send a message on replica ``index`` (its own SSE read in the background); returns once the answer exists."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with made.client(index, token) as client:
        conversation = client.post("/api/conversations").json()["id"]
    reader = Reader(made.urls[index], f"/api/conversations/{conversation}/messages", "POST", {"content": text},
                    headers)  # fmt: skip
    reader.start()
    assert reader.started_answer.wait(15)
    return reader


def followed_on_b(made: Cluster, deltas: int) -> tuple[Reader, int, Reader]:
    """An answer started on replica A and followed from B, once B has ``deltas`` text events of it: ``(A's reader,
    the answer's id, B's reader)``."""
    on_a = start_answer(made, 0)
    answer = on_a.start_event["assistant_message_id"]
    on_b = Reader(made.urls[1], f"/api/messages/{answer}/stream")
    on_b.start()
    wait_until(lambda: on_b.deltas >= deltas, what="B following the answer")
    return on_a, answer, on_b


def test_an_answer_on_a_is_followed_and_resumed_exactly_on_b(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    upstream.script = Script(tokens=60, rate=30)
    with cluster(tmp_path, upstream, pg, redis_server) as made:
        on_a = start_answer(made, 0)
        answer = on_a.start_event["assistant_message_id"]
        wait_until(lambda: upstream.streams and upstream.streams[-1].tokens_sent >= 3, what="the answer streaming")
        on_b = Reader(made.urls[1], f"/api/messages/{answer}/stream")
        on_b.start()
        on_a.finish(), on_b.finish()
        expected = upstream.expected_text(60)
        assert on_a.text == expected and on_b.text == expected  # nothing lost, nothing doubled
        assert on_b.deltas >= 3  # it followed live, not one replay at the end
        assert on_b.done == {"status": "complete", "finish_reason": "stop", "length": len(expected)}
        for offset in (0, 17, len(expected) - 1, len(expected)):  # resumed on B from an offset, once it ended
            resumed = Reader(made.urls[1], f"/api/messages/{answer}/stream?after={offset}")
            resumed.start()
            assert resumed.finish().text == expected[offset:]
        # resumed on B from an offset while it is live
        upstream.script = Script(tokens=60, rate=30)
        second = start_answer(made, 0).start_event["assistant_message_id"]
        wait_until(lambda: upstream.streams[-1].tokens_sent >= 10, what="the second answer streaming")
        live = Reader(made.urls[1], f"/api/messages/{second}/stream?after=25")
        live.start()
        assert live.finish().text == upstream.expected_text(60)[25:]
        for process in made.processes:
            assert_no_errors(process)


def test_stop_on_b_ends_the_generation_on_a(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    upstream.script = Script(tokens=400, rate=20)
    with cluster(tmp_path, upstream, pg, redis_server) as made:
        on_a = start_answer(made, 0)
        answer = on_a.start_event["assistant_message_id"]
        wait_until(lambda: upstream.streams and upstream.streams[-1].tokens_sent >= 3, what="the answer streaming")
        with made.client(1) as b:
            stopped = b.post(f"/api/messages/{answer}/cancel")
        assert stopped.status_code == 200 and stopped.json()["cancelled"] is True, stopped.text
        assert stopped.json()["message"]["status"] == "cancelled"
        record = upstream.streams[-1]
        assert record.ended.wait(10) and record.client_disconnected  # the upstream saw the client leave
        assert record.tokens_sent < 400
        on_a.finish()
        assert on_a.done is not None and on_a.done["status"] == "cancelled"
        assert made.message(answer).status == Status.cancelled and made.message(answer).content == on_a.text


def test_a_killed_replicas_answer_is_marked_interrupted_by_another(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    upstream.script = Script(tokens=400, rate=20)
    with cluster(tmp_path, upstream, pg, redis_server) as made:
        on_a = start_answer(made, 0)
        answer = on_a.start_event["assistant_message_id"]
        wait_until(lambda: made.message(answer).content, what="a first checkpoint of the answer")
        on_b = Reader(made.urls[1], f"/api/messages/{answer}/stream")
        on_b.start()
        wait_until(lambda: on_b.deltas >= 1, what="B following the answer")
        made.processes[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: made.message(answer).status == Status.interrupted, timeout=15, what="the answer marked")
        marked_after = time.monotonic() - killed
        on_b.finish()
        stored = made.message(answer)
        assert on_b.done is not None and on_b.done["status"] == "interrupted"
        expected = upstream.expected_text(400)
        assert stored.content and expected.startswith(stored.content)  # A's last checkpoint
        assert expected.startswith(on_b.text)  # what B had shown, in order, nothing doubled
        assert marked_after < 3 * float(LEASE) + 2, marked_after
        assert made.streaming() == 0


def test_a_redis_restart_mid_answer_loses_nothing(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    upstream.script = Script(tokens=80, rate=20)
    with cluster(tmp_path, upstream, pg, redis_server) as made:
        on_a, answer, on_b = followed_on_b(made, deltas=3)
        redis_server.restart()
        on_a.finish(), on_b.finish(timeout=40)
        expected = upstream.expected_text(80)
        stored = made.message(answer)
        assert stored.status == Status.complete and stored.content == expected  # stored whole
        assert on_a.text == expected and on_b.text == expected  # B recovered (from the database)
        assert made.streaming() == 0
        # and the cluster goes on: a new answer on A followed from B
        upstream.script = Script(tokens=30, rate=30)
        again = start_answer(made, 0)
        follow = Reader(made.urls[1], f"/api/messages/{again.start_event['assistant_message_id']}/stream")
        follow.start()
        assert follow.finish().text == upstream.expected_text(30) == again.finish().text


def test_the_messages_per_minute_count_across_replicas(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    upstream.script = Script(tokens=3)
    database_url = pg.create_database()
    store = Store(database_url)
    store.migrate()
    accounts = Accounts(store, enabled=True)
    ann = accounts.add_user("ann", PASSWORD, is_admin=True)
    token = accounts.create_token(Account(ann.id, name="ann"), "test").secret
    store.close()
    redis_server.restart()
    secret = secrets.token_urlsafe(24)
    with contextlib.ExitStack() as stack:
        urls = []
        for index in range(2):
            port = free_port()
            stack.enter_context(serve(tmp_path / f"r{index}", upstream, port, DATABASE_URL=database_url,
                                      PARLEY_REDIS_URL=redis_server.url, PARLEY_STORAGE_SECRET=secret,
                                      PARLEY_MESSAGES_PER_MINUTE="4", PARLEY_CONCURRENT_ANSWERS="10"))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        statuses = []
        for index in (0, 1, 0, 1, 0, 1):
            with httpx.Client(base_url=urls[index], headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                conversation = c.post("/api/conversations").json()["id"]
                response = c.post(f"/api/conversations/{conversation}/messages", json={"content": "hi"})
                statuses.append(response.status_code)
                response.read()
        assert statuses == [200, 200, 200, 200, 429, 429]  # 4 a minute over A and B together, not 4 each
        # one login for every replica: the session cookie, signed with the shared secret, names a database session
        with httpx.Client(base_url=urls[0], timeout=30) as on_a:
            assert on_a.post("/login", json={"name": "ann", "password": PASSWORD}).status_code == 200
            with httpx.Client(base_url=urls[1], timeout=30, cookies=on_a.cookies) as on_b:
                listed = on_b.get("/api/conversations")
                assert listed.status_code == 200 and len(listed.json()) == 6
                on_a.post("/logout")
                assert on_b.get("/api/conversations").status_code == 401  # logged out everywhere at once


def test_a_rolling_restart_ends_the_stopped_replicas_answers(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    upstream.script = Script(tokens=400, rate=20)
    with cluster(tmp_path, upstream, pg, redis_server) as made:
        _, answer, on_b = followed_on_b(made, deltas=2)
        made.processes[0].terminate()  # SIGTERM: a rolling restart stops A while B serves
        made.processes[0].wait(20)
        on_b.finish()
        stored = made.message(answer)
        assert stored.status == Status.interrupted and on_b.done is not None and on_b.done["status"] == "interrupted"
        assert on_b.text == stored.content  # what A stored, to the character
        assert made.streaming() == 0
        with made.client(1) as b:  # B still serves
            conversation = b.post("/api/conversations").json()["id"]
            upstream.script = Script(tokens=5)
            assert b.post(f"/api/conversations/{conversation}/messages", json={"content": "hi"}).status_code == 200


@pytest.mark.browser
def test_tabs_on_two_replicas_see_each_others_conversations_and_answers(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    with cluster(tmp_path, upstream, pg, redis_server) as made, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(made.urls[1] + "/")  # a tab on B
        expect(page.get_by_placeholder("Message Parley")).to_be_visible()
        upstream.script = Script(tokens=80, rate=20)
        on_a = start_answer(made, 0, "Rivers of the Andes")  # made on A
        expect(page.get_by_text("Rivers of the Andes").first).to_be_visible()  # B's drawer lists it
        conversation = on_a.start_event["conversation_id"]
        page.goto(made.urls[1] + f"/c/{conversation}")  # B's page shows A's answer live
        body = page.locator(".parley-message-body").last
        expect(body).to_have_attribute("aria-busy", "true")
        on_a.finish()
        expect(body).to_have_text(upstream.expected_text(80).strip())
        expect(body).to_have_attribute("aria-busy", "false")


@pytest.mark.browser
def test_haproxy_in_front_keeps_pages_sticky_and_streams_unbuffered(
    tmp_path: Path, upstream: FakeUpstream, pg: PostgresServer, redis_server: RedisServer
) -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy is not None, "haproxy is not installed (make test installs Debian's haproxy)"
    with cluster(tmp_path, upstream, pg, redis_server, count=3) as made, chromium() as browser:
        port = free_port()
        config = (Path(__file__).parents[1] / "deploy" / "haproxy.cfg").read_text()
        config = config.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        for letter, url in zip("abc", made.urls, strict=True):
            config = config.replace(f"127.0.0.1:808{' abc'.index(letter)}", url.removeprefix("http://"))
        (tmp_path / "haproxy.cfg").write_text(config)
        proxy = subprocess.Popen([haproxy, "-f", str(tmp_path / "haproxy.cfg"), "-db"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            front = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(front + "/healthz"), what="the proxy up")
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(front + "/")
            upstream.script = Script(pieces=["Through ", "the ", "proxy."])
            composer = page.get_by_placeholder("Message Parley")
            composer.fill("Hello through HAProxy")
            composer.press("Enter")
            expect(page.locator(".parley-message-body").last).to_have_text("Through the proxy.")
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            assert cookies.get("parley_replica") in {"a", "b", "c"}  # the page's replica, followed afterwards
            page.reload()
            expect(page.locator(".parley-message-body").last).to_have_text("Through the proxy.")

            upstream.script = Script(tokens=40, rate=20)  # SSE through the proxy arrives as it is written
            reader = start_answer(Cluster("", made.redis, [front]), 0)
            arrivals = []
            answer = reader.start_event["assistant_message_id"]
            with httpx.Client(base_url=front, timeout=30) as client:
                with connect_sse(client, "GET", f"/api/messages/{answer}/stream") as source:
                    for sse in source.iter_sse():
                        if sse.event == "text_delta":
                            arrivals.append(time.monotonic())
                        if sse.event == "done":
                            break
            reader.finish()
            assert len(arrivals) >= 10 and arrivals[-1] - arrivals[0] > 0.5  # many events, spread: not buffered

            # a rolling restart stops the page's replica: the tab moves to another one, reloading once, not in a loop
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
            stopped = "abc".index({c["name"]: c["value"] for c in context.cookies()}["parley_replica"])
            with page.expect_event("framenavigated", timeout=30_000):  # the tab reloads on another replica
                made.processes[stopped].terminate()
                made.processes[stopped].wait(20)
            upstream.script = Script(pieces=["Still ", "here."])
            composer = page.get_by_placeholder("Message Parley")
            composer.fill("Are you there?")
            composer.press("Enter")
            expect(page.locator(".parley-message-body").last).to_have_text("Still here.")
            new_replica = {c["name"]: c["value"] for c in context.cookies()}.get("parley_replica")
            assert new_replica in set("abc") - {"abc"[stopped]}
            assert len(navigations) <= 2, navigations  # one reload (a second for the new conversation's address)
        finally:
            proxy.terminate()
            proxy.wait(5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
