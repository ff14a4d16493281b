"""Every image, built as `docker compose build` and `sam build` build it: what runs in it and what it carries."""

import io
import json
import subprocess
import tarfile

import pytest
from samtranslator.yaml_helper import yaml_parse

from tests.deploy.helpers import FUNCTION_SERVICES, MIB, SOURCES, docker, record
from tests.infra.helpers import FUNCTIONS


def sam_images(template_path) -> dict[str, str]:
    resources = yaml_parse(template_path.read_text())["Resources"]
    return {logical_id: resources[logical_id]["Properties"]["ImageUri"] for logical_id in FUNCTIONS}


def inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


def test_compose_builds_every_image(compose_images: dict[str, str]) -> None:
    assert set(compose_images) == {*FUNCTION_SERVICES, "nginx"}
    sizes = {service: round(inspect(image)["Size"] / 1e6) for service, image in compose_images.items()}
    record("image sizes (MB)", sizes)
    assert all(size > 0 for size in sizes.values())


def test_sam_builds_every_function_image(sam_template) -> None:
    images = sam_images(sam_template)
    for logical_id, image in images.items():
        config = inspect(image)["Config"]
        name = FUNCTIONS[logical_id]
        if name == "chat":
            assert config["Cmd"][:2] == ["uvicorn", "functions.chat.app:app"]
        else:
            assert config["Entrypoint"] == ["python", "-m", "awslambdaric"]
            assert config["Cmd"] == [f"functions.{name}.handler.handler"]


def test_sam_and_compose_share_the_layers_they_build(compose_images, sam_template) -> None:
    """Both builds run the same Dockerfile on the same context and arguments: the second one comes from the
    first one's layer cache, so the images hold the very same layers (compose only labels its own)."""
    if SOURCES["compose"] != SOURCES["sam"]:
        pytest.skip("sources under shared/, model/ or functions/ were edited between the two builds")
    images = sam_images(sam_template)
    for logical_id, name in FUNCTIONS.items():
        sam_layers = inspect(images[logical_id])["RootFS"]["Layers"]
        assert sam_layers == inspect(compose_images[name])["RootFS"]["Layers"], name


def test_lambda_images_set_no_user_and_compose_runs_them_as_10001(compose_images, sam_template) -> None:
    for image in [*sam_images(sam_template).values(), *(compose_images[s] for s in FUNCTION_SERVICES)]:
        assert inspect(image)["Config"]["User"] in ("", None), image
    user = docker("run", "--rm", "--user", "10001:10001", "--entrypoint", "id", compose_images["auth"], "-un")
    assert user.stdout.strip() == "slm"


def test_chat_image_serves_without_torch_under_tcmalloc_and_has_the_checkpoint(compose_images) -> None:
    check = (
        "import importlib.util, pathlib; "
        "assert importlib.util.find_spec('torch') is None; "
        "assert importlib.util.find_spec('onnxruntime'); "
        "assert pathlib.Path('/var/task/model/checkpoints/default/config.json').is_file(); "
        "assert pathlib.Path('/opt/extensions/lambda-adapter').is_file(); "
        # uvicorn's compiled event loop and HTTP parser, which it picks itself
        "from uvicorn.protocols.http.auto import AutoHTTPProtocol; "
        "assert AutoHTTPProtocol.__name__ == 'HttpToolsProtocol'; import uvloop; "
        # tcmalloc is preloaded into every process (a library it cannot load would only be warned about)
        "assert '/opt/tcmalloc/libtcmalloc_minimal.so.4' in open('/proc/self/maps').read(); print('ok')"
    )
    done = docker("run", "--rm", "--entrypoint", "python", compose_images["chat"], "-c", check)
    assert done.stdout.strip() == "ok"


def image_files(image: str) -> tarfile.TarFile:
    container = docker("create", image).stdout.strip()
    try:
        exported = subprocess.run(["docker", "export", container], capture_output=True, check=True).stdout
    finally:
        docker("rm", container)
    return tarfile.open(fileobj=io.BytesIO(exported))


def test_no_image_carries_the_build_ca(build_ca: str, compose_images, sam_template) -> None:
    """The proxy's CA reaches the download stages only: neither a final image's files nor its history hold
    any line of it."""
    if not build_ca:
        pytest.skip("this host trusts no CA of its own: no build was given one")
    body = [
        line for line in build_ca.splitlines() if len(line) == 64
    ]  # a line of base64 from each certificate
    assert body
    for image in sorted({*compose_images.values(), *sam_images(sam_template).values()}):
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
        assert "BEGIN CERTIFICATE" not in history and not any(line in history for line in body), image
        assert "BUILD_CA_CERT" not in json.dumps(inspect(image)["Config"]), image
        with image_files(image) as files:
            for member in files:
                if member.isfile() and member.size < 8 * MIB:
                    data = files.extractfile(member).read()  # type: ignore[union-attr]
                    assert not any(line.encode() in data for line in body), (image, member.name)
