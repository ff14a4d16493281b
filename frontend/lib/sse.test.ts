import { describe, expect, it } from "vitest";

import { readSSE, SSEParser, type SSEEvent } from "./sse";

// What the chat function sends (functions/chat/generation.py), with multi-byte text in the tokens.
const STREAM = [
  'event: meta\ndata: {"conversation_id": 7, "user_message_id": 31, "context": {"tokens": 212, "limit": 384, "dropped_messages": 4}, "queue_position": 0, "cold_start": true}\n\n',
  'event: warning\ndata: {"code": "context_truncated", "message": "4 earlier messages…", "dropped_messages": 4}\n\n',
  'event: token\ndata: {"text": " Héllo"}\n\n',
  'event: token\ndata: {"text": " 世界 🙂"}\n\n',
  ": keep-alive comment\n\n",
  'event: token\ndata: {"text": "\\u00e9 ✓"}\n\n',
  'event: done\ndata: {"assistant_message_id": 32, "finish_reason": "eos", "tokens": 4, "tokens_per_second": 143.2}\n\n',
].join("");
const BYTES = new TextEncoder().encode(STREAM);

function parse(chunks: Uint8Array[]): SSEEvent[] {
  const parser = new SSEParser();
  const events = chunks.flatMap((chunk) => parser.push(chunk));
  return [...events, ...parser.end()];
}

const whole = parse([BYTES]);

describe("SSEParser", () => {
  it("reads every event of the whole stream", () => {
    expect(whole.map((e) => e.event)).toEqual(["meta", "warning", "token", "token", "token", "done"]);
    expect(whole.slice(2, 5).map((e) => JSON.parse(e.data).text)).toEqual([" Héllo", " 世界 🙂", "é ✓"]);
    expect(JSON.parse(whole[0].data).queue_position).toBe(0);
  });

  it("yields identical events when the stream is split at any byte offset", () => {
    // the multi-byte characters and the line ends between `event:` and `data:` are among these offsets
    const offsets = [...Array(BYTES.length + 1).keys()];
    expect(offsets.some((i) => i > 0 && (BYTES[i] & 0xc0) === 0x80)).toBe(true); // inside a character
    for (const i of offsets) {
      expect(parse([BYTES.slice(0, i), BYTES.slice(i)]), `split at byte ${i}`).toEqual(whole);
    }
  });

  it("yields identical events when split at every pair of offsets", () => {
    for (let i = 0; i <= BYTES.length; i += 7) {
      for (let j = i; j <= BYTES.length; j += 3) {
        const chunks = [BYTES.slice(0, i), BYTES.slice(i, j), BYTES.slice(j)];
        expect(parse(chunks), `split at ${i} and ${j}`).toEqual(whole);
      }
    }
  });

  it("yields identical events when fed one byte at a time", () => {
    expect(parse([...BYTES].map((b) => Uint8Array.of(b)))).toEqual(whole);
  });

  it("treats CRLF and CR line ends like LF, even when CR and LF arrive in different reads", () => {
    const crlf = new TextEncoder().encode(STREAM.replace(/\n/g, "\r\n"));
    for (let i = 0; i <= crlf.length; i++) {
      expect(parse([crlf.slice(0, i), crlf.slice(i)]), `split at byte ${i}`).toEqual(whole);
    }
    expect(parse([new TextEncoder().encode(STREAM.replace(/\n/g, "\r"))])).toEqual(whole);
  });

  it("joins multi-line data and drops an event whose blank line never came", () => {
    const text = "event: token\ndata: a\ndata: b\n\nevent: token\ndata: cut off";
    expect(parse([new TextEncoder().encode(text)])).toEqual([{ event: "token", data: "a\nb" }]);
  });
});

describe("readSSE", () => {
  it("reads a ReadableStream split at every byte offset into the same events", async () => {
    for (let i = 0; i <= BYTES.length; i += 5) {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(BYTES.slice(0, i));
          controller.enqueue(BYTES.slice(i));
          controller.close();
        },
      });
      const events: SSEEvent[] = [];
      await readSSE(body, (e) => events.push(e));
      expect(events).toEqual(whole);
    }
  });

  it("rejects when the connection fails mid-stream, after the events already received", async () => {
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) controller.error(new TypeError("network error"));
        else controller.enqueue(BYTES.slice(0, 400));
        sent = true;
      },
    });
    const events: SSEEvent[] = [];
    await expect(readSSE(body, (e) => events.push(e))).rejects.toThrow("network error");
    expect(events.length).toBeGreaterThan(0);
    expect(events).toEqual(whole.slice(0, events.length));
  });
});
