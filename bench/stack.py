"""The compose stack's memory under load, measured outside Docker (a benchmark, not a test).

    sudo PYTHONPATH=. .venv/bin/python bench/stack.py                 # 20 chat streams + API, 60 s
    sudo PYTHONPATH=. .venv/bin/python bench/stack.py --streams 20 --seconds 60

Starts the processes docker-compose.yml would start, with its settings, on this machine: PostgreSQL
(a fresh cluster run with the db service's `command` flags, as the postgres user), the migrations,
the three functions (`uvicorn functions.<name>.app:app`, the functions' compose environment: pool
sizes, the default engine) and nginx (the repository's site template, a self-signed certificate).
Then --streams chat streams answer full-length questions back to back and a client walks the
conversation API (list, create, read, rename, delete) for --seconds, while every process's resident
set is sampled twice a second. Prints each service's idle and peak RSS and PSS (PSS shares pages
such as PostgreSQL's shared buffers between the processes that map them) and the peak of their sum.
The load goes to each function's port directly: nginx's per-address limits (chat 2/s) would refuse
one client's 20 streams, and nginx's own memory hardly moves with load.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed (RSS, PSS) of these processes, MB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def start_postgres(tmp: Path, port: int) -> subprocess.Popen:
    version = sorted(PG_BIN.iterdir())[-1] / "bin"
    os.chmod(tmp, 0o755)  # the postgres user reaches its data directory inside
    data = tmp / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(version / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    flags = [str(a) for a in compose()["services"]["db"]["command"][1:]]  # after "postgres"
    command = [*as_postgres, str(version / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    process = subprocess.Popen(
        [*command, *flags], stdout=subprocess.DEVNULL, stderr=(tmp / "pg.log").open("w")
    )
    for _ in range(100):
        if subprocess.run([str(version / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                          capture_output=True).returncode == 0:  # fmt: skip
            return process
        time.sleep(0.2)
    raise SystemExit("PostgreSQL did not start: " + (tmp / "pg.log").read_text())


def function_env(name: str, database: str) -> dict[str, str]:
    """The function's compose environment (its SLM_ settings; not the secrets, not the address)."""
    service = compose()["services"][name]
    env = {k: str(v) for k, v in service["environment"].items() if not str(v).startswith("${")}
    env = {k: v for k, v in env.items() if k.startswith("SLM_") and k not in ("SLM_ENV", "SLM_CORS_ORIGIN")}
    return {
        **os.environ,
        **env,
        "PYTHONPATH": str(ROOT),
        "SLM_DATABASE_URL": database,
        "SLM_JWT_SECRET": "stack-benchmark-jwt-key-0123456789abcdef",
        "SLM_REGISTER_MAX_PER_IP": "1000",  # one client registers every user of the benchmark
        "SLM_CHAT_MAX_MESSAGES_PER_MINUTE": "100000",
        "SLM_CHAT_MAX_TOKENS_PER_DAY": "100000000",
    }


def start_nginx(tmp: Path, ports: dict[str, int]) -> subprocess.Popen:
    certs, html = tmp / "certs", tmp / "html"
    subprocess.run(["sh", str(ROOT / "infra/nginx/10-slm-tls-placeholder.sh")],
                   env={**os.environ, "DOMAIN": "localhost", "CERT_DIR": str(certs)}, check=True,
                   capture_output=True)  # fmt: skip
    html.mkdir()
    (html / "index.html").write_text("<h1>SLM</h1>")
    values = {"DOMAIN": "localhost", "HTTP_PORT": str(free_port()), "HTTPS_PORT": str(free_port()),
              "CERT_DIR": str(certs), "ACME_ROOT": str(tmp / "acme"), "FRONTEND_ROOT": str(html)}  # fmt: skip
    values |= {f"{name.upper()}_UPSTREAM": f"127.0.0.1:{port}" for name, port in ports.items()}
    site = (ROOT / "infra/nginx/templates/default.conf.template").read_text()
    for name, value in values.items():
        site = site.replace("${" + name + "}", value)
    (tmp / "site.conf").write_text(site)
    temp = " ".join(f"{k}_temp_path {tmp / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        f"user root;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} warn;\n"
        f"events {{ worker_connections 256; }}\nhttp {{ include /etc/nginx/mime.types; access_log off; {temp} "
        f"include {tmp / 'site.conf'}; }}\n"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"])


def wait_healthy(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} never became healthy")


