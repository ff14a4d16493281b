"use client";

// The messages of the open conversation and the answer streaming into it: send, edit (a sibling
// question), regenerate (a sibling answer), switch branch, stop, and follow an answer that is still
// being generated when the conversation is opened (a reload, a second tab, another device).

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";

import { ApiError } from "@/lib/api";
import { type ChatEvent, type ChatRequest, errorShown, followChat, requestStop, StreamBroken, streamChat } from "@/lib/chat";
import { type ConversationDetail, readConversation, type StoredMessage, switchBranch } from "@/lib/conversations";
import { forRequest, type Sampling } from "@/lib/settings";

import type { UiMessage } from "./MessageList";

let nextKey = 0;
const key = () => `m${++nextKey}`;
const STOP_GRACE_MS = 1500; // after asking to stop, how long the stream may take to end with `done`

export interface ContextUse {
  tokens: number; // the last prompt
  limit: number; // the model's whole context window (DESIGN's meta.context.limit)
  budget: number; // what a prompt may take of it (the rest is kept for the answer)
  dropped: number; // the oldest messages it no longer sees
}

export interface StreamCallbacks {
  /** the server gave a new conversation its id (and title) */
  onCreated: (id: number, title: string) => void;
  /** an answer ended (the conversation moved to the top of the list) */
  onFinished: (id: number) => void;
  onBanner: (text: string) => void;
  /** the server refused the message before streaming: nothing was stored, the text goes back */
  onRefused: (text: string, error: ApiError) => void;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function fromStored(m: StoredMessage): UiMessage {
  return {
    key: `s${m.id}`, // the same row across reloads: a version switch re-renders only what changed
    id: m.id,
    parentId: m.parent_id,
    siblingIds: m.sibling_ids,
    role: m.role,
    content: m.content,
    finishReason: m.finish_reason,
    tokens: m.role === "assistant" ? m.token_count : undefined,
    streaming: m.role === "assistant" && m.finish_reason === null,
  };
}

export function useChatStream(callbacks: StreamCallbacks) {
  const [messages, setMessages] = useState<UiMessage[]>([]);
  const [context, setContext] = useState<ContextUse | null>(null);
  // the messages shown were replaced by a version switch: the view stays where the user is reading
  const [holdView, setHoldView] = useState(false);
  const controller = useRef<AbortController | null>(null);
  const conversation = useRef<number | null>(null); // readable inside stream callbacks
  const stopWanted = useRef(false);
  const on = useRef(callbacks);
  useLayoutEffect(() => {
    on.current = callbacks;
  });
  const streaming = messages.some((m) => m.streaming);

  const patch = useCallback((target: string, change: Partial<UiMessage> | ((m: UiMessage) => Partial<UiMessage>)) => {
    setMessages((old) =>
      old.map((m) => (m.key === target ? { ...m, ...(typeof change === "function" ? change(m) : change) } : m)),
    );
  }, []);

  /** Events of POST /api/chat or GET .../events into the answer `target` (and its question `question`). */
  const handler = useCallback(
    (target: string, question: string | null, following: boolean) => (event: ChatEvent) => {
      switch (event.type) {
        case "meta": {
          const { conversation_id: id, user_message_id: userId, assistant_message_id: answerId } = event.data;
          if (conversation.current === null) {
            conversation.current = id;
            on.current.onCreated(id, event.data.title ?? "New chat");
          }
          if (stopWanted.current) void requestStop(id).catch(() => undefined); // Stop before the id was known
          setMessages((old) =>
            old.map((m) => {
              if (m.key === question && m.id === undefined) {
                return { ...m, id: userId, siblingIds: [...(m.siblingIds ?? []).filter((s) => s > 0), userId] };
              }
              if (m.key !== target) return m;
              // a new answer joins its versions at the end; one being followed keeps its place among them
              const known = (m.siblingIds ?? []).filter((s) => s > 0);
              const siblingIds =
                answerId === undefined ? m.siblingIds : known.includes(answerId) ? known : [...known, answerId];
              return {
                ...m,
                id: answerId,
                parentId: userId,
                siblingIds,
                content: following ? "" : m.content, // a follow replays the answer from token 0
                waiting: { queuePosition: event.data.queue_position ?? 0, coldStart: event.data.cold_start ?? false },
              };
            }),
          );
          if (event.data.context) {
            const c = event.data.context;
            setContext({ tokens: c.tokens, limit: c.limit, budget: c.budget ?? c.limit, dropped: c.dropped_messages });
          }
          break;
        }
        case "warning":
          if (event.data.code === "context_truncated") {
            setContext((c) => (c ? { ...c, dropped: event.data.dropped_messages } : c));
          } else on.current.onBanner(event.data.message);
          break;
        case "token":
          patch(target, (m) => ({ content: m.content + event.data.text, waiting: null }));
          break;
        case "done":
          patch(target, {
            id: event.data.assistant_message_id,
            finishReason: event.data.finish_reason,
            tokens: event.data.tokens,
            tokensPerSecond: following ? undefined : event.data.tokens_per_second,
            streaming: false,
            waiting: null,
          });
          break;
        case "error":
          patch(target, { streaming: false, waiting: null, finishReason: "error", ...errorShown(event.data) });
          break;
      }
    },
    [patch],
  );

  const follow = useCallback(
    async (target: string, id: number) => {
      const abort = new AbortController();
      controller.current = abort;
      try {
        await followChat(id, null, abort.signal, handler(target, null, true));
      } catch (error) {
        if (!abort.signal.aborted) {
          const why = describe(error);
          patch(target, {
            streaming: false,
            waiting: null,
            // a server still up finishes and saves the answer; one that stopped kept its last save (every
            // quarter second), which may be shorter than what was shown here
            error: `The connection broke mid-answer (${why}). If the server is still up, it finishes the answer: reload to see it; if it stopped, what it had saved is kept. Or Retry.`,
            retry: true,
          });
        }
      } finally {
        if (controller.current === abort) controller.current = null;
      }
    },
    [handler, patch],
  );

  /** Show a conversation read from the server (null: a new chat); follow its last answer if it is still running. */
  const show = useCallback(
    (id: number | null, detail: ConversationDetail | null, hold = false) => {
      controller.current?.abort(); // only our reading stops: the server finishes and saves the answer
      stopWanted.current = false;
      conversation.current = id;
      const shown = detail ? detail.messages.map(fromStored) : [];
      setHoldView(hold);
      // the same conversation read again: an answer's speed, which only its own stream told, stays shown
      setMessages((old) => {
        if (!hold) return shown;
        const speed = new Map(old.filter((m) => m.tokensPerSecond != null).map((m) => [m.id, m.tokensPerSecond]));
        return shown.map((m) => (speed.has(m.id) ? { ...m, tokensPerSecond: speed.get(m.id) } : m));
      });
      const c = detail?.context;
      setContext(c ? { tokens: c.tokens, limit: c.limit, budget: c.budget, dropped: c.dropped_messages } : null);
      const last = shown.at(-1);
      if (id !== null && last?.streaming) void follow(last.key, id);
    },
    [follow],
  );

  const reload = useCallback(async (hold = false) => {
    const id = conversation.current;
    if (id === null) return;
    try {
      const detail = await readConversation(id);
      if (conversation.current === id) show(id, detail, hold);
    } catch (error) {
      on.current.onBanner(`Could not load the conversation: ${describe(error)}`);
    }
  }, [show]);

  /** Stream an answer: `before` is the list kept above the new rows, `rows` the new question (if any) and answer. */
  async function run(before: UiMessage[], rows: UiMessage[], request: ChatRequest, refusedText: string | null) {
    const answer = rows[rows.length - 1];
    const question = rows.length > 1 ? rows[0].key : null;
    const previous = messages;
    stopWanted.current = false;
    setMessages([...before, ...rows]);
    const abort = new AbortController();
    controller.current = abort;
    let started = false;
    const onEvent = handler(answer.key, question, false);
    try {
      await streamChat(request, abort.signal, (event) => {
        started = true;
        onEvent(event);
      });
    } catch (error) {
      if (abort.signal.aborted) {
        patch(answer.key, (m) => ({ streaming: false, waiting: null, finishReason: m.finishReason ?? null }));
      } else if (!started && error instanceof ApiError) {
        // refused (422, 429, 503) or unreachable before anything was stored: take the rows back
        setMessages(previous);
        if (refusedText !== null) on.current.onRefused(refusedText, error);
        else on.current.onBanner(error.message);
        // another tab or device wrote here meanwhile (its answer still being written): show what the server has
        if (error.code === "answer_in_progress") void reloadRef.current(true);
      } else if (started && conversation.current !== null && error instanceof StreamBroken) {
        void follow(answer.key, conversation.current); // the server goes on: pick the answer up again
        return;
      } else {
        patch(answer.key, { streaming: false, waiting: null, error: describe(error), retry: true });
      }
    } finally {
      if (controller.current === abort) controller.current = null;
      if (conversation.current !== null) on.current.onFinished(conversation.current);
    }
  }

  const pending = (role: "user" | "assistant", content: string, siblingIds: number[]): UiMessage => ({
    key: key(),
    role,
    content,
    siblingIds,
    ...(role === "assistant" ? { streaming: true, waiting: { queuePosition: 0, coldStart: false } } : {}),
  });

  function send(text: string, settings: Sampling | null) {
    if (streaming) return;
    const rows = [pending("user", text, []), pending("assistant", "", [])];
    void run(messages, rows, { conversation_id: conversation.current, message: text, ...forRequest(settings) }, text);
  }

  /** A new version of the user message at `index`: a sibling question with its own answer. */
  function edit(index: number, text: string, settings: Sampling | null) {
    const old = messages[index];
    if (streaming || conversation.current === null || old?.role !== "user" || old.id === undefined) return;
    const rows = [pending("user", text, old.siblingIds ?? [old.id]), pending("assistant", "", [])];
    const request = { conversation_id: conversation.current, message: text, parent_id: old.parentId ?? null, ...forRequest(settings) };
    void run(messages.slice(0, index), rows, request, text);
  }

  /** Another answer to the question the answer at `index` replied to: a sibling answer. */
  function regenerate(index: number, settings: Sampling | null) {
    const old = messages[index];
    if (streaming || conversation.current === null || old?.role !== "assistant") return;
    if (old.id === undefined) return;
    const rows = [pending("assistant", "", old.siblingIds ?? [old.id])];
    void run(messages.slice(0, index), rows, { conversation_id: conversation.current, regenerate: old.id, ...forRequest(settings) }, null);
  }

  /** Show another version; an answer streaming in goes on on the server (show() stops only our reading). */
  async function switchTo(siblingId: number) {
    const id = conversation.current;
    if (id === null) return;
    try {
      await switchBranch(id, siblingId);
      await reload(true); // the view stays on the message whose version changed
    } catch (error) {
      on.current.onBanner(`Could not switch versions: ${describe(error)}`);
    }
  }

  async function stop() {
    const abort = controller.current;
    if (!abort) return;
    const id = conversation.current;
    if (id === null) {
      stopWanted.current = true; // asked before the server said the id: meta sends the stop
      return;
    }
    try {
      await requestStop(id);
    } catch (error) {
      on.current.onBanner(`Could not ask the server to stop: ${describe(error)}`);
      return;
    }
    setTimeout(() => {
      if (controller.current === abort) abort.abort(); // normally `done` (stopped) has arrived by then
    }, STOP_GRACE_MS);
  }

  useEffect(() => () => controller.current?.abort(), []);

  // back to this tab: another tab or device may have added turns meanwhile; show the server's version
  // (not while this tab streams an answer of its own, and without moving the view)
  const reloadRef = useRef(reload);
  useEffect(() => {
    reloadRef.current = reload;
  }, [reload]);
  useEffect(() => {
    const visible = () => {
      if (document.visibilityState === "visible" && controller.current === null) void reloadRef.current(true);
    };
    document.addEventListener("visibilitychange", visible);
    return () => document.removeEventListener("visibilitychange", visible);
  }, []);

  return { messages, context, holdView, streaming, show, reload, send, edit, regenerate, switchTo, stop };
}
