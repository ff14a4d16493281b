"""Serving benchmark: concurrent chat streams against a live server on this machine (not a test).

    python bench/serve.py                       # starts its own server (SQLite in a temp dir) and measures
    python bench/serve.py --streams 1 4 8 16 --tokens 64

For each concurrency level it prints aggregate tokens/s, p50/p95 time to first token, the p50 gap between
tokens, and the ratio of aggregate tokens/s to one stream; then the cold start: process start to the first
token of the first request.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


JWT_KEY = "benchmark-only-jwt-key-0123456789abcdef"


def prepare(database: str) -> dict[str, str]:
    """A migrated database with one user, and that user's token, made before the server starts, so the
    cold start measures the server alone."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from shared.migrate import sync_url, upgrade
    from shared.models import User
    from shared.security import create_access_token, hash_password

    upgrade(database)
    engine = create_engine(sync_url(database))
    with Session(engine) as session:
        user = User(email="cold@example.com", password_hash=hash_password("benchmark password", 4))
        session.add(user)
        session.commit()
        token = create_access_token(user.id, JWT_KEY, 60)
    engine.dispose()
    return {"Authorization": f"Bearer {token}"}


def start(database: str, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {**os.environ, "SLM_DATABASE_URL": database, "SLM_JWT_SECRET": JWT_KEY, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "infra.router.app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env), began


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise SystemExit("server did not become healthy")


def register(url: str) -> dict[str, str]:
    body = {"email": f"bench-{uuid.uuid4().hex[:10]}@example.com", "password": "benchmark password"}
    token = httpx.post(f"{url}/api/auth/register", json=body, timeout=30).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def one_stream(url: str, headers: dict[str, str], tokens: int, seed: int) -> dict[str, float | int]:
    """Time one chat stream: first-token latency, gaps between token events, tokens generated."""
    body = {
        "conversation_id": None,
        "message": "Tell me a story about a ship at sea.",
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "max_new_tokens": tokens,
        "seed": seed,
    }
    began, arrivals, done = time.perf_counter(), [], {}
    with httpx.stream("POST", f"{url}/api/chat", json=body, headers=headers, timeout=600) as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "token":
                arrivals.append(time.perf_counter())
            elif line.startswith("data:") and event == "done":
                done = json.loads(line[5:])
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return {
        "ttft": arrivals[0] - began if arrivals else float("nan"),
        "tokens": int(done.get("tokens", 0)),
        "first": arrivals[0] if arrivals else float("nan"),
        "gap": statistics.median(gaps) if gaps else float("nan"),
        "end": time.perf_counter(),
    }


def level(url: str, users: list[dict[str, str]], streams: int, tokens: int) -> dict[str, float]:
    results: list[dict[str, float | int]] = [{} for _ in range(streams)]
    barrier = threading.Barrier(streams + 1)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = one_stream(url, users[i % len(users)], tokens, seed=i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = max(float(r["end"]) for r in results) - began
    ttfts = sorted(float(r["ttft"]) for r in results)
    return {
        "streams": streams,
        "tokens_per_second": sum(int(r["tokens"]) for r in results) / elapsed,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        "gap_p50": statistics.median(float(r["gap"]) for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16], help="concurrency levels")
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens per stream")
    parser.add_argument("--port", type=int, default=8765, help="port of the server this script starts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url, database = f"http://127.0.0.1:{args.port}", f"sqlite+aiosqlite:///{tmp}/bench.db"
        cold_user = prepare(database)
        process, began = start(database, args.port)
        try:
            wait_ready(url)
            cold_start = float(one_stream(url, cold_user, 8, seed=0)["first"]) - began
            users = [register(url) for _ in range(4)]
            rows = [level(url, users, n, args.tokens) for n in args.streams]
        finally:
            process.terminate()
            process.wait(timeout=30)

    base = rows[0]["tokens_per_second"]
    print(f"\nServing benchmark: {args.tokens} new tokens per stream, {os.cpu_count()} CPUs visible\n")
    print("| streams | aggregate tok/s | × 1 stream | TTFT p50 (s) | TTFT p95 (s) | inter-token p50 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['streams']} | {row['tokens_per_second']:.1f} | {row['tokens_per_second'] / base:.2f} | "
            f"{row['ttft_p50']:.3f} | {row['ttft_p95']:.3f} | {row['gap_p50'] * 1000:.1f} |"
        )
    print(f"\ncold start (process start to first token): {cold_start:.2f} s")


if __name__ == "__main__":
    main()