def chat_loop(url: str, headers: dict[str, str], until: float, counts: dict[str, int]) -> None:
    body = {"message": "Tell me a story about a ship at sea.", "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "max_new_tokens": 128, "min_new_tokens": 128}  # fmt: skip
    while time.time() < until:
        with httpx.stream("POST", f"{url}/api/chat", json=body, headers=headers, timeout=300) as response:
            for line in response.iter_lines():
                if line.startswith("event: token"):
                    counts["tokens"] += 1
        counts["answers"] += 1


def api_loop(url: str, headers: dict[str, str], until: float, counts: dict[str, int]) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while time.time() < until:
            cid = client.post("/api/conversations", json={"title": "bench"}).json()["id"]
            client.get("/api/conversations")
            client.get(f"/api/conversations/{cid}")
            client.patch(f"/api/conversations/{cid}", json={"title": "renamed"})
            client.delete(f"/api/conversations/{cid}")
            counts["api"] += 5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=20, help="concurrent chat streams")
    p.add_argument("--seconds", type=float, default=60, help="how long the load runs")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: PostgreSQL is started as the postgres user (runuser)")
    processes: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            pg_port = free_port()
            processes["postgresql"] = start_postgres(tmp, pg_port)
            database = f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/postgres"
            migrate = function_env("migrate", database)
            subprocess.run(
                [sys.executable, "-m", "shared.migrate", "upgrade"], env=migrate, cwd=ROOT, check=True
            )
            ports = {name: free_port() for name in ("auth", "conversations", "chat")}
            for name, port in ports.items():
                command = [sys.executable, "-m", "uvicorn", f"functions.{name}.app:app", "--port", str(port)]
                env = function_env(name, database)
                processes[name] = subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=ROOT)
            processes["nginx"] = start_nginx(tmp, ports)
            for port in ports.values():
                wait_healthy(f"http://127.0.0.1:{port}/api/health")
            auth, chat = f"http://127.0.0.1:{ports['auth']}", f"http://127.0.0.1:{ports['chat']}"
            users = []
            for _ in range(5):
                body = {
                    "email": f"stack-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "benchmark password",
                }
                token = httpx.post(f"{auth}/api/auth/register", json=body, timeout=30).json()["access_token"]
                users.append({"Authorization": f"Bearer {token}"})
            chat_loop(chat, users[0], 0, {"tokens": 0, "answers": 0})  # one warm-up answer
            time.sleep(2)
            idle = {name: memory_mb(tree(proc.pid)) for name, proc in processes.items()}
            peak = {name: (0.0, 0.0) for name in processes}
            peak_total = [0.0, 0.0]
            counts = {"tokens": 0, "answers": 0, "api": 0}
            until = time.time() + args.seconds
            workers = [threading.Thread(target=chat_loop, args=(chat, users[i % 5], until, counts))
                       for i in range(args.streams)]  # fmt: skip
            conversations = f"http://127.0.0.1:{ports['conversations']}"
            workers.append(threading.Thread(target=api_loop, args=(conversations, users[0], until, counts)))
            for worker in workers:
                worker.start()
            while any(worker.is_alive() for worker in workers):
                now = {name: memory_mb(tree(proc.pid)) for name, proc in processes.items()}
                for name, (rss, pss) in now.items():
                    peak[name] = (max(peak[name][0], rss), max(peak[name][1], pss))
                peak_total = [max(peak_total[0], sum(v[0] for v in now.values())),
                              max(peak_total[1], sum(v[1] for v in now.values()))]  # fmt: skip
                time.sleep(0.5)
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                process.wait(timeout=30)
    print(f"\nThe compose stack outside Docker: {args.streams} chat streams (128-token answers) and the")
    print(
        f"conversation API for {args.seconds:.0f} s: {counts['answers']} answers, {counts['tokens']} tokens,"
    )
    print(f"{counts['api']} API requests.\n")
    print("| service | RSS idle MB | RSS peak MB | PSS idle MB | PSS peak MB |")
    print("|---|---:|---:|---:|---:|")
    for name in processes:
        print(
            f"| {name} | {idle[name][0]:.0f} | {peak[name][0]:.0f} | {idle[name][1]:.0f} | {peak[name][1]:.0f} |"
        )
    print(f"| **all, summed** | {sum(v[0] for v in idle.values()):.0f} | **{peak_total[0]:.0f}** | "
          f"{sum(v[1] for v in idle.values()):.0f} | {peak_total[1]:.0f} |")  # fmt: skip
    print("\n(the peak of the sum, sampled every 0.5 s; target: RSS summed under load <= 750 MB)")


if __name__ == "__main__":
    main()
