"""One route table: template.yaml's events. nginx, the local router and each function's app must agree with it."""

import importlib
import re

import pytest

from tests.infra.helpers import function_exists, render_nginx_template, template_routes

UPSTREAMS = {
    "AUTH_UPSTREAM": "auth:8000",
    "CONVERSATIONS_UPSTREAM": "conversations:8000",
    "CHAT_UPSTREAM": "chat:8080",
}
NGINX_VALUES = {
    **UPSTREAMS,
    "DOMAIN": "chat.example.com",
    "HTTP_PORT": "80",
    "HTTPS_PORT": "443",
    "CERT_DIR": "/etc/letsencrypt/live/chat.example.com",
    "ACME_ROOT": "/var/www/certbot",
    "FRONTEND_ROOT": "/usr/share/nginx/html",
    "NGINX_SLM_DIR": "/etc/nginx/slm",
}


def nginx_locations() -> list[tuple[str, str, str | None]]:
    """(modifier, path, upstream function or None) for each location of the HTTPS server."""
    text = render_nginx_template(NGINX_VALUES)
    https_server = text[text.index("ssl http2") :]
    locations = []
    for match in re.finditer(r"location\s+(=\s+)?(\S+)\s*\{([^}]*)\}", https_server):
        upstream = re.search(r"proxy_pass\s+http://slm_(\w+);", match.group(3))
        locations.append(((match.group(1) or "").strip(), match.group(2), upstream and upstream.group(1)))
    return locations


def nginx_match(path: str) -> tuple[str, str, str | None]:
    """The location nginx picks for a request path: an exact one first, else the longest prefix."""
    locations = nginx_locations()
    for location in locations:
        if location[0] == "=" and location[1] == path:
            return location
    return max(
        (loc for loc in locations if loc[0] == "" and path.startswith(loc[1])), key=lambda loc: len(loc[1])
    )


def nginx_destination(path: str) -> str | None:
    return nginx_match(path)[2]


def concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "42", path)


def app_routes(module: str) -> set[tuple[str, str]]:
    app = importlib.import_module(module).app
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def test_nginx_sends_each_template_route_to_its_function() -> None:
    for (_, path), function in template_routes().items():
        if path == "/api/health":
            assert nginx_destination(path) == "auth"  # health: any function answers for its own database
        else:
            assert nginx_destination(concrete(path)) == function, path


def test_nginx_proxies_nothing_outside_the_route_table() -> None:
    reached = {nginx_match(concrete(path)) for (_, path) in template_routes()}
    proxied = {location for location in nginx_locations() if location[2] is not None}
    assert proxied == {location for location in reached if location[2] is not None}
    assert nginx_destination("/api/unknown") is None and nginx_destination("/") is None


def test_nginx_uses_only_exact_and_prefix_locations() -> None:
    text = render_nginx_template(NGINX_VALUES)
    assert not re.search(r"location\s+~", text)  # nginx_destination() models no regex locations


@pytest.mark.parametrize("name", ["auth", "conversations", "chat"])
def test_each_function_serves_exactly_its_template_routes(name: str) -> None:
    if not function_exists(name):
        pytest.skip(f"functions/{name}/app.py does not exist yet")
    expected = {route for route, function in template_routes().items() if function == name}
    assert app_routes(f"functions.{name}.app") == expected | {("GET", "/api/health")}


def test_local_router_serves_exactly_the_template_routes() -> None:
    present = {name for name in ("auth", "conversations", "chat") if function_exists(name)}
    expected = {route for route, function in template_routes().items() if function in present}
    assert app_routes("infra.router.app") == expected | {("GET", "/api/health")}
