// Where each function's API lives, read at run time from /config.json beside the app, so one build works
// behind one origin (base URL "") and against API Gateway / Lambda function URLs (full https URLs).

export type Service = "auth" | "conversations" | "chat";
export type ApiConfig = Record<Service, string>;

const SAME_ORIGIN: ApiConfig = { auth: "", conversations: "", chat: "" };
let loading: Promise<ApiConfig> | null = null;

function base(value: unknown): string {
  return typeof value === "string" ? value.replace(/\/+$/, "") : "";
}

async function fetchConfig(): Promise<ApiConfig> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (response.status === 404) return SAME_ORIGIN; // no config.json: the API is on this origin
  if (!response.ok) throw new Error(`Could not read /config.json (HTTP ${response.status})`);
  const json = (await response.json()) as Record<string, unknown>;
  return {
    auth: base(json.authBaseUrl),
    conversations: base(json.conversationsBaseUrl),
    chat: base(json.chatBaseUrl),
  };
}

export function loadConfig(): Promise<ApiConfig> {
  loading ??= fetchConfig().catch((error: unknown) => {
    loading = null; // let the next call try again
    throw error;
  });
  return loading;
}
