import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from infra.router.app import serve_frontend


def test_router_includes_every_function_route(client: TestClient) -> None:
    from infra.router.app import app, route_table

    paths = route_table(app)
    for expected in [
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("GET", "/api/auth/me"),
        ("GET", "/api/conversations"),
        ("POST", "/api/conversations"),
        ("GET", "/api/conversations/{conversation_id}"),
        ("PATCH", "/api/conversations/{conversation_id}"),
        ("DELETE", "/api/conversations/{conversation_id}"),
        ("GET", "/api/conversations/{conversation_id}/export"),
        ("POST", "/api/conversations/{conversation_id}/stop"),
        ("GET", "/api/chat/{conversation_id}/events"),
        ("GET", "/api/health"),
    ]:
        assert expected in paths


def test_health_reports_the_database_and_the_model(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.json()["checks"]["database"] == "ok"
    for _ in range(600):  # the model loads in the background; health is 503 until it has
        if (response := client.get("/api/health")).status_code == 200:
            break
        assert response.json()["checks"]["model"] == "loading"
        time.sleep(0.2)
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "model": "ready"}
    # an uptime monitor's HEAD: the same status, no body (the catch-all for pages used to answer it 404)
    head = client.head("/api/health")
    assert (head.status_code, head.content) == (200, b"")


def test_health_is_503_when_the_database_is_unreachable(monkeypatch, tmp_path: Path) -> None:
    from shared import database
    from shared.app import create_app
    from shared.settings import get_settings

    monkeypatch.setenv("SLM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SLM_MIGRATE_ON_START", "false")
    get_settings.cache_clear()
    try:
        with TestClient(create_app("probe", [])) as probe:
            response = probe.get("/api/health")
            assert probe.head("/api/health").status_code == 503
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable" and body["error"]["code"] == "not_ready"
        assert body["checks"]["database"].startswith("unreachable")
    finally:
        get_settings.cache_clear()
        assert database._engine is None  # disposed on shutdown


def test_serves_the_static_export(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "chat.html").write_text("<h1>chat</h1>")
    (tmp_path / "404.html").write_text("<h1>missing</h1>")
    (tmp_path / "_next").mkdir()
    (tmp_path / "_next" / "app.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("outside")
    app = FastAPI()
    serve_frontend(app, tmp_path)
    client = TestClient(app)
    assert client.get("/").text == "<h1>home</h1>"
    assert client.get("/chat").text == "<h1>chat</h1>"
    head = client.head("/chat")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "13"
    assert client.get("/_next/app.js").headers["content-type"].startswith("text/javascript")
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "missing" in missing.text
    assert client.get("/..%2Fsecret.txt").status_code == 404
    api = client.get("/api/unknown")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_other_methods_are_a_404_off_the_routes_and_a_405_on_them(client: TestClient) -> None:
    """As through nginx: a path no function serves is a 404 whatever the method (the pages' GET catch-all
    made it a 405), a function's path with a method it does not serve (GET included) a 405 with the
    methods it does,
    and a page a 405 to anything but GET and HEAD."""
    for method, path in [
        ("POST", "/api/nope"),
        ("GET", "/api/nope"),
        ("POST", "/v1/completions"),
        ("DELETE", "/api"),
        ("PUT", "/v1"),
    ]:
        missing = client.request(method, path)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found"), (method, path)
        assert missing.headers["x-content-type-options"] == "nosniff"
    wrong = client.delete("/api/auth/login")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    assert client.put("/api/conversations/1").headers["allow"] == "DELETE, GET, PATCH"
    # GET on a path a function serves with other methods: a 405 too (the pages' catch-all said 404)
    for path, allow in [
        ("/api/chat", "POST"),
        ("/api/auth/login", "POST"),
        ("/v1/chat/completions", "POST"),
        ("/api/auth/keys/1", "DELETE"),
    ]:
        got = client.get(path)
        assert (got.status_code, got.json()["error"]["code"]) == (405, "method_not_allowed"), path
        assert got.headers["allow"] == allow, path
    page = client.post("/chat")
    assert (page.status_code, page.headers["allow"]) == (405, "GET, HEAD")
    assert client.post("/api/auth/login", json={}).status_code == 422  # a served route is still itself


def test_missing_frontend_build_says_how_to_build_it(tmp_path: Path) -> None:
    app = FastAPI()
    serve_frontend(app, tmp_path / "out")
    response = TestClient(app).get("/")
    assert response.status_code == 404 and "make frontend" in response.json()["error"]["message"]
