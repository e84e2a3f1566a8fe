"""What several benchmarks share: how a figure is written in their tables, and a helper process driven over a pipe
(``engine_load.py`` and ``compare.py`` run their fake upstream so, off the measured process's CPU)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from typing import Any


def fmt(value: Any) -> str:
    """A figure for a text table: ``-`` for None; a float with 4 significant digits under 1, one decimal under 1,000,
    none above; anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


class PipedProcess:
    """A spawned child process that serves over a pipe: it sends its port once it listens, then one answer per
    message it receives, and stops on ``"stop"`` (or a message whose first item is ``"stop"``).

    Args:
        target: the child's main function, called as ``target(connection, *args)``.
        args: its other arguments (picklable).

    Raises:
        RuntimeError: the child did not send its port within 30 s (it is killed).
    """

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        if not self._conn.poll(30):
            self.process.kill()
            raise RuntimeError("the fake upstream process did not start within 30 s")
        self.port: int = self._conn.recv()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _ask(self, message: Any) -> Any:
        """Send ``message`` and return the child's answer. Raises RuntimeError after 30 s without one."""
        self._conn.send(message)
        if not self._conn.poll(30):
            name = message if isinstance(message, str) else message[0]
            raise RuntimeError(f"the fake upstream did not answer {name!r}")
        return self._conn.recv()

    def _stop_message(self) -> Any:
        return "stop"

    def stop(self) -> None:
        """Stop the server and the process (idempotent)."""
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self._ask(self._stop_message())
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
