"use client";

import { useEffect, useRef, useState } from "react";

import { type ApiKey, changePassword, createKey, deleteAccount, deleteKey, listKeys, logoutEverywhere } from "@/lib/account";
import { ApiError } from "@/lib/api";
import { loadConfig } from "@/lib/config";
import { goToLogin, saveSession } from "@/lib/session";

import CopyButton from "./CopyButton";
import { CloseIcon } from "./icons";
import { useDialog } from "./useDialog";

const input = "w-full rounded-lg border border-zinc-300 bg-transparent px-3 py-1.5 text-sm dark:border-zinc-700";
const button = "rounded-lg border border-zinc-300 px-3 py-1.5 text-sm hover:bg-zinc-100 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800";

function describe(error: unknown): string {
  if (error instanceof ApiError) return Object.values(error.fields)[0] ?? error.message;
  return error instanceof Error ? error.message : String(error);
}

function Status({ text, ok }: { text: string | null; ok?: boolean }) {
  if (!text) return null;
  return (
    <p role={ok ? "status" : "alert"} className={`text-sm ${ok ? "text-emerald-600 dark:text-emerald-400" : "text-red-600 dark:text-red-400"}`}>
      {text}
    </p>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [result, setResult] = useState<{ text: string; ok: boolean } | null>(null);
  return (
    <form
      className="space-y-2"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          saveSession(await changePassword(current, next)); // older tokens are refused from now on
          setCurrent("");
          setNext("");
          setResult({ text: "Password changed. Other devices must log in again.", ok: true });
        } catch (error) {
          setResult({ text: describe(error), ok: false });
        }
      }}
    >
      <h3 className="font-medium">Change password</h3>
      <input className={input} type="password" autoComplete="current-password" aria-label="Current password" placeholder="Current password" value={current} onChange={(e) => setCurrent(e.target.value)} />
      <input className={input} type="password" autoComplete="new-password" aria-label="New password" placeholder="New password (8+ characters)" value={next} onChange={(e) => setNext(e.target.value)} />
      <button type="submit" className={button} disabled={!current || !next}>
        Change password
      </button>
      <Status text={result?.text ?? null} ok={result?.ok} />
    </form>
  );
}

