"""One settings object for every function, read from SLM_* environment variables (and `.env` locally).

Secrets may instead name an AWS Secrets Manager secret (SLM_JWT_SECRET_SECRET_ID,
SLM_DATABASE_URL_SECRET_ID); they are fetched once per cold start, because `get_settings` is cached.
"""

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
# keys published in this repository's history (the old development default): never accepted in production
PUBLISHED_KEYS = frozenset({"dev-only-insecure-jwt-key-change-me"})


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
    # POST /v1/chat/completions: OpenAI-compatible UIs send the whole conversation with every message, so a
    # long chat outgrows max_body_bytes while the prompt keeps only its newest turns (nginx allows 1m)
    openai_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Password checks (login, password change, account deletion) follow OWASP's device cookies: a browser
    # that has logged in to the account (a signed device token) has login_max_failures_per_account failed
    # checks per window of its own; any other client has that many per (account, client address), and all
    # of them together login_account_cap per login_untrusted_window_seconds (NIST SP 800-63B allows at most
    # 100), after which only known devices may try until the window ends: the owner is never shut out by
    # a trickle of guesses. Every address has login_max_attempts_per_ip attempts per window.
    login_max_failures_per_account: int = Field(default=5, gt=0)
    login_account_cap: int = Field(default=100, gt=0)
    login_untrusted_window_seconds: int = Field(default=24 * 3600, gt=0)
    login_max_attempts_per_ip: int = Field(default=30, gt=0)
    login_window_seconds: int = Field(default=15 * 60, gt=0)
    device_token_days: int = Field(default=365, gt=0)
    register_max_per_ip: int = Field(default=10, gt=0)  # registrations per client address per hour
    max_conversations_per_user: int = Field(default=1000, gt=0)  # more is a 429
    max_api_keys_per_user: int = Field(default=20, gt=0)
    chat_max_messages_per_minute: int = Field(default=20, gt=0)  # per user, /api/chat and /v1 together
    chat_max_tokens_per_day: int = Field(default=50_000, gt=0)  # generated tokens per user per UTC day
    # an answer in progress not saved for this long (its generator died) ends as failed ("error")
    stale_answer_seconds: float = Field(default=30, gt=0)
    chat_max_batch: int = Field(default=16, ge=1, le=64)  # streams one decode step advances together
    # the chat function's engine: "onnx" (ONNX Runtime, no torch in the process: ~190 MB less), "torch"
    # (model/engine.py, the reference), or "auto": onnx for an int8 checkpoint where onnxruntime is installed
    chat_engine: Literal["auto", "onnx", "torch"] = "auto"
    chat_max_queue: int = Field(default=64, ge=0, le=10_000)  # requests waiting for a slot; more get 503
    # one user's answers in flight and queued in one process (its share of the model); more get 429
    chat_max_streams_per_user: int = Field(default=3, ge=1)
    # no sequence of this many words twice in one answer: a greedy loop takes the next-best word instead
    # (model/loops.py, whose NGRAM_WORDS is this default; sequences holding a number are exempt); 0 = off
    chat_loop_guard_words: int = Field(default=3, ge=0, le=16)
    chat_max_followers_per_user: int = Field(default=32, ge=1)  # open GET /api/chat/{id}/events per process
    # GET /metrics (Prometheus) on the chat function: auto = on, except on AWS Lambda (Function URLs are public)
    metrics: Literal["auto", "on", "off"] = "auto"
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
            if not self.jwt_secret or self.jwt_secret in PUBLISHED_KEYS:
                raise ValueError(
                    "SLM_ENV=production needs a secret JWT key: set SLM_JWT_SECRET or SLM_JWT_SECRET_SECRET_ID "
                    "(a key published in this repository is refused)"
                )
            if len(self.jwt_secret) < 32:
                raise ValueError("SLM_JWT_SECRET must be at least 32 characters in production")
        elif not self.jwt_secret:
            self.jwt_secret = local_jwt_key(self.database_url)
        return self

    @property
    def jwt_key(self) -> str:
        assert self.jwt_secret is not None  # set by the validator
        return self.jwt_secret


def local_jwt_key(database_url: str) -> str:
    """Outside production without SLM_JWT_SECRET (`make run`): a random key made on the first start and kept
    beside the SQLite database (`slm_chat.db-jwt-key`; `.slm-jwt-key` in the working directory for
    another database), readable by its owner only, so every process on that database signs with the same
    key and no key lives in the repository. An in-memory database gets a key for this process alone."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return secrets.token_urlsafe(48)
        path = Path(f"{url.database}-jwt-key")
    else:
        path = Path(".slm-jwt-key")
    if not path.exists():
        draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)  # whole or not at all; a process that started at the same moment wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable JWT key: delete it to make a new one")
    return key


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
