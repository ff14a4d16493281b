"use client";

import Link from "next/link";
import { useEffect, useState } from "react";

import { apiJson } from "@/lib/api";
import { goToLogin, readSession } from "@/lib/session";
import { formatNumber, type Training, trainedCorpus, trainingStages } from "@/lib/training";

// GET /api/model: the checkpoint's config.json (model/checkpoint.py), read as a page people read.
interface Measure {
  loss: number;
  perplexity: number;
  bits_per_byte?: number;
}
interface SourceScore {
  tokens: number;
  gpt: Measure;
  bigram?: Measure;
  trigram?: Measure;
  ratio_to_trigram?: number;
  ratio_to_bigram?: number;
}
interface Scores {
  val_loss?: Record<string, number>;
  val_perplexity?: Record<string, number>;
  sources?: Record<string, SourceScore>;
  skills?: { exact_match: number; questions: number; per_skill: Record<string, number> };
  samples?: Record<string, string>;
}
interface CorpusSource {
  kind?: string;
  registry?: string;
  package?: string;
  licence?: string;
  files?: { split: string; records: number; tokens?: number }[];
}
interface Card {
  name?: string;
  description?: string;
  parameters?: number;
  config?: Record<string, string | number | boolean>;
  scores?: Record<string, Scores>;
  training?: Training;
  data?: Record<string, { corpus?: { sources?: Record<string, CorpusSource> }; sources?: Record<string, number> }>;
  license?: Record<string, string>;
  quantization?: { scheme?: string; int8_parameters?: number; fp32_parameters?: number; note?: string };
  serving?: { engine?: string; threads?: number; max_batch?: number; load_seconds?: number };
}

const num = formatNumber;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const th = "px-2 py-1.5 font-medium text-zinc-500 dark:text-zinc-400";
const td = "px-2 py-1.5 tabular-nums";

/** A table whose first column names the row; `text` marks the other columns that hold words (left-aligned),
 * the rest are numbers (right-aligned). */
