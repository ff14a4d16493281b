"""Evaluate a checkpoint on the held-out split and write its report card.

    python -m model.evaluate --checkpoint runs/sft
    python -m model.export --src runs/sft --dst model/checkpoints/default
    python -m model.evaluate --checkpoint model/checkpoints/default

Measures the validation loss and perplexity per data source (dialogues: assistant tokens only, as
in SFT; prose: every token), exact-match accuracy on held-out generated skill questions, and the
greedy answers to a fixed list of prompts; an int8 checkpoint's losses also as served (through the
ONNX Runtime engine, scores.int8.served_val_loss). Stores them in config.json under scores.fp32 or
scores.int8 (an int8 folder made by model.export keeps the fp32 scores it was exported from) and
writes the folder's README.md, a Markdown report card showing both and the fp32 -> int8 change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import CONFIG, CheckpointError, load_checkpoint
from model.config import TOKENIZER, training_stages
from model.corpus.build import GENERATED
from model.data import (
    Messages,
    encode_item,
    holdout,
    load_corpus,
    pack_stream,
    read_conversations,
    row_batch,
    sft_rows,
)
from model.engine import Engine, SamplingParams
from model.gpt import GPT
from model.loops import NGRAM_WORDS, WordTable, word_key
from model.ngram import KneserNey
from model.sampling import Slots
from model.tok_train import count_tokens, fill_token_counts
from model.tokenizer import Tokenizer, render_prompt
from model.unlikelihood import repeated_ngrams

PROMPTS = [
    "Hello!",
    "How are you today?",
    "What did you do this weekend?",
    "What is your favorite food?",
    "What does ocean mean?",
    "What is 7 + 5?",
    'How do you spell "house"?',
    "Which is bigger, 12 or 30?",
]


def eval_rows(tok: Tokenizer, items: list[Messages] | list[str], T: int, max_rows: int):
    """The rows a source is scored on, (N, T+1) ids and masks: conversations packed as in SFT
    (loss on assistant tokens), prose as consecutive windows (loss on every token)."""
    if items and isinstance(items[0], str):
        ids, _ = pack_stream(tok, items)
        n = min(max_rows, (len(ids) - 1) // T)
        rows = torch.stack([ids[i * T : i * T + T + 1] for i in range(n)])
        return rows, torch.ones_like(rows, dtype=torch.uint8)
    rows, masks = sft_rows(tok, items, T)  # type: ignore[arg-type]
    return rows[:max_rows], masks[:max_rows]


@torch.inference_mode()
def gpt_nats(model: GPT, rows: torch.Tensor, masks: torch.Tensor, batch: int) -> tuple[float, int]:
    """(sum of the next-token losses in nats, positions scored) over the rows' masked targets."""
    total, count = 0.0, 0
    for start in range(0, len(rows), batch):
        x, y, m = row_batch(rows, masks, torch.arange(start, min(start + batch, len(rows))))
        _, loss = model(x, y, m)
        total += loss.item() * m.sum().item()
        count += int(m.sum().item())
    return total, count


def served_nats(engine: Any, rows: torch.Tensor, masks: torch.Tensor) -> tuple[float, int]:
    """gpt_nats through a serving engine (prefill, decode, release over its max_batch slots): every row
    fed one token a pass, as the server decodes an answer, so the loss counts the engine's own rounding
    (model/ort_engine.py: MatMulNBits with each activation row quantized to int8, for up to SMALL_PASS
    rows a pass)."""
    total, count = 0.0, 0
    for start in range(0, len(rows), engine.max_batch):
        chunk, weight = rows[start : start + engine.max_batch], masks[start : start + engine.max_batch]
        slots = list(range(len(chunk)))
        logits = np.stack([np.asarray(engine.prefill(s, [int(chunk[s, 0])])) for s in slots])
        for t in range(1, chunk.size(1)):
            scored = weight[:, t].bool()
            if scored.any():
                logp = torch.from_numpy(logits).float().log_softmax(-1)
                nats = -logp[torch.arange(len(chunk)), chunk[:, t]]
                total += float(nats[scored].double().sum())
                count += int(scored.sum())
            if t < chunk.size(1) - 1:
                logits = np.asarray(engine.decode(slots, chunk[:, t].tolist()))
        for s in slots:
            engine.release(s)
    return total, count


