// The auth function's account routes: change the password, log out everywhere, delete the account, API keys.

import { apiJson } from "./api";
import type { TokenResponse } from "./session";

export interface ApiKey {
  id: number;
  name: string;
  created_at: string;
}

export function changePassword(currentPassword: string, newPassword: string): Promise<TokenResponse> {
  return apiJson("auth", "/api/auth/password", {
    method: "POST",
    json: { current_password: currentPassword, new_password: newPassword },
  });
}

/** Every token issued so far is refused, this browser's included. */
export function logoutEverywhere(): Promise<null> {
  return apiJson("auth", "/api/auth/logout", { method: "POST" });
}

export function deleteAccount(password: string): Promise<null> {
  return apiJson("auth", "/api/auth/me", { method: "DELETE", json: { password } });
}

export function listKeys(): Promise<ApiKey[]> {
  return apiJson("auth", "/api/auth/keys");
}

/** A new key for /v1: `key` is in this answer only. */
export function createKey(name: string): Promise<ApiKey & { key: string }> {
  return apiJson("auth", "/api/auth/keys", { method: "POST", json: { name } });
}

export function deleteKey(id: number): Promise<null> {
  return apiJson("auth", `/api/auth/keys/${id}`, { method: "DELETE" });
}