function Keys() {
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<{ id: number; key: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [v1, setV1] = useState("/v1");
  useEffect(() => {
    listKeys().then(setKeys, (e) => setError(describe(e)));
    // /v1 is the chat function's: on AWS its Function URL, else this origin
    loadConfig().then((c) => setV1(`${c.chat || window.location.origin}/v1`), () => undefined);
  }, []);
  return (
    <section className="space-y-2">
      <h3 className="font-medium">API keys</h3>
      <p className="text-xs text-zinc-500 dark:text-zinc-400">
        For OpenAI clients (open-webui, LibreChat, the openai SDK): base URL <code>{v1}</code>, the key as the API key.
      </p>
      <form
        className="flex gap-2"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            const key = await createKey(name);
            setCreated({ id: key.id, key: key.key });
            setName("");
            setKeys((old) => [{ id: key.id, name: key.name, created_at: key.created_at }, ...(old ?? [])]);
            setError(null);
          } catch (err) {
            setError(describe(err));
          }
        }}
      >
        <input className={input} aria-label="Key name" placeholder="Name, e.g. laptop" maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit" className={`${button} whitespace-nowrap`} disabled={!name.trim()}>
          Create key
        </button>
      </form>
      {created && (
        <div className="space-y-1 rounded-lg border border-amber-500/50 bg-amber-500/10 p-2 text-sm" data-testid="new-key">
          <p>Copy the key now: it is shown only once.</p>
          <div className="flex items-center gap-2">
            <code className="min-w-0 flex-1 break-all">{created.key}</code>
            <CopyButton text={() => created.key} label="Copy key" className={`${button} flex items-center gap-1 whitespace-nowrap`} />
          </div>
        </div>
      )}
      <Status text={error} />
      <ul className="space-y-1 text-sm" aria-label="API keys">
        {keys?.length === 0 && <li className="text-zinc-500 dark:text-zinc-400">No keys.</li>}
        {keys?.map((k) => (
          <li key={k.id} className="flex items-center gap-2" data-testid="api-key">
            <span className="min-w-0 flex-1 truncate">{k.name}</span>
            <span className="text-xs text-zinc-500 dark:text-zinc-400">{new Date(k.created_at).toLocaleDateString()}</span>
            <button
              type="button"
              className={button}
              aria-label={`Revoke ${k.name}`}
              onClick={async () => {
                try {
                  await deleteKey(k.id);
                  setKeys((old) => (old ?? []).filter((x) => x.id !== k.id));
                  if (created?.id === k.id) setCreated(null); // a revoked key is no key to copy
                } catch (err) {
                  setError(describe(err));
                }
              }}
            >
              Revoke
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function DangerZone() {
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false); // a second click, as deleting a conversation asks
  return (
    <section className="space-y-2">
      <h3 className="font-medium">Sessions and account</h3>
      <button
        type="button"
        className={button}
        onClick={async () => {
          try {
            await logoutEverywhere();
            goToLogin();
          } catch (err) {
            setError(describe(err));
          }
        }}
      >
        Log out everywhere
      </button>
      <form
        className="space-y-2"
        onSubmit={async (e) => {
          e.preventDefault();
          if (!confirming) {
            setError(null);
            setConfirming(true);
            return;
          }
          setConfirming(false);
          try {
            await deleteAccount(password);
            goToLogin("Your account and its conversations were deleted.");
          } catch (err) {
            setError(describe(err));
          }
        }}
      >
        <p className="text-xs text-zinc-500 dark:text-zinc-400">Deleting the account deletes its conversations and API keys for good.</p>
        <input className={input} type="password" autoComplete="current-password" aria-label="Password to delete the account" placeholder="Password" value={password} onChange={(e) => { setPassword(e.target.value); setConfirming(false); }} />
        {confirming ? (
          <div role="alertdialog" aria-label="Delete the account for good?" className="space-y-2 rounded-lg border border-red-500/50 p-2">
            <p className="text-sm">Delete the account, its conversations and its API keys for good? This cannot be undone.</p>
            <div className="flex gap-2">
              <button type="submit" className="rounded-lg bg-red-700 px-3 py-1.5 text-sm font-medium text-white hover:bg-red-600">
                Yes, delete it
              </button>
              <button type="button" className={button} onClick={() => setConfirming(false)} autoFocus>
                Cancel
              </button>
            </div>
          </div>
        ) : (
          <button type="submit" disabled={!password} className="rounded-lg bg-red-700 px-3 py-1.5 text-sm font-medium text-white hover:bg-red-600 disabled:opacity-50">
            Delete account
          </button>
        )}
      </form>
      <Status text={error} />
    </section>
  );
}

/** The account panel: password, API keys, log out everywhere, delete the account. */
export default function AccountPanel({ email, onClose }: { email: string; onClose: () => void }) {
  const panel = useRef<HTMLElement>(null);
  useDialog(panel, onClose);
  return (
    <div className="fixed inset-0 z-40 flex justify-end bg-black/40" onClick={onClose}>
      <section
        ref={panel}
        role="dialog"
        aria-modal="true"
        aria-labelledby="account-title"
        onClick={(e) => e.stopPropagation()}
        className="h-full w-full max-w-sm space-y-6 overflow-y-auto bg-white p-5 shadow-xl dark:bg-zinc-900"
      >
        <div className="flex items-center justify-between">
          <h2 id="account-title" className="text-lg font-semibold">
            Account
          </h2>
          <button type="button" onClick={onClose} aria-label="Close account" className="rounded p-1 hover:bg-zinc-200 dark:hover:bg-zinc-800">
            <CloseIcon />
          </button>
        </div>
        <p className="truncate text-sm text-zinc-500 dark:text-zinc-400">{email}</p>
        <PasswordForm />
        <Keys />
        <DangerZone />
      </section>
    </div>
  );
}
