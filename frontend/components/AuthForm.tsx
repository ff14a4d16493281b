"use client";

import Link from "next/link";
import { useEffect, useState, useSyncExternalStore } from "react";

import { apiJson, ApiError } from "@/lib/api";
import { readSession, saveSession, takeNotice, type TokenResponse } from "@/lib/session";

const COPY = {
  login: { title: "Log in", button: "Log in", busy: "Logging in…", other: "register", otherText: "No account yet?" },
  register: {
    title: "Create an account",
    button: "Register",
    busy: "Creating…",
    other: "login",
    otherText: "Already registered?",
  },
} as const;

// false in the prerendered HTML and while React hydrates it, true once the page is live
const noChanges = () => () => {};
const hydrated = () => true;
const notHydrated = () => false;

export default function AuthForm({ mode }: { mode: "login" | "register" }) {
  const copy = COPY[mode];
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  // the fields and the button stay disabled until the page is hydrated: a submit before that would be the
  // browser's own (a GET with the password in the URL), and a value typed before it could be reset
  const ready = useSyncExternalStore(noChanges, hydrated, notHydrated);

  const [notice, setNotice] = useState<string | null>(null);
  // the first field to type in, once it can be typed in; after a refusal, the field it names (else the password)
  useEffect(() => {
    if (!ready || busy) return;
    const named = error && Object.keys(error.fields).find((name) => name === "email" || name === "password");
    const name = named ?? (error ? "password" : "email");
    document.querySelector<HTMLInputElement>(`form input[name="${name}"]`)?.focus();
  }, [ready, busy, error]);
  useEffect(() => {
    if (readSession()) window.location.replace("/");
    // eslint-disable-next-line react-hooks/set-state-in-effect -- read once after hydration, as the session is
    setNotice(takeNotice());
  }, []);

  async function submit(event: React.FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const response = await apiJson<TokenResponse>("auth", `/api/auth/${mode}`, {
        method: "POST",
        json: { email, password },
        auth: false,
      });
      saveSession(response);
      window.location.assign("/");
    } catch (caught) {
      setError(caught instanceof ApiError ? caught : new ApiError(0, "error", String(caught)));
      setBusy(false);
    }
  }

  const fieldError = (name: string) => error?.fields[name];

  return (
    <main className="flex min-h-dvh items-center justify-center p-4">
      <form onSubmit={submit} noValidate className="w-full max-w-sm space-y-4" aria-label={copy.title}>
        <div className="space-y-1 text-center">
          <div className="text-3xl font-bold tracking-tight">SLM</div>
          <h1 className="text-lg text-zinc-500 dark:text-zinc-400">{copy.title}</h1>
        </div>
        {notice && !error && (
          <p role="status" className="rounded-lg bg-sky-500/15 px-3 py-2 text-sm text-sky-800 dark:text-sky-200">
            {notice}
          </p>
        )}
        {error && (
          <p role="alert" className="rounded-lg bg-red-500/15 px-3 py-2 text-sm text-red-700 dark:text-red-300">
            {Object.keys(error.fields).some((name) => name === "email" || name === "password")
              ? "Please correct the fields below."
              : error.message}
          </p>
        )}
        <fieldset disabled={!ready} className="space-y-4">
          <Field
            name="email"
            label="Email"
            type="email"
            autoComplete="email"
            value={email}
            onChange={setEmail}
            error={fieldError("email")}
          />
          <Field
            name="password"
            label="Password"
            type="password"
            autoComplete={mode === "login" ? "current-password" : "new-password"}
            value={password}
            onChange={setPassword}
            error={fieldError("password")}
            hint={mode === "register" ? "8 to 72 bytes" : undefined}
          />
          <button
            type="submit"
            disabled={busy}
            className="w-full rounded-lg bg-sky-700 px-3 py-2 font-medium text-white hover:bg-sky-600 disabled:opacity-60"
          >
            {busy ? copy.busy : copy.button}
          </button>
        </fieldset>
        <p className="text-center text-sm text-zinc-500 dark:text-zinc-400">
          {copy.otherText}{" "}
          <Link href={`/${copy.other}`} className="text-sky-700 underline dark:text-sky-400">
            {copy.other === "login" ? "Log in" : "Register"}
          </Link>
        </p>
      </form>
    </main>
  );
}

interface FieldProps {
  name: string;
  label: string;
  type: string;
  autoComplete: string;
  value: string;
  onChange: (value: string) => void;
  error?: string;
  hint?: string;
}

/** A labelled input with the API's error for that field (from `error.fields`) under it. */
function Field({ name, label, type, autoComplete, value, onChange, error, hint }: FieldProps) {
  return (
    <label className="block space-y-1">
      <span className="text-sm font-medium">{label}</span>
      <input
        className="w-full rounded-lg border border-zinc-300 bg-white px-3 py-2 outline-none focus:border-sky-500 dark:border-zinc-700 dark:bg-zinc-800"
        type={type}
        name={name}
        autoComplete={autoComplete}
        required
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-invalid={Boolean(error)}
        aria-describedby={`${name}-error`}
      />
      {error ? (
        <span id={`${name}-error`} className="text-sm text-red-600 dark:text-red-400">
          {error}
        </span>
      ) : (
        hint && <span className="text-xs text-zinc-500 dark:text-zinc-400">{hint}</span>
      )}
    </label>
  );
}
