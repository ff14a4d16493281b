"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import { apiJson, ApiError } from "@/lib/api";
import { requestStop, StreamBroken, streamChat } from "@/lib/chat";
import {
  type Conversation,
  deleteConversation,
  exportConversation,
  readConversation,
  renameConversation,
} from "@/lib/conversations";
import { goToLogin, readSession, type Session } from "@/lib/session";
import { loadSettings, type Sampling, saveSettings } from "@/lib/settings";
import { currentTheme, setTheme, type Theme } from "@/lib/theme";

import Composer from "./Composer";
import { CloseIcon, DownloadIcon, MenuIcon, MoonIcon, SlidersIcon, SunIcon } from "./icons";
import MessageList, { type UiMessage } from "./MessageList";
import SettingsPanel from "./SettingsPanel";
import Sidebar from "./Sidebar";
import { useConversations } from "./useConversations";

const MEMORY_TOKENS = 384; // the model's context window
const STOP_GRACE_MS = 1000; // after asking to stop, how long the stream may take to end with `done`
let nextKey = 0;
const key = () => `m${++nextKey}`;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The title the chat function gives a new conversation (functions/chat/app.py title_from). */
function titleFrom(message: string, limit = 60): string {
  const words = message.split(/\s+/).filter(Boolean).join(" ");
  return words.length <= limit ? words : `${words.slice(0, limit - 1).trimEnd()}…`;
}

function urlConversation(): number | null {
  const id = Number(new URLSearchParams(window.location.search).get("c"));
  return Number.isInteger(id) && id > 0 ? id : null;
}

function showConversationInUrl(id: number | null) {
  const url = id === null ? "/" : `/?c=${id}`;
  if (window.location.pathname + window.location.search !== url) window.history.pushState(null, "", url);
}

