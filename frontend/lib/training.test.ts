import { describe, expect, it } from "vitest";

import { trainingStages } from "./training";

describe("trainingStages", () => {
  it("lists a single run's stages by name", () => {
    expect(trainingStages({ pretrain: { steps: 2 }, sft: { steps: 1 } })).toEqual([
      ["pretrain", { steps: 2 }],
      ["sft", { steps: 1 }],
    ]);
  });

  it("puts earlier runs first and says how many runs before the last they were", () => {
    const training = {
      earlier: { earlier: { pretrain: { steps: 1 } }, pretrain: { steps: 2 }, sft: { steps: 3 } },
      pretrain: { steps: 4 },
      sft: { steps: 5 },
    };
    expect(trainingStages(training).map(([name, t]) => `${name}:${t.steps}`)).toEqual([
      "pretrain, 2 runs before:1",
      "pretrain, 1 run before:2",
      "sft, 1 run before:3",
      "pretrain:4",
      "sft:5",
    ]);
  });
});