def served_losses(ckpt: Path, tok: Tokenizer, val: dict[str, list], max_rows: int) -> dict[str, float] | None:
    """Each source's held-out loss through the ONNX Runtime engine the chat function serves an int8
    checkpoint with (one user's answer: MatMulNBits); None where onnxruntime is not installed or the
    engine cannot run the checkpoint's shape."""
    try:
        from model.ort_engine import SMALL_PASS, OrtEngine
    except ImportError:
        print("not scored as served: onnxruntime is not installed", file=sys.stderr)
        return None
    try:
        # every pass MatMulNBits, on any CPU (its passes are at most SMALL_PASS rows)
        engine = OrtEngine.from_checkpoint(ckpt, max_batch=SMALL_PASS, small_pass=SMALL_PASS)
    except CheckpointError as e:  # a shape the engine cannot serve
        print(f"not scored as served: {e}", file=sys.stderr)
        return None
    out = {}
    for name, items in val.items():
        if items:
            rows, masks = eval_rows(tok, items, engine.block_size, max_rows)
            nats, count = served_nats(engine, rows, masks)
            out[name] = round(nats / max(count, 1), 4)
    return out


def source_scores(
    model: GPT, tok: Tokenizer, items: list, train_items: list | None, max_rows: int, batch: int = 8
) -> dict[str, Any]:
    """The GPT's loss, perplexity and bits per byte on one source's held-out rows, beside
    Kneser-Ney bigram and trigram models fitted on the source's train split (same tokenizer,
    same scored tokens)."""
    rows, masks = eval_rows(tok, items, model.config.block_size, max_rows)
    nbytes = sum(torch.tensor(tok.token_bytes())[rows[:, 1:]][masks[:, 1:].bool()].tolist())
    nats, count = gpt_nats(model, rows, masks, batch)
    out: dict[str, Any] = {"tokens": count, "bytes": nbytes}
    models: list[tuple[str, float]] = [("gpt", nats)]
    if train_items:
        sequences = [encode_item(tok, x)[0] for x in train_items]
        for name, order in (("bigram", 2), ("trigram", 3)):
            models.append((name, KneserNey(order, tok.vocab_size).fit(sequences).score(rows, masks)[0]))
    for name, total in models:
        loss = total / max(count, 1)
        out[name] = {
            "loss": round(loss, 4),
            "perplexity": round(math.exp(loss), 2),
            "bits_per_byte": round(total / math.log(2) / max(nbytes, 1), 4),
        }
    if "trigram" in out:
        out["ratio_to_trigram"] = round(out["gpt"]["perplexity"] / out["trigram"]["perplexity"], 3)
        out["ratio_to_bigram"] = round(out["gpt"]["perplexity"] / out["bigram"]["perplexity"], 3)
    return out


def greedy(
    engine: Slots,
    tok: Tokenizer,
    messages: Messages,
    max_new_tokens: int = 64,
    words: WordTable | None = None,
    loop_guard: int = 0,
) -> str:
    """The greedy answer of either engine (torch or ONNX Runtime: Slots.generate); with a loop guard of
    `loop_guard` words (model/loops.py; it needs the tokenizer's `words`) as the chat function serves."""
    params = SamplingParams(temperature=0, max_new_tokens=max_new_tokens, no_repeat_ngram=loop_guard)
    return tok.decode(list(engine.generate(render_prompt(tok, messages), params, words))).strip()


def skill_accuracy(
    engine: Engine,
    tok: Tokenizer,
    paths: list[Path],
    limit: int,
    answer_with: Callable[..., str] | None = None,
) -> dict[str, Any]:
    """Exact match (whole reply, stripped) on the first `limit` held-out questions of each kind, in
    two sets: problems never trained on in any phrasing ("problem"; a row without a held_out mark,
    as an older corpus wrote them, is one) and trained problems asked in a family of phrasings never
    trained on ("phrasing"). Rows without an answer, and facts never trained on, are not asked. Each
    question is answered by `answer_with(messages, max_new_tokens=)` (default: plain greedy)."""
    right: dict[str, dict[str, list[int]]] = {"problem": defaultdict(list), "phrasing": defaultdict(list)}
    ask = answer_with or partial(greedy, engine, tok)
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            held = row.get("held_out", "problem")
            if "answer" not in row or held not in right or len(right[held][row["skill"]]) >= limit:
                continue
            answer = row["answer"].strip()
            reply = ask(row["messages"][:1], max_new_tokens=len(tok.encode(answer)) + 8)
            right[held][row["skill"]].append(int(reply == answer))

    def summary(per: dict[str, list[int]]) -> dict[str, Any]:
        asked = sum(len(v) for v in per.values())
        return {
            "exact_match": round(sum(sum(v) for v in per.values()) / max(asked, 1), 4),
            "questions": asked,
            "per_skill": {k: round(sum(v) / len(v), 4) for k, v in sorted(per.items()) if v},
        }

    return {**summary(right["problem"]), "held_out_phrasings": summary(right["phrasing"])}


