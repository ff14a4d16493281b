"""Serving benchmark: concurrent chat streams against the chat function on this machine (not a test).

    python bench/serve.py                                  # the ONNX Runtime and torch engines, one run
    python bench/serve.py --engines onnx --streams 1 8 --tokens 128
    python bench/serve.py --engines onnx --streams 1 8 --sampling app   # the app's defaults (top-k 50, top-p .95)
    python bench/serve.py --before ../slm-old              # also a server from another checkout
    python bench/serve.py --before ../slm-old --before-uvicorn '--loop asyncio --http h11'
    python bench/serve.py --engines onnx --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Each server is the chat function alone, started as compose starts it (`uvicorn functions.chat.app:app`),
on SQLite in a temp dir, or with --postgres on a fresh database of that PostgreSQL server (the database
the compose stack runs; dropped afterwards). Every answer is full length (min_new_tokens =
max_new_tokens = --tokens). Each stream has its own HTTP client, made before the clock starts and kept
across rounds, as a browser keeps its connection. For each concurrency level it prints aggregate
tokens/s, its ratio to one stream, p50/p95 time to first token (the p95 also over one stream's, which
wants --rounds 20 or more: one stream's p95 is of --rounds first tokens), the p50 gap between tokens and
the client's own CPU per token (it shares the cores: by default every stream is a keep-alive socket read
on one thread, bench/sse_client.py; --client httpx takes an httpx client per stream on a thread each,
which counts events in raw chunks or, with --parse lines, line by line); for each server its first start with nothing cached (process start to the
first token of the first request; the chat function builds its ONNX graphs then, as an image build does)
and its cold start (the same, started again: the graphs in the cache), the resident set idle after that, and its peak during the levels; and the
request path: the server's CPU per one-token answer (its event loop's thread, the others), and the
first-token times of 8 one-token answers asked for at once against one alone.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (python bench/serve.py): the project's packages too
    sys.path.insert(0, str(ROOT))

from bench.sse_client import Streams, chat_request, timing  # noqa: E402

PROMPT = "Tell me a story about a ship at sea."


JWT_KEY = "benchmark-only-jwt-key-0123456789abcdef"


def prepare(database: str, name: str) -> dict[str, str]:
    """A migrated database with a user (the first call migrates), and that user's token, made before the
    server starts, so the cold start measures the server alone."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from shared.migrate import sync_url, upgrade
    from shared.models import User
    from shared.security import create_access_token, hash_password

    upgrade(database)
    engine = create_engine(sync_url(database))
    with Session(engine) as session:
        user = User(email=f"{name}@example.com", password_hash=hash_password("benchmark password", 4))
        session.add(user)
        session.commit()
        token = create_access_token(user.subject, JWT_KEY, 60)
    engine.dispose()
    return {"Authorization": f"Bearer {token}"}


def start(
    database: str, port: int, root: Path, engine: str, cache: str, flags: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], float]:
    env = {
        **os.environ,
        "SLM_ONNX_CACHE": cache,  # the server's built graphs (model/ort_engine.py), this run's own
        "SLM_DATABASE_URL": database,
        "SLM_JWT_SECRET": JWT_KEY,
        "SLM_CHAT_ENGINE": engine,
        "SLM_MIGRATE_ON_START": "false",
        "SLM_CHAT_MAX_MESSAGES_PER_MINUTE": "10000",  # the benchmark is one client, not abuse
        "PYTHONPATH": str(root),
    }
    began = time.perf_counter()
    command = [sys.executable, "-m", "uvicorn", "functions.chat.app:app", "--port", str(port)]
    return subprocess.Popen([*command, "--log-level", "warning", *flags], cwd=root, env=env), began


