"""Regenerate and edit as branches, and following an answer from the database (GET /api/chat/{id}/events),
against live uvicorn servers with the real default model, on SQLite and PostgreSQL."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.functions.chat.sse_client import (
    chat,
    conversation,
    events,
    follow,
    records,
    register_http,
    wait_until_finished,
)
from tests.helpers import LiveServer, start_server, stop_server

pytestmark = pytest.mark.slow
SHORT = {"temperature": 0.8, "max_new_tokens": 12, "min_new_tokens": 12}


def text_of(stream: list) -> str:
    return "".join(item[1]["text"] for item in stream if item[0] == "token")


def post(server: LiveServer, headers: dict[str, str], **body) -> httpx.Response:
    return httpx.post(f"{server.url}/api/chat", json=body, headers=headers, timeout=120)


def test_regenerate_adds_a_sibling_answer_to_the_same_question(live_server: LiveServer) -> None:
    headers = register_http(live_server.url)
    first = chat(live_server.url, headers, message="Hello! How are you?", seed=1, **SHORT)
    meta, done = first[0][1], first[-1][1]
    cid, question, a1 = meta["conversation_id"], meta["user_message_id"], done["assistant_message_id"]
    again = chat(live_server.url, headers, conversation_id=cid, regenerate=a1, seed=2, **SHORT)
    meta2, done2 = again[0][1], again[-1][1]
    a2 = done2["assistant_message_id"]
    assert meta2["user_message_id"] == question  # the question is not stored again
    # the prompt is the path to the question: the first answer is not in it
    assert meta2["context"]["tokens"] == meta["context"]["tokens"]
    saved = conversation(live_server.url, headers, cid)
    assert saved["current_message_id"] == a2
    assert [(m["id"], m["role"]) for m in saved["messages"]] == [(question, "user"), (a2, "assistant")]
    assert saved["messages"][1]["sibling_ids"] == [a1, a2] and saved["messages"][1]["content"] == text_of(
        again
    )
    switched = httpx.patch(
        f"{live_server.url}/api/conversations/{cid}", json={"current_message_id": a1}, headers=headers
    )
    assert switched.status_code == 200
    assert conversation(live_server.url, headers, cid)["messages"][1]["content"] == text_of(first)
    # following the conversation now follows the version on the active branch, not the newest one
    followed = follow(live_server.url, headers, cid, after=-1)
    assert followed[0][1]["assistant_message_id"] == a1 and followed[-1][1]["assistant_message_id"] == a1


def test_editing_a_message_branches_and_the_prompt_follows_the_branch(live_server: LiveServer) -> None:
    headers = register_http(live_server.url)
    first = chat(live_server.url, headers, message="What is a dog?", seed=1, **SHORT)
    cid = first[0][1]["conversation_id"]
    q1, a1 = first[0][1]["user_message_id"], first[-1][1]["assistant_message_id"]
    second = chat(live_server.url, headers, conversation_id=cid, message="And a cat?", seed=1, **SHORT)
    q2 = second[0][1]["user_message_id"]
    # edit the second question: it follows the first answer, as q2 does
    edited = chat(
        live_server.url, headers, conversation_id=cid, parent_id=a1, message="And a bird?", seed=1, **SHORT
    )
    assert edited[0][1]["context"]["tokens"] < second[0][1]["context"]["tokens"] + 3
    branch = conversation(live_server.url, headers, cid)["messages"]
    assert [m["content"] for m in branch[:3]] == ["What is a dog?", text_of(first), "And a bird?"]
    assert branch[2]["sibling_ids"] == [q2, edited[0][1]["user_message_id"]]
    # edit the first question: parent_id null starts again, with nothing before it in the prompt
    restart = chat(
        live_server.url,
        headers,
        conversation_id=cid,
        parent_id=None,
        message="What is a dog?",
        seed=1,
        **SHORT,
    )
    alone = chat(live_server.url, headers, message="What is a dog?", seed=1, **SHORT)
    assert restart[0][1]["context"]["tokens"] == alone[0][1]["context"]["tokens"]
    assert text_of(restart) == text_of(alone)  # same prompt, same seed: the same answer
    branch = conversation(live_server.url, headers, cid)["messages"]
    assert len(branch) == 2 and branch[0]["sibling_ids"] == [q1, restart[0][1]["user_message_id"]]
    # back to the first version: its newest descendants come back with it
    httpx.patch(
        f"{live_server.url}/api/conversations/{cid}", json={"current_message_id": q1}, headers=headers
    )
    branch = conversation(live_server.url, headers, cid)["messages"]
    assert [m["content"] for m in branch] == [
        "What is a dog?",
        text_of(first),
        "And a bird?",
        text_of(edited),
    ]


def test_parents_and_answers_of_other_conversations_are_404(live_server: LiveServer) -> None:
    alice, mallory = register_http(live_server.url), register_http(live_server.url)
    theirs = chat(live_server.url, alice, message="hi", **SHORT)
    mine = chat(live_server.url, mallory, message="hi", **SHORT)
    answer, question = theirs[-1][1]["assistant_message_id"], theirs[0][1]["user_message_id"]
    cid = mine[0][1]["conversation_id"]
    for body in (
        {"conversation_id": cid, "message": "x", "parent_id": answer},
        {"conversation_id": cid, "regenerate": answer},
        {"conversation_id": None, "message": "x", "parent_id": answer},
        {"conversation_id": cid, "regenerate": mine[0][1]["user_message_id"]},  # a question is not an answer
    ):
        response = post(live_server, mallory, **body)
        assert response.status_code == 404, body
        assert response.json()["error"]["code"] == "not_found"
    assert (
        conversation(live_server.url, alice, theirs[0][1]["conversation_id"])["messages"][0]["id"] == question
    )
    events_url = f"{live_server.url}/api/chat/{theirs[0][1]['conversation_id']}/events"
    assert httpx.get(events_url, headers=mallory).status_code == 404
    empty = httpx.post(f"{live_server.url}/api/conversations", json={}, headers=mallory).json()["id"]
    assert httpx.get(f"{live_server.url}/api/chat/{empty}/events", headers=mallory).status_code == 404


@pytest.fixture
def second_server(live_server: LiveServer, tmp_path: Path) -> Iterator[LiveServer]:
    """Another server process over the same database, as a second container or Lambda instance."""
    server = start_server(live_server.database_url, tmp_path / "second.log")
    yield server
    stop_server(server)


def test_an_answer_is_followed_from_another_process_after_a_last_event_id(
    live_server: LiveServer, second_server: LiveServer
) -> None:
    headers = register_http(live_server.url)
    body = {"conversation_id": None, "message": "Tell me about the sea.", "max_new_tokens": 160}
    body |= {"min_new_tokens": 160, "temperature": 0.8, "seed": 4}
    seen: list[tuple] = []
    with httpx.stream(
        "POST", f"{live_server.url}/api/chat", json=body, headers=headers, timeout=120
    ) as response:
        stream = records(response)
        meta = next(stream)[1]
        for item in stream:
            seen.append(item)
            if len(seen) == 5:
                break  # the tab is closed: the answer goes on
    last_id = seen[-1][2]
    assert [item[0] for item in seen] == ["token"] * 5 and last_id is not None
    # a second process (another client) follows it through the other server, from where the first left off
    script = (
        "import httpx, sys, json; url, auth, last = sys.argv[1:4]; "
        "r = httpx.get(url, headers={'Authorization': auth, 'Last-Event-ID': last}, timeout=120); "
        "print(r.status_code); print(r.text)"
    )
    url = f"{second_server.url}/api/chat/{meta['conversation_id']}/events"
    out = subprocess.run(
        [sys.executable, "-c", script, url, headers["Authorization"], str(last_id)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    status, _, body_text = out.partition("\n")
    assert status == "200"
    followed = parse(body_text)
    assert followed[0][0] == "meta" and followed[0][1]["assistant_message_id"] == meta["assistant_message_id"]
    assert followed[0][1]["context"] == meta["context"]  # DESIGN's meta: the prompt's tokens, limit, drops
    assert followed[-1][0] == "done" and followed[-1][1]["finish_reason"] == "length"
    tokens = [item for item in followed if item[0] == "token"]
    assert tokens[0][2] > last_id and [t[2] for t in tokens] == sorted(t[2] for t in tokens)
    saved = wait_until_finished(live_server.url, headers, meta["conversation_id"])["messages"][-1]
    assert saved["token_count"] == 160
    assert text_of(seen) + text_of(followed) == saved["content"]
    # from the start (?after=-1), and with no id also once it has ended: a follower with nothing yet gets
    # the whole answer (it used to get `done` alone, and a page that had read the answer half-written kept it so)
    replay = follow(second_server.url, headers, meta["conversation_id"], after=-1)
    assert text_of(replay) == saved["content"] and replay[-1][1]["tokens"] == 160
    ended = follow(live_server.url, headers, meta["conversation_id"])
    assert ended[0][0] == "meta" and ended[0][1]["in_progress"] is False and ended[-1][0] == "done"
    assert text_of(ended) == saved["content"] and [t[2] for t in ended if t[0] == "token"][0] == 0
    bad = httpx.get(url, headers={**headers, "Last-Event-ID": "seven"})
    assert bad.status_code == 422


def parse(text: str) -> list[tuple]:
    """SSE text → (event, data, id) records."""
    import json

    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append(
            (fields["event"], json.loads(fields["data"]), int(fields["id"]) if "id" in fields else None)
        )
    return out


def test_a_queued_request_honours_a_stop(live_server: LiveServer) -> None:
    """Stop lands in the database; a generation reads it every few tokens and at each save, queued or not."""
    headers = register_http(live_server.url)
    body = {"conversation_id": None, "message": "Go on and on.", "max_new_tokens": 300, "min_new_tokens": 300}
    with httpx.stream(
        "POST", f"{live_server.url}/api/chat", json=body, headers=headers, timeout=120
    ) as response:
        stream = events(response)
        meta = next(stream)[1]
        stop = httpx.post(
            f"{live_server.url}/api/conversations/{meta['conversation_id']}/stop", headers=headers
        )
        assert stop.status_code == 202
        rest = list(stream)
    assert rest[-1][0] == "done" and rest[-1][1]["finish_reason"] == "stopped" and rest[-1][1]["tokens"] < 300
