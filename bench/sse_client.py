"""The serving benchmark's lean client: chat streams over plain keep-alive sockets, all on one thread.

The benchmark runs on the server's own cores, so what its client spends is taken from the server. An
httpx client per stream, on a thread per stream, spends about a millisecond of CPU on each request
under one GIL, so the eighth of 8 requests "sent at once" leaves several milliseconds after the first,
and that wait is counted in its time to first token. Here every request is written to its socket
back to back, and one selector loop reads the answers as they come: an HTTP/1.1 response in chunked
transfer coding, its SSE events counted with bytes operations (what the browser's EventSource does,
minus the decoding of the text). Load generators such as wrk and oha are written for the same
reason. `bench/serve.py --client httpx` keeps the old client for comparison.
"""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

TOKEN = b"event: token\n"
DONE = b"event: done\ndata: "


class Response:
    """One HTTP/1.1 response, parsed as its bytes arrive (feed): the status, and then either the SSE
    events of a chunked body (token events counted, the done event's data kept) or a plain body."""

    def __init__(self) -> None:
        self.buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunked = False
        self.length = 0
        self.events = b""  # the SSE text after the last whole event
        self.body = b""  # a body that is not SSE (an error's)
        self.done: dict[str, Any] = {}
        self.finished = False

    def feed(self, data: bytes) -> int:
        """Take the next bytes; returns the token events they completed."""
        self.buffer += data
        if not self.status:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return 0
            status_line, *lines = head.decode("latin-1").split("\r\n")
            self.status = int(status_line.split()[1])
            for line in lines:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
            self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
            self.length = int(self.headers.get("content-length", "0"))
            self.buffer = rest
        if not self.chunked:
            self.body += self.buffer
            self.buffer = b""
            self.finished = len(self.body) >= self.length
            return 0
        tokens = 0
        while (end := self.buffer.find(b"\r\n")) >= 0:
            size = int(self.buffer[:end].split(b";")[0], 16)
            if len(self.buffer) < end + 2 + size + 2:
                break  # the rest of this chunk is still on its way
            payload = self.buffer[end + 2 : end + 2 + size]
            self.buffer = self.buffer[end + 4 + size :]
            if size == 0:  # the last chunk (no trailers are sent)
                self.finished = True
                break
            if self.status != 200:
                self.body += payload
                continue
            whole, _, self.events = (self.events + payload).rpartition(b"\n\n")
            tokens += whole.count(TOKEN)
            if (at := whole.find(DONE)) >= 0:
                self.done = json.loads(whole[at + len(DONE) :].split(b"\n", 1)[0])
        return tokens


def chat_request(url: str, headers: dict[str, str], body: dict[str, Any]) -> bytes:
    """The bytes of POST /api/chat with this JSON body."""
    data = json.dumps(body).encode()
    lines = [
        "POST /api/chat HTTP/1.1",
        f"Host: {urlsplit(url).netloc}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(data)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + data


class Streams:
    """`n` keep-alive connections to the server at `url`, opened before any clock starts (as a browser
    keeps its connection); `round` runs one answer on each of them at once."""

    def __init__(self, url: str, n: int) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.sockets = [self._connect() for _ in range(n)]

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def round(self, requests: list[bytes], timeout: float = 600) -> list[dict[str, Any]]:
        """Send request i on connection i, all back to back, and read every answer to its end. Per
        answer: ttft (seconds from its send to its first token event), first (that moment), gap (the
        median between token events), tokens (the done event's count), events (the token events read),
        end. A status other than 200
        raises RuntimeError with the server's answer."""
        selector = selectors.DefaultSelector()
        responses = [Response() for _ in requests]
        began: list[float] = []
        arrivals: list[list[float]] = [[] for _ in requests]
        ends = [0.0] * len(requests)
        for i, request in enumerate(requests):
            began.append(time.perf_counter())
            self.sockets[i].sendall(request)
            selector.register(self.sockets[i], selectors.EVENT_READ, i)
        deadline, left = time.perf_counter() + timeout, len(requests)
        try:
            while left:
                ready = selector.select(max(deadline - time.perf_counter(), 0))
                if not ready:
                    raise TimeoutError(f"answers still open after {timeout} s")
                for key, _ in ready:
                    i = key.data
                    data = self.sockets[i].recv(1 << 18)
                    now = time.perf_counter()
                    if not data:
                        raise RuntimeError("the server closed a connection in the middle of an answer")
                    response = responses[i]
                    arrivals[i] += [now] * response.feed(data)
                    if response.finished:
                        selector.unregister(self.sockets[i])
                        left -= 1
                        ends[i] = now
                        if response.status != 200:
                            raise RuntimeError(
                                f"POST /api/chat answered {response.status}: {response.body.decode()}"
                            )
        finally:
            selector.close()
        for i, response in enumerate(responses):  # the server may close a connection after an answer
            if response.headers.get("connection", "").lower() == "close":
                self.sockets[i].close()
                self.sockets[i] = self._connect()
        return [
            timing(b, a, int(r.done.get("tokens", 0)), e)
            for b, a, r, e in zip(began, arrivals, responses, ends, strict=True)
        ]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def timing(began: float, arrivals: list[float], tokens: int, end: float) -> dict[str, Any]:
    """One answer's figures from the moments its token events were read (either client's)."""
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return {
        "ttft": arrivals[0] - began if arrivals else float("nan"),
        "first": arrivals[0] if arrivals else float("nan"),
        "gap": statistics.median(gaps) if gaps else float("nan"),
        "tokens": tokens,
        "events": len(arrivals),
        "end": end,
    }
