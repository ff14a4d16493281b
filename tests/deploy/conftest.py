"""The deployment suite (make test-deploy): every image built as compose and `sam build` build it, the compose
stack run on 127.0.0.1 and tested through nginx, and `sam local invoke` on the Lambda events.

It is collected only when named (`pytest tests/deploy`): a plain `pytest` leaves it to make test-deploy, which
`make test` runs. Where no Docker engine answers it is skipped with a loud reason, except under CI=true,
where .ci/run has started one and its absence fails the run.
"""

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    FIGURES,
    PROJECT,
    SOURCES,
    Compose,
    Sam,
    engine_problem,
    log_file,
    record,
    sources_fingerprint,
    timed,
)
from tests.infra.helpers import IN_CI, REPO

HERE = Path(__file__).resolve().parent
_problem: str | None = None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if not any(path == HERE or HERE in path.parents for path in named):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _problem
    ours = [item for item in items if HERE in item.path.parents]
    if not ours:
        return
    _problem = engine_problem()
    if _problem is None:
        return
    if IN_CI:
        raise pytest.UsageError(f"CI=true but no Docker engine answers ({_problem}): .ci/run starts dockerd")
    skip = pytest.mark.skip(reason=f"!!! NOT TESTED: no Docker engine answers ({_problem})")
    for item in ours:
        item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _problem:
        terminalreporter.write_sep("!", "THE DEPLOYMENT WAS NOT TESTED", red=True, bold=True)
        terminalreporter.write_line(f"No Docker engine answers ({_problem})", red=True)
        terminalreporter.write_line("Start one (dockerd) to build the images and run the stack.", red=True)
    if FIGURES:
        terminalreporter.write_sep("-", "deployment figures (artifacts/deploy/figures.json)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def bases() -> dict[str, str]:
    """Each base image's build ARG (or compose variable) -> the image to use: official or a stand-in."""
    from infra.bases import resolve

    started = time.monotonic()
    with log_file("bases.log") as log:
        images = resolve(os.environ.get("SLM_DEPLOY_BASES", "auto"), log=log)
    timed("base images resolved or built (s)", started)
    record("base images", images)
    return images


@pytest.fixture(scope="session")
def build_ca() -> str:
    from infra.bases import build_ca_cert

    return build_ca_cert()


@pytest.fixture(scope="session")
def build_env(bases: dict[str, str], build_ca: str) -> dict[str, str]:
    """The environment compose builds in: the bases, and the proxy's CA when the host has one."""
    return {**os.environ, **bases, **({"BUILD_CA_CERT": build_ca} if build_ca else {})}


@pytest.fixture(scope="session")
def compose_images(build_env: dict[str, str]) -> dict[str, str]:
    """`docker compose build` of every service that builds: service -> its image."""
    compose = Compose(build_env | BUILD_ONLY_SECRETS)
    SOURCES["compose"] = sources_fingerprint()
    started = time.monotonic()
    compose.logged("build.log", "build")
    timed("docker compose build (s)", started)
    services = json.loads(compose("config", "--format", "json").stdout)["services"]
    # an image compose builds without an `image:` of its own is named <project>-<service>
    return {
        name: service.get("image", f"{PROJECT}-{name}")
        for name, service in services.items()
        if "build" in service
    }


# compose refuses to read its file without these; a build never sees them
BUILD_ONLY_SECRETS = {"POSTGRES_PASSWORD": "build", "SLM_JWT_SECRET": "build", "DOMAIN": "127.0.0.1"}


@pytest.fixture(scope="session")
def sam() -> Sam:
    started = time.monotonic()
    cli = Sam()
    cli.ensure()
    timed("SAM CLI ready (s)", started)
    return cli


@pytest.fixture(scope="session")
def sam_template(sam: Sam, bases: dict[str, str], build_ca: str) -> Iterator[Path]:
    """`sam build` of the three functions; the built template (its ImageUri names each image). The bases
    and the CA reach the build as each function's DockerBuildArgs, written into a copy of template.yaml."""
    from infra.bases import sam_template as write_template

    work = REPO / ".aws-sam" / "deploy-test"
    copy = write_template(bases, work / "template.json", build_ca)
    started = time.monotonic()
    build_dir = work / "build"
    sam(
        "build",
        "--template-file", str(copy),
        "--base-dir", str(REPO),
        "--build-dir", str(build_dir),
        "--config-file", str(REPO / "samconfig.toml"),
        timeout=3600,
    )  # fmt: skip
    timed("sam build (s)", started)
    SOURCES["sam"] = sources_fingerprint()
    yield build_dir / "template.yaml"
