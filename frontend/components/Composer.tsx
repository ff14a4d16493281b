"use client";

import { useEffect, useRef, useState } from "react";

import { SendIcon, StopIcon } from "./icons";

const MAX_CHARS = 4000; // the API's limit (functions/chat/schemas.py)

/** A message the server refused before streaming: its text comes back to the composer, the reason beside it. */
export interface Refused {
  text: string;
  error: string;
  n: number; // counts refusals: each one starts the composer again
}

interface Props {
  streaming: boolean;
  onSend: (text: string) => void;
  onStop: () => void;
  refused: Refused | null;
  gauge?: React.ReactNode;
}

/** `refused` starts it with that text and reason: ChatApp keys the composer on it, so a refusal remounts it. */
export default function Composer({ streaming, onSend, onStop, refused, gauge }: Props) {
  const [text, setText] = useState(refused?.text ?? "");
  const [error, setError] = useState<string | null>(refused?.error ?? null);
  const area = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (!refused) return;
    requestAnimationFrame(grow);
    area.current?.focus();
  }, [refused]);

  // ready to type: on a computer when the page opens (a phone's keyboard would cover it), and whenever an
  // answer ends while nothing else has the focus (Stop, the button pressed, is gone then)
  useEffect(() => {
    if (window.matchMedia?.("(pointer: fine)").matches) area.current?.focus();
  }, []);
  useEffect(() => {
    const away = document.activeElement;
    if (!streaming && (away === null || away === document.body)) area.current?.focus();
  }, [streaming]);

  function grow() {
    const el = area.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
  }

  function submit() {
    const message = text.trim();
    if (!message || streaming) return;
    onSend(message);
    setText("");
    setError(null);
    requestAnimationFrame(grow);
  }

  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
      className="mx-auto w-full max-w-3xl px-3 pb-3 sm:px-6 sm:pb-5"
    >
      <div className="flex items-end gap-2 rounded-2xl border border-zinc-300 bg-white p-2 shadow-sm focus-within:border-sky-500 dark:border-zinc-700 dark:bg-zinc-800">
        <textarea
          ref={area}
          rows={1}
          value={text}
          maxLength={MAX_CHARS}
          placeholder="Message SLM"
          aria-label="Message"
          onChange={(e) => {
            setText(e.target.value);
            grow();
          }}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
              e.preventDefault();
              submit();
            }
          }}
          className="max-h-[200px] flex-1 resize-none bg-transparent px-2 py-1.5 outline-none"
        />
        {streaming ? (
          <button key="stop" type="button" onClick={onStop} aria-label="Stop" title="Stop" className="rounded-full bg-zinc-900 p-2 text-white dark:bg-zinc-100 dark:text-zinc-900">
            <StopIcon />
          </button>
        ) : (
          <button
            key="send"
            type="submit"
            disabled={!text.trim()}
            aria-label="Send"
            title="Send (Enter)"
            className="rounded-full bg-sky-700 p-2 text-white disabled:opacity-40"
          >
            <SendIcon />
          </button>
        )}
      </div>
      {error && (
        <p role="alert" data-testid="composer-error" className="mt-1.5 text-sm text-red-600 dark:text-red-400">
          {error}
        </p>
      )}
      <div className="mt-1.5 flex items-center justify-center gap-3 text-xs text-zinc-500 dark:text-zinc-400">
        <span>A 36M-parameter model trained from scratch: it makes things up.</span>
        {gauge}
      </div>
    </form>
  );
}
