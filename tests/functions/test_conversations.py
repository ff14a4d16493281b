import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.helpers import Account, add_messages, register


def create(client: TestClient, account: Account, title: str | None = None) -> dict:
    response = client.post(
        "/api/conversations", json={"title": title} if title else {}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_create_conversation_defaults_title(client: TestClient) -> None:
    alice = register(client)
    conversation = create(client, alice)
    assert conversation["title"] == "New chat"
    assert {"id", "title", "created_at", "updated_at"} <= set(conversation)


def test_create_conversation_without_a_body(client: TestClient) -> None:
    """Every field is optional: no body at all is a new chat, as `{}` is."""
    alice = register(client)
    response = client.post("/api/conversations", headers=alice.headers)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "New chat"


def test_a_title_too_long_is_refused_in_characters(client: TestClient) -> None:
    alice = register(client)
    for method, url in (
        ("POST", "/api/conversations"),
        ("PATCH", f"/api/conversations/{create(client, alice)['id']}"),
    ):
        response = client.request(method, url, json={"title": "x" * 201}, headers=alice.headers)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "validation_error" and "at most 200 characters" in error["message"], error


def test_list_conversations_newest_first_and_paginated(client: TestClient) -> None:
    alice = register(client)
    ids = [create(client, alice, f"chat {i}")["id"] for i in range(5)]
    page1 = client.get("/api/conversations?limit=2", headers=alice.headers).json()
    page2 = client.get("/api/conversations?limit=2&offset=2", headers=alice.headers).json()
    page3 = client.get("/api/conversations?limit=2&offset=4", headers=alice.headers).json()
    assert page1["total"] == 5 and page1["limit"] == 2 and page2["offset"] == 2
    listed = [c["id"] for page in (page1, page2, page3) for c in page["items"]]
    assert listed == list(reversed(ids))


def test_list_conversations_searches_titles_case_insensitively(client: TestClient) -> None:
    alice = register(client)
    create(client, alice, "Trip to Lisbon")
    create(client, alice, "Recipe ideas")
    create(client, alice, "100% sure_thing")
    found = client.get("/api/conversations", params={"q": "lisBON"}, headers=alice.headers).json()
    assert [c["title"] for c in found["items"]] == ["Trip to Lisbon"] and found["total"] == 1
    literal = client.get("/api/conversations", params={"q": "%"}, headers=alice.headers).json()
    assert [c["title"] for c in literal["items"]] == ["100% sure_thing"]
    underscore = client.get("/api/conversations", params={"q": "_"}, headers=alice.headers).json()
    assert underscore["total"] == 1


def test_rename_conversation_moves_it_to_the_top(client: TestClient) -> None:
    alice = register(client)
    first = create(client, alice, "first")
    create(client, alice, "second")
    response = client.patch(
        f"/api/conversations/{first['id']}", json={"title": "  renamed  "}, headers=alice.headers
    )
    assert response.status_code == 200 and response.json()["title"] == "renamed"
    assert response.json()["updated_at"] >= first["updated_at"]
    listed = client.get("/api/conversations", headers=alice.headers).json()["items"]
    assert listed[0]["id"] == first["id"]


def test_rename_refuses_empty_title(client: TestClient) -> None:
    alice = register(client)
    conversation = create(client, alice)
    response = client.patch(
        f"/api/conversations/{conversation['id']}", json={"title": "   "}, headers=alice.headers
    )
    assert response.status_code == 422 and "title" in response.json()["error"]["fields"]


def test_get_conversation_includes_messages(client: TestClient, use_database: str) -> None:
    alice = register(client)
    conversation = create(client, alice, "with messages")
    add_messages(use_database, conversation["id"], [("user", "Hi there"), ("assistant", "Hello! 👋")])
    detail = client.get(f"/api/conversations/{conversation['id']}", headers=alice.headers).json()
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [
        ("user", "Hi there"),
        ("assistant", "Hello! 👋"),
    ]
    assert detail["messages"][1]["finish_reason"] == "eos"
    assert detail["context"] is None  # no answer was generated with a saved prompt: nothing to report


def test_delete_conversation_removes_its_messages(client: TestClient, use_database: str) -> None:
    alice = register(client)
    conversation = create(client, alice)
    add_messages(use_database, conversation["id"], [("user", "bye")])
    assert client.delete(f"/api/conversations/{conversation['id']}", headers=alice.headers).status_code == 204
    assert client.get(f"/api/conversations/{conversation['id']}", headers=alice.headers).status_code == 404
    assert count_messages(use_database, conversation["id"]) == 0


def test_export_conversation_as_jsonl(client: TestClient, use_database: str) -> None:
    alice = register(client)
    conversation = create(client, alice)
    add_messages(use_database, conversation["id"], [("user", 'say "hi"\nplease'), ("assistant", "hi ☕")])
    response = client.get(f"/api/conversations/{conversation['id']}/export", headers=alice.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "messages": [
            {"role": "user", "content": 'say "hi"\nplease'},
            {"role": "assistant", "content": "hi ☕"},
        ]
    }


def test_export_leaves_out_an_answer_being_written_and_answers_without_text(
    client: TestClient, use_database: str, monkeypatch
) -> None:
    """An export writes each answer as it ended (stopped ones too: what the user saw), as a prompt holds
    it: an answer that failed before its first word says nothing, and an answer still being written is
    left out (its text is not yet what the conversation will hold). Once no generator saves it any more
    it ends as failed ("error"), and is exported with what was saved."""
    from datetime import timedelta

    from sqlalchemy import create_engine, update

    from shared.migrate import sync_url
    from shared.models import Message, utcnow

    alice = register(client)
    cid = create(client, alice)["id"]
    asked = ["hi", "hello?", "count", "more"]
    answers = {"": "error", "Hel": "stopped", "1, 2, 3": "length"}
    pairs = zip(asked, [*answers, "Hello! How"], strict=True)
    turns = [turn for q, a in pairs for turn in (("user", q), ("assistant", a))]
    ids = add_messages(use_database, cid, turns)
    engine = create_engine(sync_url(use_database))
    with engine.begin() as connection:
        for answer_id, reason in zip(ids[1::2], answers.values(), strict=False):
            connection.execute(update(Message).where(Message.id == answer_id).values(finish_reason=reason))
        connection.execute(
            update(Message)
            .where(Message.id == ids[-1])
            .values(finish_reason=None, updated_at=utcnow() - timedelta(seconds=5))
        )
    engine.dispose()
    url = f"/api/conversations/{cid}/export"
    kept = [{"role": role, "content": text} for role, text in turns if text]
    assert json.loads(client.get(url, headers=alice.headers).text) == {"messages": kept[:-1]}
    monkeypatch.setenv("SLM_STALE_ANSWER_SECONDS", "2")
    from shared.settings import get_settings

    get_settings.cache_clear()
    assert json.loads(client.get(url, headers=alice.headers).text) == {"messages": kept}
    assert kept[-1] == {"role": "assistant", "content": "Hello! How"} and len(kept) == 7
    detail = client.get(f"/api/conversations/{cid}", headers=alice.headers).json()
    assert detail["messages"][-1]["finish_reason"] == "error"


def test_exports_train_the_model_and_empty_ones_are_skipped(
    client: TestClient, use_database: str, tmp_path: Path
) -> None:
    """Export -> model.train round trip: what the app writes is what the trainer reads."""
    from model.checkpoint import load_checkpoint
    from model.train import main as train
    from tests.model.helpers import TINY, make_corpus

    alice = register(client)
    used, unused = create(client, alice), create(client, alice)
    add_messages(use_database, used["id"], [("user", "hello there"), ("assistant", "hi, how are you?")] * 3)
    export = tmp_path / "export.jsonl"
    export.write_text(
        "".join(
            client.get(f"/api/conversations/{c['id']}/export", headers=alice.headers).text
            for c in (unused, used)
        )
    )
    assert json.loads(export.read_text().splitlines()[0]) == {"messages": []}
    data = make_corpus(tmp_path)
    out = tmp_path / "run"
    train(["--stage", "sft", "--no-corpus", "--conversations", str(export), "--tokenizer",
           str(data / "tokenizer.json"), "--out", str(out), "--max-steps", "1", "--batch-size", "1",
           "--threads", "1", "--dtype", "fp32", "--eval-every", "0", "--eval-batches", "1", *TINY])  # fmt: skip
    _, _, meta = load_checkpoint(out)
    assert meta["data"]["sft"]["files"] == {"export.jsonl": {"conversations": 1}}


def test_every_conversation_route_hides_another_users_conversation(client: TestClient) -> None:
    alice, mallory = register(client), register(client)
    secret = create(client, alice, "alice's secret")
    cid = secret["id"]
    requests = [
        ("GET", f"/api/conversations/{cid}", None),
        ("PATCH", f"/api/conversations/{cid}", {"title": "pwned"}),
        ("DELETE", f"/api/conversations/{cid}", None),
        ("GET", f"/api/conversations/{cid}/export", None),
        ("POST", f"/api/conversations/{cid}/stop", None),
        ("PATCH", f"/api/conversations/{cid}", {"current_message_id": 1}),
    ]
    for method, path, body in requests:
        response = client.request(method, path, json=body, headers=mallory.headers)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": {"code": "not_found", "message": "Conversation not found"}}
    assert client.get("/api/conversations", headers=mallory.headers).json()["total"] == 0
    assert client.get(f"/api/conversations/{cid}", headers=alice.headers).json()["title"] == "alice's secret"


def test_missing_conversation_is_404(client: TestClient) -> None:
    alice = register(client)
    assert client.get("/api/conversations/999999", headers=alice.headers).status_code == 404


def branched(client: TestClient, account: Account, database_url: str) -> tuple[int, dict[str, int]]:
    """A conversation whose first question was edited once and whose second answer was regenerated once:

    q1 ─ a1 ─ q2 ─ a2
                 └ a2b      (active: q1 a1 q2 a2b)
    q1b ─ a1b
    """
    cid = create(client, account, "branches")["id"]
    q1, a1, q2, a2 = add_messages(
        database_url, cid, [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
    )
    q1b, a1b = add_messages(database_url, cid, [("user", "q1b"), ("assistant", "a1b")], parent_id=None)
    (a2b,) = add_messages(database_url, cid, [("assistant", "a2b")], parent_id=q2)
    return cid, {"q1": q1, "a1": a1, "q2": q2, "a2": a2, "q1b": q1b, "a1b": a1b, "a2b": a2b}


def test_a_stop_or_a_branch_switch_keeps_the_lists_order(client: TestClient, use_database: str) -> None:
    """Neither is new activity: the conversation stays where it was among the newest first (a rename moves
    it up, as a new message does)."""
    alice = register(client)
    cid, m = branched(client, alice, use_database)
    newer = create(client, alice, "newer")["id"]

    def listed() -> list[tuple[int, str]]:
        items = client.get("/api/conversations", headers=alice.headers).json()["items"]
        return [(c["id"], c["updated_at"]) for c in items]

    before = listed()
    assert [c for c, _ in before] == [newer, cid]
    assert client.post(f"/api/conversations/{cid}/stop", headers=alice.headers).status_code == 202
    switched = client.patch(
        f"/api/conversations/{cid}", json={"current_message_id": m["a2"]}, headers=alice.headers
    )
    assert switched.status_code == 200 and switched.json()["updated_at"] == before[1][1]
    assert listed() == before


def test_the_active_branch_with_siblings_and_switching(client: TestClient, use_database: str) -> None:
    alice = register(client)
    cid, m = branched(client, alice, use_database)
    url = f"/api/conversations/{cid}"
    detail = client.get(url, headers=alice.headers).json()
    assert detail["current_message_id"] == m["a2b"]
    assert [x["content"] for x in detail["messages"]] == ["q1", "a1", "q2", "a2b"]
    assert [x["sibling_ids"] for x in detail["messages"]] == [
        [m["q1"], m["q1b"]],
        [m["a1"]],
        [m["q2"]],
        [m["a2"], m["a2b"]],
    ]
    assert [x["parent_id"] for x in detail["messages"]] == [None, m["q1"], m["a1"], m["q2"]]
    # switch to the first version of the answer, then to the edited question (its newest descendants follow)
    switched = client.patch(url, json={"current_message_id": m["a2"]}, headers=alice.headers)
    assert switched.status_code == 200
    assert [x["content"] for x in client.get(url, headers=alice.headers).json()["messages"]] == [
        "q1",
        "a1",
        "q2",
        "a2",
    ]
    client.patch(url, json={"current_message_id": m["q1b"], "title": "renamed"}, headers=alice.headers)
    detail = client.get(url, headers=alice.headers).json()
    assert (detail["title"], detail["current_message_id"]) == ("renamed", m["a1b"])
    assert [x["content"] for x in detail["messages"]] == ["q1b", "a1b"]
    exported = json.loads(client.get(f"{url}/export", headers=alice.headers).text)
    assert exported["messages"] == [
        {"role": "user", "content": "q1b"},
        {"role": "assistant", "content": "a1b"},
    ]
    # switching back to q1 continues through its newest descendants: a2b, the newest answer to q2
    client.patch(url, json={"current_message_id": m["q1"]}, headers=alice.headers)
    assert client.get(url, headers=alice.headers).json()["current_message_id"] == m["a2b"]


def test_switching_to_a_message_of_another_conversation_is_404(client: TestClient, use_database: str) -> None:
    alice = register(client)
    cid, m = branched(client, alice, use_database)
    other = create(client, alice, "other")["id"]
    response = client.patch(
        f"/api/conversations/{other}", json={"current_message_id": m["a1"]}, headers=alice.headers
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    empty = client.patch(f"/api/conversations/{other}", json={}, headers=alice.headers)
    assert empty.status_code == 422
    assert (
        client.get(f"/api/conversations/{cid}", headers=alice.headers).json()["current_message_id"]
        == m["a2b"]
    )


def test_stop_sets_the_flag_the_generator_reads(client: TestClient, use_database: str) -> None:
    from sqlalchemy import create_engine, text

    from shared.migrate import sync_url

    alice = register(client)
    cid = create(client, alice)["id"]
    response = client.post(f"/api/conversations/{cid}/stop", headers=alice.headers)
    assert response.status_code == 202 and response.json() == {"conversation_id": cid, "stop_requested": True}
    engine = create_engine(sync_url(use_database))
    with engine.connect() as connection:
        flag = connection.execute(
            text("SELECT stop_requested_at FROM conversations WHERE id = :c"), {"c": cid}
        )
        assert flag.scalar() is not None
    engine.dispose()


def test_an_answer_no_generator_saves_ends_as_failed(
    client: TestClient, use_database: str, monkeypatch
) -> None:
    """The generator died (kill -9, a Lambda timeout): the first request that meets the answer finalizes it as
    failed, with what was saved: the finish reason DESIGN gives every failure."""
    from datetime import timedelta

    from sqlalchemy import create_engine, update

    from shared.migrate import sync_url
    from shared.models import Message, utcnow

    alice = register(client)
    cid = create(client, alice)["id"]
    _, answer = add_messages(use_database, cid, [("user", "hi"), ("assistant", "half an ans")])
    engine = create_engine(sync_url(use_database))
    with engine.begin() as connection:
        connection.execute(
            update(Message)
            .where(Message.id == answer)
            .values(finish_reason=None, updated_at=utcnow() - timedelta(seconds=5))
        )
    engine.dispose()
    url = f"/api/conversations/{cid}"
    assert (
        client.get(url, headers=alice.headers).json()["messages"][-1]["finish_reason"] is None
    )  # 5 s: still alive
    monkeypatch.setenv("SLM_STALE_ANSWER_SECONDS", "2")
    from shared.settings import get_settings

    get_settings.cache_clear()
    last = client.get(url, headers=alice.headers).json()["messages"][-1]
    assert (last["finish_reason"], last["content"]) == ("error", "half an ans")


def count_messages(database_url: str, conversation_id: int) -> int:
    from sqlalchemy import create_engine, text

    from shared.migrate import sync_url

    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM messages WHERE conversation_id = :c"), {"c": conversation_id}
        ).scalar_one()
    engine.dispose()
    return int(count)


def test_the_stale_rule_never_overwrites_a_final_save_that_lands_after_the_read(
    client: TestClient, use_database: str
) -> None:
    """A request reads two answers the stale rule calls dead; before it writes "error", the final
    save of one of them lands (tried again after an outage). That answer keeps its finish reason; the
    other is finalized; the objects read say what the database holds."""
    import asyncio
    from datetime import timedelta

    from sqlalchemy import create_engine, select, update
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.crud import finalize_stale_answers
    from shared.database import build_engine
    from shared.migrate import sync_url
    from shared.models import Message, utcnow

    alice = register(client)
    cid = create(client, alice)["id"]
    _, late, _, dead = add_messages(
        use_database, cid, [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
    )
    sync = create_engine(sync_url(use_database))
    with sync.begin() as connection:
        old = utcnow() - timedelta(seconds=60)
        connection.execute(
            update(Message).where(Message.id.in_([late, dead])).values(finish_reason=None, updated_at=old)
        )

    async def scenario() -> dict[int, str | None]:
        engine = build_engine(use_database)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                messages = list(await session.scalars(select(Message).where(Message.conversation_id == cid)))
                with sync.begin() as connection:  # the final save lands between the read and the write
                    connection.execute(update(Message).where(Message.id == late).values(finish_reason="eos"))
                await finalize_stale_answers(session, messages, 30)
                return {m.id: m.finish_reason for m in messages if m.id in (late, dead)}
        finally:
            await engine.dispose()

    in_memory = asyncio.run(scenario())
    with sync.connect() as connection:
        saved = dict(
            connection.execute(
                select(Message.id, Message.finish_reason).where(Message.id.in_([late, dead]))
            ).all()
        )
    sync.dispose()
    assert saved == in_memory == {late: "eos", dead: "error"}
