"""The benchmarks' health-check poll, against a real HTTP server that turns healthy after a few checks: it
polls through one keep-alive connection (a client made per check costs ~30 ms of CPU, taken from a server
starting on the same cores inside a cold start's clock)."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.serve import wait_ready


class Health(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn serves
    checks: list[int] = []  # the client port of each check, in order
    healthy_after = 3

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Health.checks.append(self.client_address[1])
        status = 200 if len(Health.checks) > Health.healthy_after else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Health.checks, Health.healthy_after = [], 3
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_polls_until_healthy_over_one_connection_of_the_given_client(server: str) -> None:
    with httpx.Client() as client:
        wait_ready(server, timeout=10, client=client)
        assert not client.is_closed  # the caller's, left open
    assert len(Health.checks) == Health.healthy_after + 1
    assert len(set(Health.checks)) == 1  # one connection: no client (and no SSL context) made per check


def test_without_a_client_it_makes_one_for_all_its_checks(server: str) -> None:
    wait_ready(server, timeout=10)
    assert len(Health.checks) == Health.healthy_after + 1 and len(set(Health.checks)) == 1


def test_a_server_that_never_turns_healthy_stops_the_run(server: str) -> None:
    Health.healthy_after = 10**6
    with pytest.raises(SystemExit, match="did not become healthy"):
        wait_ready(server, timeout=0.3)
