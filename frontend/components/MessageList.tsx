"use client";

import { memo, useEffect, useRef, useState } from "react";

import CopyButton from "./CopyButton";
import { RefreshIcon } from "./icons";
import Markdown from "./Markdown";

export interface UiMessage {
  key: string;
  id?: number;
  parentId?: number | null;
  siblingIds?: number[]; // the versions of this turn, oldest first (itself included)
  role: "user" | "assistant";
  content: string;
  finishReason?: string | null;
  tokens?: number | null;
  tokensPerSecond?: number;
  streaming?: boolean;
  waiting?: { queuePosition: number; coldStart: boolean } | null;
  error?: string;
  retry?: boolean; // the connection failed: offer to ask again
}

export interface MessageActions {
  regenerate: (index: number) => void;
  edit: (index: number, text: string) => void;
  switchTo: (siblingId: number) => void;
}

interface Props {
  messages: UiMessage[];
  dropped: number; // the model no longer sees this many of the oldest messages
  contextLimit: number;
  actions: MessageActions;
  busy: boolean;
  holdView?: boolean; // a version switch replaced the messages: no jump to the newest question
}

// at least 24 x 24 px (WCAG's minimum target size): the version arrows were 17 x 20 on a phone
const small =
  "flex min-h-6 min-w-6 items-center justify-center gap-1 rounded px-1.5 py-1 text-xs text-zinc-500 dark:text-zinc-400 hover:bg-zinc-200 disabled:opacity-50 dark:hover:bg-zinc-800";

function waitingText(waiting: NonNullable<UiMessage["waiting"]>): string {
  if (waiting.queuePosition > 0) return `Waiting in line: position ${waiting.queuePosition}`;
  if (waiting.coldStart) return "Warming up the model";
  return "Thinking";
}

function stats(m: UiMessage): string {
  const parts: string[] = [];
  if (m.tokens != null) parts.push(`${m.tokens} tokens`);
  if (m.tokensPerSecond != null) parts.push(`${m.tokensPerSecond.toFixed(1)} tokens/s`);
  if (m.finishReason === "length") parts.push("hit max tokens");
  else if (m.finishReason === "stopped") parts.push("stopped");
  else if (m.finishReason === "error") parts.push("failed");
  return parts.join(" · ");
}

/** "‹ k/n ›" under a message with other versions. Switching works while an answer streams: the server
 * finishes and saves it, and switching back follows it. */
function Versions({ m, onSwitch }: { m: UiMessage; onSwitch: (id: number) => void }) {
  const ids = m.siblingIds ?? [];
  const at = m.id === undefined ? ids.length - 1 : ids.indexOf(m.id);
  if (ids.length < 2 || at < 0) return null;
  return (
    <span className="flex items-center text-xs text-zinc-500 dark:text-zinc-400" data-testid="versions">
      <button type="button" className={small} disabled={at === 0} onClick={() => onSwitch(ids[at - 1])} aria-label="Previous version">
        ‹
      </button>
      <span data-testid="version-position">
        {at + 1}/{ids.length}
      </span>
      <button
        type="button"
        className={small}
        disabled={at === ids.length - 1}
        onClick={() => onSwitch(ids[at + 1])}
        aria-label="Next version"
      >
        ›
      </button>
    </span>
  );
}

function UserRow({ m, index, busy, actions }: { m: UiMessage; index: number; busy: boolean; actions: MessageActions }) {
  const [editing, setEditing] = useState<string | null>(null);
  if (editing !== null) {
    return (
      <form
        className="ml-auto flex max-w-[85%] flex-col gap-2"
        onSubmit={(e) => {
          e.preventDefault();
          const text = editing.trim();
          if (!text) return;
          setEditing(null);
          actions.edit(index, text);
        }}
      >
        <textarea
          value={editing}
          onChange={(e) => setEditing(e.target.value)}
          onKeyDown={(e) => e.key === "Escape" && setEditing(null)}
          aria-label="Edit message"
          rows={3}
          maxLength={4000}
          autoFocus
          className="w-full min-w-[16rem] rounded-xl border border-zinc-300 bg-white p-2 dark:border-zinc-700 dark:bg-zinc-800"
        />
        <div className="flex justify-end gap-2 text-sm">
          <button type="button" onClick={() => setEditing(null)} className="rounded-lg px-3 py-1 hover:bg-zinc-200 dark:hover:bg-zinc-800">
            Cancel
          </button>
          <button type="submit" disabled={busy || !editing.trim()} className="rounded-lg bg-sky-700 px-3 py-1 text-white disabled:opacity-50">
            Save &amp; send
          </button>
        </div>
      </form>
    );
  }
  return (
    <div className="flex flex-col items-end" data-testid="message-user">
      <div className="max-w-[85%] whitespace-pre-wrap break-words rounded-2xl rounded-br-md bg-sky-700 px-4 py-2 text-white">{m.content}</div>
      <div className="mt-1 flex items-center gap-1">
        <Versions m={m} onSwitch={actions.switchTo} />
        {m.id !== undefined && (
          <button type="button" className={small} disabled={busy} onClick={() => setEditing(m.content)} aria-label="Edit message">
            Edit
          </button>
        )}
      </div>
    </div>
  );
}

