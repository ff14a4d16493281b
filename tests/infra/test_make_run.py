"""`make run`, the README's first command, started as a newcomer starts it (default settings: no JWT key,
no limits raised, SQLite) and attacked the way the trust review did: its key is random and kept beside the
database, X-Forwarded-For from a local client is not believed, every answer carries the browser security
headers, and a NUL in a path is a 404, not a 500."""

import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from model.device import allocator
from tests.helpers import REPO_ROOT, free_port, installed_tcmalloc, within_one_window

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`make run` on a free port over a fresh SQLite file, with every SLM_ setting left at its default."""
    folder = tmp_path_factory.mktemp("make-run")
    database = folder / "slm_chat.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_")}
    env["SLM_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    port = free_port()
    log = (folder / "make-run.log").open("wb")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", "HOST=127.0.0.1", f"PORT={port}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make and its uvicorn in one process group, stopped together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # the first run may build the web app (a minute or two)
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"make run did not start:\n{(folder / 'make-run.log').read_text()}")
            time.sleep(0.5)
        yield url, database
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_make_run_signs_with_a_random_key_kept_beside_the_database(make_run: tuple[str, Path]) -> None:
    url, database = make_run
    key = Path(f"{database}-jwt-key")
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) >= 60
    body = {"email": "keyed@example.com", "password": "correct horse battery"}
    token = httpx.post(f"{url}/api/auth/register", json=body).json()["access_token"]
    jwt.decode(token, key.read_text().strip(), algorithms=["HS256"])  # signed with that key, no other
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "dev-only-insecure-jwt-key-change-me", algorithms=["HS256"])


def test_make_run_believes_no_forwarded_address(make_run: tuple[str, Path]) -> None:
    """10 registrations an hour per address: a local client naming a new X-Forwarded-For each time is
    still one address."""
    url, _ = make_run
    within_one_window(15)
    statuses = [
        httpx.post(
            f"{url}/api/auth/register",
            json={"email": f"spoof{i}@example.com", "password": "correct horse battery"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(12)
    ]
    assert statuses.count(201) <= 10 and statuses[-1] == 429


def test_make_run_sends_the_security_headers_and_refuses_nul(make_run: tuple[str, Path]) -> None:
    url, _ = make_run
    page = httpx.get(f"{url}/login")
    api = httpx.get(f"{url}/api/health")
    docs = httpx.get(f"{url}/api/docs")
    for response in (page, api, docs, httpx.get(f"{url}/api/conversations")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY" and response.headers["referrer-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in page.headers["content-security-policy"]
    assert "default-src 'none'" in api.headers["content-security-policy"]
    assert docs.status_code == 200 and "/api/docs/assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "<script>" not in docs.text  # local files, nothing inline
    assert httpx.get(f"{url}/api/docs/assets/swagger-ui-bundle.js").status_code == 200
    for path in ("/%00", "/login%00.html", "/a%00b/c"):
        assert httpx.get(f"{url}{path}").status_code == 404, path


def test_make_run_serves_under_tcmalloc_where_it_is_installed(make_run: tuple[str, Path]) -> None:
    url, _ = make_run
    port = url.rsplit(":", 1)[1]
    servers = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and is_server(entry / "cmdline", port)
    ]
    assert len(servers) == 1
    maps = Path(f"/proc/{servers[0]}/maps").read_text()
    assert allocator(maps) == ("tcmalloc" if installed_tcmalloc() else "system")
    # make's own child, no shell between: stopping make's process group stops the server, and make exits with it
    parent = Path(f"/proc/{servers[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]
    assert Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].endswith(b"make")


def is_server(cmdline: Path, port: str) -> bool:
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:  # a process that ended while the folder was read
        return False
    return (
        any(w.endswith(b"uvicorn") for w in words)
        and b"infra.router.app:app" in words
        and port.encode() in words
    )
