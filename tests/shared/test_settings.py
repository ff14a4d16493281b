import os
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from shared.settings import PUBLISHED_KEYS, Settings

STRONG = "k" * 40
DEV_JWT_SECRET = next(iter(PUBLISHED_KEYS))  # the old development default, published in git history


def test_development_makes_a_random_key_beside_the_database_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """make run: no key in the repository; the first start writes one beside the SQLite file (owner-only),
    and every later start and every other process on that database reads the same."""
    monkeypatch.delenv("SLM_JWT_SECRET", raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'slm_chat.db'}"
    first = Settings(env="development", database_url=url).jwt_key
    path = tmp_path / "slm_chat.db-jwt-key"
    assert path.read_text().strip() == first and len(first) >= 60 and first not in PUBLISHED_KEYS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(env="development", database_url=url).jwt_key == first
    other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    assert Settings(env="development", database_url=other).jwt_key != first  # each database its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db-jwt-key", "slm_chat.db-jwt-key"]


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'slm_chat.db'}"
    code = "from shared.settings import Settings; print(Settings(env='development', database_url=%r).jwt_key)"
    env = {k: v for k, v in os.environ.items() if k != "SLM_JWT_SECRET"}
    processes = [
        subprocess.Popen([sys.executable, "-c", code % url], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert keys == {(tmp_path / "slm_chat.db-jwt-key").read_text().strip()}


@pytest.mark.parametrize("secret", [None, DEV_JWT_SECRET, "short"])
def test_production_refuses_missing_dev_or_weak_key(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.delenv("SLM_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="SLM_JWT_SECRET"):
        Settings(env="production", jwt_secret=secret)


def test_production_accepts_a_real_key() -> None:
    assert Settings(env="production", jwt_secret=STRONG).jwt_key == STRONG


def test_settings_read_slm_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_DATABASE_URL", "postgresql+psycopg://u:p@db:5432/slm")
    monkeypatch.setenv("SLM_LOGIN_WINDOW_SECONDS", "60")
    settings = Settings()
    assert (
        settings.database_url == "postgresql+psycopg://u:p@db:5432/slm"
        and settings.login_window_seconds == 60
    )


@mock_aws
def test_secrets_come_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(Name="slm/jwt", SecretString=STRONG)
    db = client.create_secret(
        Name="slm/db", SecretString='{"value": "postgresql+psycopg://app:pw@rds:5432/slm"}'
    )
    settings = Settings(
        env="production",
        jwt_secret=None,
        jwt_secret_secret_id="slm/jwt",
        database_url_secret_id=db["ARN"],
        aws_region="us-east-1",
    )
    assert settings.jwt_key == STRONG
    assert settings.database_url == "postgresql+psycopg://app:pw@rds:5432/slm"


@mock_aws
def test_production_refuses_the_dev_key_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="jwt", SecretString=DEV_JWT_SECRET
    )
    with pytest.raises(ValidationError, match="published in this repository is refused"):
        Settings(env="production", jwt_secret_secret_id="jwt", aws_region="us-east-1")


def test_secrets_are_read_once_per_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import settings as module

    calls = []
    monkeypatch.setattr(
        module, "read_secret", lambda secret_id, region=None: calls.append(secret_id) or STRONG
    )
    monkeypatch.setenv("SLM_JWT_SECRET_SECRET_ID", "slm/jwt")
    module.get_settings.cache_clear()
    try:
        assert module.get_settings().jwt_key == STRONG
        assert module.get_settings().jwt_key == STRONG
        assert calls == ["slm/jwt"]
    finally:
        module.get_settings.cache_clear()
