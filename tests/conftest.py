"""Test settings and the two database backends every database test runs against.

PostgreSQL: SLM_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) names a server
where a throwaway database is created per run. Without a reachable server the PostgreSQL tests are skipped
with a loud warning, except with CI=true, where that fails the run.
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import SECRET  # noqa: E402  (plain constants: imports nothing of the app)

os.environ.update(
    SLM_ENV="test",
    SLM_BCRYPT_ROUNDS="4",
    SLM_MIGRATE_ON_START="true",
    SLM_JWT_SECRET=SECRET,
    # the suite registers hundreds of users from one address and chats far more than a person would:
    # the limits under test set their own values (tests/reliability/test_abuse.py)
    SLM_REGISTER_MAX_PER_IP="1000000",
    SLM_CHAT_MAX_MESSAGES_PER_MINUTE="1000000",
    SLM_CHAT_MAX_TOKENS_PER_DAY="1000000000",
)
for name in ("SLM_CORS_ORIGIN", "SLM_DATABASE_URL_SECRET_ID", "SLM_JWT_SECRET_SECRET_ID"):
    os.environ.pop(name, None)

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from shared.migrate import sync_url  # noqa: E402

PG_URL = os.environ.get("SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_pg_problem: str | None = None


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def pytest_configure(config: pytest.Config) -> None:
    global _pg_problem
    _pg_problem = _postgres_reachable()
    if _pg_problem and IN_CI:
        raise pytest.UsageError(f"CI=true but PostgreSQL at {PG_URL} is unreachable: {_pg_problem}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_problem:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS WERE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"No PostgreSQL at {PG_URL} ({_pg_problem}).", red=True)
        terminalreporter.write_line("Start one, or set SLM_TEST_POSTGRES_URL, to run them.", red=True)


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped at the end."""
    if _pg_problem:
        pytest.skip(f"PostgreSQL unavailable: {_pg_problem}")
    name = f"slm_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'slm_test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each database test runs twice: on SQLite and on a real PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the settings (and so the engine) at the backend under test."""
    from shared.settings import get_settings

    monkeypatch.setenv("SLM_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


REPO_ROOT = Path(__file__).resolve().parent.parent


PASSWORD = "correct horse battery"


@dataclass
class Account:
    email: str
    token: str
    id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def clear_rate_limits(database_url: str) -> None:
    """Empty the shared login counters, so tests don't leak limits into each other."""
    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM rate_limit_buckets"))
    engine.dispose()


@contextmanager
def make_client(app: FastAPI, database_url: str) -> Iterator[TestClient]:
    """A started app (migrations applied) with the shared login counters cleared, so tests don't leak limits."""
    with TestClient(app, raise_server_exceptions=False) as client:
        clear_rate_limits(database_url)
        yield client


def register(client: TestClient, email: str | None = None, password: str = PASSWORD) -> Account:
    response = client.post(
        "/api/auth/register", json={"email": email or unique_email(), "password": password}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["user"]["email"], body["access_token"], body["user"]["id"])


@pytest.fixture
def auth_client(use_database: str) -> Iterator[TestClient]:
    from functions.auth.app import app

    with make_client(app, use_database) as client:
        yield client


@pytest.fixture
def conversations_client(use_database: str) -> Iterator[TestClient]:
    from functions.conversations.app import app

    with make_client(app, use_database) as client:
        yield client


@pytest.fixture
def client(use_database: str) -> Iterator[TestClient]:
    """The local router: every function in one app, like `make run`."""
    from infra.router.app import app

    with make_client(app, use_database) as client:
        yield client


@dataclass
class LiveServer:
    url: str
    database_url: str
    process: "subprocess.Popen[bytes]"
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    database_url: str,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    app: str = "infra.router.app:app",
    timeout: float = 120,
    ready: Callable[["httpx.Response"], bool] = lambda response: response.status_code == 200,
) -> LiveServer:
    """uvicorn in a subprocess, as `make run` starts it; returns once /api/health answers 200 (or `ready`)."""
    port = free_port()
    environment = {**os.environ, "SLM_DATABASE_URL": database_url, **(env or {})}
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    server = LiveServer(f"http://127.0.0.1:{port}", database_url, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if ready(httpx.get(f"{server.url}/api/health", timeout=2)):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def server_pair(
    database_url: str, logs: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two server processes over one database, as two containers or Lambda instances would be."""
    first = start_server(database_url, logs / "a.log", env=env)
    try:
        second = start_server(database_url, logs / "b.log", env=env)
    except Exception:
        stop_server(first)
        raise
    try:
        yield first, second
    finally:
        stop_server(first)
        stop_server(second)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The whole app (router + default model) served by uvicorn on a free port, per database backend."""
    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    server = start_server(database_url, tmp_path_factory.mktemp("server") / "server.log")
    yield server
    stop_server(server)