function Table({
  head,
  rows,
  label,
  text = [],
  minWidth = "0",
}: {
  head: string[];
  rows: (string | React.ReactNode)[][];
  label: string;
  text?: number[];
  minWidth?: string; // below it the table scrolls sideways in its box instead of squeezing its words
}) {
  const align = (i: number) => (i === 0 || text.includes(i) ? "text-left" : "text-right");
  return (
    <div className="overflow-x-auto rounded-lg border border-zinc-200 dark:border-zinc-800">
      <table className="w-full text-sm" style={{ minWidth }} aria-label={label}>
        <thead className="bg-zinc-50 dark:bg-zinc-800/60">
          <tr>
            {head.map((h, i) => (
              <th key={h} scope="col" className={`${th} ${align(i)}`}>
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, r) => (
            <tr key={r} className="border-t border-zinc-200 dark:border-zinc-800">
              {row.map((cell, i) => (
                <td key={i} className={`${td} ${align(i)} ${i ? "" : "font-medium"}`}>
                  {cell}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Section({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <section className="space-y-2">
      <h2 className="text-lg font-semibold">{title}</h2>
      {children}
    </section>
  );
}

function architecture(config: Card["config"]): string {
  if (!config) return "";
  const parts = [
    `${config.n_layer} layers`,
    `${config.n_head} heads`,
    `${config.n_embd} dims`,
    `${num(Number(config.block_size), 0)}-token context`,
    `${num(Number(config.vocab_size), 0)}-token vocabulary`,
  ];
  const recipe = [
    config.norm === "rms" ? "RMSNorm" : config.norm === "layer" ? "LayerNorm" : null,
    config.pos === "rope" ? "RoPE" : config.pos === "learned" ? "learned positions" : null,
    config.mlp === "relu2" ? "ReLU² MLP" : config.mlp === "gelu" ? "GELU MLP" : null,
    config.qk_norm ? "QK-norm" : null,
  ].filter(Boolean);
  return [...parts, ...recipe].join(" · ");
}

function ratio(x: number | undefined) {
  if (x === undefined) return "—";
  const good = x < 1;
  return <span className={good ? "text-emerald-600 dark:text-emerald-400" : "text-amber-600 dark:text-amber-400"}>{x.toFixed(2)}×</span>;
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

  const q = card?.quantization;
  const parameters = card?.parameters ?? 0; // the count saved with the weights (an int8 model's included)
  const millions = parameters ? `${(parameters / 1e6).toFixed(1)}M` : "?";
  const precision = card?.scores ? (q && card.scores.int8 ? "int8" : Object.keys(card.scores)[0]) : undefined;
  const scores = precision ? card?.scores?.[precision] : undefined;
  const sources = Object.entries(scores?.sources ?? {}).sort((a, b) => b[1].tokens - a[1].tokens);
  const { sources: corpus, earlier } = trainedCorpus(card?.data);
  const licences = card?.license ?? {};

  return (
    <main className="mx-auto max-w-4xl space-y-7 px-4 py-8">
      <Link href="/" className="text-sm text-sky-700 underline dark:text-sky-400">
        ← Back to the chat
      </Link>
      {error && (
        <p role="alert" className="rounded-lg bg-red-500/15 px-3 py-2 text-sm text-red-700 dark:text-red-300">
          Could not load the model card: {error}
        </p>
      )}
      {!card && !error && <p className="text-zinc-500 dark:text-zinc-400">Loading…</p>}
      {card && (
        <>
          <header className="space-y-2">
            <h1 className="text-2xl font-semibold">Model: {card.name}</h1>
            <p className="text-zinc-600 dark:text-zinc-300">
              A {millions}-parameter GPT trained from scratch on this project&apos;s own data, with its own tokenizer. It is small: it
              writes fluent-looking text but often gets facts wrong, so do not rely on what it says.
            </p>
            <p className="text-sm text-zinc-500 dark:text-zinc-400">
              {parameters.toLocaleString("en")} parameters · {architecture(card.config)}
            </p>
          </header>

          <Section title="Architecture">
            <p className="text-sm text-zinc-600 dark:text-zinc-300">{card.description}</p>
          </Section>

          {sources.length > 0 && (
            <Section title="Scores on held-out text">
              <p className="text-sm text-zinc-600 dark:text-zinc-300">
                Per source, on text the model never trained on ({precision} weights, as served), beside Kneser-Ney bigram and trigram
                counts fitted on the same training text with the same tokenizer. Lower is better; a ratio under 1× beats the counts.
              </p>
              <Table
                label="Scores per source"
                head={["Source", "Tokens", "Loss", "Perplexity", "Bigram ppl", "Trigram ppl", "vs bigram", "vs trigram"]}
                minWidth="38rem"
                rows={sources.map(([name, s]) => [
                  name,
                  num(s.tokens, 0),
                  num(s.gpt.loss, 3),
                  num(s.gpt.perplexity, 1),
                  num(s.bigram?.perplexity, 1),
                  num(s.trigram?.perplexity, 1),
                  ratio(s.ratio_to_bigram),
                  ratio(s.ratio_to_trigram),
                ])}
              />
            </Section>
          )}

          {scores?.skills && (
            <Section title="Skills">
              <p className="text-sm text-zinc-600 dark:text-zinc-300">
                Exact answers to {num(scores.skills.questions, 0)} held-out questions (greedy decoding): {pct(scores.skills.exact_match)} in
                all.
              </p>
              <Table
                label="Skills"
                head={["Skill", "Exact match"]}
                rows={Object.entries(scores.skills.per_skill).map(([name, x]) => [name, pct(x)])}
              />
            </Section>
          )}

          {scores?.samples && (
            <Section title="Sample answers (greedy)">
              <ul className="space-y-2 text-sm">
                {Object.entries(scores.samples).map(([prompt, answer]) => (
                  <li key={prompt} className="rounded-lg border border-zinc-200 p-2 dark:border-zinc-800">
                    <p className="font-medium">{prompt}</p>
                    <p className="text-zinc-600 dark:text-zinc-300">{answer || "(no text)"}</p>
                  </li>
                ))}
              </ul>
            </Section>
          )}

          {card.training && (
            <Section title="Training">
              <Table
                label="Training stages"
                head={["Stage", "Steps", "Tokens", "Minutes", "Recipe", "Device", "Val loss"]}
                minWidth="38rem"
                text={[4, 5]}
                rows={trainingStages(card.training).map(([name, t]) => [
                  t.warm_start ? `${name} (from ${t.warm_start})` : name,
                  num(t.steps, 0),
                  num(t.tokens, 0),
                  num(t.minutes, 1),
                  t.recipe ?? "—",
                  `${t.device ?? "—"}${t.autocast ? `, ${t.autocast}` : ""}`,
                  num(t.val_loss, 3),
                ])}
              />
            </Section>
          )}

          {Object.keys(corpus).length > 0 && (
            <Section title="Data">
              <Table
                label="Data sources"
                head={["Source", "Kind", "From", "Training records", "Licence"]}
                minWidth="44rem"
                text={[1, 2, 4]}
                rows={Object.entries(corpus).map(([name, s]) => [
                  name,
                  s.kind ?? "—",
                  <span key="from" className="break-words">
                    {s.registry ? `${s.registry}: ${s.package}` : `generated by ${s.package ?? "model/corpus"}`}
                  </span>,
                  num(s.files?.filter((f) => f.split === "train").reduce((n, f) => n + f.records, 0), 0),
                  <span key="licence" className="break-words">
                    {s.licence ?? licences[name] ?? "—"}
                  </span>,
                ])}
              />
              {earlier.length > 0 && (
                <p className="text-xs text-zinc-500 dark:text-zinc-400">
                  Earlier stages, whose weights this one continues from, also trained on:{" "}
                  {earlier.map((name) => `${name} (${licences[name] ?? "licence not recorded"})`).join("; ")}.
                </p>
              )}
              {licences.weights && <p className="text-xs text-zinc-500 dark:text-zinc-400">Weights: {licences.weights}.</p>}
            </Section>
          )}

          {(q || card.serving) && (
            <Section title="Serving">
              <p className="text-sm text-zinc-600 dark:text-zinc-300">
                {q?.scheme && `Weights: ${q.scheme} (${q.note ?? ""}). `}
                {card.serving && `This server: ${card.serving.engine === "onnx" ? "ONNX Runtime" : "PyTorch"}, ${card.serving.threads} threads, up to ${card.serving.max_batch} answers decoded together, loaded in ${num(card.serving.load_seconds)} s.`}
              </p>
            </Section>
          )}
        </>
      )}
    </main>
  );
}
