"""`sam local invoke` without a Docker engine (tests/deploy runs the real one where an engine answers):
every function is run on each of its events in infra/events/ with exactly the environment SAM would give
it — the template's variables (with UseSecretsManager=false), overridden by infra/events/local-env.json,
over the image's own ENV — in a fresh process of its own. Auth and conversations are invoked through their
Mangum handlers; chat the way Lambda Web Adapter invokes it: the Function URL event becomes an HTTP request
to its uvicorn app."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.helpers import FUNCTIONS, REPO, load_template

pytestmark = pytest.mark.slow
EVENTS = REPO / "infra" / "events"
LOCAL_ENV = json.loads((EVENTS / "local-env.json").read_text())

RUNNER = r"""
import asyncio, base64, json, sys
name, events, token = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]

class Context:
    function_name, function_version, memory_limit_in_mb = "slm-" + name, "$LATEST", 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:slm-" + name
    aws_request_id, log_group_name, log_stream_name = "local", "/aws/lambda/slm", "local"
    def get_remaining_time_in_millis(self): return 30000

def with_token(event):
    text = json.dumps(event).replace("REPLACE_WITH_ACCESS_TOKEN", token)
    return json.loads(text)

results = []
if name == "chat":  # Lambda Web Adapter: the Function URL event as an HTTP request to the app
    import httpx
    from functions.chat.app import app
    async def invoke(event):
        transport = httpx.ASGITransport(app=app, client=(event["requestContext"]["http"]["sourceIp"], 443))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            http = event["requestContext"]["http"]
            response = await client.request(http["method"], event["rawPath"] + ("?" + event["rawQueryString"] if event["rawQueryString"] else ""),
                                            headers=event["headers"], content=(event.get("body") or "").encode())
            return response.status_code, response.text
    for event in events:
        results.append(asyncio.run(invoke(with_token(event))))
else:
    import importlib
    handler = importlib.import_module(f"functions.{name}.handler").handler  # a cold start: migrations run
    for event in events:
        out = handler(with_token(event), Context())
        body = out.get("body") or ""
        if out.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        results.append((out["statusCode"], body))
print(json.dumps(results))
"""


def image_env(name: str, tmp: Path) -> dict[str, str]:
    """The Dockerfile's ENV of the final stage (its /tmp is the container's: here a temporary folder)."""
    text = (REPO / "functions" / name / "Dockerfile").read_text().split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", text, flags=re.M | re.S):
        for key, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[key] = value.replace("/tmp/", f"{tmp}/").replace("/var/task/", f"{REPO}/")
    env.pop("PATH", None)
    return env


def sam_env(logical_id: str, name: str, tmp: Path) -> dict[str, str]:
    """What SAM passes: the image's ENV, then the template's variables (globals, then the function's),
    each overridden by the env-vars file when it names it; a value SAM cannot resolve locally (an !If
    or !Ref) arrives as it would with UseSecretsManager=false: the secret IDs empty."""
    template = load_template()
    declared: dict[str, Any] = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    function = template["Resources"][logical_id]["Properties"].get("Environment", {})
    declared |= function.get("Variables", {})
    overrides = LOCAL_ENV.get("Parameters", {}) | LOCAL_ENV.get(logical_id, {})
    env = image_env(name, tmp)
    for key, value in declared.items():
        env[key] = overrides.get(key, value if isinstance(value, str) else "")
    # local-env.json's database is the PostgreSQL container that a real `sam local invoke` runs beside the
    # functions (tests/deploy); without a Docker engine, one SQLite file stands in for it
    env["SLM_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp}/slm_chat.db"
    return env


def run(logical_id: str, name: str, events: list[dict], token: str, tmp: Path) -> list[tuple[int, str]]:
    environment = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(REPO), "HOME": str(tmp)}
    environment |= sam_env(logical_id, name, tmp)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, name, json.dumps(events), token],
        cwd=tmp,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [tuple(result) for result in json.loads(done.stdout.strip().splitlines()[-1])]


def events_of(name: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(EVENTS.glob(f"{name}-*.json"))]


def test_every_function_has_events_and_the_env_file_needs_no_secrets_manager() -> None:
    for name in FUNCTIONS.values():
        assert events_of(name), f"no event in infra/events for {name}"
    variables = LOCAL_ENV["Parameters"]
    assert variables["SLM_JWT_SECRET_SECRET_ID"] == variables["SLM_DATABASE_URL_SECRET_ID"] == ""
    assert len(variables["SLM_JWT_SECRET"]) >= 32  # production settings accept it
    template = load_template()
    assert template["Parameters"]["UseSecretsManager"]["AllowedValues"] == ["true", "false"]
    ids = template["Globals"]["Function"]["Environment"]["Variables"]
    assert "UseSecrets" in json.dumps(ids["SLM_JWT_SECRET_SECRET_ID"])  # used only when secrets are


def test_each_handler_answers_each_of_its_events_with_the_local_env_file(tmp_path: Path) -> None:
    from tests.helpers import PASSWORD, unique_email

    email = unique_email()
    # auth: register and log in with a fresh account (the events' own bodies name example users)
    rank = {"/api/auth/register": 0, "/api/auth/login": 1}  # a user first, then its login
    auth_events = sorted(events_of("auth"), key=lambda e: rank.get(e.get("rawPath") or e.get("path"), 2))
    for event in auth_events:
        if event.get("body") and "password" in event["body"]:
            event["body"] = json.dumps({"email": email, "password": PASSWORD})
    results = run("AuthFunction", "auth", auth_events, "", tmp_path)
    by_path = dict(zip([e.get("rawPath") or e.get("path") for e in auth_events], results, strict=True))
    assert by_path["/api/auth/register"][0] == 201 and by_path["/api/auth/login"][0] == 200, results
    assert by_path["/api/health"][0] == 200, results
    token = json.loads(by_path["/api/auth/login"][1])["access_token"]
    me = run(
        "AuthFunction",
        "auth",
        [e for e in auth_events if (e.get("rawPath") or e.get("path")) == "/api/auth/me"],
        token,
        tmp_path,
    )
    assert me[0][0] == 200 and json.loads(me[0][1])["email"] == email

    conversations = run("ConversationsFunction", "conversations", events_of("conversations"), token, tmp_path)
    assert all(status < 300 for status, _ in conversations), conversations

    chat = run("ChatFunction", "chat", events_of("chat"), token, tmp_path)
    ((status, body),) = chat
    assert status == 200 and body.splitlines()[0] == "event: meta" and "event: done" in body, body[-500:]
    # one database served all three
    assert (tmp_path / "slm_chat.db").is_file()
