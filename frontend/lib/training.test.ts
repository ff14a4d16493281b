import { describe, expect, it } from "vitest";

import { formatNumber, trainedCorpus, trainingStages } from "./training";

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

describe("trainedCorpus", () => {
  it("shows the last stage's corpus and names the sources only earlier stages trained on", () => {
    const data = {
      pretrain: { corpus: { sources: { chitchat: 1, brown: 2 } } },
      sft: { corpus: { sources: { chitchat: 3, facts: 4 } } },
    };
    expect(trainedCorpus(data)).toEqual({ sources: { chitchat: 3, facts: 4 }, earlier: ["brown"] });
  });

  it("is empty without a record, and a user file's stage (no corpus) is skipped", () => {
    expect(trainedCorpus(undefined)).toEqual({ sources: {}, earlier: [] });
    expect(trainedCorpus({ pretrain: { corpus: { sources: { a: 1 } } }, sft: {} })).toEqual({ sources: { a: 1 }, earlier: [] });
  });
});

describe("formatNumber", () => {
  it("formats a number and shows a dash for a missing or null one", () => {
    expect(formatNumber(1437696, 0)).toBe("1,437,696");
    expect(formatNumber(3.85549, 3)).toBe("3.855");
    expect(formatNumber(undefined)).toBe("—");
    expect(formatNumber(null)).toBe("—"); // an average's stage records val_loss: null; it broke the model page
    expect(formatNumber(Number.NaN)).toBe("—");
  });
});
