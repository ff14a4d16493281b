// The conversations function: list (newest first, paged), read, rename, delete, export.

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
  finish_reason: string | null;
  token_count: number | null;
  created_at: string;
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

export function readConversation(id: number): Promise<Conversation & { messages: StoredMessage[] }> {
  return apiJson("conversations", `/api/conversations/${id}`);
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