def start_to_first_token(
    database: str,
    port: int,
    root: Path,
    engine: str,
    cache: str,
    headers: dict[str, str],
    flags: tuple[str, ...] = (),
    client: str = "sockets",
) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server (see start) and time process start to the first token of its first answer; the
    server is left running (stopped if anything fails)."""
    url = f"http://127.0.0.1:{port}"
    # an httpx client builds its SSL context when made: before the clock, as in every other figure (the
    # socket client only connects, which needs the server up, and costs well under a millisecond)
    connection = httpx.Client() if client == "httpx" else None
    # the health checks' client, made before the clock as well (see wait_ready)
    with httpx.Client() as poller:
        process, began = start(database, port, root, engine, cache, flags)
        try:
            wait_ready(url, client=poller)
            return process, float(one_by_one(url, [headers], 8, 1, client, connection)[0]["first"]) - began
        except BaseException:
            process.terminate()
            process.wait(timeout=30)
            raise


class Memory:
    """The server's VmRSS, sampled every 20 ms while `peak` is being watched."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb, self._watching = pid, 0.0, False

    def now(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def watch(self) -> None:
        self._watching = True

        def sample() -> None:
            while self._watching:
                self.peak_mb = max(self.peak_mb, self.now())
                time.sleep(0.02)

        threading.Thread(target=sample, daemon=True).start()

    def stop(self) -> None:
        self._watching = False


def wait_ready(url: str, timeout: float = 180, client: httpx.Client | None = None) -> None:
    """Poll the health check every 20 ms until it answers 200. Through one client: a bare httpx.get makes a
    client each time, whose SSL context costs ~30 ms of CPU, so polling that way took over half a core
    from a server starting on the same 2 cores, inside a cold start's clock (a reused client: ~0.2 ms)."""
    deadline = time.perf_counter() + timeout
    with httpx.Client() if client is None else contextlib.nullcontext(client) as poller:
        while time.perf_counter() < deadline:
            try:
                if poller.get(f"{url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise SystemExit("server did not become healthy")


# how the answers are sampled (--sampling): "full", the whole softmax at temperature 1 (every earlier
# figure); "app", what a request that names none gets (POST /api/chat's defaults: app_sampling)
FULL_SOFTMAX: dict[str, float | int] = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
SAMPLING = dict(FULL_SOFTMAX)  # main() sets it from --sampling


def app_sampling() -> dict[str, float | int]:
    """The request schema's own defaults for temperature, top_k and top_p (those of the web app)."""
    from functions.chat.schemas import Sampling

    return {name: Sampling.model_fields[name].default for name in FULL_SOFTMAX}


def chat_body(tokens: int, seed: int) -> dict[str, Any]:
    """A new conversation whose answer is exactly `tokens` long, sampled with `seed` (and SAMPLING)."""
    return {
        "conversation_id": None,
        "message": PROMPT,
        **SAMPLING,
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "seed": seed,
    }


def answers(
    url: str, users: list[dict[str, str]], streams: int, tokens: int, rounds: int, client: str, parse: str
) -> tuple[list[dict[str, float | int]], float, float]:
    """`rounds` times: `streams` answers started together. Returns each answer's timing (one_stream's
    fields), the seconds of all rounds together (each from its start to its last answer's end) and the
    client's CPU meanwhile."""
    if client == "httpx":
        return _threaded_answers(url, users, streams, tokens, rounds, parse)
    results: list[dict[str, float | int]] = []
    elapsed = cpu = 0.0
    connections = Streams(url, streams)
    try:
        for _ in range(rounds):
            requests = [
                chat_request(url, users[i % len(users)], chat_body(tokens, i)) for i in range(streams)
            ]
            began, started_cpu = time.perf_counter(), time.process_time()
            batch = connections.round(requests)
            cpu += time.process_time() - started_cpu
            elapsed += max(float(r["end"]) for r in batch) - began
            results += batch
    finally:
        connections.close()
    return results, elapsed, cpu


def one_by_one(
    url: str,
    users: list[dict[str, str]],
    tokens: int,
    count: int,
    client: str,
    connection: httpx.Client | None = None,
) -> list[dict[str, float | int]]:
    """`count` answers one after another on one connection (made before the first is asked for; with
    --client httpx, `connection` if given: a client made before the clock started, see one_stream)."""
    if client == "httpx":
        with connection or httpx.Client() as made:
            return [one_stream(made, url, users[i % len(users)], tokens, seed=i) for i in range(count)]
    connections = Streams(url, 1)
    try:
        return [
            connections.round([chat_request(url, users[i % len(users)], chat_body(tokens, i))])[0]
            for i in range(count)
        ]
    finally:
        connections.close()


def one_stream(
    client: httpx.Client, url: str, headers: dict[str, str], tokens: int, seed: int, parse: str = "raw"
) -> dict[str, float | int]:
    """Time one chat stream: first-token latency, gaps between token events, tokens generated. The
    client is made before the clock starts and kept, as a browser keeps its connection: a new
    httpx.Client builds an SSL context (~25 ms of CPU here), which 8 threads would pay one after
    another under the client's GIL inside every measured first token."""
    body = chat_body(tokens, seed)
    # By default the client reads raw chunks and counts events with bytes operations (parse="raw"): it shares
    # the cores with the server; parse="lines" reads line by line as before (its CPU per token is printed too).
    began, arrivals, done = time.perf_counter(), [], {}
    with client.stream("POST", f"{url}/api/chat", json=body, headers=headers, timeout=600) as response:
        if response.status_code != 200:  # a refused stream is no figure: say why, do not count it as nan
            raise RuntimeError(f"POST /api/chat answered {response.status_code}: {response.read().decode()}")
        if parse == "lines":
            event = ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "token":
                    arrivals.append(time.perf_counter())
                elif line.startswith("data:") and event == "done":
                    done = json.loads(line[5:])
        else:
            tail = b""
            for chunk in response.iter_raw():
                now = time.perf_counter()
                events, _, tail = (tail + chunk).rpartition(b"\n\n")  # whole events; the rest waits
                arrivals += [now] * events.count(b"event: token\n")
                if (at := events.find(b"event: done\ndata: ")) >= 0:
                    done = json.loads(events[at + 18 :].split(b"\n", 1)[0])
    return timing(began, arrivals, int(done.get("tokens", 0)), time.perf_counter())


def level(
    url: str,
    users: list[dict[str, str]],
    streams: int,
    tokens: int,
    parse: str = "raw",
    rounds: int = 1,
    client: str = "sockets",
) -> dict[str, Any]:
    """`rounds` times: `streams` answers started together; tokens/s over all rounds, TTFT over every answer."""
    results, elapsed, cpu = answers(url, users, streams, tokens, rounds, client, parse)
    tokens = sum(int(r["tokens"]) for r in results)
    ttfts = sorted(float(r["ttft"]) for r in results)
    return {
        "streams": streams,
        "tokens_per_second": tokens / elapsed,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        "gap_p50": statistics.median(float(r["gap"]) for r in results),
        "client_cpu_per_token": cpu / max(tokens, 1),
        "results": results,
    }


def _threaded_answers(
    url: str, users: list[dict[str, str]], streams: int, tokens: int, rounds: int, parse: str
) -> tuple[list[dict[str, float | int]], float, float]:
    """answers() with an httpx client per stream (made before the clock, kept across rounds), each on
    a thread of its own."""
    results: list[dict[str, float | int]] = []
    elapsed = cpu = 0.0
    clients = [httpx.Client() for _ in range(streams)]  # one per stream, kept across rounds
    failures: list[Exception] = []
    for _ in range(rounds):
        batch: list[dict[str, float | int]] = [{} for _ in range(streams)]
        barrier = threading.Barrier(streams + 1)

        def run(
            i: int, batch: list[dict[str, float | int]] = batch, barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            try:
                batch[i] = one_stream(clients[i], url, users[i % len(users)], tokens, seed=i, parse=parse)
            except Exception as exc:  # raised below, in the benchmark's own thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
        for thread in threads:
            thread.start()
        barrier.wait()
        began, started_cpu = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        cpu += time.process_time() - started_cpu
        elapsed += max(float(r["end"]) for r in batch) - began
        results += batch
    for client in clients:
        client.close()
    return results, elapsed, cpu


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process so far: (its main thread, every other thread), from /proc."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if tid == str(pid):
                main += seconds
            else:
                other += seconds
    return main, other


def request_path(
    url: str, users: list[dict[str, str]], pid: int, requests: int = 100, client: str = "sockets"
) -> dict[str, float]:
    """What one answer costs besides its tokens: `requests` one-token answers one after another (the
    server's CPU per request, on its event loop's thread and on the others: the model, the database
    driver's threads), then 8 one-token answers at once, 10 times (their first-token times)."""
    one_by_one(url, users[:1], 1, 5, client)  # warm: the statement caches, the first bindings
    (main, other), began = thread_cpu(pid), time.perf_counter()
    alone = sorted(float(r["ttft"]) for r in one_by_one(url, users, 1, requests, client))
    wall = (time.perf_counter() - began) / requests
    main_after, other_after = thread_cpu(pid)
    together = sorted(float(r["ttft"]) for r in level(url, users, 8, 1, rounds=10, client=client)["results"])
    return {
        "main_ms": (main_after - main) / requests * 1000,
        "other_ms": (other_after - other) / requests * 1000,
        "wall_ms": wall * 1000,
        "alone_p95": alone[round(0.95 * (len(alone) - 1))],
        "together_p50": statistics.median(together),
        "together_p95": together[round(0.95 * (len(together) - 1))],
    }


def engine_bounds(checkpoint: Path | None = None, steps: int = 64, repeats: int = 15) -> dict[str, float]:
    """The served engine alone (ONNX Runtime, the kernels and threads the chat function takes): decode
    tokens/s at batch 1 and 8, and the median time of one prefill of the benchmark's prompt, of 8 in a
    row and of 8 together (what the scheduler does with 8 prompts admitted at once: shared passes), so
    the serving ratios have their ceilings."""
    from model.config import DEFAULT_CHECKPOINT, TOKENIZER
    from model.ort_engine import OrtEngine
    from model.runtime import cpu_budget
    from model.tokenizer import Tokenizer, render_prompt

    checkpoint = checkpoint or DEFAULT_CHECKPOINT
    engine = OrtEngine.from_checkpoint(checkpoint, max_batch=8, threads=cpu_budget())
    tok = Tokenizer.from_file(checkpoint / TOKENIZER)
    ids = render_prompt(tok, [{"role": "user", "content": PROMPT}])

    def prefills(n: int, together: bool = False) -> float:
        for slot in range(n):
            engine.release(slot)
        began = time.perf_counter()
        if together:
            engine.prefill_many(list(range(n)), [ids] * n)
        else:
            for slot in range(n):
                engine.prefill(slot, ids)
        return time.perf_counter() - began

    def decode(n: int) -> float:
        prefills(n)
        slots, tokens = list(range(n)), [tok.eos_id] * n
        began = time.perf_counter()
        for _ in range(steps):
            engine.decode(slots, tokens)
        return n * steps / (time.perf_counter() - began)

    prefills(8), prefills(8, together=True), decode(8)  # warm both kernels' sessions
    one = statistics.median(prefills(1) for _ in range(repeats))
    eight = statistics.median(prefills(8) for _ in range(repeats))
    together = statistics.median(prefills(8, together=True) for _ in range(repeats))
    batch1 = statistics.median(decode(1) for _ in range(5))
    batch8 = statistics.median(decode(8) for _ in range(5))
    return {
        "prompt_tokens": len(ids),
        "prefill_1": one,
        "prefill_8": eight,
        "prefill_8_together": together,
        "decode_1": batch1,
        "decode_8": batch8,
    }


@contextlib.contextmanager
def database_for(postgres: str | None) -> Iterator[str]:
    """The URL of an empty database for one server: a SQLite file in a temp dir, or a fresh database
    on the PostgreSQL server `postgres` names, dropped at the end."""
    if postgres is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    from sqlalchemy import create_engine, make_url, text

    name = f"slm_bench_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def serve(root: Path, engine: str, args: argparse.Namespace, flags: tuple[str, ...] = ()) -> dict:
    """One server's first start (nothing cached), cold start (a start after that, as after an image build
    or a restart: the built graphs are in the cache), memory and levels."""
    with database_for(args.postgres) as database, tempfile.TemporaryDirectory() as cache:
        url = f"http://127.0.0.1:{args.port}"
        # one user for every stream of the largest level: a user may have chat_max_streams_per_user (3)
        # answers in flight, so 16 streams over 4 users had 4 of them refused (429)
        users = [prepare(database, f"user{i}") for i in range(max(4, *args.streams))]
        starts = []
        for attempt in ("first", "cold"):
            process, seconds = start_to_first_token(
                database, args.port, root, engine, cache, users[0], flags, args.client
            )
            starts.append(seconds)
            if attempt == "first":
                process.terminate()
                process.wait(timeout=30)
        try:
            memory = Memory(process.pid)
            time.sleep(1.0)
            idle = memory.now()
            memory.watch()
            rows = [
                level(url, users, n, args.tokens, args.parse, args.rounds, args.client) for n in args.streams
            ]
            memory.stop()
            path = request_path(url, users, process.pid, client=args.client)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "first_start": starts[0],
        "cold_start": starts[1],
        "idle_mb": idle,
        "peak_mb": memory.peak_mb,
        "rows": rows,
        "path": path,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16], help="concurrency levels")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per answer (all full length)")
    parser.add_argument("--engines", nargs="+", default=["onnx", "torch"], choices=["onnx", "torch"])
    parser.add_argument("--before", type=Path, help="also serve from this checkout, first")
    parser.add_argument(
        "--before-engine",
        default="torch",
        choices=["onnx", "torch"],
        help="the engine the --before checkout serves",
    )
    parser.add_argument(
        "--before-uvicorn",
        default="",
        metavar="FLAGS",
        help="uvicorn flags of the --before server, e.g. '--loop asyncio --http h11' for a checkout whose "
        "requirements had no uvloop and httptools (uvicorn would pick them from this environment)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="times each level runs (their sum is measured)")
    parser.add_argument(
        "--client",
        choices=["sockets", "httpx"],
        default="sockets",
        help="sockets: every stream on one thread (bench/sse_client.py); httpx: a client and a thread per stream",
    )
    parser.add_argument(
        "--parse",
        choices=["raw", "lines"],
        default="raw",
        help="--client httpx: how it reads the SSE (raw: cheapest)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run each server on a fresh database of this PostgreSQL server (default: SQLite in a temp dir)",
    )
    parser.add_argument(
        "--sampling",
        choices=["full", "app"],
        default="full",
        help="full: the whole softmax at temperature 1 (the earlier figures); app: the app's defaults",
    )
    parser.add_argument("--port", type=int, default=8765, help="port of the servers this script starts")
    parser.add_argument(
        "--no-bounds", dest="bounds", action="store_false", help="skip timing the served engine alone"
    )
    args = parser.parse_args()
    SAMPLING.update(app_sampling() if args.sampling == "app" else FULL_SOFTMAX)

    before_flags = tuple(args.before_uvicorn.split())
    servers = (
        [(f"before ({args.before}, {args.before_engine})", args.before, args.before_engine, before_flags)]
        if args.before
        else []
    )
    servers += [(f"{engine} engine", ROOT, engine, ()) for engine in args.engines]
    results = {name: serve(root, engine, args, flags) for name, root, engine, flags in servers}

    print(
        f"\nServing benchmark: {args.tokens} new tokens per answer, {os.cpu_count()} CPUs visible, "
        f"{args.rounds} rounds per level, sampling {args.sampling} ({SAMPLING}), client {args.client}"
        f"{f' (parse {args.parse})' if args.client == 'httpx' else ''}, "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}\n"
    )
    print(
        "| server | streams | aggregate tok/s | × 1 stream | TTFT p50 (s) | TTFT p95 (s) | TTFT p95 × 1 stream's "
        "| inter-token p50 (ms) | client CPU per token (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        base, first = result["rows"][0]["tokens_per_second"], result["rows"][0]["ttft_p95"]
        for row in result["rows"]:
            print(
                f"| {name} | {row['streams']} | {row['tokens_per_second']:.1f} | "
                f"{row['tokens_per_second'] / base:.2f} | {row['ttft_p50']:.3f} | {row['ttft_p95']:.3f} | "
                f"{row['ttft_p95'] / first:.1f} | {row['gap_p50'] * 1000:.1f} | "
                f"{row['client_cpu_per_token'] * 1000:.2f} |"
            )
    if args.rounds * args.streams[0] < 20:  # the ratios are to the first level's, one stream as a rule
        print(
            f"(the first level's TTFT p95 is of {args.rounds * args.streams[0]} first tokens, nearly their "
            "largest: take --rounds 20 or more for a steady TTFT ratio)"
        )
    print(
        "\n| server | first start, nothing cached (s) | cold start (s) | RSS idle (MB) | RSS peak under load (MB) |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, result in results.items():
        print(
            f"| {name} | {result['first_start']:.2f} | {result['cold_start']:.2f} | {result['idle_mb']:.0f} "
            f"| {result['peak_mb']:.0f} |"
        )
    print(
        "\n| server | CPU per 1-token answer: event loop (ms) | other threads (ms) | wall (ms) "
        "| TTFT p95 alone (s) | 8 at once: TTFT p50 (s) | p95 (s) | p95 / alone |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        path = result["path"]
        print(
            f"| {name} | {path['main_ms']:.1f} | {path['other_ms']:.1f} | {path['wall_ms']:.1f} | "
            f"{path['alone_p95']:.3f} | {path['together_p50']:.3f} | {path['together_p95']:.3f} | "
            f"{path['together_p95'] / path['alone_p95']:.1f} |"
        )
    if args.bounds and "onnx engine" in results:
        print_bounds(engine_bounds(), results["onnx engine"])


def print_bounds(bounds: dict[str, float], served: dict) -> None:
    """What the engine alone allows the two serving ratios, beside what the onnx server measured."""
    ratio = {row["streams"]: row for row in served["rows"]}
    alone = served["path"]["alone_p95"]
    # the eighth first token comes after the prefill of all 8 prompts admitted together, not of its own
    eighth = alone + bounds["prefill_8_together"] - bounds["prefill_1"]
    print(
        f"\nThe served engine alone ({bounds['prompt_tokens']}-token prompt): decode {bounds['decode_1']:.0f} "
        f"tok/s at batch 1, {bounds['decode_8']:.0f} at batch 8 ({bounds['decode_8'] / bounds['decode_1']:.2f}x: "
        "the most 8 streams can give over one through any server here); one prefill "
        f"{bounds['prefill_1'] * 1000:.1f} ms, 8 in a row {bounds['prefill_8'] * 1000:.1f} ms, 8 together "
        f"{bounds['prefill_8_together'] * 1000:.1f} ms"
    )
    if 1 in ratio and 8 in ratio:
        print(
            f"8 streams over one through the server: "
            f"{ratio[8]['tokens_per_second'] / ratio[1]['tokens_per_second']:.2f}x"
        )
    print(
        f"TTFT alone (p95 of the one-token answers) {alone * 1000:.1f} ms: 8 at once cannot beat "
        f"{eighth * 1000:.1f} ms, {eighth / alone:.2f}x, even with a request "
        f"path costing nothing; measured {served['path']['together_p95'] / alone:.2f}x"
    )


if __name__ == "__main__":
    main()
