"""One settings object for every function, read from SLM_* environment variables (and `.env` locally).

Secrets may instead name an AWS Secrets Manager secret (SLM_JWT_SECRET_SECRET_ID,
SLM_DATABASE_URL_SECRET_ID); they are fetched once per cold start, because `get_settings` is cached.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-key-change-me"
REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLM_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./slm_chat.db"
    database_url_secret_id: str | None = None
    jwt_secret: str | None = None
    jwt_secret_secret_id: str | None = None
    jwt_expire_minutes: int = Field(default=60 * 24, gt=0)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    cors_origin: str | None = None  # the one allowed browser origin when the frontend lives elsewhere
    migrate_on_start: bool = True
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # failed logins per (account, client address) per window, then 429: an attacker elsewhere cannot lock
    # the owner out; past login_account_cap failures in a row from anywhere (NIST SP 800-63B allows at
    # most 100), the account takes one attempt a minute, so guessing stays bounded
    login_max_failures_per_account: int = Field(default=5, gt=0)
    login_account_cap: int = Field(default=100, gt=0)
    login_max_attempts_per_ip: int = Field(default=30, gt=0)
    login_window_seconds: int = Field(default=15 * 60, gt=0)
    register_max_per_ip: int = Field(default=10, gt=0)  # registrations per client address per hour
    chat_max_messages_per_minute: int = Field(default=20, gt=0)  # per user, /api/chat and /v1 together
    chat_max_tokens_per_day: int = Field(default=50_000, gt=0)  # generated tokens per user per UTC day
    # an answer in progress that has not been saved for this long (its generator died) becomes "interrupted"
    stale_answer_seconds: float = Field(default=30, gt=0)
    chat_max_batch: int = Field(default=16, ge=1, le=64)  # streams one decode step advances together
    # the chat function's engine: "onnx" (ONNX Runtime, no torch in the process: ~190 MB less), "torch"
    # (model/engine.py, the reference), or "auto": onnx for an int8 checkpoint where onnxruntime is installed
    chat_engine: Literal["auto", "onnx", "torch"] = "auto"
    chat_max_queue: int = Field(default=64, ge=0, le=10_000)  # requests waiting for a slot; more get 503
    model_dir: Path = REPO_ROOT / "model" / "checkpoints" / "default"
    # PostgreSQL connections per process: pool_size kept open, max_overflow more under load (each
    # PostgreSQL connection is a backend process of ~10 MB; compose keeps them few on a 1 GiB box)
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    frontend_dir: Path = REPO_ROOT / "frontend" / "out"
    aws_region: str | None = None

    @model_validator(mode="after")
    def _resolve_secrets(self) -> "Settings":
        if self.database_url_secret_id:
            self.database_url = read_secret(self.database_url_secret_id, self.aws_region)
        if self.jwt_secret_secret_id:
            self.jwt_secret = read_secret(self.jwt_secret_secret_id, self.aws_region)
        if self.env == "production":
            if not self.jwt_secret or self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError(
                    "SLM_ENV=production needs a real JWT key: set SLM_JWT_SECRET or SLM_JWT_SECRET_SECRET_ID "
                    "(the development key is refused)"
                )
            if len(self.jwt_secret) < 32:
                raise ValueError("SLM_JWT_SECRET must be at least 32 characters in production")
        elif not self.jwt_secret:
            self.jwt_secret = DEV_JWT_SECRET
        return self

    @property
    def jwt_key(self) -> str:
        assert self.jwt_secret is not None  # set by the validator
        return self.jwt_secret


def read_secret(secret_id: str, region: str | None = None) -> str:
    """The SecretString of an AWS Secrets Manager secret (a plain string, or JSON with a "value" key)."""
    import json

    import boto3

    value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_id)
    text: str = value["SecretString"]
    if text.startswith("{"):
        data = json.loads(text)
        for key in ("value", "url", "key", "password"):
            if key in data:
                return str(data[key])
        raise ValueError(f"secret {secret_id!r} is JSON without a 'value' key")
    return text


@lru_cache
def get_settings() -> Settings:
    return Settings()
