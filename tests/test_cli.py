"""``python app.py user …``: creating users and setting passwords from the command line, as an admin would."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from chat.auth.passwords import verify_password
from chat.store import Store

from .browser import ROOT, clean_env, free_port, server_process


def app(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python app.py *args`` in ``tmp_path`` (its data in ``tmp_path/data``), ``stdin`` piped in."""
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args], input=stdin, env=clean_env(PARLEY_DATA_DIR="data"),
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def users(tmp_path: Path) -> dict[str, tuple[bool, str]]:
    store = Store(f"sqlite:///{tmp_path / 'data' / 'parley.db'}")
    try:
        return {user.name: (user.is_admin, user.password_hash) for user in store.list_users()}
    finally:
        store.close()


def test_user_add_reads_the_password_from_stdin_and_hashes_it(tmp_path: Path) -> None:
    first = app(tmp_path, "user", "add", "ann", "--admin", stdin="correct horse battery\n")
    assert first.returncode == 0, first.stderr
    assert "Added admin user ann." in first.stdout and "Accounts are now on: restart Parley" in first.stdout
    second = app(tmp_path, "user", "add", "bob", stdin="another password\n")
    assert second.returncode == 0 and "Accounts are now on" not in second.stdout
    stored = users(tmp_path)
    assert stored["ann"][0] and not stored["bob"][0]
    assert verify_password(stored["ann"][1], "correct horse battery")  # the newline is not part of it
    assert "correct horse" not in (tmp_path / "data" / "parley.db").read_bytes().decode("latin-1")
    listing = app(tmp_path, "user", "list")
    assert listing.stdout.splitlines() == ["ann (admin)", "bob"]


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["add", "ann"], "short\n", "A password has at least 8 characters."),
        (["add", "ann"], "", "No password on standard input."),
        (
            ["add", "a b"],
            "long enough password\n",
            "A user name is 1 to 64 letters, digits, dots, underscores, @ or hyphens.",
        ),
        (["add", "taken"], "long enough password\n", "a user named 'taken' exists already"),
        (["passwd", "nobody"], "long enough password\n", "There is no user named 'nobody'."),
    ],
)
def test_refusals_are_one_line_and_exit_2(tmp_path: Path, args: list[str], stdin: str, expected: str) -> None:
    assert app(tmp_path, "user", "add", "taken", stdin="first password\n").returncode == 0
    result = app(tmp_path, "user", *args, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"parley: {expected}"]
    assert set(users(tmp_path)) == {"taken"}


def test_user_passwd_sets_a_new_password(tmp_path: Path) -> None:
    app(tmp_path, "user", "add", "ann", stdin="first password\n")
    result = app(tmp_path, "user", "passwd", "ann", stdin="second password\n")
    assert result.returncode == 0 and "their browsers are logged out" in result.stdout
    assert verify_password(users(tmp_path)["ann"][1], "second password")
    assert not verify_password(users(tmp_path)["ann"][1], "first password")


def test_with_a_user_parley_may_listen_beyond_loopback(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a port in use: the server gets past the check, then fails to bind and exits
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused = app(tmp_path, "--host", "0.0.0.0", "--port", port)
        assert refused.returncode == 2 and "without accounts" in refused.stderr
        app(tmp_path, "user", "add", "ann", "--admin", stdin="first password\n")
        started = app(tmp_path, "--host", "0.0.0.0", "--port", port)
    assert "without accounts" not in started.stderr
    assert "accounts: a login is required" in started.stderr


#: The ``parley`` console command that installing the package (``[project.scripts]``) puts next to this Python.
PARLEY = Path(sys.executable).parent / "parley"


def parley(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the installed ``parley *args`` in ``tmp_path`` (its data in ``tmp_path/data``), ``stdin`` piped in."""
    if not PARLEY.exists():
        pytest.fail(f"{PARLEY} is missing: install the package (pip install -e '.[embedded,test]')")
    env = clean_env(PARLEY_DATA_DIR="data")
    env.pop("PYTHONPATH")  # the installed package, not this checkout put on the path
    return subprocess.run(
        [str(PARLEY), *args], input=stdin, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_the_parley_command_lists_the_options_and_manages_users(tmp_path: Path) -> None:
    helped = parley(tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: parley ")
    for flag in ("--host", "--port", "--data-dir", "--model", "--embedded-model", "--openai-base-url"):
        assert flag in helped.stdout
    assert parley(tmp_path, "user", "add", "ann", "--admin", stdin="correct horse battery\n").returncode == 0
    listing = parley(tmp_path, "user", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines() == ["ann (admin)"]
    assert set(users(tmp_path)) == {"ann"}
    refused = parley(tmp_path, "user", "passwd", "nobody", stdin="long enough password\n")
    assert refused.returncode == 2 and refused.stderr.strip() == "parley: There is no user named 'nobody'."
    usage = parley(tmp_path, "user", "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: parley user ")


def test_the_parley_command_serves_the_app(tmp_path: Path) -> None:
    """``parley`` runs NiceGUI from an entry point, not from a ``__main__`` file: the pages and the API answer."""
    port = free_port()
    env = clean_env(PARLEY_DATA_DIR=str(tmp_path / "data"), OPENAI_BASE_URL="http://127.0.0.1:9/v1",
                    OPENAI_API_KEY="unused", PARLEY_MODEL="fake-model")  # fmt: skip
    env.pop("PYTHONPATH")
    with server_process([str(PARLEY), "--port", str(port)], f"http://127.0.0.1:{port}/api/conversations", env):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"Parley</title>" in page.read()  # the page, rendered by NiceGUI
