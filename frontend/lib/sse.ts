// Server-Sent Events over fetch (EventSource cannot POST). Bytes may arrive split anywhere: inside a
// multi-byte character, inside a line, between the `event:` and `data:` lines of one event. The decoder
// runs with {stream: true} and the half-received line is kept until the rest arrives.

export interface SSEEvent {
  event: string;
  data: string;
}

export class SSEParser {
  private decoder = new TextDecoder();
  private partial = ""; // the line received so far, without its end
  private eventName = "";
  private dataLines: string[] = [];

  /** Feed the next bytes; returns the events they completed. */
  push(chunk: Uint8Array): SSEEvent[] {
    return this.feed(this.decoder.decode(chunk, { stream: true }));
  }

  /** The stream ended: flush the decoder. An event without its closing blank line is dropped (as the spec says). */
  end(): SSEEvent[] {
    const events = this.feed(this.decoder.decode());
    if (this.partial.endsWith("\r")) {
      const event = this.line(this.partial.slice(0, -1)); // the held "\r" was a line end after all
      if (event) events.push(event);
    }
    this.partial = "";
    this.eventName = "";
    this.dataLines = [];
    return events;
  }

  private feed(text: string): SSEEvent[] {
    let buffer = this.partial + text;
    // A trailing "\r" may be the first half of "\r\n": keep it until the next read says.
    const held = buffer.endsWith("\r") ? "\r" : "";
    if (held) buffer = buffer.slice(0, -1);
    const lines = buffer.split(/\r\n|\r|\n/);
    this.partial = (lines.pop() ?? "") + held;
    const events: SSEEvent[] = [];
    for (const line of lines) {
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  private line(line: string): SSEEvent | null {
    if (line === "") {
      const event = this.dataLines.length
        ? { event: this.eventName || "message", data: this.dataLines.join("\n") }
        : null;
      this.eventName = "";
      this.dataLines = [];
      return event;
    }
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventName = value;
    else if (field === "data") this.dataLines.push(value);
    return null; // id and retry mean nothing to a one-shot POST stream
  }
}

/** Read a whole SSE body, calling onEvent for each event in order. Rejects when the connection fails. */
export async function readSSE(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: SSEEvent) => void,
): Promise<void> {
  const parser = new SSEParser();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const event of parser.push(value)) onEvent(event);
    }
    for (const event of parser.end()) onEvent(event);
  } finally {
    reader.releaseLock();
  }
}
