"""Abuse against two real uvicorn processes sharing one database (SQLite file or PostgreSQL): login brute
force, racing registrations, forged tokens, SQL metacharacters and 1 MB strings in every text field, CORS."""

import contextlib
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from shared.migrate import sync_url
from shared.security import create_access_token
from tests.functions.chat.sse_client import chat, conversation, register_http
from tests.helpers import (
    PASSWORD,
    SECRET,
    LiveServer,
    assert_error,
    clear_rate_limits,
    server_pair,
    unique_email,
)
from tests.reliability.conftest import record

pytestmark = pytest.mark.slow
MEGABYTE = "x" * (1024 * 1024)
SQL = [
    "'; DROP TABLE users; --",
    '" OR 1=1 --',
    "Robert'); DELETE FROM messages WHERE '1'='1",
    "%_\\ LIKE '%' ESCAPE",
    "$$; SELECT pg_sleep(30); $$",
    "1; UPDATE users SET email='x' --",
]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two server processes over one database, as two containers or Lambda instances would be."""
    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    # the login counters' fixed windows start at multiples of their length since 1970: with the default 15
    # minutes, a burst made as the clock passes :00, :15, :30 or :45 is counted in two windows. One window
    # from 1970 to 2096 keeps every burst of these tests in one
    env = {"SLM_LOGIN_WINDOW_SECONDS": str(4_000_000_000)}
    with server_pair(database_url, tmp_path_factory.mktemp("abuse"), env=env) as pair:
        yield pair


def login(server: LiveServer, email: str, password: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/auth/login", json={"email": email, "password": password})


def test_login_brute_force_is_throttled_across_two_processes(servers: tuple[LiveServer, LiveServer]) -> None:
    first, second = servers
    clear_rate_limits(first.database_url)
    email = unique_email()
    assert httpx.post(
        f"{first.url}/api/auth/register", json={"email": email, "password": PASSWORD}
    ).is_success
    statuses = [login((first, second)[i % 2], email, f"wrong-guess-{i}").status_code for i in range(10)]
    assert statuses == [401] * 5 + [429] * 5  # 5 failures per account, counted across both processes
    for server in servers:  # now locked on both, even with the right password
        locked = login(server, email, PASSWORD)
        assert_error(locked, 429, "rate_limited")
        assert int(locked.headers["Retry-After"]) > 0

    clear_rate_limits(first.database_url)  # per client IP: 30 attempts, whatever the accounts
    ip_statuses = [
        login((first, second)[i % 2], unique_email(), "wrong-guess").status_code for i in range(32)
    ]
    assert ip_statuses == [401] * 30 + [429] * 2
    clear_rate_limits(first.database_url)
    record("abuse-brute-force", {"account": statuses, "ip_attempts_allowed": ip_statuses.count(401)})


def test_the_same_email_registered_at_the_same_moment_makes_one_user(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    email, racers = unique_email(), 12
    barrier = threading.Barrier(racers)

    def register(i: int) -> int:
        barrier.wait()
        url = f"{servers[i % 2].url}/api/auth/register"
        return httpx.post(url, json={"email": email, "password": PASSWORD}, timeout=60).status_code

    with ThreadPoolExecutor(racers) as pool:
        statuses = sorted(pool.map(register, range(racers)))
    assert statuses == [201] + [409] * (racers - 1)
    engine = create_engine(sync_url(servers[0].database_url))
    with engine.connect() as connection:
        count = connection.scalar(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email})
    engine.dispose()
    assert count == 1


def authenticated_routes(server: LiveServer) -> list[tuple[str, str]]:
    paths = httpx.get(f"{server.url}/api/openapi.json").json()["paths"]
    return [
        (method.upper(), re.sub(r"\{\w+\}", "1", path))
        for path, item in paths.items()
        for method, operation in item.items()
        if operation.get("security")
    ]


def test_forged_expired_and_orphaned_tokens_are_refused_on_every_route(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    server = servers[0]
    headers = register_http(server.url)
    # the user's real subject: each token below is refused for one flaw only
    subject = jwt.decode(
        headers["Authorization"].removeprefix("Bearer "), options={"verify_signature": False}
    )["sub"]
    now = datetime.now(UTC)
    claims = {"sub": subject, "iat": now, "exp": now + timedelta(hours=1)}
    deleted = register_http(server.url)
    deleted_id = httpx.get(f"{server.url}/api/auth/me", headers=deleted).json()["id"]
    engine = create_engine(sync_url(server.database_url))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": deleted_id})
    engine.dispose()
    revoked = register_http(server.url)  # logged out everywhere: its earlier token is refused
    assert httpx.post(f"{server.url}/api/auth/logout", headers=revoked).status_code == 204
    tokens = {
        "revoked by log out": revoked["Authorization"].removeprefix("Bearer "),
        "another key": create_access_token(subject, "another-key-that-is-long-enough-12345", 60),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "expired": create_access_token(subject, SECRET, 60, now=now - timedelta(hours=2)),
        "deleted user": deleted["Authorization"].removeprefix("Bearer "),
    }
    routes = authenticated_routes(server)
    assert len(routes) == 20  # every route but health, register and login
    for name, token in tokens.items():
        for method, path in routes:
            response = httpx.request(
                method, f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"}, json={}
            )
            assert response.status_code == 401, (name, method, path, response.text)
            assert_error(response, 401, "not_authenticated")
    record(
        "abuse-tokens",
        {"tokens": sorted(tokens), "routes": len(routes), "refused": len(tokens) * len(routes)},
    )


def test_sql_metacharacters_are_stored_verbatim_and_never_run(servers: tuple[LiveServer, LiveServer]) -> None:
    server = servers[0]
    url = server.url
    for payload in SQL:
        email = f"{uuid.uuid4().hex[:6]}{payload.replace(' ', '')}@example.com"
        registered = httpx.post(f"{url}/api/auth/register", json={"email": email, "password": payload + "pw"})
        assert registered.status_code == 201, registered.text
        assert registered.json()["user"]["email"] == email.lower()
        assert login(server, email, payload + "pw").status_code == 200
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        created = httpx.post(f"{url}/api/conversations", json={"title": payload}, headers=headers)
        assert created.status_code == 201 and created.json()["title"] == payload
        found = httpx.get(f"{url}/api/conversations", params={"q": payload}, headers=headers).json()
        assert [c["title"] for c in found["items"]] == [payload]
        none = httpx.get(f"{url}/api/conversations", params={"q": payload + "!"}, headers=headers).json()
        assert none["total"] == 0
        stream = chat(url, headers, conversation_id=created.json()["id"], message=payload, max_new_tokens=2)
        assert stream[-1][0] == "done"
        saved = conversation(url, headers, created.json()["id"])
        assert saved["messages"][0]["content"] == payload
    engine = create_engine(sync_url(server.database_url))
    with engine.connect() as connection:  # the tables are all there and nothing was rewritten
        assert connection.scalar(text("SELECT count(*) FROM users WHERE email = 'x'")) == 0
        assert connection.scalar(text("SELECT count(*) FROM messages")) > 0
    engine.dispose()


def raw_status(url: str, head: str) -> int | None:
    """Send a request line and headers as they are; the status code of the answer, or None when the server
    refused them by closing the connection before an answer could be read (the HTTP server answers an
    overlong request line and closes while the client is still sending the rest of the megabyte: the
    client's send then meets a reset, and with it the answer may be gone)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        answer = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # refused mid-send: read what came
            sock.sendall(f"{head}Host: {host}\r\nConnection: close\r\n\r\n".encode())
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
    return int(answer.split(b" ", 2)[1]) if b" " in answer else None


def test_megabyte_strings_in_every_text_field_are_refused_cleanly(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    url = servers[0].url
    headers = register_http(url)
    own = httpx.post(f"{url}/api/conversations", json={"title": "mine"}, headers=headers).json()["id"]
    completion = {"model": "slm", "messages": [{"role": "user", "content": MEGABYTE}]}
    bodies = [
        ("POST", "/api/auth/register", {"email": MEGABYTE + "@example.com", "password": PASSWORD}),
        ("POST", "/api/auth/register", {"email": unique_email(), "password": MEGABYTE}),
        ("POST", "/api/auth/login", {"email": MEGABYTE, "password": PASSWORD}),
        ("POST", "/api/auth/login", {"email": unique_email(), "password": MEGABYTE}),
        ("POST", "/api/conversations", {"title": MEGABYTE}),
        ("PATCH", f"/api/conversations/{own}", {"title": MEGABYTE}),
        ("POST", "/api/chat", {"message": MEGABYTE}),
        ("POST", "/v1/chat/completions", completion),
    ]
    outcomes = {}
    for method, path, body in bodies:
        response = httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=60)
        assert_error(response, 413, "payload_too_large")
        outcomes[f"{method} {path}"] = response.status_code
    # in the URL and in a header (sent raw: clients refuse to) it is refused before the app, never a 500
    auth = headers["Authorization"]
    search = raw_status(url, f"GET /api/conversations?q={MEGABYTE} HTTP/1.1\r\nAuthorization: {auth}\r\n")
    big_token = raw_status(url, f"GET /api/auth/me HTTP/1.1\r\nAuthorization: Bearer {MEGABYTE}\r\n")
    for status in (search, big_token):  # refused before the app: a 4xx, or the connection closed on it
        assert status is None or 400 <= status < 500
    outcomes["GET /api/conversations?q="] = search
    outcomes["Authorization header"] = big_token
    assert httpx.get(f"{url}/api/conversations/{own}", headers=headers).json()["title"] == "mine"
    record("abuse-megabyte", outcomes)


@pytest.mark.parametrize("origin", [None, "https://app.example.com"])
def test_cors_allows_only_the_configured_origin(origin: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.auth.app import component
    from shared.app import create_app
    from shared.settings import get_settings

    if origin:
        monkeypatch.setenv("SLM_CORS_ORIGIN", origin)
    get_settings.cache_clear()
    app = create_app("auth", [component])
    get_settings.cache_clear()
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with TestClient(app) as client:
        for other in ("https://evil.example.com", "null", "https://app.example.com.evil.com"):
            answer = client.options("/api/auth/login", headers={"Origin": other, **preflight})
            assert "access-control-allow-origin" not in answer.headers
            simple = client.get("/api/health", headers={"Origin": other})
            assert "access-control-allow-origin" not in simple.headers
        if origin:
            answer = client.options("/api/auth/login", headers={"Origin": origin, **preflight})
            assert answer.status_code == 200
            assert answer.headers["access-control-allow-origin"] == origin
            assert answer.headers["access-control-allow-credentials"] == "true"
            # the OpenAI JavaScript SDK in a browser, against /v1: its own headers pass the preflight too
            sdk = "authorization, content-type, x-stainless-os, x-stainless-lang, x-stainless-retry-count"
            answer = client.options(
                "/api/auth/keys",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": sdk,
                },
            )
            assert (
                answer.status_code == 200
                and "x-stainless-os" in answer.headers["access-control-allow-headers"]
            )
            answer = client.options(
                "/api/auth/keys",
                headers={
                    "Origin": "https://evil.example.com",
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": sdk,
                },
            )
            assert "access-control-allow-origin" not in answer.headers
