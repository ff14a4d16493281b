// POST /api/chat and its event stream (the events of DESIGN.md: meta, warning, token, done, error), and
// GET /api/chat/{id}/events, which follows an answer in progress from the database (after a reload).

import { apiFetch, apiJson, ApiError } from "./api";
import type { Sampling } from "./settings";
import { readSSE } from "./sse";

export interface Meta {
  conversation_id: number;
  user_message_id: number;
  assistant_message_id?: number;
  context?: { tokens: number; limit: number; window?: number; budget?: number; dropped_messages: number };
  queue_position?: number;
  cold_start?: boolean;
  in_progress?: boolean; // the events route: whether the answer is still being generated
  title?: string; // POST /api/chat: the conversation's title (the server names a new one)
}
export interface Warning {
  code: string;
  message: string;
  dropped_messages: number;
}
export interface Done {
  assistant_message_id: number;
  finish_reason: string;
  tokens: number;
  tokens_per_second: number;
}
export interface StreamError {
  code: string;
  message: string;
}

/** How an answer shows a stream's `error` event: a failed answer may be tried again; one whose final save
 * failed (`save_failed`: the database was away) is whole, and the server saves it when the database is back. */
export function errorShown(error: StreamError): { error: string; retry: boolean } {
  if (error.code === "save_failed") return { error: error.message, retry: false };
  return { error: `The answer failed: ${error.message}`, retry: true };
}

export type ChatEvent =
  | { type: "meta"; data: Meta }
  | { type: "warning"; data: Warning }
  | { type: "token"; data: { text: string } }
  | { type: "done"; data: Done }
  | { type: "error"; data: StreamError };

const TYPES = new Set(["meta", "warning", "token", "done", "error"]);

/** The connection ended before `done` or `error`: the answer so far is all the client has. */
export class StreamBroken extends Error {
  name = "StreamBroken";
}

/** What POST /api/chat takes: a new message (after `parent_id`, or the active branch's end when left
 * out), or `regenerate`: another answer to the question the given answer replied to. */
export type ChatRequest = Partial<Sampling> & { conversation_id: number | null } & (
    | { message: string; parent_id?: number | null }
    | { regenerate: number }
  );

export async function streamChat(request: ChatRequest, signal: AbortSignal, onEvent: (event: ChatEvent) => void): Promise<void> {
  const response = await apiFetch("chat", "/api/chat", { method: "POST", json: request, signal });
  await readEvents(response, onEvent);
}

/** Follow the conversation's latest answer from where the client is (`after`: the last token index it has). */
export async function followChat(
  conversationId: number,
  after: number | null,
  signal: AbortSignal,
  onEvent: (event: ChatEvent) => void,
): Promise<void> {
  const query = after === null ? "" : `?after=${after}`;
  const response = await apiFetch("chat", `/api/chat/${conversationId}/events${query}`, { signal });
  await readEvents(response, onEvent);
}

async function readEvents(response: Response, onEvent: (event: ChatEvent) => void): Promise<void> {
  if (!response.body) throw new StreamBroken("The server sent no stream");
  let finished = false;
  try {
    await readSSE(response.body, ({ event, data }) => {
      if (!TYPES.has(event)) return; // an event this client does not know yet
      let parsed: unknown;
      try {
        parsed = JSON.parse(data);
      } catch {
        throw new ApiError(0, "bad_event", `The server sent an unreadable ${event} event`);
      }
      if (event === "done" || event === "error") finished = true;
      onEvent({ type: event, data: parsed } as ChatEvent);
    });
  } catch (error) {
    if ((error as Error).name === "AbortError" || error instanceof ApiError) throw error;
    throw new StreamBroken(`The connection broke mid-answer: ${(error as Error).message}`);
  }
  if (!finished) throw new StreamBroken("The connection closed before the answer finished");
}

/** Stop the answer in flight: a database flag (the conversations function), so any instance honours it. */
export function requestStop(conversationId: number): Promise<unknown> {
  return apiJson("conversations", `/api/conversations/${conversationId}/stop`, { method: "POST" });
}
