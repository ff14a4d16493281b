"""`sam local invoke` of every auth and conversations event in infra/events/, on the images `sam build` built,
with infra/events/local-env.json, exactly as infra/README.md says: every function on one PostgreSQL (a
container of its own, on a network SAM's containers join), chained (register's token serves the
conversations function). Chat is left out: its image needs the Lambda Web Adapter binary, which no reachable
registry ships (infra/README.md says what that leaves untested).
"""

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.helpers import Sam, docker, record
from tests.infra.helpers import REPO

EVENTS = REPO / "infra" / "events"
LOCAL_ENV = EVENTS / "local-env.json"
DATABASE_URL = urlsplit(json.loads(LOCAL_ENV.read_text())["Parameters"]["SLM_DATABASE_URL"])


@pytest.fixture(scope="module")
def network(bases: dict[str, str]) -> Iterator[str]:
    """A network with the PostgreSQL that local-env.json names (its host name an alias on this network)."""
    name = f"slm-sam-test-{secrets.token_hex(3)}"
    docker("network", "create", name)
    database = f"{name}-db"
    try:
        docker(
            "run", "--detach", "--name", database, "--network", name, "--network-alias", DATABASE_URL.hostname or "",
            "-e", f"POSTGRES_USER={DATABASE_URL.username}", "-e", f"POSTGRES_PASSWORD={DATABASE_URL.password}",
            "-e", f"POSTGRES_DB={DATABASE_URL.path.lstrip('/')}", bases["POSTGRES_IMAGE"],
        )  # fmt: skip
        for _ in range(120):
            ready = docker("exec", database, "pg_isready", "-U", DATABASE_URL.username or "", check=False)
            if ready.returncode == 0:
                break
            time.sleep(1)
        assert ready.returncode == 0, docker("logs", database, check=False).stderr
        yield name
    finally:
        docker("rm", "--force", "--volumes", database, check=False)
        docker("network", "rm", name, check=False)


def invoke(
    sam: Sam, template: Path, network: str, function: str, event: Path, token: str, tmp: Path
) -> tuple[int, str]:
    """One `sam local invoke`: the function's answer (status, body)."""
    body = event.read_text().replace("REPLACE_WITH_ACCESS_TOKEN", token)
    sent = tmp / event.name
    sent.write_text(body)
    done = sam(
        "local", "invoke", function,
        "--template-file", str(template),
        "--event", str(sent),
        "--env-vars", str(LOCAL_ENV.relative_to(REPO)),
        "--parameter-overrides", "UseSecretsManager=false",
        "--docker-network", network,
        "--skip-pull-image",
        logged=False,
    )  # fmt: skip
    (REPO / "artifacts" / "deploy" / "sam-local.log").open("a").write(
        f"\n$ {function} {event.name}\n{done.stderr}\n{done.stdout}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):  # Mangum encodes what is not text/* or JSON (the JSONL export)
        body = base64.b64decode(body).decode()
    return answer["statusCode"], body


def test_every_auth_and_conversations_event_answers_on_one_database(
    sam: Sam, sam_template: Path, network: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    results: dict[str, tuple[int, str]] = {}

    def call(function: str, name: str, token: str = "") -> tuple[int, str]:
        results[name] = invoke(sam, sam_template, network, function, EVENTS / name, token, tmp_path)
        return results[name]

    registered = json.loads(json.loads((EVENTS / "auth-register-http-api.json").read_text())["body"])
    status, body = call("AuthFunction", "auth-register-http-api.json")
    assert status == 201, body
    assert json.loads(body)["user"]["email"] == registered["email"]
    token = json.loads(body)["access_token"]

    status, body = call("AuthFunction", "auth-login-rest-api.json")
    assert status == 200 and json.loads(body)["user"]["email"] == registered["email"], body
    status, body = call("AuthFunction", "auth-me-function-url.json", token)
    assert status == 200 and json.loads(body)["email"] == registered["email"], body
    status, body = call("AuthFunction", "auth-health-http-api.json")
    assert status == 200, body

    # the token auth issued works on the conversations function: one key, one database
    status, body = call("ConversationsFunction", "conversations-create-rest-api.json", token)
    assert status == 201, body
    created = json.loads(body)
    status, body = call("ConversationsFunction", "conversations-list-http-api.json", token)
    assert status == 200 and [c["id"] for c in json.loads(body)["items"]] == [created["id"]], body
    assert created["id"] == 1  # the export event names conversation 1: this database's first
    status, body = call("ConversationsFunction", "conversations-export-function-url.json", token)
    assert status == 200 and json.loads(body) == {"messages": []}, body
    status, body = call("ConversationsFunction", "conversations-health-http-api.json")
    assert status == 200, body

    handled = {path.name for path in EVENTS.glob("*.json")} - {LOCAL_ENV.name}
    assert {name for name in handled if not name.startswith("chat-")} == set(results)
    record("sam local invoke: events answered", {name: status for name, (status, _) in results.items()})
    record("sam local invoke of 8 events (s)", round(time.monotonic() - started, 1))
