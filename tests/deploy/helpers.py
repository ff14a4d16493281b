"""What the deployment suite shares: the Docker engine, the compose stack, SAM CLI, and the figures it reports.

Every image is built the way its deployment builds it (`docker compose build`, `sam build`), on the official
base images where they can be pulled and on infra/bases' stand-ins where they cannot.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.helpers import REPO, compose_command

ARTIFACTS = REPO / "artifacts" / "deploy"
PROJECT = "slm-deploy-test"  # never the `slm` of a real stack on the same engine
FUNCTION_SERVICES = ("migrate", "auth", "conversations", "chat")
SAM_VENV = REPO / ".aws-sam" / "cli-venv"  # ignored by git and by the build context
SAM_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-sam.txt"
MIB = 2**20
FIGURES: dict[str, Any] = {}
SOURCES: dict[str, str] = {}  # build -> sources_fingerprint() when it ran


def record(name: str, value: Any) -> None:
    """Keep a figure for the summary (printed at the end, written to artifacts/deploy/figures.json)."""
    FIGURES[name] = value
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


def engine_problem() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        return "no docker command"
    except subprocess.TimeoutExpired:
        return "docker info did not answer in 30 s"
    if done.returncode != 0 or not done.stdout.strip():
        return (done.stderr.strip().splitlines() or ["docker info failed"])[-1]
    return None


def log_file(name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return (ARTIFACTS / name).open("a")


def run_logged(command: list[str], log_name: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with its output appended to artifacts/deploy/<log_name>; fail with its tail."""
    with log_file(log_name) as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, **kwargs)
    if done.returncode != 0:
        tail = "".join((ARTIFACTS / log_name).read_text().splitlines(keepends=True)[-60:])
        raise AssertionError(f"{command[:4]}... exited with {done.returncode}:\n{tail}")
    return done


@dataclass
class Compose:
    """docker compose on the project's files with the test's environment (never a developer's .env)."""

    env: dict[str, str]
    files: tuple[str, ...] = ("docker-compose.yml", "infra/compose.local.yml")

    def command(self, *args: str) -> list[str]:
        empty = ARTIFACTS / "empty.env"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        empty.write_text("")
        files = [arg for name in self.files for arg in ("-f", name)]
        return [*compose_command(), "--env-file", str(empty), "-p", PROJECT, *files, *args]

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            self.command(*args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (
            f"docker compose {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
        return done

    def logged(self, log_name: str, *args: str, timeout: float = 3600) -> None:
        run_logged(self.command(*args), log_name, cwd=REPO, env=self.env, timeout=timeout)

    def containers(self) -> dict[str, dict[str, Any]]:
        """service -> `docker inspect` of its container (every one, running or not)."""
        ids = self("ps", "-a", "-q").stdout.split()
        if not ids:
            return {}
        inspected = json.loads(docker("inspect", *ids).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args[:3])}: {done.stderr[-2000:]}"
    return done


def parse_size(text: str) -> float:
    """'123.4MiB' -> bytes."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMGT]?i?B)", text.strip()).groups()  # type: ignore[union-attr]
    scale = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    return float(number) * scale[unit]


def memory(compose: Compose) -> dict[str, tuple[float, float]]:
    """service -> (memory in use, its limit) in bytes, from `docker stats` of the running containers."""
    running = {c["Id"]: service for service, c in compose.containers().items() if c["State"]["Running"]}
    lines = docker(
        "stats", "--no-stream", "--no-trunc", "--format", "{{json .}}", *running
    ).stdout.splitlines()
    usage = {}
    for line in lines:
        stats = json.loads(line)
        used, limit = stats["MemUsage"].split(" / ")
        usage[running[stats["ID"]]] = (parse_size(used), parse_size(limit))
    return usage


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) of a Server-Sent Events stream, one at a time as they arrive."""
    event, data = "message", ""
    for line in lines:
        if not line:
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


@dataclass
class Sam:
    """SAM CLI from PyPI in a virtual environment of its own (its pins clash with the functions' boto3)."""

    log: str = "sam.log"
    env: dict[str, str] = field(default_factory=dict)

    def ensure(self) -> None:
        stamp = SAM_VENV / ".installed"
        wanted = hashlib.sha256(SAM_REQUIREMENTS.read_bytes()).hexdigest()
        if stamp.exists() and stamp.read_text() == wanted:
            return
        if not (SAM_VENV / "bin" / "python").exists():
            run_logged([sys.executable, "-m", "venv", str(SAM_VENV)], self.log)
        pip = [
            str(SAM_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-r",
            str(SAM_REQUIREMENTS),
        ]
        run_logged(pip, self.log, timeout=1800)
        stamp.write_text(wanted)

    def __call__(self, *args: str, timeout: float = 900, logged: bool = True) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            **self.env,
            "SAM_CLI_TELEMETRY": "0",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
        command = [str(SAM_VENV / "bin" / "sam"), *args]
        if logged:
            return run_logged(command, self.log, cwd=REPO, env=env, timeout=timeout)
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def sources_fingerprint() -> str:
    """The Python sources the function images copy, by path, size and modification time: equal twice when
    nothing was edited in between (a shared working tree may be edited while the images build)."""
    digest = hashlib.sha256()
    for folder in ("shared", "model", "functions"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                stat = path.stat()
                digest.update(f"{path} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def timed(name: str, started: float) -> float:
    seconds = round(time.monotonic() - started, 1)
    record(name, seconds)
    return seconds
