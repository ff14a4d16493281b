"use client";

import { useEffect, useRef } from "react";

import CopyButton from "./CopyButton";
import { RefreshIcon } from "./icons";
import Markdown from "./Markdown";

export interface UiMessage {
  key: string;
  id?: number;
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

interface Props {
  messages: UiMessage[];
  dropped: number; // the model no longer sees this many of the oldest messages
  contextLimit: number;
  onRegenerate: () => void;
  busy: boolean;
}

const small = "flex items-center gap-1 rounded px-1.5 py-0.5 text-xs text-zinc-500 hover:bg-zinc-200 dark:hover:bg-zinc-800";

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

export default function MessageList({ messages, dropped, contextLimit, onRegenerate, busy }: Props) {
  const end = useRef<HTMLDivElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const lastAssistant = messages.findLastIndex((m) => m.role === "assistant");

  const content = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (stick.current) end.current?.scrollIntoView({ block: "end" });
  }, [messages]);

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
          <div key={m.key}>
            {dropped > 0 && i === dropped && (
              <div role="note" data-testid="context-divider" className="mb-5 flex items-center gap-3 text-xs text-amber-600 dark:text-amber-400">
                <span className="h-px flex-1 bg-amber-500/40" />
                <span className="text-center">
                  The model no longer sees the {dropped} message{dropped === 1 ? "" : "s"} above: they fell outside its{" "}
                  {contextLimit}-token memory
                </span>
                <span className="h-px flex-1 bg-amber-500/40" />
              </div>
            )}
            {m.role === "user" ? (
              <div className="flex justify-end" data-testid="message-user">
                <div className="max-w-[85%] whitespace-pre-wrap break-words rounded-2xl rounded-br-md bg-sky-600 px-4 py-2 text-white">
                  {m.content}
                </div>
              </div>
            ) : (
              <div className="flex flex-col items-start" data-testid="message-assistant" data-streaming={m.streaming ? "true" : "false"}>
                <div className="max-w-full rounded-2xl rounded-bl-md bg-zinc-100 px-4 py-2 dark:bg-zinc-800 sm:max-w-[85%]">
                  {m.content ? (
                    <div data-testid="message-text">
                      <Markdown text={m.content} />
                    </div>
                  ) : m.streaming && m.waiting ? (
                    <span className="text-sm text-zinc-500" role="status">
                      {waitingText(m.waiting)}
                      <span className="dots">
                        <span>.</span>
                        <span>.</span>
                        <span>.</span>
                      </span>
                    </span>
                  ) : (
                    <span className="text-sm italic text-zinc-500">(no text)</span>
                  )}
                  {m.streaming && m.content && <span className="ml-0.5 inline-block h-4 w-2 animate-pulse bg-zinc-400 align-middle" />}
                </div>
                {m.error && (
                  <p role="alert" className="mt-1 text-sm text-red-600 dark:text-red-400">
                    {m.error}
                  </p>
                )}
                {!m.streaming && (
                  <div className="mt-1 flex flex-wrap items-center gap-1">
                    <CopyButton text={() => m.content} label="Copy message" className={small} />
                    {i === lastAssistant && (
                      <button
                        type="button"
                        disabled={busy}
                        onClick={onRegenerate}
                        className={`${small} disabled:opacity-50`}
                        title="Sends your last message again as a new turn"
                      >
                        <RefreshIcon width={14} height={14} />
                        <span>{m.retry ? "Retry" : "Regenerate"}</span>
                      </button>
                    )}
                    <span className="text-xs text-zinc-500" data-testid="message-stats">
                      {stats(m)}
                    </span>
                  </div>
                )}
              </div>
            )}
          </div>
        ))}
        <div ref={end} />
      </div>
    </div>
  );
}
