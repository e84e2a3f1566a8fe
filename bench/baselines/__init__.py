"""The apps the streaming benchmark (``bench/streaming.py``) drives, described the same way: :class:`AppSpec`.

Each baseline is a minimal app written the way its own documentation shows, in its own virtual environment under
``bench/.venvs/<name>`` so its pins never touch Parley's. Parley's own spec lives in ``bench/streaming.py`` and runs
in Parley's ``.venv``.

The baselines are :data:`NAIVE_NICEGUI`, :data:`GRADIO` and :data:`CHAINLIT` (together :data:`BASELINES`);
:func:`ensure_venv` creates and fills a spec's venv and returns its Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
VENVS = BENCH / ".venvs"


@dataclass
class AppSpec:
    """How to install, start and drive one chat app in the benchmark.

    The app talks to an OpenAI-compatible upstream given by the environment (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
    and the model name in ``BENCH_MODEL``) and serves one chat page on ``127.0.0.1:<port>``.
    """

    name: str
    """Short name printed in the table: ``"parley"``, ``"naive-nicegui"``, ``"gradio"``, ``"chainlit"``."""
    requirements: list[str]
    """pip requirement strings for its own venv (empty for Parley, which uses the current interpreter)."""
    command: Callable[[Path, int, Path], list[str]]
    """``command(python, port, workdir)`` -> argv that starts the app (``python``: its venv's interpreter;
    ``workdir``: an empty temporary folder it may use for data)."""
    input_selector: str
    """CSS selector of the prompt text box."""
    answer_selector: str
    """CSS selector matching the assistant answers; the last match is the newest answer."""
    path: str = "/"
    """Page to open."""
    submit_key: str = "Enter"
    """Key pressed in the text box to send."""
    startup_timeout: float = 120.0
    """Seconds to wait for the page to answer HTTP 200 after start."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the app process."""
    venv: Path | None = None
    """Its virtual environment (``None``: the current interpreter)."""
    ready_selector: str | None = None
    """CSS selector that matches once the loaded page can send (wait for it before typing); ``None``: the prompt
    box being visible is enough. Chainlit ignores Enter until its socket.io session is connected."""


HERE = Path(__file__).resolve().parent

_QUIET_ENV = {
    # Nothing may try to reach the internet: the benchmark machine has none.
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
    # An empty PYTHONPATH counts as unset: keep the caller's (e.g. the repo root) out of the baseline's imports.
    "PYTHONPATH": "",
}


def _base_python() -> str:
    """The base interpreter behind ``sys.executable`` (the one a venv was made from, else itself)."""
    for candidate in (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}",
        Path(sys.base_prefix) / "bin" / "python3",
    ):
        if candidate.exists():
            return str(candidate)
    return sys.executable


def ensure_venv(spec: AppSpec) -> Path:
    """Create ``bench/.venvs/<spec.name>`` if missing, install ``spec.requirements`` (plus ``openai``) into it,
    and return the venv's Python.

    A stamp file in the venv records the installed requirements; when they change, pip runs again (upgrading in
    place). Returns the current interpreter for a spec without requirements (Parley's).
    """
    if not spec.requirements:
        return Path(sys.executable)
    venv = spec.venv or VENVS / spec.name
    python = venv / "bin" / "python"
    requirements = [*spec.requirements, "openai"]
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    stamp.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", *requirements],
        check=True,
        env=env,
    )
    stamp.write_text(wanted)
    return python


def _nicegui_command(python: Path, port: int, workdir: Path) -> list[str]:
    """argv for the naive NiceGUI baseline."""
    return [str(python), str(HERE / "naive_nicegui.py"), "--port", str(port)]


def _gradio_command(python: Path, port: int, workdir: Path) -> list[str]:
    """argv for the Gradio baseline."""
    return [str(python), str(HERE / "gradio_app.py"), "--port", str(port)]


def _chainlit_command(python: Path, port: int, workdir: Path) -> list[str]:
    """argv for the Chainlit baseline.

    Chainlit takes its "app root" from the current directory (``.chainlit/config.toml``, ``chainlit.md``,
    ``.files/`` are created there), so the app file is copied into ``workdir`` and run from there by a small
    ``sh -c`` that changes into it first.
    """
    shutil.copy(HERE / "chainlit_app.py", workdir / "chainlit_app.py")
    chainlit = python.parent / "chainlit"
    run = 'cd "$1" && exec "$2" run chainlit_app.py --host 127.0.0.1 --port "$3" --headless'
    return ["sh", "-c", run, "chainlit", str(workdir), str(chainlit), str(port)]


NAIVE_NICEGUI = AppSpec(
    name="naive-nicegui",
    requirements=["nicegui>=3.18,<4"],
    command=_nicegui_command,
    input_selector='input[placeholder="message"]',
    answer_selector=".nicegui-markdown",
    env=dict(_QUIET_ENV),
    venv=VENVS / "naive-nicegui",
)
"""NiceGUI chat that replaces the whole ``ui.markdown`` content on every delta."""

GRADIO = AppSpec(
    name="gradio",
    requirements=["gradio>=6,<7"],
    command=_gradio_command,
    input_selector='textarea[data-testid="textbox"]',
    answer_selector=".message.bot",
    env=dict(_QUIET_ENV),
    venv=VENVS / "gradio",
)
"""Gradio ``gr.ChatInterface`` with a streaming generator."""

CHAINLIT = AppSpec(
    name="chainlit",
    requirements=["chainlit>=2,<3"],
    command=_chainlit_command,
    input_selector="#chat-input",
    answer_selector='[data-step-type="assistant_message"] .message-content',
    ready_selector="#upload-button:enabled",
    # Chainlit 2 has no telemetry; these two (empty = unset) keep it from picking a remote data layer.
    env={**_QUIET_ENV, "DATABASE_URL": "", "LITERAL_API_KEY": ""},
    venv=VENVS / "chainlit",
)
"""Chainlit ``@cl.on_message`` handler that streams with ``msg.stream_token``."""

BASELINES: list[AppSpec] = [NAIVE_NICEGUI, GRADIO, CHAINLIT]
"""The baselines in table order."""
