import { describe, expect, it } from "vitest";

import { errorShown } from "./chat";

describe("errorShown", () => {
  it("offers a failed answer to be tried again", () => {
    expect(errorShown({ code: "generation_failed", message: "RuntimeError: boom" })).toEqual({
      error: "The answer failed: RuntimeError: boom",
      retry: true,
    });
  });

  it("shows an answer whose final save failed as whole, saved when the database is back, with no retry", () => {
    const message = "The answer could not be saved yet (OperationalError); it will be saved when the database is back";
    expect(errorShown({ code: "save_failed", message })).toEqual({ error: message, retry: false });
  });
});
