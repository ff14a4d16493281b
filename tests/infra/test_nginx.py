"""A real nginx with the project's config (TLS from the placeholder script) in front of the real functions.

Each function runs as a local uvicorn process on SQLite, exactly as docker-compose.yml runs it on
PostgreSQL; nginx is the system's (apt-get install nginx). Chat's checks run once functions/chat exists.
"""

import json
import os
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.infra.helpers import REPO, free_port, function_exists, render_nginx_template, require_tool

DOMAIN = "127.0.0.1"
PAGE_POLICY = "default-src 'self'; script-src 'self' 'sha256-test'; frame-ancestors 'none'"


def wait_until(check, what: str, log: Path, attempts: int = 300) -> None:
    for _ in range(attempts):
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} did not come up:\n{log.read_text() if log.exists() else ''}")


@dataclass
class Stack:
    tmp: Path
    http: str
    https: str
    tls: ssl.SSLContext
    functions: set[str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.https, verify=self.tls, timeout=60, **kwargs)


def nginx_main_config(tmp: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's private temp dir
    temp = " ".join(
        f"{kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n include /etc/nginx/mime.types;\n access_log {tmp / 'access.log'};\n {temp}\n include {site};\n}}\n"
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    nginx = require_tool("nginx", "apt-get install nginx")
    require_tool("openssl", "apt-get install openssl")
    tmp = tmp_path_factory.mktemp("nginx")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SLM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'slm.db'}",
        "SLM_MIGRATE_ON_START": "false",
    }
    subprocess.run([sys.executable, "-m", "shared.migrate", "upgrade"], cwd=tmp, env=env, check=True)

    functions = {name for name in ("auth", "conversations", "chat") if function_exists(name)}
    ports = {name: free_port() for name in functions}
    # the reference engine for the chat function: it takes ~1 s over a 300-token answer, longer than a stop
    # from another process takes to land (the next save, within 0.25 s); the served engine can finish one
    # in 0.3 s, before test_sse_stream_arrives_unbuffered's stop (the engine is not what these tests test)
    chat_env = {**env, "SLM_CHAT_ENGINE": "torch"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"functions.{name}.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp,
            env=chat_env if name == "chat" else env,
            stdout=(tmp / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for name, port in ports.items()
    ]

    certs, html, acme = tmp / "certs", tmp / "html", tmp / "acme"
    placeholder = REPO / "infra/nginx/10-slm-tls-placeholder.sh"
    subprocess.run(
        ["sh", str(placeholder)], env={**os.environ, "DOMAIN": DOMAIN, "CERT_DIR": str(certs)}, check=True
    )
    html.mkdir()
    snippets = tmp / "slm"  # what the image writes: the build's page policy, then the fixed headers
    snippets.mkdir()
    (snippets / "page-headers.conf").write_text(
        f'add_header Content-Security-Policy "{PAGE_POLICY}" always;\n'
        + (REPO / "infra/nginx/security-headers.conf").read_text()
    )
    (html / "index.html").write_text("<h1>SLM home</h1>")
    (html / "login.html").write_text("<h1>SLM login</h1>")
    http_port, https_port = free_port(), free_port()
    values = {
        "DOMAIN": DOMAIN,
        "HTTP_PORT": str(http_port),
        "HTTPS_PORT": str(https_port),
        "CERT_DIR": str(certs),
        "ACME_ROOT": str(acme),
        "FRONTEND_ROOT": str(html),
        "NGINX_SLM_DIR": str(snippets),
    }
    for name in ("auth", "conversations", "chat"):  # a missing function gets a closed port: 502
        values[f"{name.upper()}_UPSTREAM"] = f"127.0.0.1:{ports.get(name) or free_port()}"
    site = tmp / "default.conf"
    site.write_text(render_nginx_template(values))
    (tmp / "nginx.conf").write_text(nginx_main_config(tmp, site))
    processes.append(
        subprocess.Popen(
            [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
            stdout=(tmp / "nginx.out").open("w"),
            stderr=subprocess.STDOUT,
        )
    )
    tls = ssl.create_default_context(cafile=str(certs / "fullchain.pem"))
    result = Stack(
        tmp, f"http://{DOMAIN}:{http_port}", f"https://{DOMAIN}:{https_port}", tls, functions, processes
    )
    try:
        for name, port in ports.items():
            healthy = lambda p=port: httpx.get(f"http://127.0.0.1:{p}/api/health").status_code == 200  # noqa: E731
            wait_until(healthy, name, tmp / f"{name}.log")
        wait_until(
            lambda: httpx.get(f"{result.http}/nginx-health").status_code == 200, "nginx", tmp / "error.log"
        )
        yield result
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    with stack.client() as client:
        response = client.post(
            "/api/auth/register", json={"email": "nginx@example.com", "password": "correct horse"}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


def test_config_passes_nginx_check(stack: Stack) -> None:
    nginx = require_tool("nginx", "apt-get install nginx")
    result = subprocess.run(
        [nginx, "-t", "-p", str(stack.tmp), "-c", str(stack.tmp / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_placeholder_certificate_is_made_once(stack: Stack) -> None:
    certs = stack.tmp / "certs"
    assert (certs / ".placeholder").exists() and oct(
        (certs / "privkey.pem").stat().st_mode & 0o777
    ) == "0o600"
    before = (certs / "fullchain.pem").read_bytes()
    script = REPO / "infra/nginx/10-slm-tls-placeholder.sh"
    subprocess.run(
        ["sh", str(script)], env={**os.environ, "DOMAIN": DOMAIN, "CERT_DIR": str(certs)}, check=True
    )
    assert (certs / "fullchain.pem").read_bytes() == before  # a certificate in place is never replaced


def test_http_redirects_to_https(stack: Stack) -> None:
    response = httpx.get(f"{stack.http}/api/auth/me?x=1")
    assert response.status_code == 301
    assert response.headers["location"] == f"https://{DOMAIN}/api/auth/me?x=1"


def test_acme_challenge_is_served_over_plain_http(stack: Stack) -> None:
    challenge = stack.tmp / "acme/.well-known/acme-challenge"
    challenge.mkdir(parents=True, exist_ok=True)
    (challenge / "token-123").write_text("token-123.key-authorization")
    response = httpx.get(f"{stack.http}/.well-known/acme-challenge/token-123")
    assert response.status_code == 200 and response.text == "token-123.key-authorization"


def test_https_serves_the_static_frontend_and_its_config(stack: Stack) -> None:
    with stack.client() as client:
        assert "SLM home" in client.get("/").text
        assert "SLM login" in client.get("/login").text  # the static export's login.html
        assert "SLM home" in client.get("/some/client/route").text
        config = client.get("/config.json")
        assert config.headers["strict-transport-security"].startswith("max-age=")
    assert config.json() == {"authBaseUrl": "", "conversationsBaseUrl": "", "chatBaseUrl": ""}


def test_everything_nginx_serves_carries_the_security_headers_once(stack: Stack) -> None:
    """Pages, scripts, config.json and nginx's own 404s carry the page policy and the fixed headers; a
    proxied answer carries its function's own (default-src 'none'), never a second copy from nginx."""
    with stack.client() as client:
        served = [
            client.get(p) for p in ("/", "/login", "/some/client/route", "/config.json", "/api/nowhere")
        ]
        proxied = client.get("/api/health")
    for response in served:
        assert response.headers.get_list("content-security-policy") == [PAGE_POLICY], response.url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert (
            response.headers["x-frame-options"] == "DENY"
            and response.headers["referrer-policy"] == "no-referrer"
        )
        assert response.headers["strict-transport-security"].startswith("max-age=")
    policy = proxied.headers.get_list("content-security-policy")
    assert len(policy) == 1 and policy[0].startswith("default-src 'none'")
    assert proxied.headers.get_list("x-frame-options") == ["DENY"]


def test_metrics_are_not_served_on_the_public_side(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_unknown_api_route_is_a_json_404(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/api/nowhere")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_each_auth_and_conversations_route_reaches_its_function(stack: Stack, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with stack.client(headers=headers) as client:
        health = client.get("/api/health")
        assert health.status_code == 200 and health.json()["service"] == "auth"
        assert client.get("/api/auth/me").json()["email"] == "nginx@example.com"
        login = client.post(
            "/api/auth/login", json={"email": "nginx@example.com", "password": "correct horse"}
        )
        assert login.status_code == 200
        created = client.post("/api/conversations", json={"title": "through nginx"})
        assert created.status_code == 201, created.text
        conversation = created.json()["id"]
        assert client.get("/api/conversations").status_code == 200
        assert client.get(f"/api/conversations/{conversation}").json()["title"] == "through nginx"
        renamed = client.patch(f"/api/conversations/{conversation}", json={"title": "renamed"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "renamed"
        assert client.get(f"/api/conversations/{conversation}/export").status_code == 200
        assert client.delete(f"/api/conversations/{conversation}").status_code == 204
        assert client.get(f"/api/conversations/{conversation}").status_code == 404


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:") and event:
            yield event, json.loads(line.partition(":")[2])
            event = None


def test_chat_routes_reach_the_chat_function(stack: Stack, token: str) -> None:
    if "chat" not in stack.functions:
        pytest.skip("functions/chat/app.py does not exist yet")
    with stack.client(headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/api/model").status_code == 200
        models = client.get("/v1/models")
        assert models.status_code == 200
        completion = client.post(
            "/v1/chat/completions",
            json={
                "model": models.json()["data"][0]["id"],
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8,
            },
        )
        assert completion.status_code == 200, completion.text


def test_sse_stream_arrives_unbuffered(stack: Stack, token: str) -> None:
    """The client reads the first event, then stops the answer: a buffered stream would end before it
    could. The stop goes to the conversations function, and the events route streams through nginx too."""
    if "chat" not in stack.functions:
        pytest.skip("functions/chat/app.py does not exist yet")
    headers = {"Authorization": f"Bearer {token}"}
    request = {
        "conversation_id": None,
        "message": "Tell me a long story.",
        "max_new_tokens": 300,
        "min_new_tokens": 300,  # no <|eos|> before 300 tokens: only the stop ends it early
    }
    with stack.client(headers=headers) as client:
        with client.stream("POST", "/api/chat", json=request) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            events = sse_events(response)
            first, meta = next(events)
            assert first == "meta"
            assert client.post(f"/api/conversations/{meta['conversation_id']}/stop").status_code == 202
            done = [data for name, data in events if name == "done"]
        assert done and done[0]["finish_reason"] == "stopped" and done[0]["tokens"] < 300, done
        with client.stream("GET", f"/api/chat/{meta['conversation_id']}/events?after=-1") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            followed = list(sse_events(response))
        assert followed[0][0] == "meta" and followed[-1] == ("done", followed[-1][1])
        assert (
            followed[-1][1]["finish_reason"] == "stopped" and followed[-1][1]["tokens"] == done[0]["tokens"]
        )


def test_a_forged_x_forwarded_for_does_not_choose_the_counted_address(stack: Stack) -> None:
    """nginx sends the peer's own address; the function counts the login attempt against it, not against
    the address the client wrote in its own X-Forwarded-For."""
    forged = "203.0.113.77"
    with stack.client(headers={"X-Forwarded-For": forged, "X-Real-IP": forged}) as client:
        response = client.post(
            "/api/auth/login", json={"email": f"{uuid.uuid4().hex}@example.com", "password": "x"}
        )
    assert response.status_code == 401
    engine = create_engine(f"sqlite:///{stack.tmp / 'slm.db'}")
    with engine.connect() as connection:
        keys = {row[0] for row in connection.execute(text("SELECT key FROM rate_limit_buckets"))}
    engine.dispose()
    assert "login:ip:127.0.0.1" in keys and not any(forged in key for key in keys), keys


def test_login_is_rate_limited_by_nginx(stack: Stack) -> None:
    """Distinct accounts each time, so only nginx's per-address limit (10/minute, burst 5) can answer 429."""
    statuses = []
    with stack.client() as client:
        for _ in range(15):
            response = client.post(
                "/api/auth/login", json={"email": f"{uuid.uuid4().hex}@example.com", "password": "x"}
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                refused = response
                break
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    # nginx's own refusal, in the API's one error shape (it was nginx's HTML page), with the headers of
    # every answer and when to come back (the login zone refills one every 6 s)
    assert_nginx_error(refused, "rate_limited")
    assert refused.headers["retry-after"] == "6"


def assert_nginx_error(response: httpx.Response, code: str) -> None:
    assert response.headers["content-type"] == "application/json", response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_a_body_over_nginx_limit_is_the_api_error_shape(stack: Stack) -> None:
    """client_max_body_size (1 MiB) answers before any function: in the one error shape too, on the
    locations with error pages of their own (login) as on the rest."""
    body = b'{"email": "' + b"x" * (2 * 2**20) + b'"}'
    with stack.client() as client:
        for path in ("/api/auth/login", "/api/conversations"):
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 413, (path, response.text)
            assert_nginx_error(response, "payload_too_large")


API_BURST = 100  # nginx's burst of the API zone (slm_api), beyond its 20 requests a second per address


def test_static_files_do_not_spend_the_api_limit(stack: Stack) -> None:
    """A page load fetches the page, its scripts, config.json and the favicon from nginx itself before any
    API call; a fast client (the browser suite on a quick machine) made 120 of them in a few seconds, and
    with them counted against the API's per-address limit its next API calls were refused with 429. What
    nginx serves from disk is not limited; the API after them still answers."""
    with stack.client() as client:
        for i in range(3 * API_BURST):
            assert client.get(("/", "/config.json", "/login")[i % 3]).status_code == 200
        response = client.get("/api/health")
    assert response.status_code == 200, response.text


def test_the_api_is_limited_per_address(stack: Stack) -> None:
    """The API zone still holds: a flood from one address past its burst gets nginx's 429, in the one
    error shape. The module's last test on the stack: the zone refills at 20 a second."""
    time.sleep(API_BURST / 20)  # the earlier tests' API calls drained from the zone: the whole burst is ours
    with stack.client() as client:
        answers = [client.get("/api/health") for _ in range(3 * API_BURST)]
    statuses = [a.status_code for a in answers]
    refused = statuses.count(429)
    assert statuses[:API_BURST] == [200] * API_BURST and refused >= API_BURST // 2, statuses
    last = answers[statuses.index(429)]
    assert_nginx_error(last, "rate_limited")
    assert last.headers["retry-after"] == "1"
    time.sleep(API_BURST / 20)  # the zone empties again for whatever runs next


def test_every_proxied_location_has_a_per_address_limit() -> None:
    """No server-wide limit covers the API any more (see test_static_files_do_not_spend_the_api_limit):
    each location that proxies to a function names its own zone, and none that nginx serves itself does."""
    template = (REPO / "infra/nginx/templates/default.conf.template").read_text()
    blocks = re.findall(r"location ([^{]+)\{([^}]*)\}", template)
    proxied = {where.strip(): body for where, body in blocks if "proxy_pass" in body}
    assert len(proxied) >= 9, proxied.keys()
    assert [where for where, body in proxied.items() if "limit_req zone=" not in body] == []
    served = [where.strip() for where, body in blocks if "proxy_pass" not in body and "limit_req" in body]
    assert served == [], served
