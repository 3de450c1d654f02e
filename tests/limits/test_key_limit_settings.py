"""Per-key limit settings from the environment, and `rag-service key-id`, which names the keys
that overrides are written for."""

from __future__ import annotations

import json
import subprocess

import pytest
from pydantic import ValidationError

from rag_service.ports import limits_by_key
from rag_service.settings import KeyLimitSettings, Settings
from tests.conftest import run_cli
from tests.limits.conftest import ID_A, ID_B, KEY_A, KEY_B


def key_id_command(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli(None, "key-id", *args, stdin=stdin)


def test_key_id_prints_the_id_of_each_key_on_stdin_and_never_the_key() -> None:
    shown = key_id_command(stdin=f"{KEY_A}\n  {KEY_B} \n\n")

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [ID_A, ID_B]
    assert KEY_A not in shown.stdout + shown.stderr


def test_key_id_takes_the_key_as_an_option_and_refuses_none() -> None:
    assert key_id_command("--key", KEY_A).stdout.strip() == ID_A
    assert key_id_command(stdin="").returncode == 2


def test_limits_and_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LIMITS__STREAMS", "7")
    monkeypatch.setenv("RAG_LIMITS__REQUESTS_PER_S", "0.5")
    monkeypatch.setenv("RAG_LIMITS__BURST", "3")
    monkeypatch.setenv("RAG_LIMITS__OVERRIDES", json.dumps({ID_A: {"streams": 40}}))

    default, overrides = limits_by_key(Settings().limits)

    assert (default.streams, default.requests_per_s, default.burst) == (7, 0.5, 3)
    assert (overrides[ID_A].streams, overrides[ID_A].requests_per_s) == (40, 0.5)


def test_an_override_keyed_by_the_secret_key_itself_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        KeyLimitSettings.model_validate({"overrides": {KEY_A: {"streams": 1}}})

    assert "`rag-service key-id` prints it" in str(refused.value)


def test_a_misspelt_override_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        KeyLimitSettings.model_validate({"overrides": {ID_A: {"stream": 1}}})
