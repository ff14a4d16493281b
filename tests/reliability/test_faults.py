"""Faults: the server killed mid-stream, the database going away and coming back, a broken checkpoint.

The PostgreSQL that goes away is this test's own throwaway cluster (initdb into a temporary folder, a free
port), never the shared server the other tests use. Without the PostgreSQL server binaries that test is
skipped with the reason, except with CI=true, where it fails.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.settings import get_settings
from tests.functions.chat.sse_client import chat, conversation, events, follow, register_http
from tests.helpers import IN_CI, LONG, LiveServer, assert_error, free_port, start_server, stop_server
from tests.reliability.conftest import record

pytestmark = pytest.mark.slow


def assert_consistent(saved: dict, user_messages: list[str]) -> None:
    """Every user message is there, in order; each answer follows a user message; ids grow with time."""
    messages = saved["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == user_messages
    assert messages[0]["role"] == "user"
    for before, after in zip(messages, messages[1:], strict=False):
        assert after["id"] > before["id"] and after["created_at"] >= before["created_at"]
        assert not (before["role"] == after["role"] == "assistant")


def test_kill_9_mid_stream_loses_nothing_and_the_next_chat_works(database_url: str, tmp_path: Path) -> None:
    # the reference engine: ~1 s for the 300 tokens, so the kill lands mid-answer (the served engine can
    # finish them in 0.3 s, about when the first partial save this test waits for lands)
    server = start_server(database_url, tmp_path / "first.log", env={"SLM_CHAT_ENGINE": "torch"})
    streamed = ""
    try:
        headers = register_http(server.url)
        body = {"conversation_id": None, "message": "Tell me about the sea.", **LONG}
        body |= {"max_new_tokens": 300, "min_new_tokens": 300}
        with httpx.stream(
            "POST", f"{server.url}/api/chat", json=body, headers=headers, timeout=120
        ) as response:
            stream = events(response)
            meta = next(stream)[1]
            for count, (name, data) in enumerate(stream, start=1):
                assert name == "token"
                streamed += data["text"]
                if count == 40:
                    break
            # the answer is saved every quarter second: kill once part of it is in the database
            deadline = time.monotonic() + 30
            while not conversation(server.url, headers, meta["conversation_id"])["messages"][-1]["content"]:
                assert time.monotonic() < deadline, "nothing of the answer was saved while it streamed"
                time.sleep(0.05)
            server.process.kill()  # SIGKILL mid-answer: no shutdown, no cleanup, no final save
            try:  # what the server sent before it died is still in the socket
                for name, data in stream:
                    streamed += data["text"] if name == "token" else ""
            except httpx.HTTPError:
                pass
        server.process.wait(timeout=30)
        assert server.process.returncode == -9
    finally:
        stop_server(server)

    # the generator is gone: the first request that meets its answer after 2 s finalizes it as failed ("error")
    restarted = start_server(database_url, tmp_path / "second.log", env={"SLM_STALE_ANSWER_SECONDS": "2"})
    try:
        conversation_id = meta["conversation_id"]
        deadline = time.monotonic() + 30  # past the 2 s without a save, a read finalizes it
        while (saved := conversation(restarted.url, headers, conversation_id))["messages"][-1][
            "finish_reason"
        ] is None:
            assert time.monotonic() < deadline, "the killed answer never ended as failed"
            time.sleep(0.1)
        assert saved["messages"][0]["id"] == meta["user_message_id"]
        assert_consistent(saved, ["Tell me about the sea."])
        answer = saved["messages"][-1]
        assert (answer["id"], answer["finish_reason"]) == (meta["assistant_message_id"], "error")
        assert answer["content"] and answer["token_count"] >= 1
        # what was saved is what was streamed, as far as either got (a save may land just after a send)
        assert streamed.startswith(answer["content"]) or answer["content"].startswith(streamed)
        assert answer["token_count"] < 300  # killed mid-answer
        followed = follow(restarted.url, headers, conversation_id)
        # what was saved, replayed (no Last-Event-ID: the whole answer), then the stream protocol's end of a
        # failed answer, as its own generator would have sent it
        names = [f[0] for f in followed]
        assert names[0] == "meta" and set(names[1:-1]) == {"token"} and names[-1] == "error"
        assert "".join(f[1]["text"] for f in followed if f[0] == "token") == answer["content"]
        assert followed[-1][1] == {
            "code": "generation_failed",
            "message": "Generation stopped before the end (the server failed or restarted); what was saved is kept",
            "assistant_message_id": answer["id"],
        }
        listed = httpx.get(f"{restarted.url}/api/conversations", headers=headers).json()
        assert [c["id"] for c in listed["items"]] == [conversation_id]
        stream = chat(
            restarted.url, headers, conversation_id=conversation_id, message="And the sky?", max_new_tokens=8
        )
        assert stream[-1][0] == "done"
        after = conversation(restarted.url, headers, conversation_id)
        assert_consistent(after, ["Tell me about the sea.", "And the sky?"])
        assert after["messages"][-1]["id"] == stream[-1][1]["assistant_message_id"]
        record("faults-kill9", {"streamed_chars": len(streamed), "saved_chars": len(answer["content"])})
    finally:
        stop_server(restarted)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A throwaway PostgreSQL cluster: initdb into a temporary folder, served on a free port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="slm-pg-"))
        self.data, self.port = self.root / "data", free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if as_postgres:
            shutil.chown(self.root, "postgres")
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bin / tool), *args], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        reason = (
            "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are missing: apt-get install postgresql"
        )
        if IN_CI:
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    own = Cluster(bin_dir)
    own.start()
    yield own
    own.remove()


@pytest.mark.postgres
def test_database_going_away_is_a_clear_503_and_the_app_recovers(cluster: Cluster, tmp_path: Path) -> None:
    server = start_server(cluster.url, tmp_path / "server.log")
    try:
        url = server.url
        headers = register_http(url)
        first = chat(url, headers, message="Before the outage", max_new_tokens=4)
        conversation_id = first[0][1]["conversation_id"]
        body = {"conversation_id": conversation_id, "message": "During the outage", **LONG}
        with httpx.stream("POST", f"{url}/api/chat", json=body, headers=headers, timeout=120) as response:
            stream = events(response)
            kind, meta = next(stream)
            assert kind == "meta"  # the user message is committed before generation starts
            cluster.stop()  # the database goes away while the answer is being generated
            rest = list(stream)
        # an answer that ended before the database went away is saved; one that ended after says it is not
        # saved yet, and is saved whole once the database is back
        last, data = rest[-1]
        assert (last, data.get("code")) in (("done", None), ("error", "save_failed")), rest[-1]
        streamed = "".join(d["text"] for kind, d in rest if kind == "token")

        down = {
            "health": httpx.get(f"{url}/api/health"),
            "list": httpx.get(f"{url}/api/conversations", headers=headers),
            "login": httpx.post(
                f"{url}/api/auth/login", json={"email": "a@example.com", "password": "x" * 8}
            ),
            "chat": httpx.post(f"{url}/api/chat", json={"message": "hi"}, headers=headers),
        }
        health = down.pop("health")
        assert health.status_code == 503 and health.json()["checks"]["database"].startswith("unreachable")
        for response in down.values():
            assert_error(response, 503, "database_unavailable")
            assert response.headers["Retry-After"] == "5"

        cluster.start()
        deadline, recovered_after = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            if httpx.get(f"{url}/api/health").status_code == 200:
                recovered_after = round(60 - (deadline - time.monotonic()), 2)
                break
            time.sleep(0.2)
        assert recovered_after is not None, server.log()[-2000:]
        assert server.process.poll() is None  # the same process, never restarted
        deadline = time.monotonic() + 60
        while True:  # a failed final save is tried again every few seconds until the database takes it
            saved = conversation(url, headers, conversation_id)
            (answer,) = [m for m in saved["messages"] if m["id"] == meta["assistant_message_id"]]
            whole = answer["content"] == streamed and answer["finish_reason"] in ("eos", "length")
            if whole or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert whole, (answer, streamed)
        # (a reply before that is a 409: its prompt would hold less than the whole answer)
        after = chat(
            url, headers, conversation_id=conversation_id, message="After the outage", max_new_tokens=4
        )
        assert after[-1][0] == "done"
        saved = conversation(url, headers, conversation_id)
        assert_consistent(saved, ["Before the outage", "During the outage", "After the outage"])
        if last == "done":
            assert data["assistant_message_id"] in [m["id"] for m in saved["messages"]]
        figures = {"in_flight": last, "down": {k: r.status_code for k, r in down.items()}}
        record("faults-database", {**figures, "recovered_s": recovered_after})
    finally:
        stop_server(server)


def broken_checkpoints(root: Path) -> dict[str, Path]:
    source = get_settings().model_dir
    missing = root / "missing"
    truncated, corrupt_config = root / "truncated", root / "corrupt-config"
    for copy in (truncated, corrupt_config):
        shutil.copytree(source, copy)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    (corrupt_config / "config.json").write_text('{"model": {"n_layer": "six"')
    return {"missing": missing, "truncated weights": truncated, "corrupt config": corrupt_config}


@pytest.mark.parametrize("broken", ["missing", "truncated weights", "corrupt config"])
def test_broken_checkpoint_fails_the_health_check_with_a_clear_message(
    broken: str, sqlite_url: str, tmp_path: Path
) -> None:
    directory = broken_checkpoints(tmp_path)[broken]

    def model_failed(response: httpx.Response) -> bool:
        return response.status_code == 503 and response.json()["checks"]["model"] != "loading"

    server: LiveServer = start_server(
        sqlite_url, tmp_path / "server.log", env={"SLM_MODEL_DIR": str(directory)}, ready=model_failed
    )
    try:
        health = httpx.get(f"{server.url}/api/health").json()
        message = health["error"]["message"]
        assert health["status"] == "unavailable" and health["checks"]["database"] == "ok"
        assert (
            message.startswith("Not ready: model: cannot load the model from") and str(directory) in message
        )
        headers = register_http(server.url)  # the rest of the app keeps serving
        refused = httpx.post(f"{server.url}/api/chat", json={"message": "hi"}, headers=headers)
        assert_error(refused, 503, "model_unavailable")
        assert str(directory) in refused.json()["error"]["message"]
        for _ in range(10):  # up and saying what is wrong, not crashing in a loop
            assert httpx.get(f"{server.url}/api/health").status_code == 503
        assert server.process.poll() is None
        assert server.log().count("Application startup complete") == 1
    finally:
        stop_server(server)
