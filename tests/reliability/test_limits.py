"""Every limit on what costs, against two real uvicorn processes over one database (SQLite file or
PostgreSQL), with small limits: login per (account, address) and the per-account cap, registrations per
address, chat messages per minute and generated tokens per day (on /api/chat and /v1 alike, with an API key
too). The servers see each request's address the way they do behind nginx: from X-Forwarded-For sent by
the one proxy they trust (here the test, on 127.0.0.1; tests/infra/test_nginx.py shows nginx overwriting
whatever a client sends)."""

import itertools
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import PASSWORD, LiveServer, clear_rate_limits, server_pair, unique_email
from tests.reliability.conftest import record

pytestmark = pytest.mark.slow
LIMITS = {
    "SLM_REGISTER_MAX_PER_IP": "3",
    "SLM_CHAT_MAX_MESSAGES_PER_MINUTE": "3",
    "SLM_CHAT_MAX_TOKENS_PER_DAY": "30",
    "SLM_LOGIN_MAX_FAILURES_PER_ACCOUNT": "5",
    "SLM_LOGIN_ACCOUNT_CAP": "8",
}
_addresses = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


def address() -> dict[str, str]:
    """A fresh client address, as nginx would forward it."""
    return {"X-Forwarded-For": next(_addresses)}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    with server_pair(database_url, tmp_path_factory.mktemp("limits"), env=LIMITS) as pair:
        clear_rate_limits(database_url)
        yield pair


def register(server: LiveServer) -> tuple[str, dict[str, str]]:
    email = unique_email()
    response = httpx.post(
        f"{server.url}/api/auth/register", json={"email": email, "password": PASSWORD}, headers=address()
    )
    assert response.status_code == 201, response.text
    return email, {"Authorization": f"Bearer {response.json()['access_token']}"}


def login(server: LiveServer, email: str, password: str, where: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/auth/login", json={"email": email, "password": password}, headers=where
    )


def assert_429(response: httpx.Response, about: str) -> int:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limited" and about in error["message"], error
    return int(response.headers["Retry-After"])


def test_an_attacker_is_throttled_and_the_owner_still_logs_in(servers: tuple[LiveServer, LiveServer]) -> None:
    email, _ = register(servers[0])
    attacker, owner = address(), address()
    statuses = [login(servers[i % 2], email, f"guess {i}", attacker).status_code for i in range(10)]
    assert statuses == [401] * 5 + [429] * 5  # 5 failures per (account, address), across both processes
    assert_429(login(servers[1], email, PASSWORD, attacker), "login attempts")  # even the right password
    for server in servers:  # the owner, from a clean address, is not locked out
        assert login(server, email, PASSWORD, owner).status_code == 200
    record("limits-login-pair", {"attacker": statuses, "owner": 200})


def test_past_the_account_cap_one_attempt_a_minute_from_anywhere(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    email, _ = register(servers[0])
    spread = [login(servers[i % 2], email, f"guess {i}", where).status_code for i, where in enumerate(
        [a for a in (address(), address()) for _ in range(4)])]  # fmt: skip
    assert spread == [401] * 8  # 4 from each of two addresses: no pair reached 5, the account reached 8
    first = login(servers[0], email, "guess 9", address())
    assert first.status_code == 401  # this minute's one attempt
    wait = assert_429(login(servers[1], email, "guess 10", address()), "login attempts")
    owner = login(servers[0], email, PASSWORD, address())
    owner_wait = assert_429(owner, "login attempts")  # the owner waits too, but at most a minute
    assert 0 < wait <= 60 and 0 < owner_wait <= 60
    record("limits-login-cap", {"failures_before_cap": 8, "retry_after_s": wait})


def test_registrations_per_address(servers: tuple[LiveServer, LiveServer]) -> None:
    where = address()
    statuses = [
        httpx.post(
            f"{servers[i % 2].url}/api/auth/register",
            json={"email": unique_email(), "password": PASSWORD},
            headers=where,
        ).status_code
        for i in range(5)
    ]
    assert statuses == [201] * 3 + [429] * 2
    assert_429(
        httpx.post(
            f"{servers[0].url}/api/auth/register",
            json={"email": unique_email(), "password": PASSWORD},
            headers=where,
        ),
        "registrations",
    )
    assert (
        httpx.post(
            f"{servers[1].url}/api/auth/register",
            json={"email": unique_email(), "password": PASSWORD},
            headers=address(),
        ).status_code
        == 201
    )  # another address is not affected
    record("limits-register", {"per_address_per_hour": statuses})


def chat(server: LiveServer, headers: dict[str, str], **body) -> httpx.Response:
    body = {"conversation_id": None, "message": "Hello!", "max_new_tokens": 2, **body}
    return httpx.post(f"{server.url}/api/chat", json=body, headers=headers, timeout=120)


def completion(server: LiveServer, headers: dict[str, str]) -> httpx.Response:
    body = {"model": "slm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=120)


def test_chat_messages_per_minute_on_both_routes_and_api_keys(servers: tuple[LiveServer, LiveServer]) -> None:
    _, headers = register(servers[0])
    key = httpx.post(f"{servers[0].url}/api/auth/keys", json={"name": "sdk"}, headers=headers).json()["key"]
    assert chat(servers[0], headers).status_code == 200
    assert completion(servers[1], {"Authorization": f"Bearer {key}"}).status_code == 200  # the same budget
    assert chat(servers[1], headers).status_code == 200
    before = httpx.get(f"{servers[0].url}/api/conversations", headers=headers).json()["total"]
    assert_429(chat(servers[0], headers), "messages a minute")
    assert_429(completion(servers[1], headers), "messages a minute")
    assert_429(completion(servers[0], {"Authorization": f"Bearer {key}"}), "messages a minute")
    assert (
        httpx.get(f"{servers[1].url}/api/conversations", headers=headers).json()["total"] == before
    )  # nothing stored
    record("limits-chat-messages", {"per_minute": 3, "routes": ["/api/chat", "/v1/chat/completions"]})


def test_generated_tokens_per_day(servers: tuple[LiveServer, LiveServer]) -> None:
    _, headers = register(servers[0])
    for server in servers:  # 16 + 16 tokens: past the day's 30
        response = chat(server, headers, max_new_tokens=16, min_new_tokens=16)
        assert response.status_code == 200 and "event: done" in response.text
    wait = assert_429(chat(servers[0], headers), "generated tokens today")
    assert_429(completion(servers[1], headers), "generated tokens today")
    assert 0 < wait <= 24 * 3600
    record("limits-tokens", {"per_day": 30, "used": 32, "retry_after_s": wait})
