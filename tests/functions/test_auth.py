from fastapi.testclient import TestClient

from tests.helpers import PASSWORD, register, unique_email


def test_register_returns_user_and_token(auth_client: TestClient) -> None:
    email = unique_email()
    response = auth_client.post(
        "/api/auth/register", json={"email": f"  {email.upper()} ", "password": PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == email
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    me = auth_client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["id"] == body["user"]["id"]
    assert "password" not in me.text and "hash" not in me.text


def test_register_same_email_twice_conflicts(auth_client: TestClient) -> None:
    account = register(auth_client)
    response = auth_client.post("/api/auth/register", json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


def test_register_refuses_password_over_72_bytes_with_clear_message(auth_client: TestClient) -> None:
    password = "é" * 37  # 74 bytes in UTF-8, 37 characters
    response = auth_client.post("/api/auth/register", json={"email": unique_email(), "password": password})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "74 bytes" in error["fields"]["password"] and "72" in error["fields"]["password"]


def test_register_accepts_exactly_72_bytes_and_login_needs_all_of_them(auth_client: TestClient) -> None:
    password = "p" * 72
    account = register(auth_client, password=password)
    ok = auth_client.post("/api/auth/login", json={"email": account.email, "password": password})
    assert ok.status_code == 200
    longer = auth_client.post("/api/auth/login", json={"email": account.email, "password": password + "x"})
    assert longer.status_code == 401


def test_register_refuses_short_password_and_bad_email(auth_client: TestClient) -> None:
    response = auth_client.post("/api/auth/register", json={"email": "not-an-email", "password": "short"})
    assert response.status_code == 422
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"email", "password"}


def test_register_refuses_an_email_with_invisible_characters(auth_client: TestClient) -> None:
    """A zero-width space, a direction mark or a soft hyphen prints as nothing: "ada\u200b@example.com"
    would be a second account that looks like ada's. The schema's pattern says so too."""
    for hidden in ("\u200b", "\u200e", "\u00ad", "\ufeff", "\u2066", "\ufe0f", "\u034f", "\u3164"):
        response = auth_client.post(
            "/api/auth/register", json={"email": f"ada{hidden}@example.com", "password": PASSWORD}
        )
        assert response.status_code == 422, hidden
        assert f"U+{ord(hidden):04X}" in response.json()["error"]["fields"]["email"]
    pattern = auth_client.get("/api/openapi.json").json()["components"]["schemas"]["UserCreate"]
    assert "\\u200b" in pattern["properties"]["email"]["pattern"]
    assert (
        auth_client.post(
            "/api/auth/register", json={"email": "adá@example.com", "password": PASSWORD}
        ).status_code
        == 201
    )


def test_login_returns_token(auth_client: TestClient) -> None:
    account = register(auth_client)
    response = auth_client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert auth_client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_login_wrong_password_and_unknown_email_give_the_same_error(auth_client: TestClient) -> None:
    account = register(auth_client)
    wrong = auth_client.post("/api/auth/login", json={"email": account.email, "password": "wrong password"})
    unknown = auth_client.post("/api/auth/login", json={"email": unique_email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"error": {"code": "invalid_credentials", "message": "Wrong email or password"}}
    )


def test_login_is_rate_limited_per_account_with_retry_after(auth_client: TestClient) -> None:
    account = register(auth_client)
    for _ in range(5):
        response = auth_client.post(
            "/api/auth/login", json={"email": account.email, "password": "bad password"}
        )
        assert response.status_code == 401
    blocked = auth_client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert 0 < int(blocked.headers["Retry-After"]) <= 15 * 60
    # another account from the same client is not locked by it
    other = register(auth_client)
    assert (
        auth_client.post("/api/auth/login", json={"email": other.email, "password": PASSWORD}).status_code
        == 200
    )


def test_login_success_resets_the_account_counter(auth_client: TestClient) -> None:
    account = register(auth_client)
    for _ in range(4):
        auth_client.post("/api/auth/login", json={"email": account.email, "password": "bad password"})
    assert (
        auth_client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD}).status_code
        == 200
    )
    for _ in range(4):
        response = auth_client.post(
            "/api/auth/login", json={"email": account.email, "password": "bad password"}
        )
        assert response.status_code == 401


def test_login_is_rate_limited_per_ip(auth_client: TestClient, monkeypatch) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("SLM_LOGIN_MAX_ATTEMPTS_PER_IP", "3")
    get_settings.cache_clear()
    ip = {"X-Forwarded-For": "ignored"}  # the client address, not a header the caller controls, is the key
    statuses = [
        auth_client.post(
            "/api/auth/login", json={"email": unique_email(), "password": PASSWORD}, headers=ip
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def test_me_without_token_is_401(auth_client: TestClient) -> None:
    response = auth_client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_device_cookie_from_before_a_password_change_is_an_unknown_client(
    auth_client: TestClient, monkeypatch
) -> None:
    """A cookie kept by someone who once knew the password bought 5 guesses of its own per window, and
    each login minted another; after the owner changes the password (or logs out everywhere) it is an
    unknown client's: its address's and the account's limits apply."""
    from shared.settings import get_settings

    account = register(auth_client)
    stolen = auth_client.cookies.get("slm_device")
    assert stolen
    changed = auth_client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=account.headers,
    )
    assert changed.status_code == 200
    monkeypatch.setenv("SLM_LOGIN_ACCOUNT_CAP", "3")  # unknown clients' failures on the account
    get_settings.cache_clear()
    auth_client.cookies.clear()
    auth_client.cookies.set("slm_device", stolen, path="/api/auth")
    statuses = [
        auth_client.post(
            "/api/auth/login", json={"email": account.email, "password": f"guess {i}"}
        ).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]  # the account's cap for unknown clients, not 5 of its own


def test_the_accounts_known_devices_share_a_budget_of_checks(auth_client: TestClient, monkeypatch) -> None:
    """Right passwords from one's own known devices were unlimited (each login a new device): a burst kept
    the bcrypt pool, which every login shares, busy for everyone. Now they share the address budget."""
    from shared.settings import get_settings

    monkeypatch.setenv("SLM_LOGIN_MAX_ATTEMPTS_PER_IP", "4")
    get_settings.cache_clear()
    other = register(auth_client)
    account = register(auth_client)  # this client is now a known device of `account` (its last cookie)
    statuses = [
        auth_client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD}).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]
    # counted as the account's known devices', not as this address's: an unknown client here still may try
    auth_client.cookies.clear()
    assert (
        auth_client.post("/api/auth/login", json={"email": other.email, "password": PASSWORD}).status_code
        == 200
    )


def test_a_new_password_may_not_hold_nul(auth_client: TestClient) -> None:
    """bcrypt stops at the first NUL: "pw\\0anything" would have been the same password as "pw"."""
    response = auth_client.post(
        "/api/auth/register", json={"email": unique_email(), "password": "pw\x00pw\x00pw"}
    )
    assert response.status_code == 422 and "NUL" in response.json()["error"]["fields"]["password"]
