"""Every limit on what costs, against two real uvicorn processes over one database (SQLite file or
PostgreSQL), with small limits, one request at a time and in bursts of 30 at once: login per (account,
address), per known device and the per-account cap on unknown clients, password checks of signed-in users,
registrations per address, chat messages per minute and generated tokens per day (on /api/chat and /v1
alike, with an API key too), conversations and API keys per user. The servers see each request's address
the way they do behind nginx: from X-Forwarded-For sent by the one proxy they trust (here the test, on
127.0.0.1; tests/infra/test_nginx.py shows nginx overwriting whatever a client sends)."""

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.helpers import (
    PASSWORD,
    LiveServer,
    clear_rate_limits,
    server_pair,
    unique_email,
    within_one_window,
)
from tests.reliability.conftest import record

pytestmark = pytest.mark.slow
LIMITS = {
    "SLM_REGISTER_MAX_PER_IP": "3",
    "SLM_CHAT_MAX_MESSAGES_PER_MINUTE": "3",
    "SLM_CHAT_MAX_TOKENS_PER_DAY": "30",
    "SLM_LOGIN_MAX_FAILURES_PER_ACCOUNT": "5",
    "SLM_LOGIN_ACCOUNT_CAP": "8",
    "SLM_MAX_CONVERSATIONS_PER_USER": "3",
    "SLM_MAX_API_KEYS_PER_USER": "2",
}
BURST = 30
TEST_SECONDS = 15  # the longest a test here takes (they take 1-6 s)
_addresses = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


@pytest.fixture(autouse=True)
def whole_window() -> None:
    """Each test runs inside one window of every limit (tests.helpers.within_one_window)."""
    within_one_window(TEST_SECONDS)


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


def burst(servers: tuple[LiveServer, LiveServer], send: Callable[[LiveServer], httpx.Response]) -> list[int]:
    """BURST requests at once, half to each process; their status codes."""
    with ThreadPoolExecutor(BURST) as pool:
        return [r.status_code for r in pool.map(lambda i: send(servers[i % 2]), range(BURST))]


def test_past_the_account_cap_only_known_devices_may_try(servers: tuple[LiveServer, LiveServer]) -> None:
    """OWASP's device cookies: past the cap on failures from unknown clients (8 here), an unknown client
    is refused even with the right password until the window ends, while the owner's browser, which logged
    in before, keeps an allowance of its own (the old one-attempt-a-minute throttle let a trickle of
    guesses keep the owner out for good)."""
    email, _ = register(servers[0])
    browser = httpx.Client(headers=address())
    assert (
        browser.post(
            f"{servers[0].url}/api/auth/login", json={"email": email, "password": PASSWORD}
        ).status_code
        == 200
    )
    assert "slm_device" in browser.cookies
    spread = [login(servers[i % 2], email, f"guess {i}", where).status_code for i, where in enumerate(
        [a for a in (address(), address()) for _ in range(4)])]  # fmt: skip
    assert spread == [401] * 8  # 4 from each of two addresses: no pair reached 5, the account reached 8
    wait = assert_429(login(servers[1], email, PASSWORD, address()), "login attempts")  # unknown: refused
    assert 0 < wait <= 24 * 3600
    for server in servers:  # the owner's browser still logs in, on either process
        again = browser.post(f"{server.url}/api/auth/login", json={"email": email, "password": PASSWORD})
        assert again.status_code == 200, again.text
    own = [
        browser.post(
            f"{servers[0].url}/api/auth/login", json={"email": email, "password": "typo"}
        ).status_code
        for _ in range(6)
    ]
    assert own == [401] * 5 + [429]  # a known device has 5 failures of its own, not unlimited ones
    browser.close()
    record("limits-login-cap", {"unknown_failures_before_cap": 8, "retry_after_s": wait, "known_device": 200})


