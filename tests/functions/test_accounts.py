"""Account management and API keys through the local router (every function in one app), on SQLite and
PostgreSQL: password change and log out everywhere revoke older tokens; deleting an account removes every
row of the user; API keys are shown once, stored hashed, and revoked for good."""

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from shared.migrate import sync_url
from tests.helpers import PASSWORD, add_messages, register

NEW_PASSWORD = "a new and longer passphrase"


def rows(database_url: str, sql: str, **params) -> int:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        count = connection.execute(text(sql), params).scalar_one()
    engine.dispose()
    return int(count)


def login(client: TestClient, email: str, password: str) -> int:
    return client.post("/api/auth/login", json={"email": email, "password": password}).status_code


def test_password_change_refuses_older_tokens_and_returns_a_new_one(client: TestClient) -> None:
    alice = register(client)
    old = alice.headers
    wrong = client.post(
        "/api/auth/password",
        json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
        headers=old,
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    short = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=old
    )
    assert short.status_code == 422 and "new_password" in short.json()["error"]["fields"]
    assert client.get("/api/auth/me", headers=old).status_code == 200  # nothing changed yet
    changed = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=old
    )
    assert changed.status_code == 200
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    refused = client.get("/api/auth/me", headers=old)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert client.get("/api/conversations", headers=old).status_code == 401  # every function refuses it
    assert client.get("/api/auth/me", headers=fresh).json()["email"] == alice.email
    assert login(client, alice.email, PASSWORD) == 401
    assert login(client, alice.email, NEW_PASSWORD) == 200


def test_logout_everywhere_refuses_every_earlier_token(client: TestClient) -> None:
    alice = register(client)
    second = client.post("/api/auth/login", json={"email": alice.email, "password": PASSWORD}).json()
    other_device = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.post("/api/auth/logout", headers=alice.headers).status_code == 204
    for headers in (alice.headers, other_device):
        assert client.get("/api/auth/me", headers=headers).status_code == 401
    again = client.post("/api/auth/login", json={"email": alice.email, "password": PASSWORD}).json()
    assert (
        client.get("/api/auth/me", headers={"Authorization": f"Bearer {again['access_token']}"}).status_code
        == 200
    )


def test_deleting_the_account_removes_every_row_of_the_user(client: TestClient, use_database: str) -> None:
    alice, bob = register(client), register(client)
    for account in (alice, bob):
        cid = client.post("/api/conversations", json={"title": "mine"}, headers=account.headers).json()["id"]
        add_messages(use_database, cid, [("user", "hi"), ("assistant", "hello")])
        assert (
            client.post("/api/auth/keys", json={"name": "laptop"}, headers=account.headers).status_code == 201
        )
    client.post("/api/auth/login", json={"email": alice.email, "password": "a wrong password"})  # a counter
    login(client, alice.email, PASSWORD)  # this browser now knows alice: its checks count as her own
    assert (
        rows(use_database, "SELECT COUNT(*) FROM rate_limit_buckets WHERE key LIKE :k", k=f"%{alice.email}%")
        >= 1
    )
    wrong = client.request(
        "DELETE", "/api/auth/me", json={"password": "not the password"}, headers=alice.headers
    )
    assert wrong.status_code == 401
    known = "SELECT COUNT(*) FROM rate_limit_buckets WHERE key = :k"
    assert rows(use_database, known, k=f"login:known:{alice.email}") == 1
    gone = client.request("DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=alice.headers)
    assert gone.status_code == 204
    # every counter of the account is gone, those of the password checks made just before included
    counters = "SELECT COUNT(*) FROM rate_limit_buckets WHERE key LIKE :k"
    assert rows(use_database, counters, k=f"%{alice.email}%") == 0
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 401
    assert login(client, alice.email, PASSWORD) == 401
    uid = alice.id
    assert rows(use_database, "SELECT COUNT(*) FROM users WHERE id = :u", u=uid) == 0
    assert rows(use_database, "SELECT COUNT(*) FROM conversations WHERE user_id = :u", u=uid) == 0
    assert rows(use_database, "SELECT COUNT(*) FROM api_keys WHERE user_id = :u", u=uid) == 0
    orphans = "SELECT COUNT(*) FROM messages m LEFT JOIN conversations c ON c.id = m.conversation_id WHERE c.id IS NULL"
    assert rows(use_database, orphans) == 0
    # the other user keeps everything
    assert client.get("/api/conversations", headers=bob.headers).json()["total"] == 1
    assert len(client.get("/api/auth/keys", headers=bob.headers).json()) == 1


def test_api_keys_are_shown_once_listed_without_secrets_and_revoked(
    client: TestClient, use_database: str
) -> None:
    alice, mallory = register(client), register(client)
    created = client.post("/api/auth/keys", json={"name": "  open-webui  "}, headers=alice.headers)
    assert created.status_code == 201
    key = created.json()
    assert key["name"] == "open-webui" and key["key"].startswith("slm-") and len(key["key"]) == 4 + 43
    listed = client.get("/api/auth/keys", headers=alice.headers).json()
    assert listed == [{"id": key["id"], "name": "open-webui", "created_at": key["created_at"]}]
    stored = rows(use_database, "SELECT COUNT(*) FROM api_keys WHERE key_hash = :k", k=key["key"])
    assert stored == 0  # only its hash is stored
    bearer = {"Authorization": f"Bearer {key['key']}"}
    assert client.get("/v1/models", headers=bearer).status_code == 200
    assert client.get("/api/conversations", headers=bearer).status_code == 401  # /v1 only
    assert client.delete(f"/api/auth/keys/{key['id']}", headers=mallory.headers).status_code == 404
    assert client.get("/v1/models", headers=bearer).status_code == 200
    assert client.delete(f"/api/auth/keys/{key['id']}", headers=alice.headers).status_code == 204
    revoked = client.get("/v1/models", headers=bearer)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "not_authenticated"
    assert client.get("/api/auth/keys", headers=alice.headers).json() == []
    assert client.post("/api/auth/keys", json={"name": "   "}, headers=alice.headers).status_code == 422


def test_a_deleted_accounts_token_never_opens_a_later_account(client: TestClient, use_database: str) -> None:
    """Ids are never reused (SQLite AUTOINCREMENT) and tokens name a random subject: the next account gets
    a new id, and the old token is refused everywhere (SQLite used to hand the deleted id, and with it the
    old token, to the next registration)."""
    alice = register(client)
    cid = client.post("/api/conversations", json={"title": "alice's"}, headers=alice.headers).json()["id"]
    gone = client.request("DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=alice.headers)
    assert gone.status_code == 204
    bob = register(client)
    bobs = client.post("/api/conversations", json={"title": "bob's"}, headers=bob.headers).json()["id"]
    assert bob.id > alice.id and bobs > cid
    for path in ("/api/auth/me", "/api/conversations", f"/api/conversations/{bobs}"):
        assert client.get(path, headers=alice.headers).status_code == 401, path
    assert client.get("/api/auth/me", headers=bob.headers).json()["email"] == bob.email
