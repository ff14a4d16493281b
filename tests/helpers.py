"""Helpers shared by test modules (a test module never imports another test module; fixtures live in the
conftest files). Nothing here imports the app at import time: tests/conftest.py sets the test settings
first."""

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
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSWORD = "correct horse battery"

# the JWT key of the test settings (tests/conftest.py sets SLM_JWT_SECRET to it)
SECRET = "test-secret-key-that-is-long-enough-1234"
# an answer of exactly 48 tokens: <|eos|> is not sampled before min_new_tokens
LONG = {"temperature": 0.8, "max_new_tokens": 48, "min_new_tokens": 48, "seed": 1}


def assert_error(response: Any, status: int, code: str | None = None) -> dict:
    """The response has this status and the one error shape (and this code); returns the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def add_messages(
    database_url: str, conversation_id: int, messages: list[tuple[str, str]], parent_id: int | None = -1
) -> list[int]:
    """Append a chain of messages after `parent_id` (-1: the end of the active branch), make its end the
    active branch, and return their ids."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from shared.migrate import sync_url
    from shared.models import Conversation, Message

    engine = create_engine(sync_url(database_url))
    ids = []
    with Session(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        parent = conversation.current_message_id if parent_id == -1 else parent_id
        for role, content in messages:
            reason = "eos" if role == "assistant" else None
            message = Message(
                conversation_id=conversation_id,
                role=role,
                content=content,
                finish_reason=reason,
                parent_id=parent,
            )
            session.add(message)
            session.flush()
            parent = message.id
            ids.append(message.id)
        conversation.current_message_id = parent
        session.commit()
    engine.dispose()
    return ids


def request_stop(database_url: str, conversation_id: int) -> None:
    """Set the conversation's stop flag in the database, as POST /api/conversations/{id}/stop does: the time
    of the stop, to the microsecond (it ends the answers asked for before it; SQLite's CURRENT_TIMESTAMP
    has whole seconds)."""
    from sqlalchemy import create_engine, update

    from shared.migrate import sync_url
    from shared.models import Conversation, utcnow

    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        table = Conversation.__table__
        connection.execute(
            update(table).where(table.c.id == conversation_id).values(stop_requested_at=utcnow())
        )
    engine.dispose()


def within_one_window(seconds_needed: float) -> None:
    """Return when at least `seconds_needed` are left in the current minute (waiting for the next one if
    not). The limits count in fixed windows aligned to the minute (60 s, 15 min, an hour and a day all
    start on one), so a test that starts here and takes less never sees a counter reset midway."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.01)  # until the next minute starts


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


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
    from sqlalchemy import create_engine, text

    from shared.migrate import sync_url

    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM rate_limit_buckets"))
    engine.dispose()


@contextmanager
def make_client(app: "FastAPI", database_url: str) -> Iterator["TestClient"]:
    """A started app (migrations applied) with the shared login counters cleared, so tests don't leak limits."""
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        clear_rate_limits(database_url)
        yield client


def register(client: "TestClient", email: str | None = None, password: str = PASSWORD) -> Account:
    response = client.post(
        "/api/auth/register", json={"email": email or unique_email(), "password": password}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["user"]["email"], body["access_token"], body["user"]["id"])


@dataclass
class LiveServer:
    url: str
    database_url: str
    process: "subprocess.Popen[bytes]"
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def installed_tcmalloc() -> bool:
    """Whether the tcmalloc that make train and make run preload is installed here."""
    import shutil

    from model.device import TCMALLOC

    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        return False
    return TCMALLOC in subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout


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
