"""The serving benchmark's socket client: its parser of chunked SSE responses, fed however the bytes
happen to arrive. (tests/functions/chat/test_chat_live.py runs it against a live server.)"""

import json

import pytest

from bench.sse_client import Response, chat_request
from functions.chat.sse import sse


def chunked(*writes: bytes) -> bytes:
    """A 200 event-stream response whose body is these writes, one chunk each, as uvicorn sends it."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(w), w) for w in writes) + b"0\r\n\r\n"


def test_tokens_and_done_are_read_whatever_the_bytes_split():
    writes = [
        sse("meta", {"conversation_id": 1, "queue_position": 0}),
        # one write of two events
        sse("token", {"text": "Hel"}, event_id=0) + sse("token", {"text": "lo"}, event_id=1),
        sse("token", {"text": " ünïcode\n\n"}, event_id=2),  # a blank line inside the data is JSON-escaped
        sse("done", {"finish_reason": "eos", "tokens": 3}),
    ]
    raw = chunked(*writes)
    for size in (1, 2, 3, 7, 64, len(raw)):
        response, tokens = Response(), 0
        for at in range(0, len(raw), size):
            assert not response.finished
            tokens += response.feed(raw[at : at + size])
        assert response.finished and response.status == 200
        assert tokens == 3 and response.done == {"finish_reason": "eos", "tokens": 3}


def test_an_error_with_a_length_is_read_whole():
    body = json.dumps({"error": {"code": "message_too_long", "message": "too long"}}).encode()
    raw = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    response = Response()
    assert response.feed(raw[:40]) == 0 and not response.finished
    response.feed(raw[40:])
    assert response.finished and response.status == 422 and json.loads(response.body) == json.loads(body)


@pytest.mark.parametrize("status", [200, 503])
def test_a_chunked_body_that_is_not_sse_is_kept_as_the_body(status: int):
    raw = chunked(b'{"error": ', b'"x"}').replace(b"200 OK", b"%d X" % status)
    response = Response()
    tokens = response.feed(raw)
    assert response.finished and tokens == 0
    if status != 200:
        assert response.body == b'{"error": "x"}'


def test_the_request_is_a_post_with_its_json_and_headers():
    request = chat_request("http://127.0.0.1:8765", {"Authorization": "Bearer t"}, {"message": "hi"})
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/chat HTTP/1.1" and "Host: 127.0.0.1:8765" in lines
    assert "Authorization: Bearer t" in lines and f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {"message": "hi"}
