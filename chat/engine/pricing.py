"""What an answer costs: a price table per model (US dollars per million input and output tokens) and the cost of an
answer from its usage.

The table starts from OpenAI's published prices for its current chat models (https://openai.com/api/pricing, as of
2026; check them before relying on them) and takes a JSON file on top, ``--prices PATH``::

    {"gpt-4o-mini": {"input": 0.15, "output": 0.60}, "llama3.2": {"input": 0, "output": 0}}

A model is found by its exact id, else by the longest id in the table that it starts with (so a dated snapshot such
as ``gpt-4o-mini-2024-07-18`` costs what ``gpt-4o-mini`` does). A model the table does not know has no cost (None),
rather than a wrong one. An answer whose upstream sent no usage is counted with Parley's token counter and its cost
marked as an estimate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Dollars per million tokens, (input, output).
OPENAI_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million input (prompt) and output (completion) tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for these token counts."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


class PriceTable:
    """Prices per model.

    Args:
        prices: model id -> Price (default: ``OPENAI_PRICES``).
    """

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices = dict(prices) if prices is not None else {m: Price(*p) for m, p in OPENAI_PRICES.items()}

    @classmethod
    def load(cls, path: Path | None, *, free: tuple[str, ...] = ()) -> PriceTable:
        """The built-in table with the file at ``path`` on top (None: the built-in one), and ``free`` models at 0
        (the embedded model).

        Raises:
            ValueError: the file cannot be read, is not JSON, or a price is not ``{"input": n, "output": n}`` with
                non-negative numbers (the message names the file and the model).
        """
        table = cls()
        for model in free:
            table.prices[model] = Price(0.0, 0.0)
        if path is None:
            return table
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the prices must be a JSON object of model ids")
        for model, price in data.items():
            numbers = (price.get("input"), price.get("output")) if isinstance(price, dict) else (None, None)
            valid = all(isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in numbers)
            if not valid:
                raise ValueError(f'{path}: {model!r} needs {{"input": dollars, "output": dollars}} per million tokens')
            table.prices[str(model)] = Price(float(numbers[0]), float(numbers[1]))  # type: ignore[arg-type]
        return table

    def price(self, model: str | None) -> Price | None:
        """The price of ``model``: its own, else that of the longest id it starts with; None when unknown."""
        if not model:
            return None
        if model in self.prices:
            return self.prices[model]
        known = [m for m in self.prices if model.startswith(m + "-") or model.startswith(m + ":")]
        return self.prices[max(known, key=len)] if known else None

    def cost(self, model: str | None, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """Dollars for an answer of ``model`` with these counts; None when the model's price or the counts are
        unknown."""
        price = self.price(model)
        if price is None or prompt_tokens is None or completion_tokens is None:
            return None
        return price.cost(prompt_tokens, completion_tokens)
