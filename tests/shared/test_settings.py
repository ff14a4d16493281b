import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from shared.settings import DEV_JWT_SECRET, Settings

STRONG = "k" * 40


def test_development_falls_back_to_the_dev_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLM_JWT_SECRET", raising=False)
    assert Settings(env="development").jwt_key == DEV_JWT_SECRET


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
    with pytest.raises(ValidationError, match="development key is refused"):
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
