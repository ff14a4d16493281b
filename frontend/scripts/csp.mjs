// After `next build`: the Content-Security-Policy of the exported pages, written to out/_csp.json (the
// local router sends it with every page) and out/_csp.conf (nginx includes it). Scripts run only from this
// origin, plus the inline scripts the export itself contains, each allowed by its SHA-256 hash (Next.js
// writes its page data into inline <script> tags, and the theme is set by one before the first paint).
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "out");

function* pages(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* pages(file);
    else if (entry.name.endsWith(".html")) yield file;
  }
}

/** The bodies of the <script> tags without a src attribute, as the browser hashes them. */
export function inlineScripts(html) {
  const found = [];
  for (const match of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    if (!/\bsrc\s*=/i.test(match[1]) && match[2].length > 0) found.push(match[2]);
  }
  return found;
}

export function policy(hashes) {
  return [
    "default-src 'self'",
    `script-src 'self' ${[...hashes].sort().join(" ")}`.trim(),
    "style-src 'self' 'unsafe-inline'", // React's style attributes; no script can run through them
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const hashes = new Set();
  let count = 0;
  for (const file of pages(OUT)) {
    count += 1;
    for (const body of inlineScripts(readFileSync(file, "utf8"))) {
      hashes.add(`'sha256-${createHash("sha256").update(body, "utf8").digest("base64")}'`);
    }
  }
  const value = policy(hashes);
  writeFileSync(path.join(OUT, "_csp.json"), JSON.stringify({ policy: value }) + "\n");
  writeFileSync(path.join(OUT, "_csp.conf"), `add_header Content-Security-Policy "${value}" always;\n`);
  console.log(`csp: ${hashes.size} inline script hashes from ${count} pages -> out/_csp.json, out/_csp.conf`);
}