def test_an_address_spent_by_an_attacker_leaves_the_owners_browser_its_own_allowance(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    """Under make run every local client is one address: an attacker there spending the address's 30
    attempts (on any accounts) shuts out unknown clients at that address, not the owner's browser."""
    email, _ = register(servers[0])
    shared = address()
    browser = httpx.Client(headers=shared)
    body = {"email": email, "password": PASSWORD}
    assert browser.post(f"{servers[0].url}/api/auth/login", json=body).status_code == 200
    spent = [login(servers[i % 2], unique_email(), "guess", shared).status_code for i in range(30)]
    assert spent == [401] * 29 + [429]  # the browser's first login, unknown then, took one of the 30
    assert_429(login(servers[1], email, PASSWORD, shared), "login attempts")  # an unknown client there
    assert browser.post(f"{servers[1].url}/api/auth/login", json=body).status_code == 200
    browser.close()


def test_password_change_and_account_deletion_are_limited_like_login(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    _, headers = register(servers[0])
    where = {**headers, **address()}
    change = [
        httpx.post(
            f"{servers[i % 2].url}/api/auth/password",
            json={"current_password": f"guess {i}", "new_password": "a whole new password"},
            headers=where,
        ).status_code
        for i in range(6)
    ]
    assert change == [401] * 5 + [429]
    delete = httpx.request(
        "DELETE", f"{servers[1].url}/api/auth/me", json={"password": PASSWORD}, headers=where
    )
    assert_429(delete, "login attempts")  # the same counters: even the right password waits
    assert httpx.get(f"{servers[0].url}/api/auth/me", headers=headers).status_code == 200  # still there
    record("limits-password-checks", {"change_password": change, "delete_account": 429})


def test_wrong_passwords_in_a_burst_are_checked_no_more_than_the_limit(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    """30 guesses at once from one address: 5 are checked (401), 25 refused before bcrypt runs (429); the
    check made before counting let 15 of 30 through for a limit of 5."""
    email, _ = register(servers[0])
    where = address()
    statuses = burst(servers, lambda server: login(server, email, "a wrong guess", where))
    assert sorted(statuses) == [401] * 5 + [429] * 25
    record("limits-burst-login", {"sent": BURST, "checked": statuses.count(401), "limit": 5})


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


def test_registrations_in_a_burst_stop_at_the_limit(servers: tuple[LiveServer, LiveServer]) -> None:
    """30 registrations at once from one address: exactly 3 (the limit) are made (23 of 30 were)."""
    where = address()

    def send(server: LiveServer) -> httpx.Response:
        body = {"email": unique_email(), "password": PASSWORD}
        return httpx.post(f"{server.url}/api/auth/register", json=body, headers=where, timeout=60)

    statuses = burst(servers, send)
    assert sorted(statuses) == [201] * 3 + [429] * 27
    record("limits-burst-register", {"sent": BURST, "created": statuses.count(201), "limit": 3})


def chat(server: LiveServer, headers: dict[str, str], **body) -> httpx.Response:
    body = {"conversation_id": None, "message": "Hello!", "max_new_tokens": 2, **body}
    return httpx.post(f"{server.url}/api/chat", json=body, headers=headers, timeout=120)


def completion(server: LiveServer, headers: dict[str, str], max_tokens: int = 2) -> httpx.Response:
    body = {"model": "slm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}
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


def test_chat_messages_in_a_burst_stop_at_the_limit(servers: tuple[LiveServer, LiveServer]) -> None:
    """30 messages at once: exactly 3 (the minute's limit) are answered (29 of 30 were for a limit of 20)."""
    _, headers = register(servers[0])
    statuses = burst(servers, lambda server: chat(server, headers))
    assert sorted(statuses) == [200] * 3 + [429] * 27
    record("limits-burst-chat", {"sent": BURST, "answered": statuses.count(200), "limit": 3})


def test_generated_tokens_per_day(servers: tuple[LiveServer, LiveServer]) -> None:
    """An answer reserves its max_new_tokens from the day before it starts and gives back what it did not
    use; one that could pass the day's 30 is refused before it starts."""
    _, headers = register(servers[0])
    first = chat(servers[0], headers, max_new_tokens=16, min_new_tokens=16)
    assert first.status_code == 200 and "event: done" in first.text
    assert_429(chat(servers[1], headers, max_new_tokens=16), "of today's 30 are left")
    assert_429(completion(servers[0], headers, max_tokens=16), "of today's 30 are left")
    short = chat(servers[1], headers, max_new_tokens=14, min_new_tokens=2)  # fits: 16 + 14 = 30
    assert short.status_code == 200 and "event: done" in short.text
    used = 16 + short.text.count("event: token")
    wait = assert_429(chat(servers[0], headers, max_new_tokens=30 - used + 1), "of today's 30 are left")
    assert 0 < wait <= 24 * 3600
    record("limits-tokens", {"per_day": 30, "used": used, "retry_after_s": wait})


def test_a_burst_of_answers_reserves_no_more_than_the_day(servers: tuple[LiveServer, LiveServer]) -> None:
    """30 answers of up to 15 tokens at once against a day of 30: 2 start and at most 30 tokens are
    generated (tokens were counted as answers ended: a 300-token day let 3,750 through)."""
    _, headers = register(servers[0])
    responses: list[httpx.Response] = []

    def send(server: LiveServer) -> httpx.Response:
        response = chat(server, headers, max_new_tokens=15, min_new_tokens=15)
        responses.append(response)
        return response

    statuses = burst(servers, send)
    generated = sum(r.text.count("event: token") for r in responses if r.status_code == 200)
    assert sorted(statuses) == [200] * 2 + [429] * 28 and generated <= 30
    record("limits-burst-tokens", {"sent": BURST, "answered": 2, "generated": generated, "per_day": 30})


def test_conversations_and_api_keys_per_user(servers: tuple[LiveServer, LiveServer]) -> None:
    """3 conversations and 2 API keys per user here; more is a 429 with the error shape, also when 30
    creations arrive at once."""
    _, headers = register(servers[0])

    def create(server: LiveServer) -> httpx.Response:
        return httpx.post(f"{server.url}/api/conversations", json={"title": "t"}, headers=headers, timeout=60)

    statuses = burst(servers, create)
    assert sorted(statuses) == [201] * 3 + [429] * 27
    refused = chat(servers[1], headers)  # a new conversation by chatting is refused the same way
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "conversation_limit"
    keys = [
        httpx.post(f"{servers[i % 2].url}/api/auth/keys", json={"name": f"k{i}"}, headers=headers).status_code
        for i in range(3)
    ]
    assert keys == [201, 201, 429]
    record("limits-caps", {"conversations": statuses.count(201), "api_keys": keys.count(201)})
