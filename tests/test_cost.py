"""What answers cost: the price table, an answer's cost from the upstream's usage or (without usage) from Parley's
own count marked as an estimate, the users' daily totals, and what the page and ``/api`` show."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nicegui.testing import User

from chat.engine import Engine
from chat.engine.pricing import Price, PriceTable
from chat.provider import Provider
from chat.store import Status, Store
from chat.ui.admin_page import usage_table
from chat.ui.message_view import format_cost

from .fake_upstream import FakeUpstream, Script
from .helpers import send, stored_path, wait_for


def test_the_table_knows_openai_models_snapshots_and_files_on_top(tmp_path: Path) -> None:
    table = PriceTable()
    assert table.price("gpt-4o-mini") == Price(0.15, 0.60)
    assert table.price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)  # a dated snapshot
    assert table.price("gpt-4o-2024-08-06") == Price(2.50, 10.00)  # the longest match, not gpt-4o-mini
    assert table.price("llama3.2") is None and table.cost("llama3.2", 10, 10) is None
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"llama3.2": {"input": 0, "output": 0}, "gpt-4o-mini": {"input": 1, "output": 2}}))
    table = PriceTable.load(prices, free=("smollm2-135m-instruct",))
    assert table.price("llama3.2") == Price(0, 0) and table.price("gpt-4o-mini") == Price(1, 2)
    assert table.cost("smollm2-135m-instruct", 500, 500) == 0
    for bad in ('{"m": {"input": -1, "output": 1}}', '{"m": 3}', "[1]", "{not json"):
        prices.write_text(bad)
        with pytest.raises(ValueError, match=str(prices)):
            PriceTable.load(prices)


@pytest.fixture
async def priced_engine(store: Store, upstream: FakeUpstream):
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5)
    engine = Engine(store, provider, default_model="fake-model",
                    prices=PriceTable({"fake-model": Price(input=2.0, output=8.0)}))  # fmt: skip
    yield engine
    await engine.shutdown()
    await provider.close()


async def answer(engine: Engine) -> object:
    _, assistant = await engine.send(None, "How much is this?")
    return await engine.live(assistant.id).wait()  # type: ignore[arg-type, union-attr]


async def test_an_answer_costs_its_usage_at_the_models_price(priced_engine: Engine, upstream: FakeUpstream) -> None:
    upstream.script = Script(tokens=50)
    message = await answer(priced_engine)
    assert message.status == Status.complete and message.prompt_tokens and message.completion_tokens == 50
    expected = (message.prompt_tokens * 2.0 + 50 * 8.0) / 1_000_000
    assert message.cost == pytest.approx(expected) and message.cost_estimated is False


async def test_without_usage_the_cost_is_counted_by_parley_and_marked_an_estimate(
    priced_engine: Engine, upstream: FakeUpstream
) -> None:
    upstream.script = Script(tokens=40, usage=False)
    message = await answer(priced_engine)
    assert message.prompt_tokens is None and message.completion_tokens == 40  # one token per chunk
    assert message.cost_estimated is True
    counted = priced_engine.provider.counters.get("fake-model").count(
        [{"role": "user", "content": "How much is this?"}]
    )
    assert message.cost == pytest.approx((counted * 2.0 + 40 * 8.0) / 1_000_000)


async def test_a_model_without_a_price_has_no_cost_and_users_days_add_up(store: Store) -> None:
    user = await asyncio.to_thread(store.create_user, "ann", "x")
    assert user.id is not None
    for cost in (0.25, 0.5):
        await asyncio.to_thread(store.add_usage, user.id, 100, 10, cost=cost)
    await asyncio.to_thread(store.add_usage, user.id, 5, 5)  # a model without a price
    [day] = await asyncio.to_thread(store.usage)
    assert (day.answers, day.prompt_tokens, day.completion_tokens, day.cost) == (3, 205, 25, pytest.approx(0.75))
    _, rows = usage_table([user], [day])
    assert rows[0]["total"] == "230 · 3 · $0.7500"
    assert format_cost(0) == "$0" and format_cost(0.00001) == "<$0.0001" and format_cost(1234.5) == "$1,234.50"
    assert format_cost(0.01234, estimated=True) == "~$0.0123 (estimate)"


@pytest.fixture
def priced_app(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's environment with a price for the fake model ($0.001 a token: visible in the page)."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"fake-model": {"input": 1000, "output": 1000}}))
    monkeypatch.setenv("PARLEY_PRICES", str(prices))
    return app_env


async def test_the_page_shows_each_answers_cost_and_the_conversations_total(
    priced_app: Path, user: User, upstream: FakeUpstream
) -> None:
    app_env = priced_app
    upstream.script = Script(tokens=10)
    await user.open("/")
    await send(user, "one two three")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].status == Status.complete)
    stored = stored_path(app_env)[1]
    assert stored.cost == pytest.approx((stored.prompt_tokens + 10) * 0.001)
    await user.open("/c/1")
    await user.should_see(format_cost(stored.cost))
    await user.should_see(f"This conversation: {format_cost(stored.cost)}")
