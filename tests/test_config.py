"""Settings from flags, environment and .env; a bad value is one clear line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chat.config import check_exposure, load_settings

from .browser import ROOT, clean_env


def test_defaults_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL", "PARLEY_PORT", "PARLEY_DATA_DIR", "PARLEY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings([])
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8080, Path("data"))
    assert settings.uses_embedded_model
    assert settings.sqlalchemy_url == "sqlite:///data/parley.db"
    monkeypatch.setenv("PARLEY_PORT", "9000")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/x.db")
    settings = load_settings(["--port", "9001", "--data-dir", "/srv/parley", "--model", "llama3"])
    assert settings.port == 9001  # a flag beats the environment
    assert settings.data_dir == Path("/srv/parley") and settings.model == "llama3"
    assert not settings.uses_embedded_model and settings.sqlalchemy_url == "sqlite:////tmp/x.db"
    (tmp_path / ".env").write_text("PARLEY_TEMPERATURE=1.25\nOPENAI_API_KEY=sk-from-dotenv\n")
    settings = load_settings([])
    assert settings.temperature == 1.25
    assert settings.openai_api_key is not None and settings.openai_api_key.get_secret_value() == "sk-from-dotenv"
    assert "sk-from-dotenv" not in repr(settings)


def test_embedded_model_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PARLEY_MODEL", "PARLEY_EMBEDDED_MODEL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings([])
    assert (settings.embedded_model, settings.model, settings.embedded_context) == ("smollm2-135m-instruct", None, None)
    assert load_settings(["--embedded-model", "gemma-3-270m"]).embedded_model == "gemma-3-270m"
    assert load_settings(["--model", "smollm2-135m-instruct"]).model == "smollm2-135m-instruct"
    monkeypatch.setenv("PARLEY_EMBEDDED_MODEL", "gemma-3-270m")
    assert load_settings([]).embedded_model == "gemma-3-270m"
    assert load_settings(["--model", "gemma-3-270m"]).model == "gemma-3-270m"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")  # with an upstream --model is its business
    assert load_settings(["--model", "llama3.2"]).model == "llama3.2"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "70000"], {}, "invalid setting port (--port / PARLEY_PORT) = '70000'"),
        ([], {"PARLEY_TEMPERATURE": "hot"}, "invalid setting temperature (--temperature / PARLEY_TEMPERATURE)"),
        ([], {"OPENAI_BASE_URL": "localhost:11434"}, "openai_base_url (--openai-base-url / OPENAI_BASE_URL)"),
        (["--host", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without accounts"),
        ([], {"PARLEY_HOST": "parley.example.org"}, "pass --insecure-expose-without-login"),
        (
            ["--embedded-model", "gpt-4o"],
            {},
            "invalid setting embedded_model (--embedded-model / PARLEY_EMBEDDED_MODEL) = 'gpt-4o': "
            "Input should be 'smollm2-135m-instruct' or 'gemma-3-270m'",
        ),
        (
            [],
            {"PARLEY_MODEL": "gemma-3-270m"},
            "invalid setting model (--model / PARLEY_MODEL) = 'gemma-3-270m': Value error, Parley's embedded model is "
            "smollm2-135m-instruct; to serve gemma-3-270m, use --embedded-model gemma-3-270m",
        ),
        (
            ["--model", "llama3.2"],
            {},
            "without an upstream Parley serves only its embedded model, smollm2-135m-instruct: leave --model out, "
            "or set OPENAI_BASE_URL to an upstream that serves llama3.2",
        ),
    ],
)
def test_bad_value_is_one_line_and_exit_2(args: list[str], env: dict[str, str], expected: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args], env=clean_env(**env), cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--help"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for flag in ("--host", "--port", "--data-dir", "--model", "--database-url", "--openai-base-url", "--read-timeout"):
        assert flag in result.stdout
    assert "--embedded-model {smollm2-135m-instruct,gemma-3-270m}" in result.stdout


@pytest.mark.parametrize(
    ("host", "flag", "accounts", "allowed"),
    [("127.0.0.1", False, False, True), ("127.0.1.1", False, False, True), ("::1", False, False, True),
     ("localhost", False, False, True), ("0.0.0.0", False, False, False), ("192.168.1.5", False, False, False),
     ("0.0.0.0", True, False, True), ("0.0.0.0", False, True, True)],
)  # fmt: skip
def test_only_loopback_without_accounts_or_the_loud_flag(host: str, flag: bool, accounts: bool, allowed: bool) -> None:
    settings = load_settings(["--host", host] + (["--insecure-expose-without-login"] if flag else []))
    if allowed:
        check_exposure(settings, accounts)
    else:
        with pytest.raises(SystemExit) as exit_info:
            check_exposure(settings, accounts)
        assert exit_info.value.code == 2
