import { describe, expect, it } from "vitest";

import { clamp, DEFAULTS, forRequest } from "./settings";

describe("settings", () => {
  it("keeps min tokens within the API's range and never above max tokens in a request", () => {
    expect(clamp("min_new_tokens", -3)).toBe(0);
    expect(clamp("min_new_tokens", 999)).toBe(383);
    expect(clamp("min_new_tokens", 12.6)).toBe(13);
    expect(forRequest({ ...DEFAULTS, max_new_tokens: 24, min_new_tokens: 383 }).min_new_tokens).toBe(24);
    expect(forRequest({ ...DEFAULTS, max_new_tokens: 200, min_new_tokens: 48 }).min_new_tokens).toBe(48);
    expect(DEFAULTS.min_new_tokens).toBe(0);
  });
});
