"""The tests' Redis server: loopback only, no persistence, and a missing server fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redis_server import RedisServer, redis_executable


def test_the_server_listens_on_loopback_without_persistence(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        config = client.config_get("*")

    assert config["bind"] == "127.0.0.1"
    assert config["save"] == ""
    assert config["appendonly"] == "no"


def test_a_missing_redis_server_fails_naming_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(pytest.fail.Exception, match="scripts/install-redis"):
        redis_executable()
