"""Arbitrary Unicode in every string field of every route, on SQLite and PostgreSQL: whatever the text
(unpaired surrogates sent as JSON \\ud800 escapes, NUL, characters whose lowercase is longer, the
longest strings each field takes), the answer is never a 5xx, and every answer is valid JSON in UTF-8.

Property-based (hypothesis): each field gets its own examples; a failure shrinks to the smallest text
that breaks it."""

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import Account, register

pytestmark = pytest.mark.slow

# every code point, surrogates included (hypothesis leaves category Cs out unless told)
TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=400)
EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def send(client: TestClient, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """The request with its JSON written as ASCII, so that a lone surrogate travels as its \\u escape."""
    content = None if body is None else json.dumps(body, ensure_ascii=True).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    response = client.request(method, path, content=content, headers=headers, **kwargs)
    assert response.status_code < 500, (method, path, body, response.text)
    response.content.decode("utf-8")  # a valid UTF-8 answer
    if response.headers.get("content-type", "").startswith("application/json"):
        response.json()
    return response


@pytest.fixture(scope="module")
def account(router_client: TestClient) -> Iterator[Account]:
    yield register(router_client)


@pytest.fixture(scope="module")
def conversation_id(router_client: TestClient, account: Account) -> int:
    response = router_client.post("/api/conversations", json={"title": "fuzz"}, headers=account.headers)
    return int(response.json()["id"])


def routes(account: Account, conversation_id: int) -> dict[str, Callable[[TestClient, str], Any]]:
    """Each string field of each route: a request that puts `text` in it and everything else valid."""
    auth, cid = account.headers, conversation_id
    chat = {"max_new_tokens": 1, "conversation_id": None}
    completion = {"model": "slm", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    return {
        "register.email": lambda c, t: send(
            c, "POST", "/api/auth/register", {"email": t, "password": "x" * 8}
        ),
        "register.password": lambda c, t: send(
            c, "POST", "/api/auth/register", {"email": "fuzz@example.com", "password": t}
        ),
        "login.email": lambda c, t: send(c, "POST", "/api/auth/login", {"email": t, "password": "x" * 8}),
        "login.password": lambda c, t: send(
            c, "POST", "/api/auth/login", {"email": account.email, "password": t}
        ),
        "password.current": lambda c, t: send(
            c, "POST", "/api/auth/password", {"current_password": t, "new_password": "y" * 9}, headers=auth
        ),
        "password.new": lambda c, t: send(
            c,
            "POST",
            "/api/auth/password",
            {"current_password": "wrong one", "new_password": t},
            headers=auth,
        ),
        "delete_me.password": lambda c, t: send(
            c, "DELETE", "/api/auth/me", {"password": t + "!"}, headers=auth
        ),
        "keys.name": lambda c, t: send(c, "POST", "/api/auth/keys", {"name": t}, headers=auth),
        "conversations.title": lambda c, t: send(c, "POST", "/api/conversations", {"title": t}, headers=auth),
        "conversation.rename": lambda c, t: send(
            c, "PATCH", f"/api/conversations/{cid}", {"title": t}, headers=auth
        ),
        "conversations.q": lambda c, t: send(  # a URL is bytes: a surrogate arrives as its 3 bytes
            c,
            "GET",
            "/api/conversations?q=" + quote_from_bytes(t.encode("utf-8", "surrogatepass")),
            headers=auth,
        ),
        "chat.message": lambda c, t: send(c, "POST", "/api/chat", {**chat, "message": t}, headers=auth),
        "v1.content": lambda c, t: send(
            c,
            "POST",
            "/v1/chat/completions",
            {**completion, "messages": [{"role": "user", "content": t}]},
            headers=auth,
        ),
        "v1.model": lambda c, t: send(
            c, "POST", "/v1/chat/completions", {**completion, "model": t}, headers=auth
        ),
        "v1.stop": lambda c, t: send(
            c, "POST", "/v1/chat/completions", {**completion, "stop": t}, headers=auth
        ),
        "json.key": lambda c, t: send(c, "POST", "/api/conversations", {t: "x"}, headers=auth),
        "bearer": lambda c, t: send(  # a header is bytes too: the text's UTF-8, surrogates as their bytes
            c,
            "GET",
            "/api/auth/me",
            headers={"Authorization": b"Bearer " + t.encode("utf-8", "surrogatepass")},
        ),
    }


FIELDS = [
    "register.email",
    "register.password",
    "login.email",
    "login.password",
    "password.current",
    "password.new",
    "delete_me.password",
    "keys.name",
    "conversations.title",
    "conversation.rename",
    "conversations.q",
    "chat.message",
    "v1.content",
    "v1.model",
    "v1.stop",
    "json.key",
    "bearer",
]


@pytest.mark.parametrize("field", FIELDS)
@EXAMPLES
@given(text=TEXT)
@example(text="\ud800")
@example(text="a\udfffb")
@example(text="\x00")
@example(text="İ" * 200 + "@example.com")
@example(text="x" * 4001)
def test_no_text_in_any_field_is_a_server_error(
    router_client: TestClient, account: Account, conversation_id: int, field: str, text: str
) -> None:
    routes(account, conversation_id)[field](router_client, text)
