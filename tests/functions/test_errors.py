"""Bad input of every kind gives the one error shape with the right status, and never a 500."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from shared.security import create_access_token
from tests.helpers import SECRET, assert_error, register


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": 12345, "password": "correct horse"}, "email"),
        ({"email": "a@example.com", "password": ["list"]}, "password"),
        ({"email": "a" * 400 + "@example.com", "password": "correct horse"}, "email"),
        ({"email": "a@example.com", "password": "x" * 5000}, "password"),
        ({"email": "a@example.com", "password": "correct horse", "admin": True}, "admin"),
    ],
)
def test_register_bad_fields_are_422(client: TestClient, payload: dict, field: str) -> None:
    error = assert_error(client.post("/api/auth/register", json=payload), 422, "validation_error")
    assert field in error["fields"]


def test_body_that_is_not_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/auth/login",
        content=b'{"email": "a@b.c", "password":',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_sent_as_another_media_type_is_415(client: TestClient, content_type: str) -> None:
    """A form or plain text where JSON is read says so, rather than "Input should be a valid dictionary"."""
    response = client.post(
        "/api/auth/login", content=b"email=a%40b.c&password=x", headers={"Content-Type": content_type}
    )
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"] and content_type in error["message"]
    alice = register(client)
    title = client.post(
        "/api/conversations", content=b"title=x", headers={**alice.headers, "Content-Type": "text/plain"}
    )
    assert_error(title, 415, "unsupported_media_type")
    # JSON under a +json type, or with a charset, is read as JSON
    for json_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        named = client.post(
            "/api/conversations",
            content=b'{"title": "x"}',
            headers={**alice.headers, "Content-Type": json_type},
        )
        assert named.status_code == 201 and named.json()["title"] == "x", (json_type, named.text)


def test_body_over_the_size_limit_is_413(client: TestClient) -> None:
    big = {"email": "a@example.com", "password": "p" * (70 * 1024)}
    assert_error(client.post("/api/auth/register", json=big), 413, "payload_too_large")


def test_streamed_body_over_the_size_limit_is_413(client: TestClient) -> None:
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = client.post(
        "/api/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/api/nope"), 404, "not_found")
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.delete("/api/auth/login"), 405, "method_not_allowed")
    assert_error(client.put("/api/conversations"), 405, "method_not_allowed")


def test_wrong_typed_path_and_query_are_422(client: TestClient) -> None:
    user = register(client)
    assert_error(client.get("/api/conversations/abc", headers=user.headers), 422)
    assert_error(client.get("/api/conversations/99999999999999999999", headers=user.headers), 422)
    assert_error(client.get("/api/conversations?limit=0", headers=user.headers), 422)
    assert_error(client.get("/api/conversations?limit=abc", headers=user.headers), 422)
    assert_error(client.get("/api/conversations?offset=-1", headers=user.headers), 422)
    assert_error(client.post("/api/conversations", json={"title": "t" * 201}, headers=user.headers), 422)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not.a.jwt",
        "Bearer " + "a" * 3000,
    ],
)
def test_missing_or_malformed_token_is_401(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    assert_error(client.get("/api/conversations", headers=headers), 401, "not_authenticated")


def test_tampered_wrongly_signed_expired_and_unsigned_tokens_are_401(client: TestClient) -> None:
    user = register(client)
    now = datetime.now(UTC)
    head, payload, signature = user.token.split(".")
    tampered = ".".join([head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")])
    subject = jwt.decode(user.token, options={"verify_signature": False})["sub"]  # the real one: only the
    other_key = create_access_token(subject, "another-key-that-is-long-enough-12345", 60)
    expired = create_access_token(subject, SECRET, 60, now=now - timedelta(hours=2))  # flaw is refused
    unsigned = jwt.encode(
        {"sub": subject, "iat": now, "exp": now + timedelta(hours=1)}, None, algorithm="none"
    )
    no_exp = jwt.encode({"sub": subject, "iat": now}, SECRET, algorithm="HS256")
    hs512 = jwt.encode(
        {"sub": subject, "iat": now, "exp": now + timedelta(hours=1)}, SECRET, algorithm="HS512"
    )
    for token in (tampered, other_key, expired, unsigned, no_exp, hs512):
        response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "not_authenticated")


def test_deleted_users_token_is_401(client: TestClient, use_database: str) -> None:
    from sqlalchemy import create_engine, text

    from shared.migrate import sync_url

    user = register(client)
    engine = create_engine(sync_url(use_database))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    engine.dispose()
    error = assert_error(client.get("/api/auth/me", headers=user.headers), 401, "not_authenticated")
    assert "no longer exists" in error["message"]
