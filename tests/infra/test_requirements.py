"""Each function's own requirements.txt is enough: a fresh virtual environment with only that list answers
a health check, as the function's image would (Mangum handler for auth and conversations, uvicorn for chat).

Slow (a pip install per function): pytest -m "not slow" leaves them out.
"""

import json
import os
import subprocess
import time
import venv
from pathlib import Path

import httpx
import pytest

from tests.infra.helpers import REPO, free_port, function_exists

pytestmark = pytest.mark.slow

INVOKE = """
import json, sys
from functions.{name}.handler import handler

class Context:  # the attributes Lambda's context object has
    function_name = "slm-{name}"
    aws_request_id = "requirements-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:slm-{name}"

    def get_remaining_time_in_millis(self):
        return 30000

event = json.load(open(sys.argv[1]))
print(json.dumps(handler(event, Context())))
"""


def fresh_environment(name: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A new virtual environment with functions/<name>/requirements.txt and nothing else; its Python and env."""
    if not function_exists(name):
        pytest.skip(f"functions/{name}/app.py does not exist yet")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    requirements = REPO / "functions" / name / "requirements.txt"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLM_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        PYTHONPATH=str(REPO),  # the repository's code, and only the fresh environment's packages
        SLM_ENV="production",
        SLM_JWT_SECRET="requirements-test-key-long-enough-0123456789",
        SLM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'slm.db'}",
        SLM_MIGRATE_ON_START="true",
    )
    return python, env


@pytest.mark.parametrize("name", ["auth", "conversations"])
def test_handler_answers_health_from_its_own_requirements(name: str, tmp_path: Path) -> None:
    python, env = fresh_environment(name, tmp_path)
    event = REPO / "infra" / "events" / f"{name}-health-http-api.json"
    result = subprocess.run(
        [str(python), "-c", INVOKE.format(name=name), str(event)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["status"] == "ok" and body["service"] == name


def test_chat_serves_health_from_its_own_requirements(tmp_path: Path) -> None:
    python, env = fresh_environment("chat", tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [str(python), "-m", "uvicorn", "functions.chat.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "chat.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        # What Lambda Web Adapter's readiness check does: poll /api/health until it answers 2xx.
        for _ in range(600):
            assert server.poll() is None, (tmp_path / "chat.log").read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health")
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("chat never became ready:\n" + (tmp_path / "chat.log").read_text())
        assert health.json()["service"] == "chat"
        # ready means the model loaded, and the chat function's list has no torch at all: ONNX Runtime
        assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0
        # and uvicorn serves it on its compiled event loop and HTTP parser (the base list pins both)
        picked = "from uvicorn.loops.auto import auto_loop_factory; from uvicorn.protocols.http.auto import "
        picked += "AutoHTTPProtocol as P; print(type(auto_loop_factory()()).__module__, P.__name__)"
        done = subprocess.run(
            [str(python), "-c", picked], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.split() == ["uvloop", "HttpToolsProtocol"]
    finally:
        server.terminate()
        server.wait(timeout=20)
