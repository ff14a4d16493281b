import { describe, expect, it } from "vitest";

import { type Bounds, clamp, defaults, forRequest, range } from "./settings";

// what GET /api/model says of the default model (functions/chat/schemas.py sampling_bounds)
const BOUNDS: Bounds = {
  temperature: { default: 0.8, minimum: 0, maximum: 2 },
  top_p: { default: 0.95, minimum: 0, maximum: 1, exclusive_minimum: true },
  top_k: { default: 50, minimum: 0, maximum: 200 },
  max_new_tokens: { default: 128, minimum: 1, maximum: 383 },
  min_new_tokens: { default: 0, minimum: 0, maximum: 383 },
};

describe("settings", () => {
  it("keeps min tokens within the model's range and never above max tokens in a request", () => {
    expect(clamp("min_new_tokens", -3, BOUNDS)).toBe(0);
    expect(clamp("min_new_tokens", 999, BOUNDS)).toBe(383);
    expect(clamp("min_new_tokens", 12.6, BOUNDS)).toBe(13);
    expect(forRequest({ ...defaults(BOUNDS), max_new_tokens: 24, min_new_tokens: 383 }).min_new_tokens).toBe(24);
    expect(forRequest({ ...defaults(BOUNDS), max_new_tokens: 200, min_new_tokens: 48 }).min_new_tokens).toBe(48);
  });

  it("takes its defaults and ranges from the server, a smaller window included", () => {
    expect(defaults(BOUNDS)).toEqual({ temperature: 0.8, top_p: 0.95, top_k: 50, max_new_tokens: 128, min_new_tokens: 0 });
    const small = { ...BOUNDS, max_new_tokens: { default: 64, minimum: 1, maximum: 127 } };
    expect(clamp("max_new_tokens", 300, small)).toBe(127);
    expect(range("top_p", BOUNDS).min).toBeGreaterThan(0); // 0 itself is refused by the API
    expect(clamp("top_p", 0, BOUNDS)).toBeCloseTo(0.05);
  });

  it("sends nothing before the bounds are known: the server's defaults apply", () => {
    expect(forRequest(null)).toEqual({});
  });
});
