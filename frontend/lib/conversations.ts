// The conversations function: list (newest first, paged), read (the active branch), rename or switch
// branch, delete, export.

import { apiFetch, apiJson } from "./api";

export interface Conversation {
  id: number;
  title: string;
  created_at: string;
  updated_at: string;
}

export interface StoredMessage {
  id: number;
  role: "user" | "assistant";
  content: string;
  parent_id: number | null;
  finish_reason: string | null; // an answer: null while it is generated
  token_count: number | null;
  created_at: string;
  sibling_ids: number[]; // the versions of this turn (same parent), oldest first, itself included
}

export interface ConversationDetail extends Conversation {
  current_message_id: number | null;
  messages: StoredMessage[]; // the active branch, root first
  // the last answer's prompt: its tokens, the model's window (limit; window is its first name), what a prompt may take of it, the messages it no longer sees
  context: { tokens: number; limit: number; window: number; budget: number; dropped_messages: number } | null; // null before any answer
}

export interface ConversationPage {
  items: Conversation[];
  total: number;
  limit: number;
  offset: number;
}

export const PAGE_SIZE = 20;

export function listConversations(offset: number, q: string, signal?: AbortSignal): Promise<ConversationPage> {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
  if (q.trim()) params.set("q", q.trim());
  return apiJson("conversations", `/api/conversations?${params}`, { signal });
}

export function readConversation(id: number): Promise<ConversationDetail> {
  return apiJson("conversations", `/api/conversations/${id}`);
}

/** Make another version active: the branch becomes root → message → its newest descendants. */
export function switchBranch(id: number, messageId: number): Promise<Conversation> {
  return apiJson("conversations", `/api/conversations/${id}`, { method: "PATCH", json: { current_message_id: messageId } });
}

export function renameConversation(id: number, title: string): Promise<Conversation> {
  return apiJson("conversations", `/api/conversations/${id}`, { method: "PATCH", json: { title } });
}

export function deleteConversation(id: number): Promise<null> {
  return apiJson("conversations", `/api/conversations/${id}`, { method: "DELETE" });
}

/** Download the conversation as JSONL (one {"messages": [...]} line, the format the trainer reads). */
export async function exportConversation(id: number): Promise<void> {
  const response = await apiFetch("conversations", `/api/conversations/${id}/export`);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `conversation-${id}.jsonl`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
