// Sampling settings for /api/chat, kept in localStorage. Ranges are the API's (functions/chat/schemas.py).

export interface Sampling {
  temperature: number;
  top_p: number;
  top_k: number;
  max_new_tokens: number;
  min_new_tokens: number;
}

export const DEFAULTS: Sampling = { temperature: 0.8, top_p: 0.95, top_k: 50, max_new_tokens: 128, min_new_tokens: 0 };

export const LIMITS: Record<keyof Sampling, { min: number; max: number; step: number; label: string; help: string }> =
  {
    temperature: { min: 0, max: 2, step: 0.05, label: "Temperature", help: "0 always picks the likeliest word" },
    top_p: { min: 0.05, max: 1, step: 0.05, label: "Top-p", help: "sample from this share of probability" },
    top_k: { min: 0, max: 200, step: 1, label: "Top-k", help: "sample from this many words; 0 = off" },
    max_new_tokens: { min: 1, max: 383, step: 1, label: "Max tokens", help: "the longest answer, in tokens" },
    min_new_tokens: { min: 0, max: 383, step: 1, label: "Min tokens", help: "the shortest answer: no end of text before it" },
  };

const KEY = "slm.settings";

export function clamp(name: keyof Sampling, value: number): number {
  const { min, max } = LIMITS[name];
  if (!Number.isFinite(value)) return DEFAULTS[name];
  const clamped = Math.min(max, Math.max(min, value));
  return name === "top_k" || name.endsWith("_new_tokens") ? Math.round(clamped) : clamped;
}

export function loadSettings(): Sampling {
  try {
    const stored = JSON.parse(window.localStorage.getItem(KEY) ?? "{}") as Partial<Sampling>;
    const settings = { ...DEFAULTS };
    for (const name of Object.keys(DEFAULTS) as (keyof Sampling)[]) {
      if (typeof stored[name] === "number") settings[name] = clamp(name, stored[name]);
    }
    return settings;
  } catch {
    return { ...DEFAULTS }; // damaged storage: the defaults
  }
}

export function saveSettings(settings: Sampling): void {
  window.localStorage.setItem(KEY, JSON.stringify(settings));
}

/** The settings as the API takes them: the shortest answer is never longer than the longest. */
export function forRequest(settings: Sampling): Sampling {
  return { ...settings, min_new_tokens: Math.min(settings.min_new_tokens, settings.max_new_tokens) };
}