function AssistantRow({ m, index, last, busy, actions }: { m: UiMessage; index: number; last: boolean; busy: boolean; actions: MessageActions }) {
  return (
    <div className="flex flex-col items-start" data-testid="message-assistant" data-streaming={m.streaming ? "true" : "false"}>
      <div
        className="max-w-full rounded-2xl rounded-bl-md bg-zinc-100 px-4 py-2 dark:bg-zinc-800 sm:max-w-[85%]"
        aria-live={m.streaming ? "polite" : undefined}
        aria-busy={m.streaming ? true : undefined}
      >
        {m.content ? (
          <div data-testid="message-text">
            <Markdown text={m.content} />
          </div>
        ) : m.streaming ? (
          <span className="text-sm text-zinc-500 dark:text-zinc-400" role="status">
            {m.waiting ? waitingText(m.waiting) : "Thinking"}
            <span className="dots">
              <span>.</span>
              <span>.</span>
              <span>.</span>
            </span>
          </span>
        ) : (
          <span className="text-sm italic text-zinc-500 dark:text-zinc-400">(no text)</span>
        )}
        {m.streaming && m.content && <span className="ml-0.5 inline-block h-4 w-2 animate-pulse bg-zinc-400 align-middle" />}
      </div>
      {m.error && (
        <p role="alert" className="mt-1 text-sm text-red-600 dark:text-red-400">
          {m.error}
        </p>
      )}
      {m.streaming && m.id !== undefined && (
        <div className="mt-1 flex flex-wrap items-center gap-1">
          <Versions m={m} onSwitch={actions.switchTo} />
        </div>
      )}
      {!m.streaming && (
        <div className="mt-1 flex flex-wrap items-center gap-1">
          <Versions m={m} onSwitch={actions.switchTo} />
          <CopyButton text={() => m.content} label="Copy message" className={small} />
          {last && m.id !== undefined && (
            <button
              type="button"
              disabled={busy}
              onClick={() => actions.regenerate(index)}
              className={small}
              title="Another answer to the same question (the first one stays: switch with ‹ ›)"
            >
              <RefreshIcon width={14} height={14} />
              <span>{m.retry ? "Retry" : "Regenerate"}</span>
            </button>
          )}
          <span className="text-xs text-zinc-500 dark:text-zinc-400" data-testid="message-stats">
            {stats(m)}
          </span>
        </div>
      )}
    </div>
  );
}

/** One row; re-rendered only when its own message (or its place) changes, not on every token of another. */
const Row = memo(function Row({
  m,
  index,
  last,
  busy,
  divider,
  contextLimit,
  actions,
}: {
  m: UiMessage;
  index: number;
  last: boolean;
  busy: boolean;
  divider: number; // > 0: the divider goes above this row, naming that many messages
  contextLimit: number;
  actions: MessageActions;
}) {
  return (
    <div>
      {divider > 0 && (
        <div role="note" data-testid="context-divider" className="mb-5 flex items-center gap-3 text-xs text-amber-700 dark:text-amber-400">
          <span className="h-px flex-1 bg-amber-500/40" />
          <span className="text-center">
            The model no longer sees the {divider} message{divider === 1 ? "" : "s"} above: they do not fit in its{" "}
            {contextLimit}-token memory beside the room kept for the answer (Max tokens in the settings)
          </span>
          <span className="h-px flex-1 bg-amber-500/40" />
        </div>
      )}
      {m.role === "user" ? (
        <UserRow m={m} index={index} busy={busy} actions={actions} />
      ) : (
        <AssistantRow m={m} index={index} last={last} busy={busy} actions={actions} />
      )}
    </div>
  );
});

export default function MessageList({ messages, dropped, contextLimit, actions, busy, holdView = false }: Props) {
  const end = useRef<HTMLDivElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const lastAssistant = messages.findLastIndex((m) => m.role === "assistant");

  const content = useRef<HTMLDivElement>(null);

  // a question just sent (or another conversation opened) brings the view back down to it, even when the
  // user had scrolled up to read: the new question and its answer are what they look at next; a version
  // switched on an earlier message does not (the user reads where they clicked)
  const newestQuestion = messages.findLast((m) => m.role === "user")?.key;
  const shownQuestion = useRef(newestQuestion);
  useEffect(() => {
    if (newestQuestion !== shownQuestion.current && !holdView) stick.current = true;
    shownQuestion.current = newestQuestion;
    if (stick.current) end.current?.scrollIntoView({ block: "end" });
  }, [messages, newestQuestion, holdView]);

  useEffect(() => {
    // keep the newest text in view while it grows or the window is resized, unless the user scrolled up
    const observer = new ResizeObserver(() => stick.current && end.current?.scrollIntoView({ block: "end" }));
    if (content.current) observer.observe(content.current);
    if (box.current) observer.observe(box.current);
    return () => observer.disconnect();
  }, []);

  return (
    <div
      ref={box}
      onScroll={() => {
        const el = box.current;
        if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
      }}
      className="flex-1 overflow-y-auto"
    >
      <div ref={content} className="mx-auto max-w-3xl space-y-5 px-3 py-6 sm:px-6">
        {messages.map((m, i) => (
          <Row
            key={m.key}
            m={m}
            index={i}
            last={i === lastAssistant}
            busy={busy}
            divider={dropped > 0 && i === dropped ? dropped : 0}
            contextLimit={contextLimit}
            actions={actions}
          />
        ))}
        <div ref={end} />
      </div>
    </div>
  );
}
