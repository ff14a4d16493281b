"""Trust benchmark: what other users feel while the app is attacked, on this machine (not a test).

    python -m bench.trust                          # this checkout, SQLite
    python -m bench.trust --before ../slm-old      # also an older checkout, in the same run
    python -m bench.trust --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Each server is the whole app as `make run` starts it (`uvicorn infra.router.app:app`), on a fresh SQLite
file (or a fresh database of --postgres with compose's pool of 2 + 2), with the real bcrypt cost (12
rounds) and limits raised so that the benchmark's own accounts are not refused. While each load runs, a
probe asks GET /api/health every 20 ms and the table gives its latency (p50 / max) and every status it saw:

- 10 users logging in at once (bcrypt on the event loop froze every other request while they ran);
- 16 and 100 followers of answers in progress (GET /api/chat/{id}/events; each used to pin a pooled
  connection): the answers are held in progress in the database, the followers connect and wait, then
  the answers are written and the table counts the followers that received each whole answer.
"""

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import torch
from sqlalchemy import create_engine, text

from bench.serve import database_for, wait_ready
from model.device import device_name

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
ENV = {
    "SLM_JWT_SECRET": "benchmark-only-jwt-key-0123456789abcdef",
    "SLM_REGISTER_MAX_PER_IP": "100000",  # the benchmark's own accounts, all from 127.0.0.1
    "SLM_LOGIN_MAX_ATTEMPTS_PER_IP": "100000",
    "SLM_STALE_ANSWER_SECONDS": "600",  # answers held in progress stay so
    "SLM_CHAT_MAX_FOLLOWERS_PER_USER": "100",
    "SLM_DB_POOL_SIZE": "2",
    "SLM_DB_MAX_OVERFLOW": "2",
}


@contextlib.contextmanager
def server(root: Path, database: str) -> Iterator[str]:
    """The app from `root` on a free port over `database` (migrated on start)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_")}
    env |= ENV | {"SLM_DATABASE_URL": database, "PYTHONPATH": str(root)}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "infra.router.app:app",
        "--port",
        str(port),
        "--no-proxy-headers",
    ]
    quiet = subprocess.DEVNULL  # an old server under attack logs a traceback per refused request
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], cwd=root, env=env, stdout=quiet, stderr=quiet
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=300)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def register(url: str) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    response = httpx.post(f"{url}/api/auth/register", json={"email": email, "password": PASSWORD}, timeout=60)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}", "X-Email": email}


def probe(url: str, load: Callable[[], Any]) -> dict[str, Any]:
    """Run `load` while GET /api/health is timed every 20 ms."""
    samples: list[float] = []
    statuses: set[int] = set()
    done = threading.Event()

    def health() -> None:
        while not done.is_set():
            began = time.perf_counter()
            try:
                statuses.add(httpx.get(f"{url}/api/health", timeout=60).status_code)
            except httpx.HTTPError as exc:
                statuses.add(type(exc).__name__)  # type: ignore[arg-type]
            samples.append(time.perf_counter() - began)
            done.wait(0.02)

    thread = threading.Thread(target=health)
    thread.start()
    try:
        result = load()
    finally:
        done.set()
        thread.join()
    return {
        "health_p50_ms": round(statistics.median(samples) * 1000, 1),
        "health_max_ms": round(max(samples) * 1000, 1),
        "health_statuses": sorted(map(str, statuses)),
        "result": result,
    }


def logins(url: str, bodies: list[dict[str, str]]) -> str:
    """10 users log in at once, each once (one account's burst from one address is limited by design:
    its attempts count until their results are known). They registered before the probe began."""
    began = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:
        codes = list(
            pool.map(
                lambda body: httpx.post(f"{url}/api/auth/login", json=body, timeout=120).status_code, bodies
            )
        )
    return f"{codes.count(200)}/10 logged in in {time.perf_counter() - began:.2f} s"


def followers(url: str, database: str, count: int) -> str:
    """`count` followers of 4 answers held in progress; then the answers are written."""
    users = [register(url) for _ in range(4)]
    conversations = [
        httpx.post(f"{url}/api/conversations", json={"title": "held"}, headers=h, timeout=60).json()["id"]
        for h in users
    ]
    held = []
    engine = create_engine(database.replace("+aiosqlite", ""))
    with engine.begin() as connection:
        for cid in conversations:
            answer = connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content, token_count, token_ids, created_at, "
                    "updated_at) VALUES (:c, 'assistant', '', 0, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"
                ),
                {"c": cid},
            ).scalar_one()
            connection.execute(
                text("UPDATE conversations SET current_message_id = :a WHERE id = :c"),
                {"a": answer, "c": cid},
            )
            held.append((cid, answer))
    connected, whole = threading.Semaphore(0), [0]

    def follow(n: int) -> None:
        cid, _ = held[n % 4]
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET", f"{url}/api/chat/{cid}/events", headers=users[n % 4], params={"after": -1}, timeout=120
            ) as response,
        ):
            lines = response.iter_lines()
            connected.release()
            received = "".join(line for line in lines if line.startswith('data: {"text"'))
            whole[0] += response.status_code == 200 and received.count('"text"') == 3

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(follow, n) for n in range(count)]
        for _ in range(count):
            connected.acquire(timeout=120)
        time.sleep(2)  # the followers wait: this is what other users feel meanwhile
        with engine.begin() as connection:
            for _, answer in held:
                connection.execute(
                    text(
                        "UPDATE messages SET token_ids = '40 41 42', content = 'abc', token_count = 3, "
                        "finish_reason = 'eos', updated_at = CURRENT_TIMESTAMP WHERE id = :a"
                    ),
                    {"a": answer},
                )
        for future in futures:
            future.result()
    engine.dispose()
    return f"{whole[0]}/{count} got the whole answer"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a fresh database is made and dropped)")
    args = parser.parse_args()
    roots = [("before", args.before.resolve())] if args.before else []
    roots.append(("now", ROOT))
    print(f"CPU: {device_name(torch.device('cpu'))}; backend: {'PostgreSQL' if args.postgres else 'SQLite'}")
    print("| server | load | health p50 | health max | health statuses | result |")
    print("|---|---|---:|---:|---|---|")
    for label, root in roots:
        with database_for(args.postgres) as database, server(root, database) as url:
            users = [register(url) for _ in range(10)]
            bodies = [{"email": user["X-Email"], "password": PASSWORD} for user in users]
            loads = {
                "10 logins at once": functools.partial(logins, url, bodies),
                "16 followers": lambda: followers(url, database, 16),
                "100 followers": lambda: followers(url, database, 100),
            }
            for name, load in loads.items():
                row = probe(url, load)
                print(
                    f"| {label} | {name} | {row['health_p50_ms']} ms | {row['health_max_ms']} ms | "
                    f"{', '.join(row['health_statuses'])} | {row['result']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
