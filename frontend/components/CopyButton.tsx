"use client";

import { useState } from "react";

import { copyText } from "@/lib/clipboard";

import { CopyIcon } from "./icons";

/** A button that copies `text()` and says whether that worked. */
export default function CopyButton({ text, label, className }: { text: () => string; label: string; className?: string }) {
  const [state, setState] = useState<"idle" | "copied" | "failed">("idle");
  async function copy() {
    setState((await copyText(text())) ? "copied" : "failed");
    setTimeout(() => setState("idle"), 1500);
  }
  return (
    <button type="button" onClick={copy} aria-label={label} title={label} className={className}>
      <CopyIcon width={14} height={14} />
      <span>{state === "copied" ? "Copied" : state === "failed" ? "Copy failed" : "Copy"}</span>
    </button>
  );
}
