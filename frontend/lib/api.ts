// JSON over HTTP to the functions. Every error has one shape: {"error": {"code", "message", "fields"?}}.

import { loadConfig, type Service } from "./config";
import { goToLogin, readSession } from "./session";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's HTML page): described by the status below
  }
  const error = (body as { error?: { code?: string; message?: string; fields?: Record<string, string> } })
    ?.error;
  return new ApiError(
    response.status,
    error?.code ?? "http_error",
    error?.message ?? `The server answered HTTP ${response.status} ${response.statusText}`.trim(),
    error?.fields ?? {},
  );
}

export interface RequestOptions extends Omit<RequestInit, "body"> {
  json?: unknown;
  /** false for login/register: a 401 there is a wrong password, not an expired session */
  auth?: boolean;
}

/** fetch a function's route with the bearer token; a 401 for the token sends the user back to the login
 * page (a 401 `invalid_credentials` is a wrong password typed in a form of a signed-in user: the form says
 * so, and the session stays). */
export async function apiFetch(service: Service, path: string, options: RequestOptions = {}): Promise<Response> {
  const { json, auth = true, headers, ...init } = options;
  const config = await loadConfig();
  const all = new Headers(headers);
  if (json !== undefined) all.set("Content-Type", "application/json");
  const session = auth ? readSession() : null;
  if (session) all.set("Authorization", `Bearer ${session.token}`);
  let response: Response;
  try {
    response = await fetch(config[service] + path, {
      ...init,
      headers: all,
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    throw new ApiError(0, "network_error", `Cannot reach the server: ${(error as Error).message}`);
  }
  if (response.status === 401 && auth) {
    const error = await errorFrom(response);
    if (error.code !== "invalid_credentials") goToLogin();
    throw error;
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function apiJson<T>(service: Service, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await apiFetch(service, path, options);
  return (response.status === 204 ? null : await response.json()) as T;
}
