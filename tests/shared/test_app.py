"""shared.app: what every function's app does around its routes."""

import logging

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from shared.app import Component, create_app
from shared.settings import get_settings

ORIGIN = "https://app.example.com"


def failing_app(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    router = APIRouter()

    @router.get("/api/broken")
    async def broken() -> dict[str, str]:
        raise RuntimeError("a bug in a route")

    monkeypatch.setenv("SLM_CORS_ORIGIN", ORIGIN)
    get_settings.cache_clear()
    app = create_app("test", [Component(router=router)])
    get_settings.cache_clear()
    # no `with`: the lifespan (migrations) is not needed; a server error is answered, not raised
    return TestClient(app, raise_server_exceptions=False)


def test_an_unhandled_error_is_the_one_error_shape_with_every_answers_headers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = failing_app(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="slm"):
        answer = client.get("/api/broken", headers={"Origin": ORIGIN})
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal_error", "message": "Internal server error"}}
    # Starlette answers a handler for Exception from its outermost layer, past every middleware: this
    # 500 came without the security headers and, for the browser app on another origin, without CORS
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    # the traceback is logged once, the client sees none of it
    assert [r.message for r in caplog.records].count("unhandled error") == 1
    assert "a bug in a route" not in answer.text
