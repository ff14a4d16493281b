"""Test settings and the two database backends every database test runs against.

PostgreSQL: SLM_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) names a server
where a throwaway database is created per run. Without a reachable server the PostgreSQL tests are skipped
with a loud warning, except with CI=true, where that fails the run.
"""

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import IN_CI, SECRET, LiveServer, make_client, start_server, stop_server

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

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

PG_URL = os.environ.get("SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
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


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The whole app (router + default model) served by uvicorn on a free port, per database backend."""
    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    server = start_server(database_url, tmp_path_factory.mktemp("server") / "server.log")
    yield server
    stop_server(server)
