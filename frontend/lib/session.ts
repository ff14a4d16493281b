// The signed-in user and their access token, kept in localStorage until it expires or they log out.

export interface User {
  id: number;
  email: string;
  created_at: string;
}

export interface Session {
  token: string;
  user: User;
  expiresAt: number; // ms since the epoch
}

export interface TokenResponse {
  user: User;
  access_token: string;
  token_type: "bearer";
  expires_in: number;
}

const KEY = "slm.session";

export function readSession(): Session | null {
  if (typeof window === "undefined") return null;
  const raw = window.localStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const session = JSON.parse(raw) as Session;
    if (session.token && session.expiresAt > Date.now()) return session;
  } catch {
    // a damaged entry is the same as none: fall through and remove it
  }
  window.localStorage.removeItem(KEY);
  return null;
}

export function saveSession(response: TokenResponse): Session {
  const session = {
    token: response.access_token,
    user: response.user,
    expiresAt: Date.now() + response.expires_in * 1000,
  };
  window.localStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export function clearSession(): void {
  window.localStorage.removeItem(KEY);
}

let leaving = false;

/** Back to the login page (a 401 anywhere, or logout); several failing requests navigate only once. */
const NOTICE = "slm.notice"; // what the login page says first (once), e.g. that the account was deleted

export function goToLogin(notice?: string): void {
  clearSession();
  if (notice) sessionStorage.setItem(NOTICE, notice);
  if (leaving || window.location.pathname === "/login") return;
  leaving = true;
  window.location.assign("/login");
}

/** The notice goToLogin left for the login page, read once. */
export function takeNotice(): string | null {
  const notice = sessionStorage.getItem(NOTICE);
  sessionStorage.removeItem(NOTICE);
  return notice;
}
