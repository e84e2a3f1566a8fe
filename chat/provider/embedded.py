"""The embedded model (one of ``embedded_models.EMBEDDED_MODELS``, SmolLM2 135M Instruct by default) served by
llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) in a child process on a free
loopback port. Parley talks to it through the same ``Provider`` as to OpenAI.

Facts this relies on (checked with llama-cpp-python 0.3.36):
- without ``--chat_format`` the server renders the GGUF's ``tokenizer.chat_template`` (SmolLM2's is ChatML);
  Gemma's GGUF carries none, so it gets ``--chat_format gemma``;
- the server answers any model name with its one model (``LlamaProxy.__call__``): Parley refuses other names itself
  (``EmbeddedModel.refuse``);
- the server answers one request at a time; with ``--interrupt_requests False`` a second request
  waits instead of cutting the running answer short (Parley also queues answers itself);
- it stops generating as soon as the client closes the stream, which is how Stop ends generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from .embedded_models import EmbeddedModel
from .errors import ProviderError

log = logging.getLogger(__name__)

#: Seconds to wait for the server to load the model and answer ``GET /v1/models``.
START_TIMEOUT = 120.0

#: Longest time ``explain`` waits for a dying server process to be waitable, in seconds (see ``explain``).
EXIT_GRACE = 0.25

#: In a ``command`` given as a list, this string (inside any argument) is replaced by the chosen port.
PORT_PLACEHOLDER = "{port}"

#: What runs the server instead of llama-cpp-python's: an argv with ``{port}`` in it, or a function port -> argv.
Command = Sequence[str] | Callable[[int], Sequence[str]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when Parley dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class EmbeddedModelServer:
    """Starts, watches and stops llama-cpp-python's OpenAI-compatible server.

    Args:
        model: the model to serve; the server answers to its ``id``.
        n_ctx: context window in tokens (default: the model's ``context_window``).
        n_threads: CPU threads (default: llama.cpp's choice).
        log_file: where the server's output goes.
        command: run this instead of ``python -m llama_cpp.server ...`` (the model's package is then not needed):
            an argv in which ``{port}`` is replaced by the chosen port, or a function from the port to the argv.
            It must serve the OpenAI API on ``127.0.0.1:<port>/v1`` (tests run their fake upstream this way).
    """

    def __init__(
        self,
        model: EmbeddedModel,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        log_file: Path,
        command: Command | None = None,
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx or model.context_window
        self.n_threads = n_threads
        self.log_file = log_file
        self.command = command
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen[bytes] | None = None
        """The server's process (a plain Popen, reaped by our own ``poll()``, so its exit is known at once)."""
        self._starting: asyncio.Task[None] | None = None
        self.load_seconds: float | None = None

    def start(self) -> None:
        """Begin starting the server in the background; ``wait_ready`` waits for it."""
        if self._starting is None or (self._starting.done() and not self.running):
            self._starting = asyncio.get_running_loop().create_task(self._start(), name="embedded-model-start")

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self) -> None:
        """Return once the server answers; restart it if its process died since.

        Raises:
            ProviderError: the server could not start (reason names the log file).
        """
        if self._starting is None or (self._starting.done() and not self.running):
            if self._starting is not None and self.process is not None:
                log.warning("embedded model server ended (%s); restarting it", self._exit_status(0.0))
            self.start()
        assert self._starting is not None
        await asyncio.shield(self._starting)

    def explain(self, failure: ProviderError) -> ProviderError:
        """The reason to show for an answer that failed: when this server's process has exited, say so (how it
        ended, that the next message restarts it, where its log is); otherwise ``failure`` itself.

        Given to ``Provider(explain=...)``. A killed server's sockets close a moment before its exit can be seen,
        so when the connection was lost this waits up to ``EXIT_GRACE`` seconds for the process to end (blocking:
        only on such a failure, which a running server does not cause).
        """
        ended = self._exit_status(wait=EXIT_GRACE if failure.connection_lost else 0.0)
        if ended is None:
            return failure
        return ProviderError(
            f"The embedded model stopped ({ended}) in the middle of the answer; it restarts with the next message. "
            f"Its log: {self.log_file}."
        )

    def _exit_status(self, wait: float) -> str | None:
        """How the server process ended ("killed by SIGKILL", "exit code 1"), or None while it runs (or never ran)."""
        process = self.process
        if process is None:
            return None
        deadline = time.monotonic() + wait
        while (code := process.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit code {code}"

    def _argv(self, path: Path | None) -> list[str]:
        """The server's command line for ``self.port``: ``command``'s, else llama-cpp-python's on ``path``."""
        if callable(self.command):
            return [str(arg) for arg in self.command(self.port)]
        if self.command is not None:
            return [str(arg).replace(PORT_PLACEHOLDER, str(self.port)) for arg in self.command]
        assert path is not None
        args = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(path),
            "--model_alias", self.model.id,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--interrupt_requests", "False",
            "--verbose", "False",
        ]  # fmt: skip
        if self.model.chat_format is not None:
            args += ["--chat_format", self.model.chat_format]
        if self.n_threads:
            args += ["--n_threads", str(self.n_threads)]
        return args

    async def _start(self) -> None:
        started = time.monotonic()
        path = await asyncio.to_thread(self.model.locate) if self.command is None else None
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        args = self._argv(path)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as output:
            self.process = subprocess.Popen(
                args, stdout=output, stderr=output, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
        log.info("embedded model server starting on port %s (pid %s)", self.port, self.process.pid)
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() - started < START_TIMEOUT:
                if self.process.poll() is not None:
                    raise ProviderError(
                        f"The embedded model server ended while starting ({self._exit_status(0.0)}); "
                        f"see {self.log_file}."
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base_url}/models")).status_code == 200:
                        self.load_seconds = time.monotonic() - started
                        log.info("embedded model ready in %.1f s", self.load_seconds)
                        return
                await asyncio.sleep(0.2)
        raise ProviderError(f"The embedded model server did not start within {START_TIMEOUT:g} s; see {self.log_file}.")

    async def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 5 seconds."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        deadline = time.monotonic() + 5
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.to_thread(process.wait)
