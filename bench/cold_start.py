"""Cold start of the chat function: process start to the first token of its first answer, several times.

    python -m bench.cold_start                        # the server from this checkout (uvicorn, SQLite)
    python -m bench.cold_start --image slm-chat       # also the chat image (docker build -f functions/chat/Dockerfile -t slm-chat .)

The checkout's server is started as compose starts it (`uvicorn functions.chat.app:app`) with its graph
cache filled first (as the image has it). The image runs as compose runs it (user 10001, a SQLite file on
a mounted folder); its clock starts at the container's own start (docker inspect's State.StartedAt, which
leaves out Docker's ~0.2 s of setting the container up). Each start gets a fresh database with one user,
made before the clock starts. Prints every start and the median; a benchmark, not a test.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.serve import JWT_KEY, ROOT, database_for, one_stream, prepare, start_to_first_token, wait_ready
from model.config import DEFAULT_CHECKPOINT
from model.ort_engine import KERNELS, cached_graphs


def checkout_start(port: int, cache: str) -> float:
    """Seconds from starting this checkout's chat server to the first token of its first answer."""
    with database_for(None) as database:
        process, seconds = start_to_first_token(
            database, port, ROOT, "onnx", cache, prepare(database, "cold")
        )
        process.terminate()
        process.wait(timeout=30)
        return seconds


def image_start(image: str, port: int) -> float:
    """Seconds from the chat image's container start to the first token of its first answer."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)  # the container's user (10001) writes the database's journal there
        headers = prepare(f"sqlite+aiosqlite:///{tmp}/cold.db", "cold")
        os.chmod(f"{tmp}/cold.db", 0o666)
        container = subprocess.run(
            [
                "docker",
                "create",
                "--user",
                "10001:10001",
                "-p",
                f"127.0.0.1:{port}:8080",
                "-v",
                f"{tmp}:/data",
            ]
            + ["-e", "SLM_DATABASE_URL=sqlite+aiosqlite:////data/cold.db", "-e", f"SLM_JWT_SECRET={JWT_KEY}"]
            + ["-e", "SLM_MIGRATE_ON_START=false", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        client = httpx.Client()
        try:
            subprocess.run(["docker", "start", container], check=True, capture_output=True)
            wait_ready(f"http://127.0.0.1:{port}", 120, client)
            first = one_stream(client, f"http://127.0.0.1:{port}", headers, 4, seed=0)["first"]
            first_wall = time.time() - (time.perf_counter() - float(first))
            started = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            return first_wall - datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        finally:
            client.close()
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=5, help="starts of each server")
    parser.add_argument("--image", help="also the chat image of this name (a Docker engine must run)")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        cached_graphs(DEFAULT_CHECKPOINT, KERNELS, Path(cache))  # built first, as the image has them
        rows["this checkout (uvicorn, graphs cached)"] = [
            checkout_start(args.port, cache) for _ in range(args.starts)
        ]
    if args.image:
        rows[f"chat image {args.image} (from the container's start)"] = [
            image_start(args.image, args.port) for _ in range(args.starts)
        ]
    print(f"\nCold start, process start to the first token ({os.cpu_count()} CPUs visible)\n")
    print("| server | median (s) | each start (s) |")
    print("|---|---:|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {statistics.median(seconds):.2f} | {', '.join(f'{s:.2f}' for s in seconds)} |")


if __name__ == "__main__":
    main()
