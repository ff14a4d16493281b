/** The model card's training record (config.json "training"), as the model page shows it. */

export interface Stage {
  steps?: number;
  tokens?: number;
  minutes?: number;
  device?: string;
  recipe?: string;
  warm_start?: string | null;
  val_loss?: number | null; // null: a stage with no loss of its own (an average)
  autocast?: string;
}

// config.json's training record: stages by name; a warm start keeps the model it started from's
// record under "earlier" (model/train.py)
export type Training = { earlier?: Training } & { [stage: string]: Stage | Training | undefined };

/** Every stage, oldest first; earlier runs' stages say how many runs before the last they were. */
export function trainingStages(training: Training): [string, Stage][] {
  const runs: [string, Stage][][] = [];
  for (let t: Training | undefined = training; t; t = t.earlier) {
    runs.push(Object.entries(t).filter(([k]) => k !== "earlier") as [string, Stage][]);
  }
  return runs.reverse().flatMap((run, i) => {
    const back = runs.length - 1 - i;
    const suffix = back === 0 ? "" : `, ${back} run${back > 1 ? "s" : ""} before`;
    return run.map(([name, stage]): [string, Stage] => [`${name}${suffix}`, stage]);
  });
}

/** config.json's data record: per stage, the corpus manifest it trained on (model/train.py). */
export type DataRecord<S> = Record<string, { corpus?: { sources?: Record<string, S> } }>;

/** The last stage's corpus (a warm start keeps the earlier stages' records first, in order), and the
 * sources only earlier stages trained on: the weights continue from those too. */
export function trainedCorpus<S>(data: DataRecord<S> | undefined): { sources: Record<string, S>; earlier: string[] } {
  const corpora = Object.values(data ?? {}).flatMap((d) => (d.corpus?.sources ? [d.corpus.sources] : []));
  const sources = corpora.at(-1) ?? {};
  const earlier = [...new Set(corpora.slice(0, -1).flatMap((c) => Object.keys(c)))].filter((n) => !(n in sources));
  return { sources, earlier };
}

/** A number of the card, or "—" where the record has none: a field left out, or null (a stage without a
 * loss of its own, such as an average of two checkpoints, records val_loss: null). */
export function formatNumber(x: number | null | undefined, digits = 2): string {
  return x == null || Number.isNaN(x) ? "—" : x.toLocaleString("en", { maximumFractionDigits: digits });
}