def splits(
    data: Path | None, conversations: list[Path], seed: int
) -> tuple[dict[str, list], dict[str, list]]:
    """(train, val): the default corpus's splits, plus each user file's (the same split model.train
    made with this seed). The baselines are fitted on train, everything is scored on val."""
    train: dict[str, list] = dict(load_corpus(data, "train")) if data else {}
    val: dict[str, list] = dict(load_corpus(data, "val")) if data else {}
    for path in conversations:
        train[path.name], val[path.name] = holdout(read_conversations(path), f"{seed}:{path.name}")
    return train, val


def evaluate(
    ckpt: Path,
    val: dict[str, list],
    skills: list[Path],
    max_rows: int,
    skill_questions: int,
    batch: int = 8,
    train: dict[str, list] | None = None,
    repeat_prompts: int = 25,
    served: bool = True,
    loop_guard: int = NGRAM_WORDS,
) -> dict[str, Any]:
    model, tok, meta = load_checkpoint(ckpt)
    train = train or {}
    sources = {
        name: source_scores(model, tok, items, train.get(name), max_rows, batch)
        for name, items in val.items()
        if items
    }
    # an int8 checkpoint is also scored as the chat function serves it (this torch path rounds the
    # activations its own, coarser way: fbgemm's 7-bit per-tensor inputs)
    as_served = served_losses(ckpt, tok, val, max_rows) if served and meta.get("quantization") else None
    engine = Engine(model, max_batch=1)
    words = WordTable(tok)
    as_served_greedy = partial(greedy, engine, tok, words=words, loop_guard=loop_guard)

    def answer(prompt: str, guard: int = loop_guard) -> str:
        return greedy(engine, tok, [{"role": "user", "content": prompt}], words=words, loop_guard=guard)

    def without_repeats(prompts: dict[str, list[str]], guard: int) -> dict[str, Any]:
        marks = {name: [not repeats_a_3gram(answer(p, guard)) for p in ps] for name, ps in prompts.items()}
        asked = sum(len(v) for v in marks.values())
        return {
            "prompts": asked,
            # no turns asked (--repeat-prompts 0) is no share, not 0% of none
            "share": round(sum(sum(v) for v in marks.values()) / asked, 4) if asked else None,
            "per_source": {k: round(sum(v) / len(v), 4) for k, v in marks.items() if v},
        }

    samples = {p: answer(p) for p in PROMPTS}
    asked_of = held_out_prompts({k: v for k, v in val.items() if k not in GENERATED}, repeat_prompts)
    return {
        "val_loss": {k: v["gpt"]["loss"] for k, v in sources.items()},
        "val_perplexity": {k: v["gpt"]["perplexity"] for k, v in sources.items()},
        **({"served_val_loss": as_served} if as_served else {}),
        "sources": sources,
        "skills": skill_accuracy(engine, tok, skills, skill_questions, as_served_greedy)
        if skills and skill_questions
        else None,
        # answers as the chat function serves them: greedy, with its loop guard of `loop_guard` words
        "loop_guard_words": loop_guard,
        "samples": samples,
        "samples_without_repeats": sum(not repeats_a_3gram(a) for a in samples.values()) / len(samples),
        # the same on many held-out user turns: 8 prompts move by 12.5 points with one answer
        "held_out_without_repeats": without_repeats(asked_of, loop_guard),
        # the model alone, no guard: how often the guard has work to do
        "unguarded": {
            "samples_without_repeats": sum(not repeats_a_3gram(answer(p, 0)) for p in PROMPTS) / len(PROMPTS),
            "held_out_without_repeats": without_repeats(asked_of, 0),
        }
        if loop_guard
        else None,
        "eval_settings": {"max_rows_per_source": max_rows, "block_size": model.config.block_size},
    }


