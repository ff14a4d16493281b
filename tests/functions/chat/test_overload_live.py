"""A full scheduler queue is a 503 `overloaded` with Retry-After on both chat routes, decided before any
event is sent, and stores and counts nothing; a request whose rows cannot be written gives its queued
generation's slot back and counts nothing against the user's limits. A real server with a small queue: one slot, one place in the queue."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.functions.chat.sse_client import chat, events, register_http, wait_until_finished
from tests.helpers import LiveServer, start_server, stop_server

pytestmark = pytest.mark.slow
LONG = {"max_new_tokens": 300, "min_new_tokens": 300}


def counters(sqlite_url: str, url: str, headers: dict[str, str]) -> dict[str, int]:
    """The chat limits' counters of the user of `headers` as the database holds them: {key: count}."""
    user_id = httpx.get(f"{url}/api/auth/me", headers=headers).json()["id"]
    keys = (f"chat:user:{user_id}", f"tokens:user:{user_id}")
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as database:
        found = database.execute("SELECT key, count FROM rate_limit_buckets WHERE key IN (?, ?)", keys)
        return dict(found.fetchall())


@pytest.fixture
def small_server(sqlite_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(
        sqlite_url, tmp_path / "small.log", env={"SLM_CHAT_MAX_BATCH": "1", "SLM_CHAT_MAX_QUEUE": "1"}
    )
    yield server
    stop_server(server)


def test_a_full_queue_is_503_on_both_chat_routes(small_server: LiveServer, sqlite_url: str) -> None:
    url, headers = small_server.url, register_http(small_server.url)
    with (
        httpx.stream(
            "POST",
            f"{url}/api/chat",
            json={"conversation_id": None, "message": "one", **LONG},
            headers=headers,
            timeout=120,
        ) as first,  # fmt: skip
        httpx.stream(
            "POST",
            f"{url}/api/chat",
            json={"conversation_id": None, "message": "two", **LONG},
            headers=headers,
            timeout=120,
        ) as second,  # fmt: skip
    ):
        running, waiting = events(first), events(second)
        assert next(running)[1]["queue_position"] == 0  # the one slot
        meta = next(waiting)[1]
        assert meta["queue_position"] == 1  # the one place in the queue
        before = httpx.get(f"{url}/api/conversations", headers=headers).json()["total"]
        counted = counters(sqlite_url, url, headers)
        assert counted[next(k for k in counted if k.startswith("chat:"))] == 2  # this minute's two messages
        refused = httpx.post(
            f"{url}/api/chat", json={"conversation_id": None, "message": "three"}, headers=headers
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert counters(sqlite_url, url, headers) == counted  # neither the message nor its tokens
        assert refused.json()["error"]["code"] == "overloaded"
        assert (
            httpx.get(f"{url}/api/conversations", headers=headers).json()["total"] == before
        )  # nothing stored
        body = {"model": "slm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        for stream in (False, True):
            v1 = httpx.post(f"{url}/v1/chat/completions", json=body | {"stream": stream}, headers=headers)
            assert v1.status_code == 503 and v1.json()["error"]["code"] == "overloaded", v1.text
        listed = httpx.get(f"{url}/api/conversations", headers=headers).json()["items"]
        for cid in [c["id"] for c in listed]:  # stop both: the running one and the queued one
            assert httpx.post(f"{url}/api/conversations/{cid}/stop", headers=headers).status_code == 202
        assert [name for name, _ in running][-1] == "done"
        rest = [name for name, _ in waiting]
        # its place (1 all along) was told once, by its first meta, not again at every decode step
        assert rest[-1] == "done" and "meta" not in rest, rest
    for cid in [c["id"] for c in listed]:
        saved = wait_until_finished(url, headers, cid)["messages"][-1]
        assert saved["finish_reason"] == "stopped" and saved["token_count"] < 300
    # once the slot is free again, a chat goes through
    ok = httpx.post(
        f"{url}/api/chat",
        json={"conversation_id": None, "message": "four", "max_new_tokens": 4},
        headers=headers,
    )
    assert ok.status_code == 200


def test_an_answer_whose_rows_cannot_be_written_frees_its_slot_and_stores_and_counts_nothing(
    small_server: LiveServer, sqlite_url: str
) -> None:
    """The prompt is queued before the request writes its rows (its prefill overlaps the writes): when the
    writes fail, the request is a 500 in the error shape, nothing is stored, and the generation already
    queued stops and gives its slot back (the server has one: the next chat could not run otherwise). The
    limits count in the rows' transaction, so the refused message and its tokens are not counted."""
    url, headers = small_server.url, register_http(small_server.url)
    database = sqlite3.connect(sqlite_url.split("///", 1)[1])
    database.execute(  # a real failure of the real database, on the answer's insert
        "CREATE TRIGGER refuse_answers BEFORE INSERT ON messages WHEN NEW.role = 'assistant' "
        "BEGIN SELECT RAISE(ABORT, 'answers refused by the test'); END"
    )
    database.commit()
    try:
        before = httpx.get(f"{url}/api/conversations", headers=headers).json()["total"]
        refused = httpx.post(
            f"{url}/api/chat", json={"conversation_id": None, "message": "one", **LONG}, headers=headers
        )
        assert refused.status_code == 500 and refused.json()["error"]["code"] == "internal_error"
        assert httpx.get(f"{url}/api/conversations", headers=headers).json()["total"] == before
        assert counters(sqlite_url, url, headers) == {}  # counted with its rows: rolled back with them
    finally:
        database.execute("DROP TRIGGER refuse_answers")
        database.commit()
        database.close()
    ok = chat(url, headers, message="two", max_new_tokens=4)  # the one slot is free again
    assert ok[-1][0] == "done"
