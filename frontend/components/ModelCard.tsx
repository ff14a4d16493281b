"use client";

import Link from "next/link";
import { useEffect, useState } from "react";

import { apiJson } from "@/lib/api";
import { goToLogin, readSession } from "@/lib/session";

type Card = Record<string, unknown> & { name?: string; description?: string; parameters?: number };

const SECTIONS: [string, string][] = [
  ["data", "Training data"],
  ["scores", "Scores"],
  ["training", "Training"],
  ["config", "Architecture"],
  ["quantization", "Weights"],
  ["license", "Licence notes"],
  ["serving", "Serving"],
];

function label(key: string): string {
  return key.replace(/_/g, " ").replace(/^\w/, (c) => c.toUpperCase());
}

/** Any JSON value from the card: objects as definition lists, arrays as lists. */
function Value({ value }: { value: unknown }) {
  if (value === null || value === undefined) return <span className="text-zinc-500">—</span>;
  if (Array.isArray(value)) {
    if (value.length === 0) return <span className="text-zinc-500">none</span>;
    return (
      <ul className="space-y-2">
        {value.map((item, i) => (
          <li key={i} className="rounded-lg border border-zinc-200 p-2 dark:border-zinc-800">
            <Value value={item} />
          </li>
        ))}
      </ul>
    );
  }
  if (typeof value === "object") {
    return (
      <dl className="grid grid-cols-[minmax(6rem,auto)_1fr] gap-x-4 gap-y-1 text-sm">
        {Object.entries(value as Record<string, unknown>).map(([k, v]) => (
          <div key={k} className="contents">
            <dt className="text-zinc-500">{label(k)}</dt>
            <dd className="min-w-0 break-words">
              <Value value={v} />
            </dd>
          </div>
        ))}
      </dl>
    );
  }
  if (typeof value === "number") return <span>{Number.isInteger(value) ? value.toLocaleString("en") : value.toPrecision(4)}</span>;
  const text = String(value);
  if (/^https?:\/\//.test(text))
    return (
      <a href={text} className="text-sky-600 underline dark:text-sky-400" target="_blank" rel="noopener noreferrer">
        {text}
      </a>
    );
  return <span className="whitespace-pre-wrap">{text}</span>;
}

export default function ModelCard() {
  const [card, setCard] = useState<Card | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!readSession()) {
      goToLogin();
      return;
    }
    apiJson<Card>("chat", "/api/model")
      .then(setCard)
      .catch((e: Error) => setError(e.message));
  }, []);

  // An int8 checkpoint keeps most weights outside torch parameters: count those too.
  const quantized = card?.quantization as { int8_parameters?: number; fp32_parameters?: number } | undefined;
  const parameters = Math.max(card?.parameters ?? 0, (quantized?.int8_parameters ?? 0) + (quantized?.fp32_parameters ?? 0));
  const millions = parameters ? `${(parameters / 1e6).toFixed(1)}M` : "?";
  const shown = new Set(["name", "description", "parameters", ...SECTIONS.map(([k]) => k)]);
  return (
    <main className="mx-auto max-w-3xl space-y-6 px-4 py-8">
      <Link href="/" className="text-sm text-sky-600 underline dark:text-sky-400">
        ← Back to the chat
      </Link>
      {error && (
        <p role="alert" className="rounded-lg bg-red-500/15 px-3 py-2 text-sm text-red-700 dark:text-red-300">
          Could not load the model card: {error}
        </p>
      )}
      {!card && !error && <p className="text-zinc-500">Loading…</p>}
      {card && (
        <>
          <header className="space-y-2">
            <h1 className="text-2xl font-semibold">Model: {card.name}</h1>
            <p className="text-zinc-600 dark:text-zinc-300">
              {card.description ??
                `A ${millions}-parameter GPT language model trained from scratch, with its own tokenizer. It is small: it writes fluent-looking text but often gets facts wrong, so do not rely on what it says.`}
            </p>
            <p className="text-sm text-zinc-500">{parameters.toLocaleString("en")} parameters</p>
          </header>
          {SECTIONS.filter(([k]) => card[k] !== undefined).map(([k, heading]) => (
            <section key={k} className="space-y-2">
              <h2 className="text-lg font-semibold">{heading}</h2>
              <Value value={card[k]} />
            </section>
          ))}
          {Object.keys(card).some((k) => !shown.has(k)) && (
            <section className="space-y-2">
              <h2 className="text-lg font-semibold">More</h2>
              <Value value={Object.fromEntries(Object.entries(card).filter(([k]) => !shown.has(k)))} />
            </section>
          )}
        </>
      )}
    </main>
  );
}
