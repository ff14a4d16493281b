// Sampling settings for /api/chat, kept in localStorage. Their defaults and ranges are the server's
// (GET /api/model: limits.sampling, read from the API's own schema and the loaded model's window): this
// file only says how to show them.

import { apiJson } from "./api";

export interface Sampling {
  temperature: number;
  top_p: number;
  top_k: number;
  max_new_tokens: number;
  min_new_tokens: number;
}

export interface Bound {
  default: number;
  minimum: number;
  maximum: number;
  exclusive_minimum?: boolean; // the minimum itself is refused (top_p > 0)
}
export type Bounds = Record<keyof Sampling, Bound>;

export const FIELDS: Record<keyof Sampling, { step: number; label: string; help: string }> = {
  temperature: { step: 0.05, label: "Temperature", help: "0 always picks the likeliest word" },
  top_p: { step: 0.05, label: "Top-p", help: "sample from this share of probability" },
  top_k: { step: 1, label: "Top-k", help: "sample from this many words; 0 = off" },
  max_new_tokens: { step: 1, label: "Max tokens", help: "the longest answer, in tokens" },
  min_new_tokens: { step: 1, label: "Min tokens", help: "the shortest answer: no end of text before it" },
};

const KEY = "slm.settings";
const NAMES = Object.keys(FIELDS) as (keyof Sampling)[];

/** The range a field may take, as the panel shows it. */
export function range(name: keyof Sampling, bounds: Bounds): { min: number; max: number } {
  const bound = bounds[name];
  return { min: bound.exclusive_minimum ? bound.minimum + FIELDS[name].step : bound.minimum, max: bound.maximum };
}

export function defaults(bounds: Bounds): Sampling {
  return Object.fromEntries(NAMES.map((name) => [name, bounds[name].default])) as unknown as Sampling;
}

export function clamp(name: keyof Sampling, value: number, bounds: Bounds): number {
  const { min, max } = range(name, bounds);
  if (!Number.isFinite(value)) return bounds[name].default;
  const clamped = Math.min(max, Math.max(min, value));
  return name === "top_k" || name.endsWith("_new_tokens") ? Math.round(clamped) : clamped;
}

/** The saved settings within the model's bounds; the defaults for whatever was never saved. */
export function loadSettings(bounds: Bounds): Sampling {
  const settings = defaults(bounds);
  try {
    const stored = JSON.parse(window.localStorage.getItem(KEY) ?? "{}") as Partial<Sampling>;
    for (const name of NAMES) {
      if (typeof stored[name] === "number") settings[name] = clamp(name, stored[name], bounds);
    }
  } catch {
    // damaged storage: the defaults
  }
  return settings;
}

export function saveSettings(settings: Sampling): void {
  window.localStorage.setItem(KEY, JSON.stringify(settings));
}

/** The settings as the API takes them: the shortest answer is never longer than the longest. Before the
 *  model's bounds are known (it is still loading) a request sends none, and the server's defaults apply. */
export function forRequest(settings: Sampling | null): Partial<Sampling> {
  if (!settings) return {};
  return { ...settings, min_new_tokens: Math.min(settings.min_new_tokens, settings.max_new_tokens) };
}

/** The sampling bounds of the served model. */
export async function readBounds(): Promise<Bounds> {
  const card = await apiJson<{ limits: { sampling: Bounds } }>("chat", "/api/model");
  return card.limits.sampling;
}