export default function ChatApp() {
  const [session, setSession] = useState<Session | null>(null);
  const [conversationId, setConversationId] = useState<number | null>(null);
  const [title, setTitle] = useState("New chat");
  const [messages, setMessages] = useState<UiMessage[]>([]);
  const [dropped, setDropped] = useState(0);
  const [loadingMessages, setLoadingMessages] = useState(false);
  const [banner, setBanner] = useState<string | null>(null);
  const [query, setQuery] = useState("");
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const [settingsOpen, setSettingsOpen] = useState(false);
  const [settings, setSettings] = useState<Sampling | null>(null);
  const [theme, setThemeState] = useState<Theme>("dark");
  const list = useConversations(query);
  const stream = useRef<AbortController | null>(null);
  const current = useRef<number | null>(null); // the conversation id, readable inside stream callbacks
  const streaming = messages.some((m) => m.streaming);

  const open = useCallback(async (id: number | null) => {
    stream.current?.abort(); // the server keeps what was generated so far
    current.current = id;
    setConversationId(id);
    setDropped(0);
    setBanner(null);
    setSidebarOpen(false);
    setMessages([]);
    if (id === null) {
      setTitle("New chat");
      return;
    }
    setLoadingMessages(true);
    try {
      const conversation = await readConversation(id);
      if (current.current !== id) return; // another one was opened meanwhile
      setTitle(conversation.title);
      setMessages(
        conversation.messages.map((m) => ({
          key: key(),
          id: m.id,
          role: m.role,
          content: m.content,
          finishReason: m.finish_reason,
          tokens: m.role === "assistant" ? m.token_count : undefined,
        })),
      );
    } catch (error) {
      if (current.current !== id) return;
      current.current = null;
      setConversationId(null);
      setMessages([]);
      showConversationInUrl(null);
      setBanner(
        error instanceof ApiError && error.status === 404
          ? "That conversation does not exist (it may have been deleted)."
          : `Could not open the conversation: ${describe(error)}`,
      );
    } finally {
      setLoadingMessages(false);
    }
  }, []);

  useEffect(() => {
    const found = readSession();
    if (!found) {
      goToLogin();
      return;
    }
    setSession(found);
    setSettings(loadSettings());
    setThemeState(currentTheme());
    apiJson("auth", "/api/auth/me").catch((error) => setBanner(describe(error))); // a 401 goes to login
    open(urlConversation());
    const onPop = () => open(urlConversation());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, [open]);

  function select(id: number | null) {
    showConversationInUrl(id);
    open(id);
  }

  async function send(text: string) {
    if (streaming || !settings) return;
    const assistantKey = key();
    const userKey = key();
    setBanner(null);
    setMessages((old) => [
      ...old,
      { key: userKey, role: "user", content: text },
      { key: assistantKey, role: "assistant", content: "", streaming: true, waiting: { queuePosition: 0, coldStart: false } },
    ]);
    const update = (change: Partial<UiMessage> | ((m: UiMessage) => Partial<UiMessage>)) =>
      setMessages((old) =>
        old.map((m) => (m.key === assistantKey ? { ...m, ...(typeof change === "function" ? change(m) : change) } : m)),
      );
    const controller = new AbortController();
    stream.current = controller;
    const startedIn = current.current;
    let answeredIn = startedIn; // the conversation this answer belongs to, once known
    try {
      await streamChat({ conversation_id: startedIn, message: text, ...settings }, controller.signal, (event) => {
        switch (event.type) {
          case "meta": {
            const id = event.data.conversation_id;
            answeredIn = id;
            if (current.current === null && startedIn === null) {
              current.current = id;
              setConversationId(id);
              setTitle(titleFrom(text));
              showConversationInUrl(id);
              list.refresh();
            }
            update({ waiting: { queuePosition: event.data.queue_position, coldStart: event.data.cold_start } });
            break;
          }
          case "warning":
            if (event.data.code === "context_truncated") setDropped(event.data.dropped_messages);
            else setBanner(event.data.message);
            break;
          case "token":
            update((m) => ({ content: m.content + event.data.text, waiting: null }));
            break;
          case "done":
            update({
              id: event.data.assistant_message_id,
              finishReason: event.data.finish_reason,
              tokens: event.data.tokens,
              tokensPerSecond: event.data.tokens_per_second,
              streaming: false,
              waiting: null,
            });
            break;
          case "error":
            update({
              streaming: false,
              waiting: null,
              finishReason: "error",
              error: `The answer failed: ${event.data.message}`,
              retry: true,
            });
            break;
        }
      });
    } catch (error) {
      if (controller.signal.aborted) {
        update((m) => ({ streaming: false, waiting: null, finishReason: m.finishReason ?? "stopped" }));
      } else if (error instanceof StreamBroken || (error instanceof ApiError && (error.status === 0 || error.status >= 500))) {
        update({ streaming: false, waiting: null, error: describe(error), retry: true });
      } else {
        update({ streaming: false, waiting: null, error: describe(error) });
      }
    } finally {
      if (stream.current === controller) stream.current = null;
      if (answeredIn !== null) list.bump(answeredIn); // it moved to the top
    }
  }

  async function stop() {
    const controller = stream.current;
    if (!controller) return;
    const id = current.current;
    if (id === null) {
      controller.abort(); // no id yet: closing the connection stops the generation
      return;
    }
    try {
      await requestStop(id);
    } catch (error) {
      setBanner(`Could not ask the server to stop: ${describe(error)}`);
    }
    setTimeout(() => controller.abort(), STOP_GRACE_MS); // normally `done` (stopped) has arrived by then
  }

  function regenerate() {
    const last = messages.findLast((m) => m.role === "user");
    if (last) send(last.content);
  }

  async function rename(id: number, newTitle: string) {
    try {
      const renamed: Conversation = await renameConversation(id, newTitle);
      list.replace(renamed);
      if (current.current === id) setTitle(renamed.title);
    } catch (error) {
      setBanner(`Could not rename: ${describe(error)}`);
    }
  }

  async function remove(id: number) {
    try {
      await deleteConversation(id);
      list.remove(id);
      if (current.current === id) select(null);
    } catch (error) {
      setBanner(`Could not delete: ${describe(error)}`);
    }
  }

  async function download() {
    if (conversationId === null) return;
    try {
      await exportConversation(conversationId);
    } catch (error) {
      setBanner(`Could not export: ${describe(error)}`);
    }
  }

  function changeSettings(next: Sampling) {
    setSettings(next);
    saveSettings(next);
  }

  function toggleTheme() {
    const next = theme === "dark" ? "light" : "dark";
    setTheme(next);
    setThemeState(next);
  }

  if (!session) return <div className="flex h-dvh items-center justify-center text-zinc-500">Loading…</div>;

  const headerButton = "rounded-lg p-2 text-zinc-500 hover:bg-zinc-200 hover:text-zinc-900 disabled:opacity-40 dark:hover:bg-zinc-800 dark:hover:text-zinc-100";
  return (
    <div className="flex h-dvh overflow-hidden">
      <Sidebar
        items={list.items}
        total={list.total}
        loading={list.loading}
        error={list.error}
        query={query}
        onQuery={setQuery}
        onLoadMore={list.loadMore}
        activeId={conversationId}
        onSelect={select}
        onNew={() => select(null)}
        onRename={rename}
        onDelete={remove}
        open={sidebarOpen}
        onClose={() => setSidebarOpen(false)}
        email={session.user.email}
        onLogout={goToLogin}
      />
      <main className="flex min-w-0 flex-1 flex-col">
        <header className="flex items-center gap-1 border-b border-zinc-200 px-2 py-2 dark:border-zinc-800 sm:px-4">
          <button type="button" className={`${headerButton} md:hidden`} onClick={() => setSidebarOpen(true)} aria-label="Open sidebar">
            <MenuIcon />
          </button>
          <h1 className="min-w-0 flex-1 truncate px-1 font-medium" data-testid="chat-title">
            {title}
          </h1>
          <button type="button" className={headerButton} onClick={download} disabled={conversationId === null} aria-label="Export conversation (JSONL)" title="Export (JSONL)">
            <DownloadIcon />
          </button>
          <button type="button" className={headerButton} onClick={() => setSettingsOpen(true)} aria-label="Settings" title="Settings">
            <SlidersIcon />
          </button>
          <button type="button" className={headerButton} onClick={toggleTheme} aria-label={theme === "dark" ? "Light theme" : "Dark theme"} title="Theme">
            {theme === "dark" ? <SunIcon /> : <MoonIcon />}
          </button>
        </header>
        {banner && (
          <div role="alert" className="flex items-start gap-2 bg-red-500/15 px-4 py-2 text-sm text-red-700 dark:text-red-300">
            <span className="flex-1">{banner}</span>
            <button type="button" onClick={() => setBanner(null)} aria-label="Dismiss">
              <CloseIcon width={16} height={16} />
            </button>
          </div>
        )}
        {messages.length === 0 ? (
          <div className="flex flex-1 flex-col items-center justify-center gap-2 p-6 text-center">
            {loadingMessages ? (
              <p className="text-zinc-500">Loading…</p>
            ) : (
              <>
                <p className="text-2xl font-semibold">What shall we talk about?</p>
                <p className="max-w-md text-sm text-zinc-500">
                  SLM is a small language model trained from scratch. Its answers stream in as they are written; it remembers
                  the last {MEMORY_TOKENS} tokens of the conversation.
                </p>
              </>
            )}
          </div>
        ) : (
          <MessageList messages={messages} dropped={dropped} contextLimit={MEMORY_TOKENS} onRegenerate={regenerate} busy={streaming} />
        )}
        <Composer streaming={streaming} onSend={send} onStop={stop} />
      </main>
      {settingsOpen && settings && <SettingsPanel settings={settings} onChange={changeSettings} onClose={() => setSettingsOpen(false)} />}
    </div>
  );
}