def held_out_prompts(val: dict[str, list], per_source: int) -> dict[str, list[str]]:
    """The first `per_source` distinct user turns of three words or more of each held-out dialogue source."""
    out: dict[str, list[str]] = {}
    for name, items in val.items():
        seen: dict[str, None] = {}
        for item in items:
            if isinstance(item, str) or len(seen) >= per_source:
                break
            for m in item:
                if m["role"] == "user" and len(m["content"].split()) >= 3 and len(seen) < per_source:
                    seen[m["content"]] = None
        if seen:
            out[name] = list(seen)
    return out


def repeats_a_3gram(text: str) -> bool:
    """Whether some sequence of 3 words occurs twice in the answer (words: lower-cased, punctuation
    around them dropped), the mark of a greedy answer that loops."""
    words = [word_key(w) for w in text.split()]
    return any(repeated_ngrams([w for w in words if w], 3))


def _count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _skill_getter(name: str, held_out: str = "problem"):
    """Exact-match accuracy of one kind ("all": overall) on held-out problems or ("phrasing") held-out
    phrasings, from a scores dict; None if absent."""

    def get(scores: dict[str, Any]) -> float | None:
        skills = scores.get("skills") if scores else None
        if skills and held_out == "phrasing":
            skills = skills.get("held_out_phrasings")
        if not skills or not skills["questions"]:
            return None
        return skills["exact_match"] if name == "all" else skills["per_skill"].get(name)

    return get


