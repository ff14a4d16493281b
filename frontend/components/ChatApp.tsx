"use client";

import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";

import { apiJson, ApiError } from "@/lib/api";
import {
  type Conversation,
  deleteConversation,
  exportConversation,
  readConversation,
  renameConversation,
} from "@/lib/conversations";
import { goToLogin, readSession, type Session } from "@/lib/session";
import { type Bounds, loadSettings, readBounds, type Sampling, saveSettings } from "@/lib/settings";
import { currentTheme, setTheme, type Theme } from "@/lib/theme";

import Composer, { type Refused } from "./Composer";
import { CloseIcon, DownloadIcon, MenuIcon, MoonIcon, SlidersIcon, SunIcon } from "./icons";
import MessageList, { type MessageActions } from "./MessageList";
import SettingsPanel from "./SettingsPanel";
import Sidebar from "./Sidebar";
import { useChatStream } from "./useChatStream";
import { useConversations } from "./useConversations";

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
  const [loadingMessages, setLoadingMessages] = useState(false);
  const [banner, setBanner] = useState<string | null>(null);
  // a conversation that could not be read (the server away): the page stays on it, to try again
  const [unopened, setUnopened] = useState<{ id: number; why: string } | null>(null);
  const [refused, setRefused] = useState<Refused | null>(null);
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const [settingsOpen, setSettingsOpen] = useState(false);
  const [settings, setSettings] = useState<Sampling | null>(null); // null until the model's bounds are read
  const [bounds, setBounds] = useState<Bounds | null>(null);
  const [theme, setThemeState] = useState<Theme>("dark");
  const list = useConversations();
  const current = useRef<number | null>(null); // the conversation id, readable inside callbacks
  const chat = useChatStream({
    onCreated: (id, serverTitle) => {
      current.current = id;
      setConversationId(id);
      setTitle(serverTitle);
      showConversationInUrl(id);
      list.refresh();
    },
    onFinished: (id) => list.bump(id), // it moved to the top
    onBanner: setBanner,
    onRefused: (text, error) => setRefused((old) => ({ text, error: error.message, n: (old?.n ?? 0) + 1 })),
  });
  const { show } = chat;
  // for the memoised message rows, and for open() (whose effect opens the URL's conversation: made anew on
  // each change, it would open it again): the latest state, read through this ref
  const latest = useRef({ chat, settings, items: list.items });
  useLayoutEffect(() => {
    latest.current = { chat, settings, items: list.items };
  });

  const open = useCallback(
    async (id: number | null) => {
      current.current = id;
      setConversationId(id);
      setBanner(null);
      setUnopened(null);
      setSidebarOpen(false);
      show(null, null); // stops reading the answer streaming in; the server finishes and saves it
      if (id === null) {
        setTitle("New chat");
        return;
      }
      setLoadingMessages(true);
      try {
        const conversation = await readConversation(id);
        if (current.current !== id) return; // another one was opened meanwhile
        setTitle(conversation.title);
        show(id, conversation);
      } catch (error) {
        if (current.current !== id) return;
        if (!(error instanceof ApiError && error.status === 404)) {
          // the server is away or failed: stay on the conversation (a message sent now must not start a new one)
          setUnopened({ id, why: describe(error) });
          setTitle(latest.current.items.find((c) => c.id === id)?.title ?? "Conversation");
          return;
        }
        current.current = null;
        setConversationId(null);
        setTitle("New chat"); // what the page now is: a message sent from here starts a new conversation
        showConversationInUrl(null);
        setBanner("That conversation does not exist (it may have been deleted).");
      } finally {
        setLoadingMessages(false);
      }
    },
    [show],
  );

  useEffect(() => {
    const found = readSession();
    if (!found) {
      goToLogin();
      return;
    }
    // what only the browser knows (the session, the saved settings, the theme): read once after the
    // static page has hydrated
    // eslint-disable-next-line react-hooks/set-state-in-effect
    setSession(found);
    readBounds().then(
      (b) => {
        setBounds(b);
        setSettings(loadSettings(b));
      },
      () => undefined, // the model is still loading: answers use the server's defaults meanwhile
    );
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

  function send(text: string) {
    setBanner(null);
    if (unopened) {
      const error = "This conversation has not opened yet: try again above, or start a New chat";
      setRefused((old) => ({ text, error, n: (old?.n ?? 0) + 1 }));
      return;
    }
    setRefused(null);
    chat.send(text, settings);
  }

  const actions: MessageActions = useMemo(
    () => ({
      regenerate: (index) => {
        const { chat: c, settings: s } = latest.current;
        c.regenerate(index, s);
      },
      edit: (index, text) => {
        const { chat: c, settings: s } = latest.current;
        c.edit(index, text, s);
      },
      switchTo: (siblingId) => void latest.current.chat.switchTo(siblingId),
    }),
    [],
  );

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

  if (!session) return <div className="flex h-dvh items-center justify-center text-zinc-500 dark:text-zinc-400">Loading…</div>;

  const headerButton = "rounded-lg p-2 text-zinc-500 dark:text-zinc-400 hover:bg-zinc-200 hover:text-zinc-900 disabled:opacity-40 dark:hover:bg-zinc-800 dark:hover:text-zinc-100";
  return (
    <div className="flex h-dvh overflow-hidden">
      <Sidebar
        list={list}
        activeId={conversationId}
        actions={{ select, create: () => select(null), rename, remove }}
        drawer={{ open: sidebarOpen, close: () => setSidebarOpen(false) }}
        account={{ email: session.user.email, logout: goToLogin }}
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
        {chat.messages.length === 0 ? (
          <div className="flex flex-1 flex-col items-center justify-center gap-2 p-6 text-center">
            {loadingMessages ? (
              <p className="text-zinc-500 dark:text-zinc-400">Loading…</p>
            ) : unopened ? (
              <div role="alert" data-testid="open-failed" className="flex flex-col items-center gap-3">
                <p>Could not open the conversation: {unopened.why}</p>
                <button
                  type="button"
                  onClick={() => void open(unopened.id)}
                  className="rounded-lg bg-sky-700 px-3 py-1.5 text-sm font-medium text-white hover:bg-sky-600"
                >
                  Try again
                </button>
              </div>
            ) : (
              <>
                <p className="text-2xl font-semibold">What shall we talk about?</p>
                <p className="max-w-md text-sm text-zinc-500 dark:text-zinc-400">
                  SLM is a small language model trained from scratch. Its answers stream in as they are written, and keep
                  going if you close the tab; it remembers only the most recent part of the conversation.
                </p>
              </>
            )}
          </div>
        ) : (
          <MessageList
            messages={chat.messages}
            dropped={chat.context?.dropped ?? 0}
            contextLimit={chat.context?.limit ?? 0}
            actions={actions}
            busy={chat.streaming}
            holdView={chat.holdView}
          />
        )}
        <Composer
          key={refused ? `refused-${refused.n}` : "composer"}
          streaming={chat.streaming}
          onSend={send}
          onStop={() => void chat.stop()}
          refused={refused}
          gauge={
            chat.context && (
              <span
                data-testid="context-gauge"
                className="whitespace-nowrap"
                title={`Tokens the last prompt used of the ${chat.context.budget} a prompt may take: the model's memory is ${chat.context.limit} tokens, and the rest is kept for the answer (Max tokens)`}
              >
                memory {chat.context.tokens}/{chat.context.budget} tokens
              </span>
            )
          }
        />
      </main>
      {settingsOpen && settings && bounds && (
        <SettingsPanel settings={settings} bounds={bounds} onChange={changeSettings} onClose={() => setSettingsOpen(false)} />
      )}
    </div>
  );
}
