"""docker-compose.yml: validated by `docker compose config`, then checked service by service."""

import json
import re
import subprocess

import pytest

from tests.infra.helpers import REPO, compose_command

SECRETS = {"POSTGRES_PASSWORD": "p" * 64, "SLM_JWT_SECRET": "j" * 64, "DOMAIN": "chat.example.com"}


def compose_config(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    empty_env_file = tmp_path / "empty.env"  # never read a developer's own .env
    empty_env_file.write_text("")
    command = [*compose_command(), "--env-file", str(empty_env_file), "-f", "docker-compose.yml", "config"]
    return subprocess.run(
        [*command, "--format", "json"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
    )


@pytest.fixture
def config(tmp_path) -> dict:
    result = compose_config(SECRETS, tmp_path)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_is_valid(config) -> None:
    assert set(config["services"]) == {"db", "migrate", "auth", "conversations", "chat", "nginx", "certbot"}


def test_compose_refuses_to_run_without_its_secrets(tmp_path) -> None:
    result = compose_config({}, tmp_path)
    assert result.returncode != 0
    for name in SECRETS:
        assert f"required variable {name} is missing a value: set {name} in .env" in result.stderr


def test_every_secret_reference_is_required() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for name in SECRETS:
        references = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert references and all(ref.startswith(":?") for ref in references), (name, references)


def test_postgres_keeps_its_data_in_a_named_volume(config) -> None:
    (volume,) = config["services"]["db"]["volumes"]
    assert volume["type"] == "volume" and volume["source"] == "pgdata"
    assert volume["target"] == "/var/lib/postgresql/data"
    assert "pgdata" in config["volumes"]


def test_services_wait_for_healthy_dependencies(config) -> None:
    services = config["services"]
    for name in ("db", "auth", "conversations", "chat", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("auth", "conversations", "chat"):
        depends = services[name]["depends_on"]
        assert depends["db"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert {d["condition"] for d in services["nginx"]["depends_on"].values()} == {"service_healthy"}
    assert services["certbot"]["depends_on"]["nginx"]["condition"] == "service_healthy"


def test_functions_reach_postgres_and_share_one_configuration(config) -> None:
    for name in ("migrate", "auth", "conversations", "chat"):
        env = config["services"][name]["environment"]
        assert (
            env["SLM_DATABASE_URL"] == f"postgresql+psycopg://slm:{SECRETS['POSTGRES_PASSWORD']}@db:5432/slm"
        )
        assert env["SLM_ENV"] == "production" and env["SLM_JWT_SECRET"] == SECRETS["SLM_JWT_SECRET"]
        assert env["SLM_CORS_ORIGIN"] == "https://chat.example.com"


def test_nginx_upstreams_match_the_function_commands(config) -> None:
    services = config["services"]
    nginx = services["nginx"]["environment"]
    for name in ("auth", "conversations"):
        command = services[name]["entrypoint"]
        assert command[:2] == ["uvicorn", f"functions.{name}.app:app"]
        assert (REPO / "functions" / name / "app.py").is_file()
        port = command[command.index("--port") + 1]
        assert nginx[f"{name.upper()}_UPSTREAM"] == f"{name}:{port}"
    assert nginx["CHAT_UPSTREAM"] == "chat:8080"  # the chat image's own command
    assert services["migrate"]["entrypoint"] == ["python", "-m", "shared.migrate", "upgrade"]


def test_nginx_publishes_http_and_https_with_the_certificate_volume(config) -> None:
    nginx = config["services"]["nginx"]
    assert sorted(int(p["published"]) for p in nginx["ports"]) == [80, 443]
    assert nginx["environment"]["CERT_DIR"] == "/etc/letsencrypt/live/chat.example.com"
    shared = {v["source"] for v in nginx["volumes"]} & {
        v["source"] for v in config["services"]["certbot"]["volumes"]
    }
    assert {"letsencrypt", "acme-webroot"} <= shared


def test_functions_believe_forwarded_addresses_from_nginx_only(config) -> None:
    """The limits count the client address; uvicorn takes it from X-Forwarded-For only when nginx (at its
    fixed address on the compose network) sent it, never from anyone else (no `*`)."""
    services = config["services"]
    nginx_ip = services["nginx"]["networks"]["default"]["ipv4_address"]
    subnet = config["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert nginx_ip.startswith(subnet.rsplit(".", 1)[0] + ".")
    for name in ("auth", "conversations", "chat"):
        env = services[name]["environment"]
        assert env["FORWARDED_ALLOW_IPS"] == nginx_ip, name
        assert "*" not in " ".join(services[name].get("entrypoint") or [])


def test_every_service_has_a_memory_limit_for_a_small_box(config) -> None:
    for name, service in config["services"].items():
        assert int(service["mem_limit"]) <= 448 * 2**20, name  # the chat function is the largest
    chat = config["services"]["chat"]
    # 8 slots of full-length answers measured at ~345 MB (bench/memory.py): the limit leaves room
    assert chat["environment"]["SLM_CHAT_MAX_BATCH"] == "8" and int(chat["mem_limit"]) >= 400 * 2**20


def test_postgres_allows_every_pool_the_functions_may_open(config) -> None:
    """max_connections covers each long-running function's pool at its fullest, plus migrate and one admin."""
    command = config["services"]["db"]["command"]
    settings = dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "-c")
    env = config["services"]["chat"]["environment"]
    per_function = int(env["SLM_DB_POOL_SIZE"]) + int(env["SLM_DB_MAX_OVERFLOW"])
    assert int(settings["max_connections"]) >= 3 * per_function + 2
    assert settings["shared_buffers"] == "32MB"


def test_functions_run_as_a_non_root_user(config) -> None:
    """The images set no USER (Lambda and `sam local` need none): compose runs each function as 10001."""
    for name in ("migrate", "auth", "conversations", "chat"):
        assert config["services"][name]["user"] == "10001:10001", name


def test_base_images_default_to_the_official_ones_and_may_be_replaced(tmp_path) -> None:
    """Pulled images and build ARGs come from the environment when set (stand-ins built from Debian's
    packages, a mirror), else the official images; a proxy's CA reaches the builds the same way."""
    official = compose_config(SECRETS, tmp_path)
    assert official.returncode == 0, official.stderr
    services = json.loads(official.stdout)["services"]
    assert services["db"]["image"] == "postgres:17-alpine"
    assert services["certbot"]["image"] == "certbot/certbot:v3.0.1"
    assert all("args" not in services[name]["build"] for name in ("auth", "conversations", "chat", "nginx"))

    local = {
        "PYTHON_IMAGE": "slm-local/python:3.11-bookworm",
        "NODE_IMAGE": "slm-local/node:22-bookworm",
        "NGINX_IMAGE": "slm-local/nginx:bookworm",
        "LAMBDA_ADAPTER_IMAGE": "slm-local/lambda-adapter:stand-in",
        "POSTGRES_IMAGE": "slm-local/postgres:15-bookworm",
        "CERTBOT_IMAGE": "slm-local/certbot:bookworm",
        "BUILD_CA_CERT": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    }
    replaced = compose_config(SECRETS | local, tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    services = json.loads(replaced.stdout)["services"]
    assert services["db"]["image"] == local["POSTGRES_IMAGE"]
    assert services["certbot"]["image"] == local["CERTBOT_IMAGE"]
    for name in ("migrate", "auth", "conversations"):
        assert services[name]["build"]["args"] == {k: local[k] for k in ("PYTHON_IMAGE", "BUILD_CA_CERT")}
    assert set(services["chat"]["build"]["args"]) == {"PYTHON_IMAGE", "LAMBDA_ADAPTER_IMAGE", "BUILD_CA_CERT"}
    assert services["nginx"]["build"]["args"] == {
        k: local[k] for k in ("NODE_IMAGE", "NGINX_IMAGE", "BUILD_CA_CERT")
    }


def test_the_local_override_publishes_on_loopback_only(tmp_path) -> None:
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    command = [*compose_command(), "--env-file", str(empty_env_file), "-f", "docker-compose.yml"]
    result = subprocess.run(
        [*command, "-f", "infra/compose.local.yml", "config", "--format", "json"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **SECRETS, "LOCAL_HTTPS_PORT": "18443"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)["services"]["nginx"]["ports"]
    assert {(p["host_ip"], p["published"], p["target"]) for p in ports} == {
        ("127.0.0.1", "8080", 80),
        ("127.0.0.1", "18443", 443),
    }
