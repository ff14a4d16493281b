"use client";

import { useRef } from "react";

import { type Bounds, clamp, defaults, FIELDS, range, type Sampling } from "@/lib/settings";

import { CloseIcon } from "./icons";
import { useDialog } from "./useDialog";

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
                <input
                  id={`setting-${name}`}
                  type="number"
                  min={limit.min}
                  max={limit.max}
                  step={limit.step}
                  value={settings[name]}
                  onChange={(e) => e.target.value !== "" && set(name, Number(e.target.value))}
                  className="w-20 rounded border border-zinc-300 bg-transparent px-2 py-0.5 text-right text-sm dark:border-zinc-700"
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
              <p className="text-xs text-zinc-500">{limit.help}</p>
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
        <p className="text-xs text-zinc-500">Saved in this browser.</p>
      </section>
    </div>
  );
}
