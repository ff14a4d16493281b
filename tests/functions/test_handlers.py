"""Each Lambda handler invoked in-process with the real event payloads kept in infra/events/."""

import asyncio
import base64
import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import PASSWORD, REPO_ROOT, unique_email

EVENTS = REPO_ROOT / "infra" / "events"


@dataclass
class LambdaContext:
    function_name: str = "slm-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:slm-test"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "3f0e4a5c-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/slm-test"
    log_stream_name: str = "2026/11/24/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def handlers(use_database: str) -> Iterator[dict[str, Handler]]:
    """Both Mangum handlers, imported as a cold start does (migrations run at import)."""
    from shared.database import dispose_engine

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loaded = {}
    for name in ("auth", "conversations"):
        module = importlib.import_module(f"functions.{name}.handler")
        loaded[name] = importlib.reload(module).handler
    yield loaded
    loop.run_until_complete(dispose_engine())
    loop.close()
    asyncio.set_event_loop(None)


def event(name: str, *, body: dict | None = None, token: str | None = None) -> dict[str, Any]:
    data = json.loads((EVENTS / name).read_text())
    if body is not None:
        data["body"] = json.dumps(body)
    for key in ("headers", "multiValueHeaders"):
        for header, value in (data.get(key) or {}).items():
            if token and "REPLACE_WITH_ACCESS_TOKEN" in str(value):
                data[key][header] = [f"Bearer {token}"] if isinstance(value, list) else f"Bearer {token}"
    return data


def invoke(handler: Handler, data: dict[str, Any]) -> tuple[int, Any]:
    response = handler(data, LambdaContext())
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    is_json = "application/json" in str(response.get("headers", {}).get("content-type", ""))
    return response["statusCode"], json.loads(body) if is_json and body else body


def test_health_answers_http_api_events(handlers: dict[str, Handler]) -> None:
    for name in ("auth", "conversations"):
        status, body = invoke(handlers[name], event(f"{name}-health-http-api.json"))
        assert status == 200 and body["status"] == "ok" and body["checks"]["database"] == "ok"


def test_auth_handler_registers_logs_in_and_reads_me(handlers: dict[str, Handler]) -> None:
    auth = handlers["auth"]
    credentials = {"email": unique_email(), "password": PASSWORD}
    status, registered = invoke(auth, event("auth-register-http-api.json", body=credentials))
    assert status == 201 and registered["user"]["email"] == credentials["email"]
    status, logged_in = invoke(auth, event("auth-login-rest-api.json", body=credentials))
    assert status == 200
    status, me = invoke(auth, event("auth-me-function-url.json", token=logged_in["access_token"]))
    assert status == 200 and me["email"] == credentials["email"]


def test_conversations_handler_creates_lists_and_exports(handlers: dict[str, Handler]) -> None:
    credentials = {"email": unique_email(), "password": PASSWORD}
    _, registered = invoke(handlers["auth"], event("auth-register-http-api.json", body=credentials))
    token = registered["access_token"]
    conversations = handlers["conversations"]
    status, created = invoke(conversations, event("conversations-create-rest-api.json", token=token))
    assert status == 201 and created["title"] == "Trip ideas"
    status, listed = invoke(conversations, event("conversations-list-http-api.json", token=token))
    assert status == 200 and [c["id"] for c in listed["items"]] == [created["id"]]
    export = event("conversations-export-function-url.json", token=token)
    export["rawPath"] = export["requestContext"]["http"]["path"] = (
        f"/api/conversations/{created['id']}/export"
    )
    status, body = invoke(conversations, export)
    assert status == 200 and json.loads(body) == {"messages": []}


def test_handler_without_token_gives_the_error_shape(handlers: dict[str, Handler]) -> None:
    status, body = invoke(handlers["conversations"], event("conversations-list-http-api.json"))
    assert status == 401 and body["error"]["code"] == "not_authenticated"


def test_on_lambda_the_counted_address_is_the_events_source_ip(
    handlers: dict[str, Handler], use_database: str
) -> None:
    """A client's own X-Forwarded-For never picks the address a limit counts: requestContext does
    (sourceIp under http for HTTP API v2 and Function URLs, under identity for the REST API)."""
    from sqlalchemy import create_engine, text

    from shared.migrate import sync_url

    forged = "192.0.2.250"
    for name, kind in (("auth-register-http-api.json", "register"), ("auth-login-rest-api.json", "login")):
        data = event(name, body={"email": unique_email(), "password": "wrong password 1"})
        data["headers"] = {**(data.get("headers") or {}), "X-Forwarded-For": forged, "x-real-ip": forged}
        if "multiValueHeaders" in data:
            data["multiValueHeaders"]["X-Forwarded-For"] = [forged]
        source = (data["requestContext"].get("http") or data["requestContext"]["identity"])["sourceIp"]
        invoke(handlers["auth"], data)
        engine = create_engine(sync_url(use_database))
        with engine.connect() as connection:
            keys = {row[0] for row in connection.execute(text("SELECT key FROM rate_limit_buckets"))}
        engine.dispose()
        assert f"{kind}:ip:{source}" in keys and not any(forged in key for key in keys), keys