def skill_table(fp32: dict[str, Any], int8: dict[str, Any]) -> list[str]:
    """Markdown rows: exact match per kind of question, on new problems and on new phrasings."""
    skills = fp32.get("skills") or int8.get("skills")  # fp32 may hold only its losses (trained elsewhere)
    if not skills:
        return []
    phrasings = skills.get("held_out_phrasings", {"questions": 0, "per_skill": {}})
    lines = [
        "",
        "| kind (exact match) | new problems fp32 | int8 | new phrasings fp32 | int8 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ["all", *sorted(set(skills["per_skill"]) | set(phrasings["per_skill"]))]:
        cells = [
            _fmt(_skill_getter(name, held)(scores))
            for held in ("problem", "phrasing")
            for scores in (fp32, int8)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        f"\n{skills['questions']} held-out questions whose problem was never trained on in any phrasing, and "
        f"{phrasings['questions']} trained problems asked in a family of phrasings never trained on (the held-out "
        "families are listed per source in the corpus manifest); a reply counts only if it equals the reference exactly."
    )
    return lines


def licence_notes(corpus: dict[str, Any]) -> list[str]:
    """Markdown lines: what each package's licence asks of these weights (one line per package)."""
    asks: dict[str, str] = {}
    for s in corpus["sources"].values():
        if s.get("asks"):
            asks.setdefault(f"{s.get('registry', '')} `{s['package']}` ({s['licence']})", s["asks"])
    if not asks:
        return []
    lines = ["", "What each data licence asks of these weights, which are redistributed:", ""]
    return lines + [f"- {package}: {ask}." for package, ask in asks.items()]


def baseline_table(scores: dict[str, Any], precision: str) -> list[str]:
    """Markdown rows: per source, the GPT against the Kneser-Ney bigram and trigram baselines."""
    sources = {k: v for k, v in scores.get("sources", {}).items() if "trigram" in v}
    if not sources:
        return []
    lines = [
        "",
        f"Against word counting: Kneser-Ney bigram and trigram models fitted on each source's train split "
        f"with the same tokenizer, scored on the same held-out tokens ({precision} GPT):",
        "",
        "| source | tokens | GPT perplexity | bigram | trigram | GPT / trigram | GPT bits/byte | trigram bits/byte |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in sources.items():
        lines.append(
            f"| {name} | {v['tokens']:,} | {v['gpt']['perplexity']:.1f} | {v['bigram']['perplexity']:.1f} | "
            f"{v['trigram']['perplexity']:.1f} | {v['ratio_to_trigram']:.2f}× | {v['gpt']['bits_per_byte']:.3f} | "
            f"{v['trigram']['bits_per_byte']:.3f} |"
        )
    return lines


def count_corpus_tokens(config: dict[str, Any], data: Path, tokenizer: Path) -> None:
    """Fill in the token counts of the corpus config.json records (a warm start trains no tokenizer, so
    nothing counted them) with the tokenizer at `tokenizer`, when `data` holds that very corpus (the
    same sha256 for every file)."""
    for record in config.get("data", {}).values():
        corpus = record.get("corpus")
        if not isinstance(corpus, dict):
            continue
        files = [f for s in corpus["sources"].values() for f in s["files"]]
        if all("tokens" in f for f in files) or not (data / "manifest.json").is_file():
            continue
        here = json.loads((data / "manifest.json").read_text())
        sha = {f["path"]: f["sha256"] for s in here["sources"].values() for f in s["files"]}
        if any(sha.get(f["path"]) != f["sha256"] for f in files):
            continue  # another corpus than the one trained on: its counts would not be this one's
        fill_token_counts(corpus, count_tokens(Tokenizer.from_file(tokenizer), data))


def report_card(config: dict[str, Any]) -> str:
    """The checkpoint's README.md: what it is, how it was trained, on what, and how well it does."""
    scores = config.get("scores", {})
    fp32, int8 = scores.get("fp32", {}), scores.get("int8", {})
    q = config.get("quantization")
    lines = [
        "# SLM checkpoint",
        "",
        f"A {config['parameters'] / 1e6:.1f}M-parameter GPT ({config['model']['n_layer']} layers, "
        f"{config['model']['n_head']} heads, d={config['model']['n_embd']}, context {config['model']['block_size']}, "
        f"vocabulary {config['model']['vocab_size']:,}), "
        + (f"stored as {q['scheme']}." if q else "stored in fp32.")
        + " Generated by `python -m model.evaluate`; the numbers come from config.json.",
        "",
        "## Training",
        "",
        "| stage | steps | tokens | minutes | device | processes × threads | autocast | recipe | final val loss |",
        "|---|---:|---:|---:|---|---|---|---|---:|",
    ]
    for stage, t in training_stages(config.get("training", {})):
        lines.append(
            f"| {stage} | {t['steps']:,} | {t['tokens']:,} | {t['minutes']} | {t['device']} | "
            f"{t['processes']} × {t['threads']} | {t['autocast']} | {t.get('recipe', 'adamw + cosine')}"
            f"{' (warm start)' if t.get('warm_start') else ''} | {_fmt(t.get('val_loss'))} |"
        )
    # the last stage's corpus: a warm start keeps the earlier stages' records before it
    corpora = [d["corpus"] for d in config.get("data", {}).values() if isinstance(d.get("corpus"), dict)]
    corpus = corpora[-1] if corpora else None
    if corpus:
        lines += [
            "",
            "## Data",
            "",
            "| source | kind | package | licence | train tokens | val tokens |",
            "|---|---|---|---|---:|---:|",
        ]
        for name, s in corpus["sources"].items():
            tokens = {f["split"]: f.get("tokens") for f in s["files"]}
            lines.append(
                f"| {name} | {s['kind']} | {s.get('registry', '')} `{s['package']}` | {s['licence']} | "
                f"{_count(tokens.get('train'))} | {_count(tokens.get('val'))} |"
            )
        lines.append(
            f"\nHeld-out split: {corpus['val_fraction']:.0%} of each source by conversation/document, seed {corpus['seed']}; "
            "the generated questions by problem and by family of phrasings (model/corpus/phrasing.py)."
        )
        earlier = {n: s for c in corpora[:-1] for n, s in c["sources"].items() if n not in corpus["sources"]}
        if earlier:
            lines.append(
                "\nEarlier stages, whose weights this one continues from, also trained on: "
                + "; ".join(
                    f"{n} ({s.get('registry', '')} `{s['package']}`, {s['licence']})"
                    for n, s in earlier.items()
                )
                + "."
            )
        lines += licence_notes(corpus)
    if fp32 or int8:
        lines += [
            "",
            "## Scores (held-out split)",
            "",
            "| source | val loss fp32 | val loss int8 | change | int8 as served | perplexity fp32 | perplexity int8 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in sorted({**fp32.get("val_loss", {}), **int8.get("val_loss", {})}):
            a, b = fp32.get("val_loss", {}).get(name), int8.get("val_loss", {}).get(name)
            change = f"{b - a:+.4f}" if a is not None and b is not None else "–"
            served = int8.get("served_val_loss", {}).get(name)
            lines.append(
                f"| {name} | {_fmt(a, 4)} | {_fmt(b, 4)} | {change} | {_fmt(served, 4)} | "
                f"{_fmt(fp32.get('val_perplexity', {}).get(name), 1)} | {_fmt(int8.get('val_perplexity', {}).get(name), 1)} |"
            )
        if int8.get("served_val_loss"):
            lines.append(
                "\nint8 is scored with torch's int8 GEMM (fbgemm), which also rounds each layer's inputs to 7 bits "
                "per tensor; *int8 as served* is the same weights through the chat function's ONNX Runtime engine, "
                "one token a pass as an answer is decoded (MatMulNBits, each input row rounded to int8 on its own)."
            )
        lines += baseline_table(int8 or fp32, "int8" if int8 else "fp32")
        lines += skill_table(fp32, int8)
        if q and q.get("max_abs_logit_diff"):
            lines.append(f"Largest |logit fp32 − int8| on the export prompts: {q['max_abs_logit_diff']}.")
        lines += ["", "## Greedy answers", ""]
        best = int8 or fp32
        for prompt, answer in best["samples"].items():
            shown = " / ".join(answer.splitlines())  # a line break would end the Markdown list item
            lines.append(f"- **{prompt}** → {shown or '(empty)'}")
        clean = best.get("samples_without_repeats")
        note = "" if clean is None else f" {clean:.0%} of them repeat no 3-word sequence."
        if (held := best.get("held_out_without_repeats")) and held["prompts"]:
            per = ", ".join(f"{k} {v:.0%}" for k, v in held["per_source"].items())
            note += (
                f" On {held['prompts']} held-out user turns (the first distinct ones of each dialogue source, the "
                f"generated skills aside), "
                f"{held['share']:.1%} of the greedy answers repeat no 3-word sequence ({per})."
            )
        guard = best.get("loop_guard_words")
        if guard:
            note += (
                f" Answers are decoded as the chat function serves them, with its loop guard: no sequence of "
                f"{guard} words twice in one answer (model/loops.py; `SLM_CHAT_LOOP_GUARD_WORDS`)."
            )
        if unguarded := best.get("unguarded"):
            alone = unguarded["held_out_without_repeats"]
            per = ", ".join(f"{k} {v:.0%}" for k, v in alone["per_source"].items())
            turns = f" and {alone['share']:.1%} of the held-out turns ({per})" if alone["prompts"] else ""
            note += f" The model alone, without the guard: {unguarded['samples_without_repeats']:.0%} of the samples{turns}."
        lines += ["", f"({'int8' if int8 else 'fp32'} weights, temperature 0.){note}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (fp32 or int8)")
    p.add_argument("--data", type=Path, default=Path("data"), help="corpus folder with the val split")
    p.add_argument(
        "--no-corpus", action="store_true", help="skip the default corpus (e.g. a TinyChat-only model)"
    )
    p.add_argument(
        "--conversations", type=Path, action="append", default=[], help="user files trained on (repeatable)"
    )
    p.add_argument("--max-rows", type=int, default=64, help="rows of block_size tokens per source, at most")
    p.add_argument(
        "--skill-questions", type=int, default=200,
        help="held-out questions per kind to answer, in each set (new problems, new phrasings)",
    )  # fmt: skip
    p.add_argument(
        "--repeat-prompts",
        type=int,
        default=25,
        help="held-out user turns per dialogue source whose greedy answers are checked for loops",
    )
    p.add_argument(
        "--no-served",
        action="store_true",
        help="int8: skip the losses through the served ONNX Runtime engine",
    )
    p.add_argument(
        "--loop-guard",
        type=int,
        default=NGRAM_WORDS,
        help="greedy answers with the chat function's loop guard of this many words, as served (the model "
        "alone is scored for loops too); 0 = no guard",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.checkpoint / CONFIG
    config = json.loads(path.read_text())
    precision = "int8" if config.get("quantization") else "fp32"
    stages = [t for _, t in training_stages(config.get("training", {}))]
    seed = int(stages[-1].get("args", {}).get("seed", 1234)) if stages else 1234
    train, val = splits(None if args.no_corpus else args.data, args.conversations, seed)
    skills = [] if args.no_corpus else sorted((args.data / "val").glob("*.jsonl"))
    scores = evaluate(
        args.checkpoint, val, skills, args.max_rows, args.skill_questions, train=train,
        repeat_prompts=args.repeat_prompts, served=not args.no_served, loop_guard=args.loop_guard,
    )  # fmt: skip
    config.setdefault("scores", {})[precision] = scores
    if not args.no_corpus:
        count_corpus_tokens(config, args.data, args.checkpoint / TOKENIZER)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (args.checkpoint / "README.md").write_text(report_card(config))
    print(json.dumps({k: scores.get(k) for k in ("val_loss", "served_val_loss", "skills")}, indent=2))
    for prompt, answer in scores["samples"].items():
        print(f"{prompt!r} -> {answer!r}")


if __name__ == "__main__":
    main()
