"use client";

import { useRef, useState } from "react";

import { type Bounds, clamp, defaults, FIELDS, range, type Sampling } from "@/lib/settings";

import { CloseIcon } from "./icons";
import { useDialog } from "./useDialog";

/** A number typed as text: what is typed stays as typed ("0", "0.", "" on the way to "0.5"), a value within
 *  the range is taken at once, and leaving the field (or Enter) takes the nearest allowed value. Clamping
 *  every keystroke made "0.5" impossible to type (the "0" became 0.05 before the "." came). */
function NumberField({ id, value, min, max, step, onCommit }: {
  id: string;
  value: number;
  min: number;
  max: number;
  step: number;
  onCommit: (value: number) => void;
}) {
  const [draft, setDraft] = useState<string | null>(null); // null: show the value
  const commit = () => {
    if (draft !== null && draft.trim() !== "" && Number.isFinite(Number(draft))) onCommit(Number(draft));
    setDraft(null);
  };
  return (
    <input
      id={id}
      type="number"
      min={min}
      max={max}
      step={step}
      value={draft ?? value}
      onChange={(e) => {
        const text = e.target.value;
        setDraft(text);
        const number = Number(text);
        if (text.trim() !== "" && number >= min && number <= max) onCommit(number);
      }}
      onBlur={commit}
      onKeyDown={(e) => e.key === "Enter" && commit()}
      className="w-24 rounded border border-zinc-300 bg-transparent px-2 py-0.5 text-right text-sm dark:border-zinc-700"
    />
  );
}

export default function SettingsPanel({
  settings,
  bounds,
  onChange,
  onClose,
}: {
  settings: Sampling;
  bounds: Bounds; // the served model's (GET /api/model)
  onChange: (s: Sampling) => void;
  onClose: () => void;
}) {
  const names = Object.keys(FIELDS) as (keyof Sampling)[];
  const set = (name: keyof Sampling, value: number) => onChange({ ...settings, [name]: clamp(name, value, bounds) });
  const panel = useRef<HTMLElement>(null);
  useDialog(panel, onClose);
  return (
    <div className="fixed inset-0 z-40 flex justify-end bg-black/40" onClick={onClose}>
      <section
        role="dialog"
        aria-modal="true"
        aria-labelledby="settings-title"
        ref={panel}
        onClick={(e) => e.stopPropagation()}
        className="h-full w-full max-w-sm space-y-5 overflow-y-auto bg-white p-5 shadow-xl dark:bg-zinc-900"
      >
        <div className="flex items-center justify-between">
          <h2 id="settings-title" className="text-lg font-semibold">
            Settings
          </h2>
          <button type="button" onClick={onClose} aria-label="Close settings" className="rounded p-1 hover:bg-zinc-200 dark:hover:bg-zinc-800">
            <CloseIcon />
          </button>
        </div>
        {names.map((name) => {
          const limit = { ...FIELDS[name], ...range(name, bounds) };
          return (
            <div key={name} className="space-y-1">
              <div className="flex items-center justify-between gap-3">
                <label htmlFor={`setting-${name}`} className="text-sm font-medium">
                  {limit.label}
                </label>
                <NumberField
                  id={`setting-${name}`}
                  min={limit.min}
                  max={limit.max}
                  step={limit.step}
                  value={settings[name]}
                  onCommit={(value) => set(name, value)}
                />
              </div>
              <input
                type="range"
                aria-label={`${limit.label} slider`}
                min={limit.min}
                max={limit.max}
                step={limit.step}
                value={settings[name]}
                onChange={(e) => set(name, Number(e.target.value))}
                className="w-full accent-sky-600"
              />
              <p className="text-xs text-zinc-500 dark:text-zinc-400">{limit.help}</p>
              {name === "min_new_tokens" && settings.min_new_tokens > settings.max_new_tokens && (
                <p role="status" data-testid="min-over-max" className="text-xs text-amber-700 dark:text-amber-400">
                  More than Max tokens: answers are sent with Min tokens {settings.max_new_tokens}, the most an answer has.
                </p>
              )}
            </div>
          );
        })}
        <button
          type="button"
          onClick={() => onChange(defaults(bounds))}
          className="rounded-lg border border-zinc-300 px-3 py-1.5 text-sm hover:bg-zinc-100 dark:border-zinc-700 dark:hover:bg-zinc-800"
        >
          Reset to defaults
        </button>
        <p className="text-xs text-zinc-500 dark:text-zinc-400">Saved in this browser.</p>
      </section>
    </div>
  );
}
